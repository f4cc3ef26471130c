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
class counts that 8 does and does not divide; the class-weight losses
(Normalized Softmax, CosFace, ArcFace, SubCenter-ArcFace, SoftTriple: K
rows a class, whole classes on a device) on 1 and 8 devices the same way;
short sharded training runs against the replicated ones; sharded
checkpoints; the errors.
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
from proxy_nca_jax.losses import margin_softmax, sharded
from proxy_nca_jax.training import (
  loss_binding,
  metric_writer,
  train_state,
  trainer,
)
from proxy_nca_jax.training import step as step_lib
from tests.testing import (
  class_weight_references,
  loss_references,
  references,
  tiny_run,
)

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
        ValueError,
        rf"{what}.*\('proxy_nca', 'proxy_anchor', .*\).*replicated",
      ):
        trainer.train_and_evaluate(config, workdir)
      self.assertFalse(os.path.exists(workdir))


def _class_weight_problem(num_classes: int, seed: int = 0):
  """Embeddings (12, 6), labels (12,) in [0, C), and for each class-weight
  loss its weights (C K, 6)."""
  x, labels, _ = _problem(num_classes, seed)
  rng = np.random.default_rng(seed + 1)
  weights = {
    name: rng.normal(size=(num_classes * k, 6)).astype(np.float32)
    for name, (_, _, k) in class_weight_references.CASES.items()
  }
  return x, labels, weights


def _class_weight_values_and_grads(x, labels, weights, mesh=None, **overrides):
  """{loss name: (value, d/d embeddings, d/d weights)}, one compilation.

  Without a mesh: the replicated losses (``loss_binding.create_loss_fn``);
  with one: the sharded losses (``create_sharded_loss_fn``) on the weights
  padded by whole classes and split by rows. ``overrides``: loss config
  fields.
  """
  fns = {}
  for name, rows in weights.items():
    config = class_weight_references.loss_config(name, **overrides)
    if mesh is None:
      fns[name] = loss_binding.create_loss_fn(config)
    else:
      fns[name] = loss_binding.create_sharded_loss_fn(config, mesh, len(rows))

  def all_losses(x, labels, weights):
    return {
      name: jax.value_and_grad(
        lambda e, p, fn=fn: fn(e, labels, p, jnp.int32(0)), argnums=(0, 1)
      )(x, weights[name])
      for name, fn in fns.items()
    }

  if mesh is not None:
    weights = {
      name: jax.device_put(
        proxies_lib.pad_proxies(
          jnp.asarray(rows), mesh.size, class_weight_references.centers(name)
        ),
        parallel.row_sharded(mesh),
      )
      for name, rows in weights.items()
    }
  results = jax.jit(all_losses)(x, labels, weights)
  return {name: (v, *grads) for name, (v, grads) in results.items()}


class ShardedClassWeightLossesTest(parameterized.TestCase):
  """The class-weight losses with their K rows a class whole on a device."""

  @parameterized.named_parameters(
    ("one_device", 1, 5, False),
    # 8 classes' room: devices 5-7 hold padding only.
    ("padding_devices", 8, 5, True),
    # 16 classes' room: device 6 holds a class and a padding class. One
    # centre a class: each device's 2 classes one block at a time
    # (margin_softmax.blocked_terms), against the replicated plain form.
    ("padding_class_blocks", 8, 13, True, 1),
  )
  def test_matches_replicated_and_float64_numpy(
    self, num_devices, num_classes, labels_outside, block_size=None
  ):
    mesh = parallel.create_mesh(jax.devices()[:num_devices])
    x, labels, weights = _class_weight_problem(num_classes)
    if labels_outside:
      # A padding class's label and a negative one: left out of the mean.
      labels[:2] = [num_classes + 1, -1]
    kept = (labels >= 0) & (labels < num_classes)
    expected = _class_weight_values_and_grads(x, labels, weights)
    results = _class_weight_values_and_grads(
      x, labels, weights, mesh, proxy_block_size=block_size
    )
    room = -(-num_classes // num_devices) * num_devices
    for name, (value, grad_x, grad_p) in results.items():
      with self.subTest(name):
        k = class_weight_references.centers(name)
        real = num_classes * k
        want_value, want_grad_x, want_grad_p = expected[name]
        chex.assert_shape(grad_p, (room * k, 6))
        self.assertEqual(
          [s.data.shape for s in grad_p.addressable_shards],
          [(room * k // num_devices, 6)] * num_devices,
        )
        np.testing.assert_allclose(value, want_value, rtol=2e-6)
        np.testing.assert_allclose(grad_x, want_grad_x, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(
          grad_p[:real], want_grad_p, rtol=2e-5, atol=2e-6
        )
        # Padding rows: exactly zero gradient.
        np.testing.assert_array_equal(grad_p[real:], 0.0)
        # Independently of margin_softmax.py: the float64 transcription.
        np.testing.assert_allclose(
          value,
          class_weight_references.reference(
            name, x[kept], labels[kept], weights[name]
          ),
          rtol=2e-6,
        )

    if num_devices == 1:
      return  # The replicated program: its gradients compared above.
    # The sharded gradients against the float64 reference's.
    for name, argnum, atol in (
      ("soft_triple", 2, 2e-6),  # The regulariser's psum included.
      ("subcenter_arcface", 1, 2e-5),
      ("arcface", 1, 2e-5),
    ):
      with self.subTest(f"{name} numerical gradient"):
        inputs = [x[kept], weights[name]]

        def reference(v, name=name, argnum=argnum, inputs=inputs):
          args = list(inputs)
          args[argnum - 1] = v
          return class_weight_references.reference(
            name, args[0], labels[kept], args[1]
          )

        numerical = references.numerical_grad(reference, inputs[argnum - 1])
        got = results[name][argnum]
        rows = num_classes * class_weight_references.centers(name)
        got = got[:rows] if argnum == 2 else got[kept]
        np.testing.assert_allclose(got, numerical, rtol=1e-4, atol=atol)

  def test_rows_that_are_not_whole_classes_on_each_device_are_an_error(self):
    # 24 rows: 3 a device, not whole classes of K = 2 rows.
    x, labels, _ = _problem(12)
    spec = margin_softmax.soft_triple_spec(centers_per_class=2)
    with self.assertRaisesRegex(
      ValueError, r"divisible by 8 devices x 2 centres.*rows_per_class=K"
    ):
      sharded.sharded_margin_softmax_loss(
        x,
        labels,
        jnp.zeros((24, 6)),
        spec,
        mesh=parallel.create_mesh(),
        num_classes=12,
      )

  def test_a_sample_without_its_key_is_an_error(self):
    x, labels, _ = _problem(8)
    with self.assertRaisesRegex(ValueError, r"classes need the step's key"):
      sharded.sharded_margin_softmax_loss(
        x,
        labels,
        jnp.zeros((8, 6)),
        margin_softmax.arcface_spec(),
        mesh=parallel.create_mesh(),
        num_classes=8,
        negative_fraction=0.5,
      )


@pytest.mark.slow
class ShardedTrainingTest(tiny_run.PreparedDataTest):
  @parameterized.named_parameters(
    # 5 proxies on 8 devices: 3 padding rows.
    ("proxy_nca", {}, 1),
    # 3 sub-centres a class: 8 classes' room, 24 rows. Sampled classes:
    # each device draws its one class (a batch of 16 leaves room for
    # every positive), so the replicated run on every class is the
    # reference.
    (
      "subcenter_arcface_sampled",
      {"loss__name": "subcenter_arcface", "loss__sub_centers": 3},
      3,
      {"loss__negative_fraction": 0.5},
    ),
  )
  def test_sharded_run_equals_replicated_run(
    self, changes, k, sharded_changes=None
  ):
    config = tiny_run.tiny_config(
      self.root,
      proxies__sharding="sharded",
      **changes,
      **(sharded_changes or {}),
    )
    num_proxies = train_state.num_proxies(config)
    self.assertEqual(num_proxies, tiny_run.NUM_PROXIES * k)
    workdir = self.root / f"sharded_{k}"
    chex.clear_trace_counter()
    guarded = chex.assert_max_traces(step_lib.train_step, n=1)
    with mock.patch.object(step_lib, "train_step", guarded):
      trainer.train_and_evaluate(config, str(workdir))

    replicated = tiny_run.tiny_config(self.root, **changes)
    num_steps = replicated.schedule.num_steps
    expected_losses, expected = tiny_run.train_steps(
      replicated, parallel.create_mesh(), num_steps, num_proxies
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

    # The final checkpoint restores onto sharded proxies and moments: 8
    # classes' room of K rows, K rows a device.
    mesh = parallel.create_mesh()
    _, _, target = tiny_run.initial_state(config, mesh, num_proxies)
    ckpt = checkpointing.Checkpointer(
      str(workdir / "checkpoints"), every_steps=0, keep=10
    )
    try:
      restored = ckpt.restore(
        num_steps,
        target,
        train_state.run_signature(config, num_proxies, mesh),
      )
    finally:
      ckpt.close()
    adam = restored.opt_state.inner_states["proxies"].inner_state[0]
    moments = (adam.mu["proxies"], adam.nu["proxies"])
    for array in (restored.params["proxies"], *moments):
      chex.assert_shape(array, (NUM_DEVICES * k, 8))
      self.assertEqual(
        array.sharding.spec, PartitionSpec(parallel.DATA_AXIS, None)
      )
      self.assertEqual(
        {s.data.shape for s in array.addressable_shards}, {(k, 8)}
      )
    real = jax.device_get(train_state.real_proxies(restored, num_proxies))
    np.testing.assert_allclose(
      real, expected.params["proxies"], rtol=1e-5, atol=2e-6
    )
    restored = jax.device_get(restored)
    padding = restored.params["proxies"][num_proxies:]
    np.testing.assert_array_equal(padding, 0.0)
    chex.assert_trees_all_close(
      restored.params["model"], expected.params["model"], atol=2e-5
    )
    chex.assert_trees_all_close(
      restored.batch_stats, expected.batch_stats, atol=2e-5
    )


if __name__ == "__main__":
  absltest.main()
