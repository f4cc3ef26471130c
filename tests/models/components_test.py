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
"""Tests of models.py, proxies.py, optim.py and parallel.py."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl.testing import absltest, parameterized

from configs import fashion_mnist
from proxy_nca_jax import models, parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.training import optim


class ConvNetSTest(absltest.TestCase):
  def test_output_is_unit_norm_embedding(self):
    model = models.create_model(fashion_mnist.get_config().model)
    images = jax.random.normal(jax.random.key(0), (4, 28, 28, 1))
    # Jitted: one compilation each instead of one per operation.
    variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(1), images
    )
    out, _ = jax.jit(
      functools.partial(model.apply, train=True, mutable=["batch_stats"])
    )(variables, images)
    chex.assert_shape(out, (4, 64))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)

  def test_layers_match_the_design(self):
    model = models.ConvNetS(embedding_dim=16, widths=(8, 16, 32))
    # The layers' shapes, without computing them.
    variables = jax.eval_shape(
      functools.partial(model.init, train=False),
      jax.random.key(0),
      jnp.zeros((1, 28, 28, 1)),
    )
    kernels = [
      leaf.shape
      for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])
      if path[-1].key == "kernel"
    ]
    # Five 3x3 convolutions (no bias, BN follows) and the embedding layer.
    self.assertEqual(
      kernels,
      [
        (3, 3, 1, 8),
        (3, 3, 8, 8),
        (3, 3, 8, 16),
        (3, 3, 16, 16),
        (3, 3, 16, 32),
        (32, 16),
      ],
    )
    self.assertIn(models.HEAD_MODULE, variables["params"])
    self.assertLen(variables["batch_stats"], 5)

  def test_unknown_model_is_a_clear_error(self):
    config = ml_collections.ConfigDict(
      {"name": "resnet", "embedding_dim": 8, "widths": (1, 2, 3)}
    )
    with self.assertRaisesRegex(ValueError, "Unknown model 'resnet'"):
      models.create_model(config)


class _Head(nn.Module):
  pooling: str
  layer_norm: bool

  @nn.compact
  def __call__(self, features):
    return models.embedding_head(
      features,
      embedding_dim=3,
      pooling=self.pooling,
      layer_norm=self.layer_norm,
    )


class EmbeddingHeadTest(parameterized.TestCase):
  @parameterized.product(pooling=("avg", "max"), layer_norm=(False, True))
  def test_against_numpy(self, pooling, layer_norm):
    features = np.random.default_rng(0).normal(size=(5, 4, 3, 6))
    head = _Head(pooling, layer_norm)
    variables = head.init(jax.random.key(0), jnp.float32(features))
    # The head's only parameters are the embedding layer's, at the same
    # path for every pooling and normalisation.
    self.assertEqual(list(variables["params"]), [models.HEAD_MODULE])
    out = head.apply(variables, jnp.float32(features))
    dense = variables["params"][models.HEAD_MODULE]
    pooled = (features.max if pooling == "max" else features.mean)((1, 2))
    if layer_norm:
      centred = pooled - pooled.mean(1, keepdims=True)
      pooled = centred / np.sqrt(np.mean(centred**2, 1, keepdims=True) + 1e-6)
    y = pooled @ np.float64(dense["kernel"]) + np.float64(dense["bias"])
    expected = y / np.linalg.norm(y, axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, atol=1e-5)

  def test_unknown_pooling_is_a_clear_error(self):
    config = fashion_mnist.get_config().model.copy_and_resolve_references()
    config.pooling = "sum"
    with self.assertRaisesRegex(ValueError, "Unknown model.pooling 'sum'"):
      models.create_model(config)


class ProxiesTest(absltest.TestCase):
  def test_class_means_against_numpy(self):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=50)
    labels[labels == 2] = 1  # Class 2 absent: its proxy is zero.
    got = proxies_lib.class_mean_proxies(emb, labels, 3)
    want = np.stack(
      [emb[labels == 0].mean(0), emb[labels == 1].mean(0), np.zeros(3)]
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  def test_static_assignment_is_one_hot_of_label(self):
    mask = proxies_lib.static_assignment(jnp.array([2, 0, 2]), 3)
    np.testing.assert_array_equal(
      mask, [[False, False, True], [True, False, False], [False, False, True]]
    )

  def test_init_shape_dtype_and_errors(self):
    p = proxies_lib.init_proxies(jax.random.key(0), 5, 7, scale=2.0)
    chex.assert_shape(p, (5, 7))
    chex.assert_type(p, jnp.float32)
    with self.assertRaisesRegex(ValueError, "at least one proxy"):
      proxies_lib.init_proxies(jax.random.key(0), 0, 7)


class OptimTest(absltest.TestCase):
  def _config(self, name="sgd"):
    config = fashion_mnist.get_config()
    with config.unlocked():
      config.optimizer.name = name
      config.optimizer.momentum = 0.0
      config.optimizer.learning_rate = 0.1
      config.optimizer.head_lr_mult = 2.0
      config.optimizer.proxy_lr_mult = 30.0
    return config

  def _params(self):
    return {
      "model": {
        "ConvBNReLU_0": {"Conv_0": {"kernel": jnp.ones((2,))}},
        models.HEAD_MODULE: {"kernel": jnp.ones((2,))},
      },
      "proxies": jnp.ones((3, 2)),
    }

  def test_groups(self):
    labels = optim.param_groups(self._params())
    self.assertEqual(labels["proxies"], "proxies")
    self.assertEqual(labels["model"][models.HEAD_MODULE]["kernel"], "head")
    self.assertEqual(
      labels["model"]["ConvBNReLU_0"]["Conv_0"]["kernel"], "backbone"
    )

  def test_each_group_gets_its_learning_rate(self):
    tx, _ = optim.create_optimizer(self._config())
    params = self._params()
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    # Plain SGD: update = -lr * mult * grad, by hand.
    np.testing.assert_allclose(
      updates["model"]["ConvBNReLU_0"]["Conv_0"]["kernel"], -0.1
    )
    np.testing.assert_allclose(
      updates["model"][models.HEAD_MODULE]["kernel"], -0.2
    )
    np.testing.assert_allclose(updates["proxies"], -3.0, rtol=1e-6)

  def test_cosine_schedule_with_warmup(self):
    config = self._config()
    with config.unlocked():
      config.schedule.num_steps = 110
      config.schedule.warmup_steps = 10
      config.schedule.decay = "cosine"
    schedules = optim.group_schedules(config)
    np.testing.assert_allclose(schedules["backbone"](5), 0.05, rtol=1e-6)
    np.testing.assert_allclose(schedules["backbone"](10), 0.1, rtol=1e-6)
    np.testing.assert_allclose(schedules["backbone"](60), 0.05, rtol=1e-5)
    np.testing.assert_allclose(schedules["proxies"](110), 0.0, atol=1e-7)

  def test_adam_epsilon_against_float64_formula(self):
    # ProxyNCA++'s eps 1.0 damps small gradients: check the update rule by
    # hand, m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps), two steps.
    config = self._config("adam")
    with config.unlocked():
      config.optimizer.eps = 1.0
    tx, _ = optim.create_optimizer(config)
    params = self._params()
    state = tx.init(params)
    grad_values = np.array([[0.5, -2.0], [1e-3, 3.0]])
    m = v = np.zeros(2)
    for t, g in enumerate(grad_values, start=1):
      grads = jax.tree.map(lambda x, g=g: jnp.broadcast_to(g, x.shape), params)
      updates, state = tx.update(grads, state, params)
      m = 0.9 * m + 0.1 * g
      v = 0.999 * v + 0.001 * g**2
      expected = -0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1)
      np.testing.assert_allclose(
        updates["model"]["ConvBNReLU_0"]["Conv_0"]["kernel"],
        expected,
        rtol=1e-5,
      )
      np.testing.assert_allclose(
        updates["proxies"], np.broadcast_to(30 * expected, (3, 2)), rtol=1e-5
      )

  def test_all_optimizers_build_and_bad_name_errors(self):
    for name in optim.OPTIMIZERS:
      tx, _ = optim.create_optimizer(self._config(name))
      self.assertIsInstance(tx, optax.GradientTransformation)
    with self.assertRaisesRegex(ValueError, "optimizer.name must be one of"):
      optim.create_optimizer(self._config("lamb"))


class ParallelTest(absltest.TestCase):
  def test_mesh_spans_all_devices(self):
    mesh = parallel.create_mesh()
    self.assertEqual(mesh.size, jax.device_count())
    self.assertEqual(jax.device_count(), 8)  # tests/conftest.py

  def test_cpu_device_count_divides_every_batch(self):
    # Hand-worked: 64 and 1024 split over 2 of 2 cores; over 4 of 6 (6 and
    # 5 divide neither 64 nor 1024); 30 and 1024 only over 2; 7 over 1.
    self.assertEqual(parallel.cpu_device_count((64, 1024), 2), 2)
    self.assertEqual(parallel.cpu_device_count((64, 1024), 6), 4)
    self.assertEqual(parallel.cpu_device_count((30, 1024), 16), 2)
    self.assertEqual(parallel.cpu_device_count((7,), 8), 7)
    self.assertEqual(parallel.cpu_device_count((64,), 0), 1)

  def test_indivisible_batch_is_a_clear_error(self):
    mesh = parallel.create_mesh()
    with self.assertRaisesRegex(
      ValueError,
      r"input.batch_size=12 does not divide over the 8 devices.*"
      r"--config.input.batch_size=8 or 16",
    ):
      parallel.check_global_batch(12, mesh, "input.batch_size")
    parallel.check_global_batch(64, mesh, "input.batch_size")

  def test_global_batch_is_sharded_over_devices(self):
    mesh = parallel.create_mesh()
    local = {"x": np.arange(16, dtype=np.float32).reshape(16, 1)}
    out = parallel.global_batch(local, mesh)["x"]
    self.assertLen(out.addressable_shards, 8)
    np.testing.assert_array_equal(out.addressable_shards[1].data, [[2], [3]])
    np.testing.assert_array_equal(np.asarray(out), local["x"])


if __name__ == "__main__":
  absltest.main()
