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
"""The dynamic-margin ArcFace (Ha et al. 2020): margins by class size.

The margins against values computed by hand from m = a n^-lambda + b; the
loss against a float64 loop transcription with each class's own margin
(pytorch-metric-learning 3.0's DynamicArcFaceLoss is not the installed 2.9,
so its formula is transcribed here, margins in radians); the binding reads
the class sizes the trainer gives it.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from proxy_nca_jax import errors, losses, parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.losses import margin_softmax, sharded
from proxy_nca_jax.training import loss_binding
from tests.testing import loss_cases


def _reference(x, labels, weights, margins, scale, k):
  """float64 loops: SubCenter-ArcFace with margin margins[y] (radians)."""
  x, w = np.float64(x), np.float64(weights)
  total = 0.0
  for i, y in enumerate(labels):
    unit = x[i] / math.sqrt(x[i] @ x[i])
    similarity = []
    for c in range(len(w) // k):
      similarity.append(
        max(
          float(unit @ w[c * k + j]) / math.sqrt(w[c * k + j] @ w[c * k + j])
          for j in range(k)
        )
      )
    theta, m = math.acos(similarity[y]), margins[y]
    if theta <= math.pi - m:
      target = math.cos(theta + m)
    else:
      target = similarity[y] - m * math.sin(m)
    logits = [scale * target] + [
      scale * s for c, s in enumerate(similarity) if c != y
    ]
    peak = max(logits)
    total += peak + math.log(sum(math.exp(v - peak) for v in logits))
    total -= scale * target
  return total / len(labels)


class DynamicMarginsTest(parameterized.TestCase):
  def test_margins_by_hand(self):
    # Sizes 16, 81, 1: n^-1/4 = 0.5, 1/3, 1. Smallest (1) gets 0.5, the
    # largest (81) 0.05: a = 0.45 / (1 - 1/3) = 0.675, b = 0.05 - 0.675 / 3
    # = -0.175, so size 16 gets 0.675 / 2 - 0.175 = 0.1625.
    margins = margin_softmax.dynamic_margins(np.array([16, 81, 1]))
    np.testing.assert_allclose(margins, [0.1625, 0.05, 0.5], rtol=1e-12)

  def test_equal_sizes_get_the_upper_bound(self):
    np.testing.assert_array_equal(
      margin_softmax.dynamic_margins(np.array([7, 7, 7])), [0.5, 0.5, 0.5]
    )

  @parameterized.parameters(
    dict(counts=[3, 0], message="positive count"),
    dict(counts=[3, 4], bounds=(0.5, 0.1), message="lower <= upper"),
    dict(counts=[3, 4], bounds=(0.1, 4.0), message="< pi"),
  )
  def test_bad_input_is_a_clear_error(self, counts, message, bounds=None):
    options = {} if bounds is None else {"margin_bounds": bounds}
    with self.assertRaisesRegex(errors.InvalidInputError, message):
      margin_softmax.dynamic_margins(np.array(counts), **options)


class DynamicArcFaceLossTest(parameterized.TestCase):
  @parameterized.parameters(1, 3)
  def test_value_and_gradient_match_float64_reference(self, k):
    rng = np.random.default_rng(k)
    counts = np.array([5, 40, 1, 300])
    x = rng.normal(size=(9, 5))
    labels = rng.integers(0, 4, size=9)
    labels[:2] = [2, 3]  # The largest and smallest margins both occur.
    weights = rng.normal(size=(4 * k, 5))
    margins = margin_softmax.dynamic_margins(counts)
    options = dict(class_counts=counts, scale=16.0, centers_per_class=k)
    with jax.enable_x64(True):
      # Jitted: one compilation instead of one per operation.
      value, grad = jax.jit(
        jax.value_and_grad(
          lambda x: losses.dynamic_arcface_loss(
            x, jnp.asarray(labels), jnp.asarray(weights), **options
          )
        )
      )(jnp.asarray(x))
    ref = _reference(x, labels, weights, margins, 16.0, k)
    np.testing.assert_allclose(value, ref, rtol=1e-10)
    step = 1e-6
    numerical = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
      up, down = x.copy(), x.copy()
      up[index] += step
      down[index] -= step
      numerical[index] = (
        _reference(up, labels, weights, margins, 16.0, k)
        - _reference(down, labels, weights, margins, 16.0, k)
      ) / (2 * step)
    np.testing.assert_allclose(grad, numerical, atol=1e-6)

  def test_sharded_and_sampled_keep_each_class_margin(self):
    # 13 classes of very different sizes on 2 devices (14 padded classes),
    # sampling with fraction 0.99: every class is drawn, but each device
    # reorders its classes (the batch's first), so a sample's label is a
    # position among them and its margin must still be its class's.
    rng = np.random.default_rng(4)
    counts = rng.integers(1, 500, size=13)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    labels = rng.integers(0, 13, size=8).astype(np.int32)
    weights = rng.normal(size=(13 * 3, 4)).astype(np.float32)
    margins = margin_softmax.dynamic_margins(counts)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), (parallel.DATA_AXIS,))
    padded = proxies_lib.pad_proxies(jnp.asarray(weights), 2, 3)
    spec = margin_softmax.dynamic_arcface_spec(class_counts=counts, scale=16.0)
    # Jitted: one compilation instead of one per operation of each shard.
    value = jax.jit(
      functools.partial(
        sharded.sharded_margin_softmax_loss,
        spec=spec,
        mesh=mesh,
        num_classes=13,
        negative_fraction=0.99,
      )
    )(x, jnp.asarray(labels), padded, key=jax.random.key(0))
    np.testing.assert_allclose(
      value, _reference(x, labels, weights, margins, 16.0, 3), rtol=2e-6
    )

  def test_binding_reads_the_class_sizes(self):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2], np.int32)
    weights = rng.normal(size=(9, 4)).astype(np.float32)
    counts = np.array([10, 100, 1000])
    config = loss_cases.loss_config("dynamic_arcface")
    loss_fn = loss_binding.create_loss_fn(config, class_counts=counts)
    margins = margin_softmax.dynamic_margins(counts)
    np.testing.assert_allclose(
      jax.jit(loss_fn)(x, labels, weights, 0),
      _reference(x, labels, weights, margins, 64.0, 3),
      rtol=1e-5,
    )
    with self.assertRaisesRegex(errors.InvalidInputError, "class_counts"):
      loss_binding.create_loss_fn(config)


if __name__ == "__main__":
  absltest.main()
