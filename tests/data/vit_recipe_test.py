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
"""data/vit_recipe.py: the ViT fine-tuning recipe and what the weights decide.

Weights come from PyTorch references (benchmarks/torch_networks.py) of a
two-block ViT, saved and imported as a user would. The recipe's values are
checked against the numbers its docstring publishes; the resolved colour
against each family's published mean and std, written out here; and an
image folder given ViT weights trains two steps through the trainer with
the chooser's recipe, the imported weights in place.
"""

import json
import pathlib
import tempfile

import numpy as np
import pytest
import torch
from absl.testing import absltest, parameterized
from PIL import Image

from benchmarks import torch_networks
from configs import cub200, fashion_mnist, image_folder
from proxy_nca_jax import errors, models
from proxy_nca_jax.data import folder_recipe, vit_recipe
from proxy_nca_jax.inference import trained_model
from proxy_nca_jax.models import inputs, pretrained
from proxy_nca_jax.training import trainer

_SMALL = {"width": 64, "depth": 2, "num_heads": 2, "patch_size": 8}
# Published (mean, std) of pixels in [0, 1]: timm's original ViTs, OpenAI
# CLIP's clip/clip.py, ImageNet's (DINOv2's transforms).
PUBLISHED = {
  "inception": ((0.5,) * 3, (0.5,) * 3),
  "clip": (
    (0.48145466, 0.4578275, 0.40821073),
    (0.26862954, 0.26130258, 0.27577711),
  ),
  "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _import(
  tmp: pathlib.Path, make, name: str, normalization: str | None
) -> tuple[str, dict[str, np.ndarray]]:
  """(the imported folder, the PyTorch state dict it came from)."""
  torch.manual_seed(0)
  model = make()
  path = tmp / f"{name}.pth"
  torch.save(model.state_dict(), path)
  out = tmp / name
  pretrained.import_weights(
    "vit_test", str(path), str(out), normalization=normalization
  )
  return str(out), {k: v.numpy() for k, v in model.state_dict().items()}


class VitRecipeTest(parameterized.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    tmp = pathlib.Path(cls._tmp.name)
    cls.timm, cls.timm_state = _import(
      tmp,
      lambda: torch_networks.TorchTimmViT(
        **_SMALL, img_size=32, reg_tokens=2, layer_scale=True
      ),
      "timm",
      "inception",
    )
    cls.clip, _ = _import(
      tmp,
      lambda: torch_networks.TorchCLIP(**_SMALL, image_size=32, output_dim=48),
      "clip",
      None,
    )
    cls.tmp = tmp

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()

  def test_recipe_values(self):
    config = cub200.get_config("recipe=vit")
    self.assertEqual(config.model.name, "vit_s16")
    self.assertEqual(config.optimizer.name, "adamw")
    self.assertEqual(config.optimizer.learning_rate, 5e-5)
    self.assertEqual(config.optimizer.weight_decay, 0.05)
    self.assertTrue(config.optimizer.decay_matrices_only)
    self.assertEqual(config.optimizer.layer_decay, 0.75)
    self.assertEqual(config.optimizer.proxy_lr_mult, 100.0)
    self.assertEqual(config.schedule.decay, "cosine")
    # 5% of CUB's 20 epochs of 5,864 images in batches of 32: 3,665 steps.
    self.assertEqual(config.schedule.num_steps, 3665)
    self.assertEqual(config.schedule.warmup_steps, 183)
    self.assertEqual(config.model.vit.drop_path, 0.1)
    self.assertEqual(config.model.vit.readout, "token")
    self.assertEqual(
      (config.input.image_size, config.input.eval_resize), (224, 256)
    )
    self.assertEqual(config.input.color, vit_recipe.FROM_WEIGHTS)

  @parameterized.named_parameters(
    ("timm_inception", "timm", "inception"), ("clip", "clip", "clip")
  )
  def test_weights_decide_the_network_and_the_colours(self, folder, color):
    directory = getattr(self, folder)
    config = image_folder.get_config("recipe=vit")
    with config.unlocked():
      config.model.name = vit_recipe.AUTO
      config.model.pretrained = directory
    vit_recipe.from_weights(config)
    self.assertEqual(config.model.name, "vit_test")
    self.assertEqual(config.input.color, color)
    recorded = pretrained.vit_options(directory)
    for field in pretrained.VIT_WEIGHT_OPTIONS:
      self.assertEqual(config.model.vit[field], recorded[field], field)

  def test_the_chosen_colour_is_the_published_one(self):
    for name, (mean, std) in PUBLISHED.items():
      got = vit_recipe.convention_of(inputs.Preprocessing(224, mean, std))
      self.assertEqual(got, name)
    bn = inputs.Preprocessing(
      224, (104 / 255, 117 / 255, 128 / 255), (1 / 255,) * 3, "bgr"
    )
    self.assertEqual(vit_recipe.convention_of(bn), "bn_inception")
    with self.assertRaisesRegex(errors.InvalidInputError, "add one"):
      vit_recipe.convention_of(
        inputs.Preprocessing(224, (0.4,) * 3, (0.2,) * 3)
      )

  def test_colour_from_weights_needs_vit_weights(self):
    config = cub200.get_config()  # BN-Inception without weights.
    with config.unlocked():
      config.input.color = vit_recipe.FROM_WEIGHTS
    with self.assertRaisesRegex(errors.InvalidInputError, "set input.color"):
      vit_recipe.from_weights(config)
    config = cub200.get_config("recipe=vit")  # A ViT from random weights.
    self.assertEqual(vit_recipe.from_weights(config).input.color, "imagenet")
    grey = fashion_mnist.get_config()  # No colour convention: unchanged.
    self.assertEqual(
      vit_recipe.from_weights(grey).to_dict(),
      fashion_mnist.get_config().to_dict(),
    )

  def test_folder_chooser_offers_the_vit_recipe(self):
    config = image_folder.get_config()
    with config.unlocked():
      config.input.image_folder = str(self.tmp)
      config.model.pretrained = self.clip
    folder_recipe.resolve(config)
    self.assertEqual(config.optimizer.name, "adamw")
    self.assertEqual(config.optimizer.layer_decay, 0.75)
    self.assertEqual(config.model.name, vit_recipe.AUTO)
    vit_recipe.from_weights(config)
    self.assertEqual(config.model.name, "vit_test")
    self.assertEqual(config.input.color, "clip")

  @pytest.mark.slow
  def test_folder_trains_from_the_imported_weights(self):
    images = self.tmp / "images"
    rng = np.random.default_rng(0)
    for label in range(4):
      for i in range(6):
        path = images / f"class{label}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (40, 40, 3), np.uint8)
        Image.fromarray(pixels).save(path)
    config = image_folder.get_config()
    with config.unlocked():
      config.input.image_folder = str(images)
      config.input.data_dir = str(self.tmp / "tfds")
      config.input.batch_size = 8
      config.input.eval_batch_size = 8
      config.model.pretrained = self.timm
      config.schedule.num_steps = 2
      config.evals.every_steps = 0
      config.evals.at_step_zero = False
      config.evals.kmeans_restarts = 1
      config.ckpt.every_steps = 2
      config.report.at_end = False
    workdir = self.tmp / "run"
    trainer.train_and_evaluate(config, str(workdir))
    recorded = json.loads((workdir / "config.json").read_text())
    self.assertEqual(recorded["model"]["name"], "vit_test")
    self.assertEqual(recorded["input"]["color"], "inception")
    self.assertEqual(recorded["model"]["vit"]["registers"], 2)
    self.assertEqual(recorded["optimizer"]["layer_decay"], 0.75)
    # Two AdamW steps of at most ~5e-5 each from the imported patch
    # embedding (OIHW in PyTorch, HWIO here), not from a fresh one.
    trained = trained_model.load(str(workdir)).variables["params"]
    kernel = trained[models.BACKBONE_MODULE]["patch_embed"]["kernel"]
    imported = self.timm_state["patch_embed.proj.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_allclose(kernel, imported, rtol=0, atol=2e-4)


if __name__ == "__main__":
  absltest.main()
