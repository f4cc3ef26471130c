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
"""Tests of ``python -m proxy_nca_jax.embed`` and folder_embedding.py.

A tiny run is trained in-process; a folder of image files (nested, mixed
extensions, sizes and colour modes, plus files to be ignored) is embedded by
the command in a subprocess. The reference is independent of the code under
test: each file decoded with PIL, normalised with NumPy by Fashion-MNIST's
documented pixel statistics, and embedded by the checkpoint's network
applied directly.
"""

import json
import pathlib
import sys
import tempfile

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import absltest
from PIL import Image

from proxy_nca_jax import models
from proxy_nca_jax.data import image_files, rgb_preprocessing
from proxy_nca_jax.evaluation import folder_embedding
from tests.testing import fake_fashion_mnist, tiny_run

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow

FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530


def _embed_command(*flags: str):
  return tiny_run.run_command(
    [sys.executable, "-m", "proxy_nca_jax.embed", *flags]
  )


def _write_png(path: pathlib.Path, pixels: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path)


def _reference_pixels(path: pathlib.Path) -> np.ndarray:
  """(28, 28, 1) network input of an image file, without the code under test."""
  with Image.open(path) as image:
    gray = image.convert("L")
    if gray.size != (28, 28):
      gray = gray.resize((28, 28), Image.Resampling.BILINEAR)
    pixels = np.asarray(gray, np.float64)[..., None]
  return ((pixels / 255.0 - FMNIST_MEAN) / FMNIST_STD).astype(np.float32)


class EmbedTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.root = pathlib.Path(cls._tmp.name)
    cls.workdir, cls.config, cls.checkpoint = tiny_run.shared_run()

    cls.images = cls.root / "images"
    pixels = fake_fashion_mnist.class_images(np.arange(6) % 5 + 5, seed=9)
    _write_png(cls.images / "sneaker.png", pixels[0])
    _write_png(cls.images / "bags" / "b" / "Deep.PNG", pixels[1])
    _write_png(cls.images / "bags" / "a.png", pixels[2])
    rgb = np.stack([pixels[3], pixels[4], pixels[5]], axis=-1)
    Image.fromarray(rgb).save(cls.images / "colour.jpg", quality=95)
    big = np.kron(pixels[4], np.ones((2, 3), np.uint8))  # 56 x 84.
    Image.fromarray(big).save(cls.images / "big.bmp")
    (cls.images / "notes.txt").write_text("not an image")
    _write_png(cls.images / ".hidden.png", pixels[5])
    cls.expected_files = [
      "bags/a.png",
      "bags/b/Deep.PNG",
      "big.bmp",
      "colour.jpg",
      "sneaker.png",
    ]
    cls.out = cls.root / "out" / "embeddings.npy"
    cls.result = _embed_command(
      f"--workdir={cls.workdir}", f"--images={cls.images}", f"--out={cls.out}"
    )

    # A folder with one good and two undecodable image files.
    cls.broken = cls.root / "broken"
    _write_png(cls.broken / "good.png", pixels[0])
    (cls.broken / "random.png").write_bytes(bytes(range(256)) * 4)
    (cls.broken / "sub").mkdir()
    (cls.broken / "sub" / "truncated.jpg").write_bytes(
      (cls.images / "colour.jpg").read_bytes()[:200]
    )

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()

  def test_writes_embeddings_and_file_names_in_the_same_order(self):
    self.assertEqual(self.result.returncode, 0, self.result.stderr[-3000:])
    embeddings = np.load(self.out)
    self.assertEqual(embeddings.dtype, np.float32)
    self.assertEqual(embeddings.shape, (5, self.config.model.embedding_dim))
    with open(self.out.with_suffix(".json")) as f:
      listing = json.load(f)
    self.assertEqual(listing["files"], self.expected_files)
    self.assertEqual(listing["skipped"], [])
    self.assertEqual(listing["step"], self.config.schedule.num_steps)
    self.assertIn("wrote", self.result.stdout)

  def test_embeddings_equal_the_network_applied_directly(self):
    self.assertEqual(self.result.returncode, 0, self.result.stderr[-3000:])
    _, state = self.checkpoint
    model = models.create_model(self.config.model)
    batch = np.stack(
      [_reference_pixels(self.images / name) for name in self.expected_files]
    )
    expected = model.apply(
      {"params": state.params["model"], "batch_stats": state.batch_stats},
      batch,
      train=False,
    )
    np.testing.assert_allclose(np.load(self.out), expected, atol=2e-6)
    # Distinct images, distinct embeddings (the order is really checked).
    self.assertGreater(
      np.abs(np.diff(np.asarray(expected), axis=0)).max(), 1e-3
    )

  def test_undecodable_files_are_all_named(self):
    with self.assertRaisesRegex(
      image_files.BadImagesError,
      r"^2 of 3 image files under .*broken cannot be decoded: "
      r"random\.png \(cannot identify image file.*\); sub/truncated\.jpg "
      r"\(.*\)\. Remove or replace them, or pass --skip_bad_files",
    ):
      folder_embedding.embed_folder(str(self.workdir), str(self.broken))

  def test_skip_bad_files_embeds_the_others(self):
    embeddings, files, skipped, step = folder_embedding.embed_folder(
      str(self.workdir), str(self.broken), skip_bad_files=True
    )
    self.assertEqual(files, ["good.png"])
    self.assertEqual(
      [name for name, _ in skipped], ["random.png", "sub/truncated.jpg"]
    )
    self.assertEqual(embeddings.shape, (1, self.config.model.embedding_dim))
    self.assertEqual(step, self.config.schedule.num_steps)

  def test_folder_without_images_is_one_line_and_nothing_is_written(self):
    empty = self.root / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images here")
    out = self.root / "empty_out" / "e.npy"
    result = _embed_command(
      f"--workdir={self.workdir}", f"--images={empty}", f"--out={out}"
    )
    self.assertEqual(result.returncode, 1)
    self.assertNotIn("Traceback", result.stderr)
    self.assertRegex(
      result.stderr.strip().splitlines()[-1],
      r"^error: No image files under .*empty \(searched recursively for "
      r"\.bmp, .*\); point --images at a folder of images\.$",
    )
    self.assertFalse(out.parent.exists())
    with self.assertRaisesRegex(FileNotFoundError, "is not a folder"):
      image_files.list_images(str(self.root / "missing"))

  def test_listing_is_recursive_sorted_and_skips_other_files(self):
    self.assertEqual(
      image_files.list_images(str(self.images)), self.expected_files
    )


class ColourImageTest(absltest.TestCase):
  """A colour run's files are prepared as its evaluation prepares images."""

  def _input_config(self, color: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
      {
        "dataset": "caltech_birds2011",
        "image_size": 8,
        "eval_resize": 10,
        "color": color,
      }
    )

  def _write(self, pixels: np.ndarray, mode: str = "RGB") -> str:
    path = pathlib.Path(self.enterContext(tempfile.TemporaryDirectory()))
    path /= "image.png"
    Image.fromarray(pixels, mode).save(path)
    return str(path)

  def test_centre_crop_and_bgr_by_hand(self):
    # Shorter side already eval_resize (10 x 14): no resize; crop 8 x 8 at
    # row (10 - 8) // 2 = 1, column (14 - 8) // 2 = 3; BGR minus the means.
    rgb = np.random.default_rng(0).integers(0, 256, (10, 14, 3), np.uint8)
    got = folder_embedding.load_image(
      self._write(rgb), self._input_config("bn_inception")
    )
    crop = rgb[1:9, 3:11].astype(np.float64)
    expected = crop[..., ::-1] - np.array([104.0, 117.0, 128.0])
    np.testing.assert_allclose(got, expected, atol=1e-3)

  def test_imagenet_convention_of_a_grey_file(self):
    grey = np.random.default_rng(1).integers(0, 256, (14, 10), np.uint8)
    got = folder_embedding.load_image(
      self._write(grey, "L"), self._input_config("imagenet")
    )
    crop = np.repeat(grey[3:11, 1:9, None], 3, axis=-1) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(got, (crop - mean) / std, atol=1e-5)

  def test_resized_file_matches_the_evaluation_pipeline(self):
    rgb = np.random.default_rng(2).integers(0, 256, (23, 37, 3), np.uint8)
    path = self._write(rgb)
    config = self._input_config("bn_inception")
    with open(path, "rb") as f:
      evaluated = rgb_preprocessing.eval_image(tf.constant(f.read()), config)
    np.testing.assert_allclose(
      folder_embedding.load_image(path, config), evaluated.numpy(), atol=1e-4
    )


if __name__ == "__main__":
  absltest.main()
