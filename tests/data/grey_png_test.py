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
"""Tests of `grey_png`: other decoders read back the exact pixels."""

import io

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl.testing import absltest, parameterized
from PIL import Image

from proxy_nca_jax.data.builders import grey_png


class EncodeTest(parameterized.TestCase):
  @parameterized.parameters((1, 1), (28, 28), (5, 37), (64, 3))
  def test_decoders_read_the_exact_pixels(self, height, width):
    rng = np.random.default_rng(height * 100 + width)
    image = rng.integers(0, 256, (height, width, 1), dtype=np.uint8)
    image[0, 0] = 0
    image[-1, -1] = 255
    png = grey_png.encode(image, (height, width, 1))
    with Image.open(io.BytesIO(png)) as decoded:
      self.assertEqual(decoded.mode, "L")
      np.testing.assert_array_equal(np.asarray(decoded), image[..., 0])
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), image)
    # As a tfds builder's examples are read back.
    feature = tfds.features.Image(shape=(height, width, 1))
    np.testing.assert_array_equal(feature.decode_example(png).numpy(), image)

  def test_a_two_dimensional_image_is_the_same_file(self):
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    self.assertEqual(
      grey_png.encode(image, (3, 4, 1)),
      grey_png.encode(image[..., None], (3, 4, 1)),
    )

  @parameterized.named_parameters(
    ("wrong_shape", np.zeros((28, 27), np.uint8), (28, 28, 1)),
    ("colour", np.zeros((4, 4, 3), np.uint8), (4, 4, 3)),
    ("not_uint8", np.zeros((4, 4), np.float32), (4, 4, 1)),
  )
  def test_other_images_are_refused(self, image, shape):
    with self.assertRaisesRegex(ValueError, "uint8 grey-level image"):
      grey_png.encode(image, shape)


if __name__ == "__main__":
  absltest.main()
