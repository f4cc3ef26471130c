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
"""The recipe of a first run on your own images (data/folder_recipe.py)."""

import pathlib
import tempfile

import numpy as np
from absl.testing import absltest
from PIL import Image

from configs import image_folder
from proxy_nca_jax.data import folder_recipe


def _folder(size: tuple[int, int], split: bool = False) -> str:
  root = pathlib.Path(tempfile.mkdtemp())
  for name in ("a", "b"):
    folder = root / "all" / name if split else root / name
    folder.mkdir(parents=True)
    for i in range(3):
      pixels = np.full((size[1], size[0], 3), 40 * i, np.uint8)
      Image.fromarray(pixels).save(folder / f"{i}.png")
  return str(root)


def _config(root: str, arg: str | None = None, pretrained: str | None = None):
  config = image_folder.get_config(arg)
  with config.unlocked():
    config.input.image_folder = root
    config.model.pretrained = pretrained
  return config


class FolderRecipeTest(absltest.TestCase):
  def test_small_images_without_weights_train_convnet_s_at_their_size(self):
    for split in (False, True):
      config = _config(_folder((30, 28), split))
      with self.assertLogs(level="INFO") as logs:
        folder_recipe.resolve(config)
      self.assertEqual(config.model.name, "convnet_s")
      self.assertEqual(config.input.image_size, 28)
      self.assertEqual(config.input.eval_resize, 28)
      self.assertFalse(config.input.random_flip)
      self.assertEqual(config.optimizer.name, "adam")
      self.assertTrue(
        any("convnet-S at 28 px" in line for line in logs.output), logs.output
      )

  def test_large_images_or_weights_keep_the_paper_recipe(self):
    config = _config(_folder((120, 90)))
    with self.assertLogs(level="INFO") as logs:
      folder_recipe.resolve(config)
    self.assertEqual(config.model.name, "bn_inception")
    self.assertEqual(config.input.image_size, 227)
    self.assertTrue(any("images are large" in r for r in logs.output))
    config = _config(_folder((30, 28)), pretrained="/weights/bn_inception")
    with self.assertLogs(level="INFO") as logs:
      folder_recipe.resolve(config)
    self.assertEqual(config.model.name, "bn_inception")
    self.assertTrue(any("pretrained weights given" in r for r in logs.output))

  def test_an_asked_recipe_is_kept(self):
    config = _config(_folder((30, 28)), arg="recipe=paper")
    self.assertEqual(config.model.name, "bn_inception")
    folder_recipe.resolve(config)
    self.assertEqual(config.model.name, "bn_inception")


if __name__ == "__main__":
  absltest.main()
