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
"""Sampled negative proxies (losses/sampled_proxies.py, loss.negative_fraction).

The sample: positives always in, the others uniform without replacement
(counted over many keys), padding rows only after every proxy, the same for
the same seed and step. The loss: the float64 Proxy-NCA of the sampled
proxies, zero gradient for the others, with replicated proxies and with
proxies sharded over 8 devices (each samples its own rows); the same for
the class-weight losses (Normalized Softmax, CosFace, ArcFace,
SubCenter-ArcFace, SoftTriple) over the sampled classes, all K rows of each.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized

from configs import fashion_mnist
from proxy_nca_jax import losses, parallel
from proxy_nca_jax.losses import sampled_proxies
from proxy_nca_jax.training import loss_binding, train_state
from proxy_nca_jax.training import step as step_lib
from tests.testing import class_weight_references, loss_references


def _loss_config(**overrides):
  config = fashion_mnist.get_config().loss
  config.scale = 3.0
  config.update(overrides)
  return config


def _check_same_step_same_sample(test, loss_fn, x, labels, proxies):
  """The loss at steps 5, 5 and 6: equal, then different (another sample)."""
  at = [float(loss_fn(x, labels, proxies, jnp.int32(s))) for s in (5, 5, 6)]
  test.assertEqual(at[0], at[1])
  test.assertNotEqual(at[0], at[2])


def drawn_by_devices(labels, seed, step, num_real, num_sampled):
  """The global rows (classes) 8 devices of 3 rows each draw at ``step``:
  the sampling function called as each device of the sharded loss calls it
  (its own key, its own rows, the real ones below ``num_real``)."""
  key = sampled_proxies.sample_key(seed, jnp.int32(step))
  rows = []
  for device in range(8):
    offset = 3 * device
    local, _ = sampled_proxies.sample_proxies(
      jax.random.fold_in(key, device),
      jnp.asarray(labels) - offset,
      3,
      num_sampled,
      min(max(num_real - offset, 0), 3),
    )
    rows.extend(offset + np.asarray(local))
  return np.array(rows)


class SampleTest(parameterized.TestCase):
  def test_positives_always_in_and_labels_point_at_them(self):
    labels = jnp.array([3, 17, 3, 0, 29], jnp.int32)
    for seed in range(20):
      rows, sampled = sampled_proxies.sample_proxies(
        jax.random.key(seed), labels, 30, 8
      )
      rows, sampled = np.asarray(rows), np.asarray(sampled)
      self.assertLen(rows, 8)
      self.assertLen(set(rows.tolist()), 8)  # No proxy twice.
      self.assertTrue(np.all((rows >= 0) & (rows < 30)))
      np.testing.assert_array_equal(rows[sampled], labels)

  def test_others_are_uniform(self):
    # 4 positives, K = 10 of C = 24: each of the 20 others is drawn with
    # probability 6 / 20 = 0.3. 4,000 samples: standard deviation of a
    # count 29, so 5 standard deviations is +-145 around 1,200.
    labels = jnp.array([0, 5, 9, 5, 23], jnp.int32)
    draw = jax.jit(
      jax.vmap(
        lambda key: sampled_proxies.sample_proxies(key, labels, 24, 10)[0]
      )
    )
    rows = np.asarray(draw(jax.random.split(jax.random.key(0), 4000)))
    counts = np.bincount(rows.ravel(), minlength=24)
    positives = [0, 5, 9, 23]
    np.testing.assert_array_equal(counts[positives], 4000)
    others = np.delete(counts, positives)
    self.assertEqual(others.sum(), 4000 * 6)
    self.assertLess(np.abs(others - 1200).max(), 145)

  def test_labels_outside_the_proxies_are_left_out(self):
    labels = jnp.array([2, -1, 40, 5], jnp.int32)
    rows, sampled = sampled_proxies.sample_proxies(
      jax.random.key(1), labels, 10, 4
    )
    np.testing.assert_array_equal(np.asarray(sampled)[1:3], [-1, -1])
    np.testing.assert_array_equal(np.asarray(rows)[np.asarray(sampled)[0]], 2)

  def test_padding_rows_come_after_every_proxy_and_are_never_positive(self):
    # 5 rows, the last 2 padding; label 4 points at padding: left out.
    labels = jnp.array([1, 4], jnp.int32)
    for seed in range(10):
      rows, sampled = sampled_proxies.sample_proxies(
        jax.random.key(seed), labels, 5, 4, num_real=3
      )
      rows = np.asarray(rows)
      self.assertEqual(rows[0], 1)
      self.assertCountEqual(rows[:3], [0, 1, 2])
      self.assertIn(rows[3], (3, 4))
      np.testing.assert_array_equal(np.asarray(sampled), [0, -1])

  @parameterized.parameters(
    (0.1, 1000, 32, 100),
    (0.01, 1000, 32, 32),  # Room for a whole batch of positives.
    (0.5, 10, 32, 10),
    (1.0, 7, 4, 7),
  )
  def test_num_sampled(self, fraction, classes, batch, want):
    self.assertEqual(
      sampled_proxies.num_sampled(fraction, classes, batch), want
    )

  @parameterized.parameters(0.0, -0.2, 1.5)
  def test_bad_fraction_is_a_clear_error(self, fraction):
    with self.assertRaisesRegex(ValueError, r"negative_fraction must be in"):
      loss_binding.create_loss_fn(_loss_config(negative_fraction=fraction))


class SampledLossTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.x = rng.normal(size=(6, 5)).astype(np.float32)
    self.labels = rng.integers(0, 40, size=6).astype(np.int32)
    self.proxies = rng.normal(size=(40, 5)).astype(np.float32)

  @parameterized.parameters("softmax", "paper")
  def test_is_the_loss_of_the_sampled_proxies_and_only_they_learn(self, form):
    seed, step = 7, 123
    loss_fn = loss_binding.create_loss_fn(
      _loss_config(negative_fraction=0.25, form=form), seed=seed
    )
    value, grad = jax.jit(
      jax.value_and_grad(
        lambda p: loss_fn(self.x, self.labels, p, jnp.int32(step))
      )
    )(self.proxies)
    rows, _ = sampled_proxies.sample_proxies(
      sampled_proxies.sample_key(seed, jnp.int32(step)),
      jnp.asarray(self.labels),
      40,
      10,
    )
    rows = np.asarray(rows)
    # The float64 reference on the sampled proxies, relabelled by hand.
    position = {int(r): i for i, r in enumerate(rows)}
    relabelled = np.array([position[int(y)] for y in self.labels])
    want = loss_references.proxy_nca(
      self.x, relabelled, self.proxies[rows], form, 3.0
    )
    np.testing.assert_allclose(value, want, rtol=2e-6)
    left_out = np.setdiff1d(np.arange(40), rows)
    self.assertLen(left_out, 30)
    np.testing.assert_array_equal(np.asarray(grad)[left_out], 0.0)
    self.assertTrue(np.all(np.abs(np.asarray(grad)[rows]).sum(-1) > 0))

  def test_same_step_same_sample_other_step_other_sample(self):
    loss_fn = jax.jit(
      loss_binding.create_loss_fn(_loss_config(negative_fraction=0.25))
    )
    _check_same_step_same_sample(
      self, loss_fn, self.x, self.labels, self.proxies
    )

  def test_fraction_one_is_every_proxy(self):
    loss_fn = loss_binding.create_loss_fn(_loss_config())
    want = loss_references.proxy_nca(
      self.x, self.labels, self.proxies, "softmax", 3.0
    )
    for step in (0, 9):
      np.testing.assert_allclose(
        jax.jit(loss_fn)(self.x, self.labels, self.proxies, jnp.int32(step)),
        want,
        rtol=2e-6,
      )

  def test_train_step_draws_from_the_state_step(self):
    # A resumed run restores the step number, so it draws what the
    # uninterrupted run drew: the same state gives the same update, and
    # the same weights at another step number another one.
    class Tiny(nn.Module):
      @nn.compact
      def __call__(self, x, train):
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(5)(x)

    model = Tiny()
    variables = model.init(jax.random.key(0), self.x, train=False)
    params = {"model": variables["params"], "proxies": self.proxies}
    tx = optax.adam(1e-2)
    loss_fn = loss_binding.create_loss_fn(
      _loss_config(negative_fraction=0.25), seed=3
    )
    step = jax.jit(
      functools.partial(
        step_lib.train_step, model=model, tx=tx, loss_fn=loss_fn
      )
    )
    batch = {"image": self.x, "label": self.labels}

    def proxies_after(step_number):
      state = train_state.TrainState(
        step=jnp.int32(step_number),
        params=params,
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(params),
      )
      return np.asarray(step(state, batch)[0].params["proxies"])

    at_7 = proxies_after(7)
    np.testing.assert_array_equal(proxies_after(7), at_7)
    # Adam moves every proxy with a gradient by about the learning rate and
    # leaves the others: the sampled rows differ between steps 7 and 8.
    moved_at_7 = np.any(at_7 != self.proxies, axis=-1)
    moved_at_8 = np.any(proxies_after(8) != self.proxies, axis=-1)
    self.assertEqual(moved_at_7.sum(), 10)
    self.assertEqual(moved_at_8.sum(), 10)
    self.assertFalse(np.array_equal(moved_at_7, moved_at_8))


class ShardedSampledLossTest(parameterized.TestCase):
  """Sampled negatives with the proxies split over 8 devices: each device
  samples its positives and a part of its own rows (Partial FC)."""

  # 20 proxies padded to 24 rows, 3 a device: device 6 holds rows 18-20
  # (two proxies, one padding row), device 7 rows 21-23 (padding only).
  # Fraction 0.5 of 3 rows with batch 2: K_k = max(2, min(2, 3)) = 2 rows
  # a device.
  NUM_PROXIES, ROWS, SAMPLED = 20, 24, 2

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(4)
    self.mesh = parallel.create_mesh()
    self.assertEqual(self.mesh.size, 8)
    self.x = rng.normal(size=(2, 5)).astype(np.float32)
    self.labels = np.array([19, 4], np.int32)
    proxies = rng.normal(size=(self.ROWS, 5)).astype(np.float32)
    proxies[self.NUM_PROXIES :] = 0.0  # Padding rows stay zero.
    self.proxies = jax.device_put(proxies, parallel.row_sharded(self.mesh))

  def sampled_rows(self, seed, step):
    """The global rows each device draws, from the sampling function (its
    own properties are tested above) called as each device does."""
    return drawn_by_devices(
      self.labels, seed, step, self.NUM_PROXIES, self.SAMPLED
    )

  @parameterized.parameters(
    dict(form="softmax"),
    dict(form="paper"),
    dict(form="softmax", label_smoothing=0.1),
    # Each device's 2 sampled rows one at a time (losses/proxy_blocks.py).
    dict(form="softmax", block_size=1),
    dict(form="paper", block_size=1),
    dict(form="softmax", label_smoothing=0.1, block_size=1),
  )
  def test_is_the_loss_of_the_sampled_proxies_and_only_they_learn(
    self, form, label_smoothing=0.0, block_size=None
  ):
    seed, step = 5, 31
    loss_fn = loss_binding.create_sharded_loss_fn(
      _loss_config(
        negative_fraction=0.5,
        form=form,
        label_smoothing=label_smoothing,
        proxy_block_size=block_size,
      ),
      self.mesh,
      self.NUM_PROXIES,
      seed=seed,
    )
    value, grad = jax.jit(
      jax.value_and_grad(
        lambda p: loss_fn(self.x, self.labels, p, jnp.int32(step))
      )
    )(self.proxies)
    rows = self.sampled_rows(seed, step)
    self.assertLen(rows, 16)
    self.assertLen(set(rows.tolist()), 16)
    # Devices 0-6 draw 2 proxies each; device 7 only padding.
    used = np.sort(rows[rows < self.NUM_PROXIES])
    self.assertLen(used, 14)
    self.assertContainsSubset({19, 4}, set(used.tolist()))
    # The float64 reference over the proxies drawn, relabelled by hand.
    position = {int(r): i for i, r in enumerate(used)}
    want = loss_references.proxy_nca(
      self.x,
      [position[int(y)] for y in self.labels],
      np.asarray(self.proxies)[used],
      form,
      3.0,
      smoothing=label_smoothing,
    )
    np.testing.assert_allclose(value, want, rtol=2e-6)
    grad = np.asarray(grad)
    left_out = np.setdiff1d(np.arange(self.ROWS), used)
    np.testing.assert_array_equal(grad[left_out], 0.0)
    self.assertTrue(np.all(np.abs(grad[used]).sum(-1) > 0))

  def test_same_step_same_sample_other_step_other_sample(self):
    loss_fn = jax.jit(
      loss_binding.create_sharded_loss_fn(
        _loss_config(negative_fraction=0.5), self.mesh, self.NUM_PROXIES
      )
    )
    _check_same_step_same_sample(
      self, loss_fn, self.x, self.labels, self.proxies
    )

  def test_fraction_one_is_every_proxy(self):
    loss_fn = loss_binding.create_sharded_loss_fn(
      _loss_config(), self.mesh, self.NUM_PROXIES
    )
    want = loss_references.proxy_nca(
      self.x,
      self.labels,
      np.asarray(self.proxies)[: self.NUM_PROXIES],
      "softmax",
      3.0,
    )
    np.testing.assert_allclose(
      jax.jit(loss_fn)(self.x, self.labels, self.proxies, jnp.int32(3)),
      want,
      rtol=2e-6,
    )


class ClassWeightSampledLossTest(absltest.TestCase):
  """Sampled negative classes of the class-weight losses, replicated: all K
  rows of each sampled class, the batch's classes always."""

  NUM_CLASSES, SAMPLED = 40, 10  # Fraction 0.25.

  def test_is_the_loss_of_the_sampled_classes_and_only_they_learn(self):
    seed, step = 7, 123
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    labels = rng.integers(0, self.NUM_CLASSES, size=6).astype(np.int32)
    weights = {
      name: rng.normal(size=(self.NUM_CLASSES * k, 5)).astype(np.float32)
      for name, (_, _, k) in class_weight_references.CASES.items()
    }
    # The classes drawn, from the sampling function (its own properties
    # are tested above), and each one's rows and position, by hand.
    classes, _ = sampled_proxies.sample_proxies(
      sampled_proxies.sample_key(seed, jnp.int32(step)),
      jnp.asarray(labels),
      self.NUM_CLASSES,
      self.SAMPLED,
    )
    classes = np.asarray(classes)
    self.assertContainsSubset(set(labels.tolist()), set(classes.tolist()))
    position = {int(c): i for i, c in enumerate(classes)}
    relabelled = np.array([position[int(y)] for y in labels], np.int32)
    rows = {
      name: np.array([c * k + j for c in classes for j in range(k)])
      for name, (_, _, k) in class_weight_references.CASES.items()
    }

    def all_losses(x, labels, weights):
      results = {}
      for name in weights:
        # One centre a class: blocks of 4 classes, the last one short.
        config = class_weight_references.loss_config(name, proxy_block_size=4)
        options = loss_binding.loss_options(config)[name]
        full = functools.partial(getattr(losses, f"{name}_loss"), **options)
        bound = {
          fraction: loss_binding.create_loss_fn(
            class_weight_references.loss_config(
              name, negative_fraction=fraction, proxy_block_size=4
            ),
            seed=seed,
          )
          for fraction in (0.25, 1.0)
        }
        results[name] = {
          "sampled": jax.value_and_grad(
            lambda p, fn=bound[0.25]: fn(x, labels, p, jnp.int32(step))
          )(weights[name]),
          "one": bound[1.0](x, labels, weights[name], jnp.int32(step)),
          "full": full(x, labels, weights[name]),
        }
      return results

    results = jax.device_get(jax.jit(all_losses)(x, labels, weights))
    for name, result in results.items():
      with self.subTest(name):
        k = class_weight_references.centers(name)
        value, grad_p = result["sampled"]
        want = class_weight_references.reference(
          name, x, relabelled, weights[name][rows[name]]
        )
        np.testing.assert_allclose(value, want, rtol=2e-6)
        grad_p = grad_p.reshape(self.NUM_CLASSES, k, 5)
        left_out = np.setdiff1d(np.arange(self.NUM_CLASSES), classes)
        self.assertLen(left_out, 30)
        np.testing.assert_array_equal(grad_p[left_out], 0.0)
        # Every sampled class learns (SubCenter-ArcFace: its nearest
        # centres).
        self.assertTrue(np.all(np.abs(grad_p[classes]).sum(axis=(1, 2)) > 0))
        # Fraction 1: every class, the loss function's value bit for bit.
        self.assertEqual(result["one"], result["full"])
        np.testing.assert_allclose(
          result["one"],
          class_weight_references.reference(name, x, labels, weights[name]),
          rtol=2e-6,
        )


class ShardedClassWeightSampledLossTest(parameterized.TestCase):
  """Sampled negative classes of the class-weight losses with the weights
  split over 8 devices, whole classes a device: each device samples its
  positives and a part of its own classes (all K rows of each)."""

  # 20 classes padded to 24, 3 a device: device 6 holds classes 18-20 (two
  # classes, one padding class), device 7 classes 21-23 (padding only).
  # Fraction 0.5 of 3 classes with batch 2: K_k = 2 classes a device.
  NUM_CLASSES, ROOM, SAMPLED = 20, 24, 2

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(4)
    self.mesh = parallel.create_mesh()
    self.x = rng.normal(size=(2, 5)).astype(np.float32)
    self.labels = np.array([19, 4], np.int32)
    self.weights = {}
    for name in class_weight_references.CASES:
      k = class_weight_references.centers(name)
      rows = rng.normal(size=(self.ROOM * k, 5)).astype(np.float32)
      rows[self.NUM_CLASSES * k :] = 0.0  # Padding rows stay zero.
      self.weights[name] = rows

  def values_and_grads(self, fraction, seed=0, step=0):
    """{name: (value, d/d weights)} of every class-weight loss, sharded."""
    fns = {
      name: loss_binding.create_sharded_loss_fn(
        class_weight_references.loss_config(name, negative_fraction=fraction),
        self.mesh,
        self.NUM_CLASSES * class_weight_references.centers(name),
        seed=seed,
      )
      for name in self.weights
    }

    def all_losses(weights):
      return {
        name: jax.value_and_grad(
          lambda p, fn=fn: fn(self.x, self.labels, p, jnp.int32(step))
        )(weights[name])
        for name, fn in fns.items()
      }

    weights = jax.device_put(self.weights, parallel.row_sharded(self.mesh))
    return jax.device_get(jax.jit(all_losses)(weights))

  def sampled_classes(self, seed, step):
    """The real classes the devices draw, from the sampling function called
    as each device does."""
    classes = drawn_by_devices(
      self.labels, seed, step, self.NUM_CLASSES, self.SAMPLED
    )
    return np.sort(classes[classes < self.NUM_CLASSES])

  def reference(self, name, classes):
    """The float64 loss over ``classes``' centres, relabelled by hand."""
    k = class_weight_references.centers(name)
    rows = np.array([c * k + j for c in classes for j in range(k)])
    position = {int(c): i for i, c in enumerate(classes)}
    return class_weight_references.reference(
      name,
      self.x,
      [position[int(y)] for y in self.labels],
      self.weights[name][rows],
    )

  def test_is_the_loss_of_the_shards_sampled_classes_and_only_they_learn(
    self,
  ):
    seed, step = 5, 31
    results = self.values_and_grads(0.5, seed, step)
    classes = self.sampled_classes(seed, step)
    # Devices 0-6 draw 2 real classes each; device 7 only padding.
    self.assertLen(classes, 14)
    self.assertContainsSubset({19, 4}, set(classes.tolist()))
    for name, (value, grad) in results.items():
      with self.subTest(name):
        k = class_weight_references.centers(name)
        np.testing.assert_allclose(
          value, self.reference(name, classes), rtol=2e-6
        )
        grad = grad.reshape(self.ROOM, k, 5)
        left_out = np.setdiff1d(np.arange(self.ROOM), classes)
        np.testing.assert_array_equal(grad[left_out], 0.0)
        self.assertTrue(np.all(np.abs(grad[classes]).sum(axis=(1, 2)) > 0))

  def test_every_class_drawn_is_the_full_loss(self):
    # 0.99 of 3 classes is 3: each device draws all of its classes, device
    # 6 its padding class too. (Fraction 1 draws nothing: the sharded
    # losses of sharded_losses_test.py.)
    every_class = np.arange(self.NUM_CLASSES)
    for name, (value, grad) in self.values_and_grads(0.99, step=3).items():
      with self.subTest(name):
        k = class_weight_references.centers(name)
        np.testing.assert_allclose(
          value, self.reference(name, every_class), rtol=2e-6
        )
        np.testing.assert_array_equal(grad[self.NUM_CLASSES * k :], 0.0)
        real = grad[: self.NUM_CLASSES * k].reshape(self.NUM_CLASSES, k, 5)
        self.assertTrue(np.all(np.abs(real).sum(axis=(1, 2)) > 0))

  def test_same_step_same_sample_other_step_other_sample(self):
    loss_fn = jax.jit(
      loss_binding.create_sharded_loss_fn(
        class_weight_references.loss_config(
          "soft_triple", negative_fraction=0.5
        ),
        self.mesh,
        self.NUM_CLASSES * 2,
      )
    )
    weights = jax.device_put(
      self.weights["soft_triple"], parallel.row_sharded(self.mesh)
    )
    _check_same_step_same_sample(self, loss_fn, self.x, self.labels, weights)


if __name__ == "__main__":
  absltest.main()
