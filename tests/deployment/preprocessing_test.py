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
"""The exported embedder's colour preprocessing (deployment/embedder.py).

Images are decoded once, as the gallery decodes them
(``image_files.raw_pixels``), and prepared in JAX by
``embedder.preprocessing``: the one path that ``index``, ``search`` and
``export`` share. References: the crop and colour convention by hand, and
the evaluation pipeline's TF recipe (``rgb_preprocessing.eval_image``) for
a file that needs resizing.
"""

import pathlib
import shutil
import tempfile

import ml_collections
import numpy as np
import tensorflow as tf
from absl.testing import absltest
from PIL import Image

from proxy_nca_jax.data import image_files, rgb_preprocessing
from proxy_nca_jax.deployment import embedder


def _input_config(color: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    {
      "dataset": "caltech_birds2011",
      "image_size": 8,
      "eval_resize": 10,
      "color": color,
    }
  )


class ColourPreprocessingTest(absltest.TestCase):
  def temporary_folder(self) -> pathlib.Path:
    folder = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, folder)
    return pathlib.Path(folder)

  def _write(self, pixels: np.ndarray, mode: str = "RGB") -> str:
    path = self.temporary_folder() / "image.png"
    Image.fromarray(pixels, mode).save(path)
    return str(path)

  def _prepared(self, path: str, shape, color: str) -> np.ndarray:
    pixels = image_files.raw_pixels(path, shape)
    prepare = embedder.preprocessing(_input_config(color), shape)
    return np.asarray(prepare(pixels[None]))[0]

  def test_centre_crop_and_bgr_by_hand(self):
    # Shorter side already eval_resize (10 x 14): no resize; crop 8 x 8 at
    # row (10 - 8) // 2 = 1, column (14 - 8) // 2 = 3; BGR minus the means.
    rgb = np.random.default_rng(0).integers(0, 256, (10, 14, 3), np.uint8)
    got = self._prepared(self._write(rgb), (10, 14, 3), "bn_inception")
    crop = rgb[1:9, 3:11].astype(np.float64)
    expected = crop[..., ::-1] - np.array([104.0, 117.0, 128.0])
    np.testing.assert_allclose(got, expected, atol=1e-3)

  def test_imagenet_convention_of_a_grey_file(self):
    grey = np.random.default_rng(1).integers(0, 256, (14, 10), np.uint8)
    got = self._prepared(self._write(grey, "L"), (14, 10, 3), "imagenet")
    crop = np.repeat(grey[3:11, 1:9, None], 3, axis=-1) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(got, (crop - mean) / std, atol=1e-5)

  def test_resized_file_matches_the_evaluation_pipeline(self):
    rgb = np.random.default_rng(2).integers(0, 256, (23, 37, 3), np.uint8)
    path = self._write(rgb)
    with open(path, "rb") as f:
      evaluated = rgb_preprocessing.eval_image(
        tf.constant(f.read()), _input_config("bn_inception")
      )
    got = self._prepared(path, (23, 37, 3), "bn_inception")
    np.testing.assert_allclose(got, evaluated.numpy(), atol=1e-3)


if __name__ == "__main__":
  absltest.main()
