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
"""native/convolution.py: oneDNN's convolution equals the definition.

The library is built here (g++ and Debian's libdnnl-dev, which make test
installs). Its three products are compared with a float64 NumPy
transcription of the definition (a sum over the nine taps of the padded
input), on one device and sharded over 8; convnet-S built with it keeps the
stock network's parameters and function; ``model.conv = "onednn"`` trains
with it, to the weights of XLA's convolutions within float32 rounding.
"""

import functools
import pathlib
import tempfile
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from proxy_nca_jax import errors, models, native, parallel
from proxy_nca_jax.inference import trained_model
from proxy_nca_jax.native import convolution as onednn_conv
from proxy_nca_jax.training import setup, trainer
from tests.testing import native_kernels, tiny_run


def _reference(x: np.ndarray, kernel: np.ndarray, dy: np.ndarray):
  """float64 forward, input gradient and kernel gradient of a 3x3, stride
  1, SAME convolution (NHWC, HWIO), tap by tap."""
  x, kernel, dy = (np.asarray(a, np.float64) for a in (x, kernel, dy))
  b, h, w, _ = x.shape
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  y = np.zeros((b, h, w, kernel.shape[3]))
  dpadded = np.zeros_like(padded)
  dkernel = np.zeros_like(kernel)
  for i in range(3):
    for j in range(3):
      window = padded[:, i : i + h, j : j + w, :]
      y += window @ kernel[i, j]
      dpadded[:, i : i + h, j : j + w, :] += dy @ kernel[i, j].T
      dkernel[i, j] = np.einsum("bhwi,bhwo->io", window, dy)
  return y, dpadded[:, 1:-1, 1:-1, :], dkernel


class OneDnnConvTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    native_kernels.require("onednn_conv")

  def _case(self, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 7, 5, 3)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    dy = rng.normal(size=(batch, 7, 5, 4)).astype(np.float32)
    return x, kernel, dy

  def test_each_product_on_one_device(self):
    x, kernel, dy = self._case(batch=2)
    want = _reference(x, kernel, dy)
    got = jax.jit(
      lambda x, k, dy: (
        onednn_conv.forward(x, k, threads=1),
        onednn_conv.input_grad(dy, k, threads=1),
        onednn_conv.kernel_grad(x, dy, threads=1),
      )
    )(x, kernel, dy)
    for name, g, w in zip(
      ("forward", "input", "kernel"), got, want, strict=True
    ):
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4, err_msg=name)

  def test_sharded_over_eight_devices_is_the_whole_batch(self):
    mesh = parallel.create_mesh(jax.devices()[:8])
    conv = onednn_conv.sharded_conv(mesh, threads=1)
    for batch in (16, 3):  # 3: does not divide, computed on one device.
      x, kernel, dy = self._case(batch, seed=batch)
      y, vjp = jax.vjp(jax.jit(conv), x, kernel)
      dx, dkernel = vjp(dy)
      for name, g, w in zip(
        ("forward", "input", "kernel"),
        (y, dx, dkernel),
        _reference(x, kernel, dy),
        strict=True,
      ):
        np.testing.assert_allclose(
          g, w, rtol=1e-5, atol=1e-4, err_msg=f"{name}, batch {batch}"
        )

  def test_convnet_s_keeps_its_parameters_and_function(self):
    mesh = parallel.create_mesh(jax.devices()[:2])
    stock = models.ConvNetS(embedding_dim=8)
    fast = stock.clone(conv=onednn_conv.conv_factory(mesh, threads=1))
    images = np.random.default_rng(1).normal(size=(4, 28, 28, 1))
    images = jnp.asarray(images, jnp.float32)
    key = jax.random.key(0)
    init = lambda model: jax.jit(functools.partial(model.init, train=False))  # noqa: E731
    variables = init(stock)(key, images)
    fast_variables = init(fast)(key, images)
    # Same tree, same initial values (nn.Conv's initialiser, same names).
    jax.tree.map(np.testing.assert_array_equal, variables, fast_variables)

    def loss(model, params):
      out, _ = model.apply(
        {"params": params, "batch_stats": variables["batch_stats"]},
        images,
        train=True,
        mutable=["batch_stats"],
      )
      return jnp.sum(out * jnp.arange(out.shape[1]))

    def value_and_grads(model):
      fn = jax.value_and_grad(lambda params: loss(model, params))
      return jax.jit(fn)(variables["params"])

    (want_value, want_grads), (value, grads) = map(
      value_and_grads, (stock, fast)
    )
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    jax.tree.map(
      lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5),
      grads,
      want_grads,
    )

  def test_the_config_chooses_the_training_convolution(self):
    mesh = parallel.create_mesh(jax.devices()[:2])
    config = tiny_run.tiny_config(pathlib.Path(tempfile.mkdtemp()))
    self.assertIs(setup.training_conv(config.model, mesh), models.conv3x3)
    config.model.conv = "onednn"
    made = setup.training_conv(config.model, mesh)(8, "Conv_0")
    self.assertIsInstance(made, onednn_conv.OneDnnConv3x3)
    # Where the kernels cannot be built: XLA's, and a warning says so.
    with (
      mock.patch.object(native, "available", lambda name: False),
      self.assertLogs(level="WARNING") as logs,
    ):
      self.assertIs(setup.training_conv(config.model, mesh), models.conv3x3)
    self.assertIn("XLA's convolutions used", "\n".join(logs.output))

  def test_bad_model_conv_is_one_clear_error(self):
    config = tiny_run.tiny_config(pathlib.Path(tempfile.mkdtemp()))
    config.model.conv = "cudnn"
    with self.assertRaisesRegex(errors.InvalidInputError, "model.conv"):
      models.create_model(config.model)
    config.model.conv = "onednn"
    config.model.name = "resnet50"
    with self.assertRaisesRegex(errors.InvalidInputError, "convnet_s's"):
      models.create_model(config.model)


class OneDnnTrainingTest(tiny_run.PreparedDataTest):
  def test_training_with_onednn_matches_xla(self):
    mesh = parallel.create_mesh(jax.devices()[:8])
    runs = {}
    for conv in ("xla", "onednn"):
      config = tiny_run.tiny_config(self.root, model__conv=conv)
      runs[conv] = tiny_run.train_steps(config, mesh, num_steps=5)
    # Five steps from the same start and batches: the same losses and
    # weights to float32 rounding (other summation orders, amplified a
    # little by the steps).
    np.testing.assert_allclose(runs["onednn"][0], runs["xla"][0], rtol=1e-4)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4),
      runs["onednn"][1].params,
      runs["xla"][1].params,
    )

  def test_a_run_trained_with_onednn_loads_with_xla(self):
    config = tiny_run.tiny_config(
      self.root, model__conv="onednn", schedule__num_steps=3
    )
    workdir = str(self.root / "onednn_run")
    mesh = parallel.create_mesh(jax.devices()[:8])
    trainer.train_and_evaluate(config, workdir, mesh)
    loaded = trained_model.load(workdir)
    self.assertIs(loaded.model.conv, models.conv3x3)
    images = jnp.asarray(
      np.random.default_rng(2).random((8, *loaded.input_shape)), jnp.float32
    )
    trained_with = loaded.model.clone(conv=onednn_conv.conv_factory(mesh))
    # Jitted: one compilation each instead of one per operation.
    embed = lambda model: jax.jit(functools.partial(model.apply, train=False))  # noqa: E731
    np.testing.assert_allclose(
      embed(loaded.model)(loaded.variables, images),
      embed(trained_with)(loaded.variables, images),
      rtol=1e-4,
      atol=1e-5,
    )


if __name__ == "__main__":
  absltest.main()
