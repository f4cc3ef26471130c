# Copyright 2026 The proxy_nca_jax Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Preprocessing against NumPy: crops, flips, colour conventions, seeds."""

import io

import ml_collections
import numpy as np
import tensorflow as tf
from absl.testing import absltest, parameterized
from PIL import Image

from configs import cub200
from proxy_nca_jax.data import input_conventions, rgb_preprocessing
from tests.testing import fake_images

# Published conventions, written out independently of input_conventions.py.
BN_INCEPTION_BGR_MEAN = np.array([104.0, 117.0, 128.0])
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
# OpenAI CLIP's (clip/clip.py's Normalize); the original ViTs' 0.5.
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


def reference_colors(rgb: np.ndarray, color: str) -> np.ndarray:
  """float64 NumPy transcription of each backbone's input convention."""
  rgb = rgb.astype(np.float64)
  if color == "bn_inception":
    return rgb[..., ::-1] - BN_INCEPTION_BGR_MEAN
  if color == "inception":
    return rgb / 127.5 - 1.0
  if color == "clip":
    return (rgb / 255.0 - CLIP_MEAN) / CLIP_STD
  return (rgb / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def input_config(**overrides) -> ml_collections.ConfigDict:
  config = cub200.get_config().input
  for key, value in overrides.items():
    config[key] = value
  return config


def random_image(shape, seed=0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (*shape, 3), np.uint8)


class AugmentationTest(parameterized.TestCase):
  @parameterized.parameters("bn_inception", "imagenet", "inception", "clip")
  def test_color_conventions(self, color):
    image = random_image((5, 7))
    got = input_conventions.normalize_colors(image.astype(np.float32), color)
    self.assertEqual(got.dtype, np.float32)
    np.testing.assert_allclose(
      got, reference_colors(image, color), rtol=1e-6, atol=1e-5
    )

  @parameterized.parameters("bn_inception", "imagenet")
  def test_eval_is_centre_crop_when_shorter_side_fits(self, color):
    # Shorter side already eval_resize: no resampling, a pure crop.
    image = random_image((10, 15), seed=1)
    config = input_config(image_size=6, eval_resize=10, color=color)
    got = rgb_preprocessing.eval_image(
      fake_images.encode(image), config
    ).numpy()
    top, left = (10 - 6) // 2, (15 - 6) // 2
    want = reference_colors(image[top : top + 6, left : left + 6], color)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
    # Portrait too: the crop is central along the height.
    portrait = image.transpose(1, 0, 2).copy()
    got = rgb_preprocessing.eval_image(fake_images.encode(portrait), config)
    want = reference_colors(portrait[4:10, 2:8], color)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-4)

  @parameterized.parameters(((37, 23),), ((23, 37),), ((8, 8),))
  def test_eval_resizes_shorter_side_then_crops(self, shape):
    config = input_config(image_size=16, eval_resize=20)
    image = np.empty((*shape, 3), np.uint8)
    image[:] = (200, 30, 90)
    resized = rgb_preprocessing.resize_shorter_side(image, 20).numpy()
    short, long = sorted(shape)
    self.assertEqual(min(resized.shape[:2]), 20)
    self.assertEqual(max(resized.shape[:2]), round(long * 20 / short))
    got = rgb_preprocessing.eval_image(
      fake_images.encode(image), config
    ).numpy()
    self.assertEqual(got.shape, (16, 16, 3))
    want = reference_colors(np.array([200, 30, 90]), "bn_inception")
    np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), atol=1e-3)

  def test_random_resized_crop_is_a_window_of_the_right_area(self):
    # Area fraction 1/4 and ratio 1 on a 40 x 40 image: a 20 x 20 window,
    # resized to 20 x 20 (no resampling), so it must appear in the image.
    image = random_image((40, 40), seed=2)
    for i in range(5):
      got = rgb_preprocessing.random_resized_crop(
        image,
        tf.constant([5, i], tf.int64),
        size=20,
        scale=(0.25, 0.25),
        ratio=(1.0, 1.0),
      ).numpy()
      self.assertEqual(got.shape, (20, 20, 3))
      matches = [
        (top, left)
        for top in range(21)
        for left in range(21)
        if np.array_equal(image[top : top + 20, left : left + 20], got)
      ]
      self.assertLen(matches, 1)

  def test_train_flips_half_the_time_and_is_seeded(self):
    # The whole square image (scale 1, ratio 1) at its own size: the output
    # is the image or its mirror, in the BN-Inception convention.
    image = random_image((12, 12), seed=3)
    config = input_config(
      image_size=12, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0)
    )
    encoded = fake_images.encode(image)
    plain = reference_colors(image, "bn_inception")
    mirror = reference_colors(image[:, ::-1], "bn_inception")
    flips = []
    for i in range(16):
      seed = tf.constant([0, i], tf.int64)
      got = rgb_preprocessing.train_image(encoded, seed, config).numpy()
      again = rgb_preprocessing.train_image(encoded, seed, config).numpy()
      np.testing.assert_array_equal(got, again)
      is_plain = np.allclose(got, plain, atol=1e-4)
      is_mirror = np.allclose(got, mirror, atol=1e-4)
      self.assertNotEqual(is_plain, is_mirror)
      flips.append(is_mirror)
    self.assertBetween(sum(flips), 3, 13)
    config.random_flip = False
    for i in range(4):
      got = rgb_preprocessing.train_image(encoded, tf.constant([0, i]), config)
      np.testing.assert_allclose(got.numpy(), plain, atol=1e-4)

  @parameterized.parameters("bn_inception", "imagenet")
  def test_train_output_shape_range_and_seeds(self, color):
    config = input_config(image_size=16, color=color)
    encoded = fake_images.encode(random_image((30, 20), seed=4), "JPEG")
    outputs = [
      rgb_preprocessing.train_image(
        encoded, tf.constant([1, i]), config
      ).numpy()
      for i in range(3)
    ]
    for out in outputs:
      self.assertEqual(out.shape, (16, 16, 3))
      self.assertEqual(out.dtype, np.float32)
      # Within the convention's image of [0, 255].
      low = reference_colors(np.zeros(3), color)
      high = reference_colors(np.full(3, 255.0), color)
      self.assertTrue(np.all(out >= low - 1e-3) and np.all(out <= high + 1e-3))
    self.assertFalse(np.array_equal(outputs[0], outputs[1]))

  def test_grey_png_becomes_three_channels(self):
    grey = np.random.default_rng(5).integers(0, 256, (9, 9), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey, "L").save(buffer, "PNG")
    got = rgb_preprocessing.decode_rgb(buffer.getvalue()).numpy()
    np.testing.assert_array_equal(got, np.repeat(grey[..., None], 3, -1))

  @parameterized.named_parameters(
    ("size", dict(image_size=0), "image_size=0 must be a positive"),
    ("resize", dict(eval_resize=100), "eval_resize=100 must be an integer >="),
    ("scale", dict(crop_scale=(0.5, 1.5)), r"crop_scale=\(0.5, 1.5\)"),
    ("ratio", dict(crop_ratio=(2.0, 1.0)), r"crop_ratio=\(2.0, 1.0\)"),
    ("color", dict(color="rgb"), "color='rgb'; use one of bn_inception"),
  )
  def test_bad_fields_raise(self, overrides, pattern):
    with self.assertRaisesRegex(ValueError, pattern):
      rgb_preprocessing.check_config(input_config(**overrides))


if __name__ == "__main__":
  absltest.main()
