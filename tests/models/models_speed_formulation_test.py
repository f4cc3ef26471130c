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
"""The fast formulations in models.py against the stock Flax layers.

Each reformulated piece of convnet-S must compute the same function, with
the same gradient, as the plain Flax formulation it replaces (the
independent reference here), to float32 tolerance.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized

from proxy_nca_jax import models, parallel


def _flax_max_pool(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (2, 2), strides=(2, 2))


class PlainConvNetS(nn.Module):
  """convnet-S written with stock Flax layers only (the reference)."""

  embedding_dim: int = 64
  widths: tuple[int, int, int] = (32, 64, 128)

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    def block(x, features, name):
      x = nn.Conv(
        features,
        (3, 3),
        padding="SAME",
        use_bias=False,
        name=f"{name}_Conv_0",
      )(x)
      x = nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        name=f"{name}_BatchNorm_0",
      )(x)
      return nn.relu(x)

    first, second, third = self.widths
    x = block(images, first, "ConvBNReLU_0")
    x = block(x, first, "ConvBNReLU_1")
    x = _flax_max_pool(x)
    x = block(x, second, "ConvBNReLU_2")
    x = block(x, second, "ConvBNReLU_3")
    x = _flax_max_pool(x)
    x = block(x, third, "ConvBNReLU_4")
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.embedding_dim, name=models.HEAD_MODULE)(x)
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def _to_plain(tree: dict) -> dict:
  """models.ConvNetS variables -> PlainConvNetS names (flattened blocks)."""
  out = {}
  for name, sub in tree.items():
    if name.startswith("ConvBNReLU_"):
      for layer, leaves in sub.items():
        out[f"{name}_{layer}"] = leaves
    else:
      out[name] = sub
  return out


class MaxPoolTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("random", "random", (3, 8, 6, 5)),
    ("relu_ties", "relu", (2, 28, 28, 4)),
    ("integer_ties", "integers", (2, 6, 8, 3)),
    ("odd_size", "random", (2, 7, 9, 3)),
  )
  def test_values_and_gradient_match_flax(self, kind, shape):
    key_x, key_g = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, shape)
    if kind == "relu":
      x = jax.nn.relu(x)  # Many windows of four tied zeros.
    elif kind == "integers":
      x = jnp.round(2 * x)  # Ties between non-zero values too.
    out_shape = (shape[0], shape[1] // 2, shape[2] // 2, shape[3])
    g = jax.random.normal(key_g, out_shape)

    got, got_vjp = jax.vjp(models.max_pool_2x2, x)
    want, want_vjp = jax.vjp(_flax_max_pool, x)
    np.testing.assert_array_equal(got, want)
    # Both send a window's gradient to exactly one element (its first
    # maximum), so the gradients are equal, not just close.
    np.testing.assert_array_equal(got_vjp(g)[0], want_vjp(g)[0])

  def test_jit_and_second_call_are_consistent(self):
    x = jax.random.normal(jax.random.key(1), (2, 4, 4, 2))
    grad = jax.jit(jax.grad(lambda x: jnp.sum(models.max_pool_2x2(x) ** 2)))
    want = jax.grad(lambda x: jnp.sum(_flax_max_pool(x) ** 2))(x)
    np.testing.assert_array_equal(grad(x), want)


class _FlaxBatchNormReLU(nn.Module):
  """The reference: stock nn.BatchNorm then relu, same variable names."""

  use_running_average: bool

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    z = nn.BatchNorm(
      use_running_average=self.use_running_average,
      momentum=0.9,
      epsilon=1e-5,
      name="BatchNorm_0",
    )(z)
    return nn.relu(z)


class _FastBatchNormReLU(nn.Module):
  use_running_average: bool

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    return models.BatchNormReLU(
      use_running_average=self.use_running_average, name="BatchNorm_0"
    )(z)


class BatchNormReLUTest(parameterized.TestCase):
  def _variables(self, features):
    keys = jax.random.split(jax.random.key(3), 4)
    params = {
      "BatchNorm_0": {
        "scale": 1 + 0.3 * jax.random.normal(keys[0], (features,)),
        "bias": 0.3 * jax.random.normal(keys[1], (features,)),
      }
    }
    stats = {
      "BatchNorm_0": {
        "mean": 0.1 * jax.random.normal(keys[2], (features,)),
        "var": jnp.exp(0.2 * jax.random.normal(keys[3], (features,))),
      }
    }
    return params, stats

  def test_same_variables_as_flax(self):
    z = jnp.ones((2, 4, 4, 3))
    got = _FastBatchNormReLU(False).init(jax.random.key(0), z)
    want = _FlaxBatchNormReLU(False).init(jax.random.key(0), z)
    jax.tree.map(np.testing.assert_array_equal, got, want)

  @parameterized.named_parameters(
    ("conv_activations", (8, 6, 6, 5), 0.0),
    ("shifted_mean", (4, 7, 7, 3), 3.0),
    ("dense", (32, 4), 0.0),
  )
  def test_training_values_gradients_and_stats_match_flax(self, shape, shift):
    z = shift + jax.random.normal(jax.random.key(0), shape)
    g = jax.random.normal(jax.random.key(1), shape)
    params, stats = self._variables(shape[-1])

    def run(module):
      def f(params, z):
        out, updates = module.apply(
          {"params": params, "batch_stats": stats},
          z,
          mutable=["batch_stats"],
        )
        return jnp.sum(out * g), (out, updates["batch_stats"])

      return jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(params, z)

    (got_loss, (got_out, got_stats)), got_grads = run(_FastBatchNormReLU(False))
    (want_loss, (want_out, want_stats)), want_grads = run(
      _FlaxBatchNormReLU(False)
    )
    np.testing.assert_allclose(got_out, want_out, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, atol=1e-5)
    jax.tree.map(np.testing.assert_array_equal, got_stats, want_stats)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
      got_grads,
      want_grads,
    )

  def test_inference_is_identical_to_flax(self):
    z = jax.random.normal(jax.random.key(0), (4, 5, 5, 6))
    params, stats = self._variables(6)
    variables = {"params": params, "batch_stats": stats}
    np.testing.assert_array_equal(
      _FastBatchNormReLU(True).apply(variables, z),
      _FlaxBatchNormReLU(True).apply(variables, z),
    )

  def test_statistics_are_global_under_sharded_jit(self):
    mesh = parallel.create_mesh()
    z = jax.random.normal(jax.random.key(0), (2 * mesh.size, 3, 3, 4))
    g = jax.random.normal(jax.random.key(1), z.shape)
    params, stats = self._variables(4)

    def f(params, z):
      out, updates = _FastBatchNormReLU(False).apply(
        {"params": params, "batch_stats": stats}, z, mutable=["batch_stats"]
      )
      return jnp.sum(out * g), updates["batch_stats"]

    grad_fn = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)
    sharded = jax.jit(
      grad_fn,
      in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
    )
    (got_loss, got_stats), got_grads = sharded(params, z)
    (want_loss, want_stats), want_grads = grad_fn(params, z)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, atol=1e-5)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      (got_stats, got_grads),
      (want_stats, want_grads),
    )


@pytest.mark.slow
class ConvNetSMatchesPlainFlaxTest(absltest.TestCase):
  def test_outputs_gradients_and_batch_stats_match(self):
    model = models.ConvNetS(embedding_dim=16, widths=(8, 16, 32))
    plain = PlainConvNetS(embedding_dim=16, widths=(8, 16, 32))
    images = jax.random.normal(jax.random.key(0), (6, 28, 28, 1))
    # Jitted, both sides: one compilation each instead of one per operation
    # (op by op, the two networks' hundreds of small programs took most of
    # this test's time).
    variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(1), images
    )
    plain_variables = {k: _to_plain(v) for k, v in variables.items()}
    # Same parameter values, only the (flattened) names differ.
    self.assertEqual(
      jax.tree.structure(plain_variables),
      jax.tree.structure(
        jax.eval_shape(
          functools.partial(plain.init, train=False),
          jax.random.key(1),
          images,
        )
      ),
    )
    target = jax.random.normal(jax.random.key(2), (6, 16))

    def loss_and_grads(net, to_names):
      def loss(params, stats):
        out, updates = net.apply(
          {"params": to_names(params), "batch_stats": stats},
          images,
          train=True,
          mutable=["batch_stats"],
        )
        return jnp.sum(out * target), (out, updates["batch_stats"])

      return jax.jit(jax.value_and_grad(loss, has_aux=True))

    def same(tree):
      return tree

    (got_loss, (got_out, got_stats)), got_grads = loss_and_grads(model, same)(
      variables["params"], variables["batch_stats"]
    )
    (want_loss, (want_out, want_stats)), want_grads = loss_and_grads(
      plain, _to_plain
    )(variables["params"], plain_variables["batch_stats"])

    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_out, want_out, rtol=1e-5, atol=1e-6)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
      _to_plain(got_stats),
      want_stats,
    )
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
      got_grads,
      want_grads,
    )


if __name__ == "__main__":
  absltest.main()
