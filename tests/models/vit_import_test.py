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
"""Tests of the ViT weight import (vit_weights.py, pretrained.py, the
``python -m proxy_nca_jax.import_weights`` command).

The references are the PyTorch networks of benchmarks/torch_networks.py in
the timm, DINOv2 and OpenAI CLIP layouts (2 blocks of width 64, 8-px patches,
position embeddings for 32-px images), with random weights, run in float64.
Each is saved as a file (``.pth`` or ``.safetensors``), imported, and
loaded through a config built from the folder's ``vit_options``; the Flax
network (float32) must compute the reference's output to 1e-5 at 32x32 and
at 48x40, which resizes the position embeddings. The full-size
checks (ViT-S/16, DINOv2 ViT-S/14, CLIP ViT-B/16) compare keys and shapes
only, from networks on torch's meta device.
"""

import pathlib
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.torch
import torch
from absl.testing import absltest, parameterized

from benchmarks import torch_networks
from configs import fashion_mnist
from proxy_nca_jax import checkpointing, models
from proxy_nca_jax.models import inputs, pretrained, vit_weights
from tests.testing import tiny_run

TOLERANCE = 1e-5
_SMALL = {"width": 64, "depth": 2, "num_heads": 2, "patch_size": 8}
_SIDE = 32


def _timm(**kwargs):
  return torch_networks.TorchTimmViT(**_SMALL, img_size=_SIDE, **kwargs)


def _dinov2(**kwargs):
  return torch_networks.TorchDinoV2(**_SMALL, img_size=_SIDE, **kwargs)


def _clip():
  return torch_networks.TorchCLIP(**_SMALL, image_size=_SIDE, output_dim=48)


# Image sizes (H, W): the position grid's own (no resizing), larger and
# not square (interpolation_test.py resizes down against torch too).
_SAME, _LARGER = (32, 32), (48, 40)
# name: (reference, file suffix, readout compared, the options the file
# needs besides the layout and position_size 32, image sizes). Each size is
# a compilation (~1 s); the resize of each case is checked at _LARGER, the
# size that keeps the grid at _SAME for the layouts where skipping it
# changes numbers (DINOv2's offset resize would not be the identity).
CASES = {
  "timm": (_timm, ".pth", "token", {}, (_SAME, _LARGER)),
  "timm_registers_no_embed_class_layer_scale": (
    lambda: _timm(reg_tokens=2, no_embed_class=True, layer_scale=True),
    ".safetensors",
    "token",
    {"registers": 2, "prefix_positions": False, "layer_scale": True},
    (_LARGER,),
  ),
  "timm_fc_norm": (
    lambda: _timm(reg_tokens=3, global_pool="avg"),
    ".pth",
    "gap",
    {"registers": 3},
    (_LARGER,),
  ),
  "dinov2": (
    _dinov2,
    ".pth",
    "patches",
    {"layer_scale": True},
    (_SAME, _LARGER),
  ),
  "clip": (_clip, ".pth", "token", {"projection_dim": 48}, (_SAME, _LARGER)),
}


def _reference(model: torch.nn.Module, images: torch.Tensor, readout: str):
  """The reference's output for ``readout``: (B, h, w, C)."""
  with torch.no_grad():
    if isinstance(model, torch_networks.TorchTimmViT):
      out = model.features(images)[:, None, None]
    elif isinstance(model, torch_networks.TorchCLIP):
      out = model.encode_image(images)[:, None, None]
    elif readout == "token":
      out = model.forward_features(images)["x_norm_clstoken"][:, None, None]
    else:
      tokens = model.forward_features(images)["x_norm_patchtokens"]
      h, w = (side // _SMALL["patch_size"] for side in images.shape[2:])
      out = tokens.reshape(len(images), h, w, -1)
  return out.numpy()


def _save(model: torch.nn.Module, path: pathlib.Path) -> None:
  state = {k: v.float().contiguous() for k, v in model.state_dict().items()}
  if path.suffix == ".safetensors":
    safetensors.torch.save_file(state, path)
  else:
    torch.save(state, path)


def _model_config(directory: str, readout: str):
  """config.model of a vit_test from the folder's recorded options."""
  config = fashion_mnist.get_config()
  config.model.name = "vit_test"
  config.model.pretrained = directory
  for field, value in pretrained.vit_options(directory).items():
    config.model.vit[field] = value
  config.model.vit.readout = readout
  return config.model


def _tmpdir(test: absltest.TestCase) -> pathlib.Path:
  path = tempfile.TemporaryDirectory()
  test.addCleanup(path.cleanup)
  return pathlib.Path(path.name)


class ImportMatchesPyTorchTest(parameterized.TestCase):
  @parameterized.named_parameters(*((name, name) for name in CASES))
  def test_import_matches_pytorch(self, name):
    make, suffix, readout, options, sizes = CASES[name]
    layout = name.split("_")[0]
    model = _random(make, seed=len(name))
    tmp = _tmpdir(self)
    _save(model, tmp / f"weights{suffix}")
    metadata = pretrained.import_weights(
      "vit_test",
      str(tmp / f"weights{suffix}"),
      str(tmp / "out"),
      normalization="imagenet" if layout == "timm" else None,
    )
    self.assertEqual(metadata["layout"], layout)  # Told by the keys.
    expected = {
      "layout": layout,
      "registers": 0,
      "position_size": _SIDE,
      "layer_scale": False,
      "prefix_positions": True,
      "projection_dim": None,
      "readout": "gap" if readout == "gap" else "token",
      **options,
    }
    self.assertEqual(metadata["vit"], expected)
    _assert_matches(self, model, str(tmp / "out"), readout, sizes)


def _random(make, seed: int) -> torch.nn.Module:
  torch.manual_seed(0)
  model = make()
  torch_networks.randomize_transformer(model, seed=seed)
  return model


def _assert_matches(test, model, directory: str, readout: str, sizes) -> None:
  """The folder, loaded as training loads it, computes ``model``'s output."""
  model_config = _model_config(directory, readout)
  backbone = models.create_backbone(model_config)
  target = jax.eval_shape(
    lambda: backbone.init(
      jax.random.key(0), jnp.zeros((1, _SIDE, _SIDE, 3)), train=False
    )
  )
  variables = pretrained.load_pretrained(
    directory, "vit_test", target, model_config=model_config
  )
  for size in sizes:
    images = torch.randn(
      2, 3, *size, dtype=torch.float64, generator=torch.Generator()
    )
    want = _reference(model.double(), images, readout)
    got = jax.jit(lambda v, x: backbone.apply(v, x, train=False))(
      variables, jnp.asarray(images.permute(0, 2, 3, 1).numpy(), jnp.float32)
    )
    test.assertEqual(got.shape, want.shape)
    test.assertGreater(want.std(), 0.5)  # Not a vanishing signal.
    np.testing.assert_allclose(
      got, want, rtol=0, atol=TOLERANCE, err_msg=f"{directory} at {size}"
    )


@pytest.mark.slow  # A process of its own: ~5 s idle, 10+ s on a busy CPU.
class CommandTest(absltest.TestCase):
  """A DINOv2 file with registers (.safetensors) through the command."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    tmp = pathlib.Path(cls._tmp.name)
    cls.model = _random(lambda: _dinov2(num_register_tokens=4), seed=4)
    cls.file = tmp / "dinov2_vits14_reg4_pretrain.safetensors"
    _save(cls.model, cls.file)
    cls.out = str(tmp / "out")
    cls.result = tiny_run.run_command(
      [
        sys.executable,
        "-m",
        "proxy_nca_jax.import_weights",
        "--arch=vit_test",
        f"--torch_weights={cls.file}",
        f"--out={cls.out}",
      ]
    )

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()

  def test_prints_the_flags_and_matches_pytorch(self):
    self.assertEqual(self.result.returncode, 0, self.result.stderr)
    self.assertIn(
      "--config.model.name=vit_test --config.model.vit.layout=dinov2 "
      "--config.model.vit.registers=4 --config.model.vit.position_size=32 "
      "--config.model.vit.layer_scale=True "
      f"--config.model.pretrained={self.out}",
      self.result.stdout,
    )
    _assert_matches(self, self.model, self.out, "token", (_LARGER,))

  def test_preprocessing_is_recorded(self):
    self.assertEqual(
      pretrained.preprocessing(self.out),
      inputs.Preprocessing(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    )
    self.assertEqual(pretrained.vit_options(self.out)["registers"], 4)

  def test_other_options_are_refused_with_the_flags_to_set(self):
    model_config = _model_config(self.out, "token")
    model_config.vit.registers = 0
    model_config.vit.layout = "timm"
    backbone = models.create_backbone(model_config)
    target = jax.eval_shape(
      lambda: backbone.init(
        jax.random.key(0), jnp.zeros((1, _SIDE, _SIDE, 3)), train=False
      )
    )
    flags = (
      "set --config.model.vit.layout=dinov2 --config.model.vit.registers=4"
    )
    with self.assertRaisesRegex(pretrained.WeightImportError, flags):
      pretrained.load_pretrained(
        self.out, "vit_test", target, model_config=model_config
      )
    # Without the config, the shapes tell (all the options are named).
    with self.assertRaisesRegex(pretrained.WeightImportError, flags):
      pretrained.load_pretrained(self.out, "vit_test", target)
    with self.assertRaisesRegex(
      pretrained.WeightImportError, "holds vit_test weights, but model.name"
    ):
      pretrained.load_pretrained(self.out, "vit_s14", target)


def _state(model: torch.nn.Module) -> dict[str, np.ndarray]:
  """The state dict as NumPy arrays (zeros for a model on meta)."""
  return {
    key: np.zeros(value.shape, np.float32)
    if value.is_meta
    else value.float().numpy()
    for key, value in model.state_dict().items()
  }


class FullSizeTest(parameterized.TestCase):
  """The real sizes' keys and shapes: networks on torch's meta device."""

  @parameterized.named_parameters(
    (
      # timm vit_small_patch16_224: 152 keys with the head; 22,050,664
      # parameters with the classifier (384 x 1000 + 1000).
      "timm_vit_small_patch16_224",
      "vit_s16",
      lambda: torch_networks.TorchTimmViT(
        width=384, depth=12, num_heads=6, patch_size=16, img_size=224
      ),
      152,
      22_050_664 - 385_000,
      {"pos_embed": (1, 197, 384), "blocks.11.mlp.fc1.weight": (1536, 384)},
    ),
    (
      # dinov2_vits14 (hub, img_size 518): 175 keys with mask_token.
      "dinov2_vits14",
      "vit_s14",
      lambda: torch_networks.TorchDinoV2(
        width=384, depth=12, num_heads=6, patch_size=14, img_size=518
      ),
      175,
      22_056_192,
      {"pos_embed": (1, 1370, 384), "blocks.0.ls1.gamma": (384,)},
    ),
    (
      "dinov2_vits14_reg",
      "vit_s14",
      lambda: torch_networks.TorchDinoV2(
        width=384,
        depth=12,
        num_heads=6,
        patch_size=14,
        img_size=518,
        num_register_tokens=4,
      ),
      176,
      22_056_192 + 4 * 384,
      {"register_tokens": (1, 4, 384), "mask_token": (1, 384)},
    ),
    (
      # OpenAI CLIP ViT-B/16: 152 visual.* keys, 86,192,640 parameters.
      "clip_vit_b16",
      "vit_b16",
      lambda: torch_networks.TorchCLIP(
        width=768,
        depth=12,
        num_heads=12,
        patch_size=16,
        image_size=224,
        output_dim=512,
      ),
      152,
      86_192_640,
      {
        "visual.positional_embedding": (197, 768),
        "visual.proj": (768, 512),
        "visual.transformer.resblocks.0.attn.in_proj_weight": (2304, 768),
      },
    ),
  )
  def test_keys_and_shapes(self, arch, make, num_keys, num_params, shapes):
    with torch.device("meta"):
      state = _state(make())
    clip = "visual.proj" in state
    # A whole CLIP model's: the visual tower's keys beside the text tower's.
    self.assertLen(
      [k for k in state if k.startswith("visual.")] if clip else state,
      num_keys,
    )
    for key, shape in shapes.items():
      self.assertEqual(state[key].shape, shape, msg=key)
    variables, options = vit_weights.convert_state_dict(
      arch, vit_weights.infer_layout(state), state
    )
    count = sum(leaf.size for leaf in jax.tree.leaves(variables))
    self.assertEqual(count, num_params)
    side = 518 if options["layout"] == "dinov2" else 224
    self.assertEqual(options["position_size"], side)


class RefusedTest(absltest.TestCase):
  """Files, flags and folders that stop the import, naming what to do."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.timm = _state(_random(_timm, seed=0))

  def test_another_size_is_named(self):
    with self.assertRaisesRegex(
      pretrained.WeightImportError,
      r"is not a vit_s16 state dict in the timm layout: 120 expected keys "
      r"missing \(blocks\.2\.attn\.proj\.bias, .*; 30 shapes differ "
      r"\(patch_embed\.proj\.bias: \(64,\), expected \(384,\), "
      r"patch_embed\.proj\.weight: "
      r"\(64, 3, 8, 8\), expected \(384, 3, 16, 16\), .* The file holds a ViT "
      r"of width 64, 2 blocks and patch 8: --arch=vit_test\.",
    ):
      vit_weights.convert_state_dict("vit_s16", "timm", self.timm)

  def test_another_layout_names_missing_and_unexpected_keys(self):
    with self.assertRaisesRegex(
      pretrained.WeightImportError,
      r"in the dinov2 layout: 4 expected keys missing \(blocks\.0\.ls1\."
      r"gamma, blocks\.0\.ls2\.gamma, .*; 2 unexpected keys \(head\.weight, "
      r"head\.bias\)",
    ):
      vit_weights.convert_state_dict("vit_test", "dinov2", self.timm)

  def test_unknown_and_misshapen_keys_are_named(self):
    state = dict(self.timm)
    state["blocks.0.attn.q_norm.weight"] = np.ones(32, np.float32)
    state["blocks.1.attn.qkv.weight"] = state["blocks.1.attn.qkv.weight"].T
    with self.assertRaisesRegex(
      pretrained.WeightImportError,
      r"1 unexpected keys \(blocks\.0\.attn\.q_norm\.weight\); 1 shapes "
      r"differ \(blocks\.1\.attn\.qkv\.weight: \(64, 192\), expected "
      r"\(192, 64\)\)",
    ):
      vit_weights.convert_state_dict("vit_test", "timm", state)

  def test_flags_that_do_not_apply_write_nothing(self):
    tmp = _tmpdir(self)
    file = tmp / "timm.safetensors"
    safetensors.torch.save_file(
      {k: torch.from_numpy(v) for k, v in self.timm.items()}, file
    )
    for arch, kwargs, message in (
      ("vit_test", {}, "pass --normalization=inception for the original"),
      ("resnet50", {"layout": "timm"}, "apply to the ViTs, not to resnet50"),
      ("vit_test", {"layout": "hf"}, "Unknown layout 'hf'"),
    ):
      with self.assertRaisesRegex(pretrained.WeightImportError, message):
        pretrained.import_weights(arch, str(file), str(tmp / "out"), **kwargs)
      self.assertFalse((tmp / "out").exists())

  def test_a_cnn_folder_has_its_architectures_preprocessing(self):
    # Folders imported before the metadata recorded it.
    tmp = str(_tmpdir(self) / "out")
    checkpointing.save_pretrained(
      tmp, {"params": {"w": np.zeros(1)}}, {"arch": "bn_inception"}
    )
    got = pretrained.preprocessing(tmp)
    self.assertEqual(got.channel_order, "bgr")
    np.testing.assert_allclose(np.multiply(got.mean, 255), (104, 117, 128))
    with self.assertRaisesRegex(pretrained.WeightImportError, "not a ViT's"):
      pretrained.vit_options(tmp)


if __name__ == "__main__":
  absltest.main()
