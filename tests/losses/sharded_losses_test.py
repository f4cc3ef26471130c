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
"""Tests of sharded proxies: sharded.py and sharded training.

On the 8 fake CPU devices: the sharded losses against `losses` (values and
gradients) and against float64 NumPy transcriptions of the equations, for
class counts that 8 does and does not divide; a short sharded training run
against the replicated one; sharded checkpoints; the errors.
"""

import functools
import os
import pathlib
import tempfile
from unittest import mock

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized
from jax.sharding import PartitionSpec

from proxy_nca_jax import checkpointing, losses, parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.losses import sharded
from proxy_nca_jax.training import metric_writer, train_state, trainer
from proxy_nca_jax.training import step as step_lib
from tests.testing import loss_references, references, tiny_run

NUM_DEVICES = 8
# name: (losses function, sharded function, options).
LOSSES = {
  "paper": (
    losses.proxy_nca_loss,
    sharded.sharded_proxy_nca_loss,
    {"form": "paper", "scale": 3.0},
  ),
  "softmax": (
    losses.proxy_nca_loss,
    sharded.sharded_proxy_nca_loss,
    {"form": "softmax", "scale": 9.0, "embedding_norm": 2.0},
  ),
  "softmax_smoothed": (
    losses.proxy_nca_loss,
    sharded.sharded_proxy_nca_loss,
    {"form": "softmax", "scale": 8.0, "label_smoothing": 0.1},
  ),
  "proxy_anchor": (
    losses.proxy_anchor_loss,
    sharded.sharded_proxy_anchor_loss,
    {"alpha": 32.0, "delta": 0.1},
  ),
}


def _problem(num_proxies: int, seed: int = 0):
  """Embeddings (12, 6), labels (12,) in [0, C) and proxies (C, 6)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(12, 6)).astype(np.float32)
  labels = rng.integers(0, num_proxies, size=12).astype(np.int32)
  proxies = rng.normal(size=(num_proxies, 6)).astype(np.float32)
  return x, labels, proxies


def _shard(proxies: np.ndarray, mesh) -> jax.Array:
  padded = proxies_lib.pad_proxies(jnp.asarray(proxies), mesh.size)
  return jax.device_put(padded, parallel.row_sharded(mesh))


def _values_and_grads(x, labels, proxies, mesh=None):
  """{loss name: (value, d/d embeddings, d/d proxies)}, one compilation.

  With a mesh: the sharded losses on ``proxies`` padded and split by rows.
  """
  num_proxies = len(proxies)

  # Labels are an argument, traced: out-of-range ones are left out (as
  # inside the train step) instead of raising as concrete labels do.
  def all_losses(x, labels, proxies):
    results = {}
    for name, (loss_fn, sharded_fn, options) in LOSSES.items():
      if mesh is not None:
        loss_fn = functools.partial(
          sharded_fn, mesh=mesh, num_proxies=num_proxies
        )
      fn = functools.partial(loss_fn, labels=labels, **options)
      results[name] = jax.value_and_grad(
        lambda e, p, fn=fn: fn(e, proxies=p), argnums=(0, 1)
      )(x, proxies)
    return results

  if mesh is not None:
    proxies = _shard(proxies, mesh)
  results = jax.jit(all_losses)(x, labels, proxies)
  return {name: (v, *grads) for name, (v, grads) in results.items()}


class ShardedLossesTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    self.mesh = parallel.create_mesh()
    self.assertEqual(self.mesh.size, NUM_DEVICES)

  @parameterized.parameters(5, 13, 8)
  def test_matches_unsharded_and_float64_numpy(self, num_proxies):
    x, labels, proxies = _problem(num_proxies)
    expected = _values_and_grads(x, labels, proxies)
    results = _values_and_grads(x, labels, proxies, self.mesh)
    rows = -(-num_proxies // NUM_DEVICES) * NUM_DEVICES
    for name, (value, grad_x, grad_p) in results.items():
      with self.subTest(name):
        want_value, want_grad_x, want_grad_p = expected[name]
        chex.assert_shape(grad_p, (rows, 6))
        # The proxies' gradient stays split by rows: each device its own.
        self.assertEqual(
          grad_p.sharding.spec, PartitionSpec(parallel.DATA_AXIS)
        )
        self.assertEqual(
          [s.data.shape for s in grad_p.addressable_shards],
          [(rows // NUM_DEVICES, 6)] * NUM_DEVICES,
        )
        np.testing.assert_allclose(value, want_value, rtol=2e-6)
        np.testing.assert_allclose(grad_x, want_grad_x, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(
          grad_p[:num_proxies], want_grad_p, rtol=1e-5, atol=2e-6
        )
        # Padding rows: exactly zero gradient.
        np.testing.assert_array_equal(grad_p[num_proxies:], 0.0)

    # Independently of losses.py: float64 transcriptions of the equations.
    float64_losses = {
      "paper": lambda p: loss_references.proxy_nca(x, labels, p, "paper", 3.0),
      "softmax": lambda p: loss_references.proxy_nca(
        x, labels, p, "softmax", 9.0, a=2.0
      ),
      "softmax_smoothed": lambda p: loss_references.proxy_nca(
        x, labels, p, "softmax", 8.0, smoothing=0.1
      ),
      "proxy_anchor": lambda p: loss_references.proxy_anchor(
        x, labels, p, 32.0, 0.1
      ),
    }
    for name, reference in float64_losses.items():
      with self.subTest(f"{name} float64"):
        np.testing.assert_allclose(
          results[name][0], reference(proxies), rtol=2e-6
        )
    numerical = references.numerical_grad(float64_losses["paper"], proxies)
    np.testing.assert_allclose(
      results["paper"][2][:num_proxies], numerical, rtol=1e-4, atol=1e-6
    )

  def test_labels_outside_the_classes_are_left_out(self):
    # Labels 5 and 7 fall in the padding rows' range [C, R) = [5, 8).
    x, labels, proxies = _problem(5)
    labels[:3] = [5, 7, -1]
    expected = _values_and_grads(x, labels, proxies)
    results = _values_and_grads(x, labels, proxies, self.mesh)
    for name, (value, grad_x, grad_p) in results.items():
      with self.subTest(name):
        np.testing.assert_allclose(value, expected[name][0], rtol=2e-6)
        np.testing.assert_allclose(
          grad_x, expected[name][1], rtol=1e-5, atol=2e-6
        )
        np.testing.assert_array_equal(grad_p[5:], 0.0)
    # Proxy-NCA: such samples count for nothing.
    np.testing.assert_allclose(
      results["paper"][0],
      losses.proxy_nca_loss(x[3:], labels[3:], proxies, form="paper", scale=3),
      rtol=2e-6,
    )

  def test_bad_row_count_is_a_clear_error(self):
    x, labels, proxies = _problem(13)
    with self.assertRaisesRegex(ValueError, "divisible by the 8 devices"):
      sharded.sharded_proxy_nca_loss(
        x, labels, proxies, mesh=self.mesh, num_proxies=13
      )

  @parameterized.parameters(
    ({"name": "triplet_semihard"}, "'triplet_semihard'"),
    ({"assignment": "dynamic"}, "assignment='dynamic'"),
    ({"name": "proxy_ranking"}, "'proxy_ranking'"),
  )
  def test_loss_without_sharded_form_is_a_clear_error(self, change, what):
    config = tiny_run.tiny_config(pathlib.Path("/nonexistent"))
    with config.unlocked():
      config.proxies.sharding = "sharded"
      for key, value in change.items():
        setattr(config.loss, key, value)
    with tempfile.TemporaryDirectory() as tmp:
      workdir = os.path.join(tmp, "run")
      with self.assertRaisesRegex(
        ValueError, rf"{what}.*\('proxy_nca', 'proxy_anchor'\).*replicated"
      ):
        trainer.train_and_evaluate(config, workdir)
      self.assertFalse(os.path.exists(workdir))


@pytest.mark.slow
class ShardedTrainingTest(tiny_run.PreparedDataTest):
  def test_sharded_run_equals_replicated_run(self):
    # 5 proxies on 8 devices: 3 padding rows.
    config = tiny_run.tiny_config(self.root, proxies__sharding="sharded")
    workdir = self.root / "sharded"
    chex.clear_trace_counter()
    guarded = chex.assert_max_traces(step_lib.train_step, n=1)
    with mock.patch.object(step_lib, "train_step", guarded):
      trainer.train_and_evaluate(config, str(workdir))

    replicated = tiny_run.tiny_config(self.root)
    num_steps = replicated.schedule.num_steps
    expected_losses, expected = tiny_run.train_steps(
      replicated, parallel.create_mesh(), num_steps
    )
    logged = {
      r["step"]: r["loss"]
      for r in metric_writer.read_metrics(str(workdir))
      if "loss" in r
    }
    np.testing.assert_allclose(
      [logged[s] for s in (2, 4, 6)],
      [expected_losses[s - 1] for s in (2, 4, 6)],
      rtol=1e-5,
    )

    # The final checkpoint restores onto sharded proxies and moments.
    mesh = parallel.create_mesh()
    _, _, target = tiny_run.initial_state(config, mesh)
    ckpt = checkpointing.Checkpointer(
      str(workdir / "checkpoints"), every_steps=0, keep=10
    )
    try:
      restored = ckpt.restore(
        num_steps,
        target,
        train_state.run_signature(config, tiny_run.NUM_PROXIES, mesh),
      )
    finally:
      ckpt.close()
    adam = restored.opt_state.inner_states["proxies"].inner_state[0]
    moments = (adam.mu["proxies"], adam.nu["proxies"])
    for array in (restored.params["proxies"], *moments):
      chex.assert_shape(array, (NUM_DEVICES, 8))
      self.assertEqual(
        array.sharding.spec, PartitionSpec(parallel.DATA_AXIS, None)
      )
      self.assertEqual(
        {s.data.shape for s in array.addressable_shards}, {(1, 8)}
      )
    real = jax.device_get(
      train_state.real_proxies(restored, tiny_run.NUM_PROXIES)
    )
    np.testing.assert_allclose(
      real, expected.params["proxies"], rtol=1e-5, atol=2e-6
    )
    restored = jax.device_get(restored)
    padding = restored.params["proxies"][tiny_run.NUM_PROXIES :]
    np.testing.assert_array_equal(padding, 0.0)
    chex.assert_trees_all_close(
      restored.params["model"], expected.params["model"], atol=2e-5
    )
    chex.assert_trees_all_close(
      restored.batch_stats, expected.batch_stats, atol=2e-5
    )


if __name__ == "__main__":
  absltest.main()
