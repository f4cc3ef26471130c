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
"""Tests of pretrained.py and ``python -m proxy_nca_jax.import_weights``.

The references are the PyTorch networks of benchmarks/torch_networks.py with
random weights and BatchNorm statistics, saved as the files users have
(torchvision's zip format; the BN-Inception file's legacy format with (1, C)
BatchNorm vectors). After import, the Flax feature map must match
PyTorch's to 1e-4 (float32, inference mode).
"""

import os
import pathlib
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from absl.testing import absltest
from flax import traverse_util

from benchmarks import torch_networks
from configs import fashion_mnist
from proxy_nca_jax import models, parallel
from proxy_nca_jax.models import pretrained
from proxy_nca_jax.training import optim, train_state
from tests.testing import tiny_run

TOLERANCE = 1e-4


def _reference(arch: str, image_hw: tuple[int, int], seed: int = 0):
  """(torch model with random weights, NCHW images, NHWC features)."""
  torch.manual_seed(seed)
  model = (
    torch_networks.TorchResNet50()
    if arch == "resnet50"
    else torch_networks.TorchBNInception()
  )
  images = torch.randn(2, 3, *image_hw)
  torch_networks.randomize(model, images, seed)
  with torch.no_grad():
    features = model.features(images).permute(0, 2, 3, 1).numpy()
  return model, images, features


def _flax_features(arch: str, variables, images: torch.Tensor) -> np.ndarray:
  nhwc = jnp.asarray(images.permute(0, 2, 3, 1).numpy())
  apply = jax.jit(
    lambda v, x: pretrained.backbone(arch).apply(v, x, train=False)
  )
  return np.asarray(apply(variables, nhwc))


def _target(arch: str):
  module = pretrained.backbone(arch)
  return jax.eval_shape(
    lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False
    )
  )


def _tmpdir(test: absltest.TestCase) -> pathlib.Path:
  path = tempfile.TemporaryDirectory()
  test.addCleanup(path.cleanup)
  return pathlib.Path(path.name)


def _import_command(*flags: str):
  return tiny_run.run_command(
    [sys.executable, "-m", "proxy_nca_jax.import_weights", *flags]
  )


@pytest.mark.slow
class ResNet50Test(absltest.TestCase):
  def test_torchvision_file_matches_pytorch(self):
    # 65x48: odd and even sizes, so every padding and pooling edge counts.
    model, images, expected = _reference("resnet50", (65, 48))
    tmp = _tmpdir(self)
    torch.save(model.state_dict(), tmp / "resnet50.pth")
    metadata = pretrained.import_weights(
      "resnet50", str(tmp / "resnet50.pth"), str(tmp / "out")
    )
    # torchvision's documented 25,557,032 less the classifier (2048 x 1000
    # + 1000).
    self.assertEqual(metadata["num_params"], 25_557_032 - 2_049_000)
    variables = pretrained.load_pretrained(
      str(tmp / "out"), "resnet50", _target("resnet50")
    )
    got = _flax_features("resnet50", variables, images)
    self.assertEqual(got.shape, (2, 3, 2, 2048))
    self.assertGreater(expected.std(), 0.5)  # Not a vanishing signal.
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


@pytest.mark.slow
class BNInceptionTest(absltest.TestCase):
  """One BN-Inception file in the original's layout, imported once."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.tmp = pathlib.Path(cls._tmp.name)
    # 64x99: an odd width; every ceil-mode max pool gets a partial window.
    model, cls.images, cls.expected = _reference("bn_inception", (64, 99))
    cls.state_dict = torch_networks.to_file_layout(model.state_dict())
    cls.file = cls.tmp / "bn_inception-52deb4733.pth"
    torch.save(
      cls.state_dict,
      cls.file,
      _use_new_zipfile_serialization=False,  # Saved by PyTorch 0.2.
    )
    cls.out = cls.tmp / "out"
    cls.result = _import_command(
      "--arch=bn_inception", f"--torch_weights={cls.file}", f"--out={cls.out}"
    )

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()

  def test_command_matches_pytorch(self):
    self.assertLen(self.state_dict, 416)  # 69 conv + BN, last_linear.
    self.assertEqual(self.result.returncode, 0, self.result.stderr)
    self.assertIn(f"--config.model.pretrained={self.out}", self.result.stdout)
    variables = pretrained.load_pretrained(
      str(self.out), "bn_inception", _target("bn_inception")
    )
    got = _flax_features("bn_inception", variables, self.images)
    self.assertEqual(got.shape, (2, 2, 3, 1024))
    self.assertGreater(self.expected.std(), 0.5)
    np.testing.assert_allclose(got, self.expected, rtol=0, atol=TOLERANCE)

  def test_config_loads_backbone_and_keeps_embedding(self):
    config = fashion_mnist.get_config()
    config.model.name = "bn_inception"
    config.model.pretrained = str(self.out)
    model = models.create_model(config.model)
    tx, _ = optim.create_optimizer(config)
    # A state with random values (no need to trace the network).
    shapes = jax.eval_shape(
      lambda: model.init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False
      )
    )
    rng = np.random.default_rng(0)
    variables = jax.tree.map(
      lambda s: rng.normal(size=s.shape).astype(np.float32), shapes
    )
    params = {"model": variables["params"], "proxies": np.ones((3, 64))}
    mesh = parallel.create_mesh(jax.devices()[:1])
    state = jax.device_put(
      train_state.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables["batch_stats"],
        opt_state=jax.jit(tx.init)(params),  # One compilation, not ~50.
      ),
      parallel.replicated(mesh),
    )
    loaded = train_state.with_pretrained_backbone(state, config, tx)

    flat = traverse_util.flatten_dict(
      {
        "params": loaded.params["model"][models.BACKBONE_MODULE],
        "batch_stats": loaded.batch_stats[models.BACKBONE_MODULE],
      }
    )
    self.assertLen(flat, 69 * 6)
    for key, value in flat.items():
      source = self.state_dict[pretrained.torch_key("bn_inception", key)]
      source = source.numpy()
      if key[-1] == "kernel":
        source = source.transpose(2, 3, 1, 0)  # OIHW -> HWIO, by hand.
      np.testing.assert_array_equal(
        value, source.reshape(value.shape), err_msg=str(key)
      )
    np.testing.assert_array_equal(
      loaded.params["model"][models.HEAD_MODULE]["kernel"],
      params["model"][models.HEAD_MODULE]["kernel"],
    )

  def test_folder_of_another_architecture_is_refused(self):
    with self.assertRaisesRegex(
      pretrained.WeightImportError,
      "holds bn_inception weights, but model.name is resnet50",
    ):
      pretrained.load_pretrained(str(self.out), "resnet50", None)
    with self.assertRaisesRegex(FileNotFoundError, "import_weights"):
      pretrained.load_pretrained(
        os.path.join(self.tmp, "missing"), "resnet50", None
      )

  def test_wrong_architecture_names_missing_and_unexpected_keys(self):
    out = self.tmp / "wrong_arch"
    with self.assertRaisesRegex(
      pretrained.WeightImportError,
      # ResNet-50: 53 convolutions and 53 BatchNorms (4 arrays each).
      r"is not a resnet50 state dict: 265 expected keys missing "
      r"\(bn1\.bias, bn1\.weight, conv1\.weight, .*; 416 unexpected keys "
      r"\(conv1_7x7_s2\.weight, ",
    ):
      pretrained.import_weights("resnet50", str(self.file), str(out))
    self.assertFalse(out.exists())

  def test_wrong_shape_is_named(self):
    state = dict(self.state_dict)
    state["conv1_7x7_s2.weight"] = torch.zeros(64, 1, 7, 7)
    tmp = _tmpdir(self)
    torch.save(state, tmp / "w.pth")
    with self.assertRaisesRegex(
      pretrained.WeightImportError,
      r"1 shapes differ \(conv1_7x7_s2\.weight: \(64, 1, 7, 7\), expected "
      r"\(64, 3, 7, 7\)\)",
    ):
      pretrained.import_weights(
        "bn_inception", str(tmp / "w.pth"), str(tmp / "out")
      )
    self.assertFalse((tmp / "out").exists())

  def test_existing_output_folder_is_refused(self):
    with self.assertRaisesRegex(FileExistsError, "already exists"):
      pretrained.import_weights("bn_inception", str(self.file), self.out)


class UnsafeFileTest(absltest.TestCase):
  def test_pickle_that_runs_code_is_refused(self):
    tmp = _tmpdir(self)
    marker = tmp / "code_ran"
    torch.save({"weight": _RunsCode(str(marker))}, tmp / "evil.pth")
    result = _import_command(
      "--arch=resnet50",
      f"--torch_weights={tmp / 'evil.pth'}",
      f"--out={tmp / 'out'}",
    )
    self.assertEqual(result.returncode, 1)
    self.assertIn("refused by torch.load(weights_only=True)", result.stderr)
    self.assertNotIn("Traceback", result.stderr)
    self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
    self.assertFalse(marker.exists())
    self.assertFalse((tmp / "out").exists())


class _RunsCode:
  """Unpickling this creates a file: what weights_only must prevent."""

  def __init__(self, path: str):
    self.path = path

  def __reduce__(self):
    return (open, (self.path, "w"))


if __name__ == "__main__":
  absltest.main()
