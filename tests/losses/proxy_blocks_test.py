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
"""Proxy-NCA taken a block of proxies at a time (losses/proxy_blocks.py).

Against the float64 transcription of Eq. 4 (tests/testing/loss_references.py)
and its finite-difference gradients, on one device and with the proxies
sharded over 8; and the point of it, measured on the compiled step: no (B, C)
array. CosFace and ArcFace in blocks (losses/margin_softmax.py,
``blocked_terms``) against their own float64 loop transcription below.
"""

import contextlib
import functools
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from proxy_nca_jax import losses, parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.losses import margin_softmax, proxy_blocks, sharded
from tests.testing import loss_references, native_kernels, references

NUM_CLASSES = 13
# (form, label smoothing, embedding norm a, proxy norm b), as the reference
# takes them.
CASES = {
  "softmax": ("softmax", 0.0, 1.0, 1.0),
  "paper": ("paper", 0.0, 1.0, 1.0),
  "smoothed": ("softmax", 0.2, 1.0, 1.0),
  "paper_norms": ("paper", 0.0, 2.0, 0.5),
}


def _problem(seed: int = 0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(10, 6)).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, size=10).astype(np.int32)
  proxies = rng.normal(size=(NUM_CLASSES, 6)).astype(np.float32)
  return x, labels, proxies


def _options(case: str) -> dict[str, object]:
  form, smoothing, a, b = CASES[case]
  return dict(
    form=form,
    scale=3.0,
    label_smoothing=smoothing,
    embedding_norm=a,
    proxy_norm=b,
  )


def _reference(case: str, x, labels, proxies) -> float:
  form, smoothing, a, b = CASES[case]
  return loss_references.proxy_nca(
    x, labels, proxies, form, 3.0, smoothing=smoothing, a=a, b=b
  )


def _assert_matches_reference(
  case: str, loss, x, labels, proxies, proxy_rows
) -> np.ndarray:
  """``loss(x, labels, p)``'s value and gradients against the float64
  reference and its finite differences on ``proxies`` (C, D);
  ``proxy_rows`` (C or more rows, e.g. padded) is what the loss is given.
  Returns the proxies' gradient, all rows."""
  value, (grad_x, grad_p) = jax.jit(
    jax.value_and_grad(
      lambda x, p: loss(x, jnp.asarray(labels), p), argnums=(0, 1)
    )
  )(x, proxy_rows)

  def ref(x, p):
    return _reference(case, x, labels, p)

  np.testing.assert_allclose(value, ref(x, proxies), rtol=2e-6, atol=2e-6)
  np.testing.assert_allclose(
    grad_x, references.numerical_grad(lambda v: ref(v, proxies), x), atol=2e-5
  )
  np.testing.assert_allclose(
    grad_p[: len(proxies)],
    references.numerical_grad(lambda v: ref(x, v), proxies),
    atol=2e-5,
  )
  return np.asarray(grad_p)


def _sums(kernel: str) -> contextlib.AbstractContextManager:
  """Where the blocked sums are taken: "native" (native/proxy_sums.cc, which
  the loss takes on CPUs with AVX-512; forced here on any CPU) or "xla"
  (XLA's blocks, as elsewhere)."""
  if kernel == "native":
    native_kernels.require("proxy_sums")
  return mock.patch.object(
    proxy_blocks, "native_sums", return_value=kernel == "native"
  )


class BlockedProxyNcaTest(parameterized.TestCase):
  # XLA's block sizes: one proxy, a size that leaves a remainder (13 =
  # 2 x 5 + 3) and one that divides nothing evenly but the whole (12: one
  # full block and a remainder of one); the native kernel takes its own
  # blocks (native_proxy_sums_test.py has their remainders), any size below
  # the proxies' number sends the sums to it.
  @parameterized.product(
    [dict(block_size=size, kernel="xla") for size in (1, 5, 12)]
    + [dict(block_size=5, kernel="native")],
    case=list(CASES),
  )
  def test_value_and_gradients_match_float64_reference(
    self, case, block_size, kernel
  ):
    x, labels, proxies = _problem()
    loss = functools.partial(
      losses.proxy_nca_loss, block_size=block_size, **_options(case)
    )
    with _sums(kernel):
      _assert_matches_reference(case, loss, x, labels, proxies, proxies)

  def test_labels_outside_the_proxies_are_left_out_inside_jit(self):
    x, labels, proxies = _problem(1)
    outside = labels.copy()
    outside[:3] = [-1, NUM_CLASSES, 99]
    for form in ("paper", "softmax"):
      got = jax.jit(
        functools.partial(
          losses.proxy_nca_loss, form=form, scale=2.0, block_size=4
        )
      )(x, outside, proxies)
      want = loss_references.proxy_nca(x[3:], labels[3:], proxies, form, 2.0)
      np.testing.assert_allclose(got, want, rtol=2e-6)

  def test_zero_vectors_give_finite_values_and_gradients(self):
    x, labels, proxies = _problem(2)
    x[0] = 0.0
    proxies[labels[1]] = 0.0
    value, grads = jax.jit(
      jax.value_and_grad(
        lambda x, p: losses.proxy_nca_loss(x, labels, p, block_size=4),
        argnums=(0, 1),
      )
    )(x, proxies)
    self.assertTrue(np.isfinite(value))
    for grad in grads:
      self.assertTrue(np.all(np.isfinite(grad)))

  def test_no_batch_by_proxies_array_is_formed(self):
    # The compiled step's scratch memory, as XLA reports it: the plain
    # formulation holds several (B, C) float32 arrays, the blocked one a
    # few (B, block) ones.
    batch, num_proxies, block = 16, 4096, 64
    x = jnp.ones((batch, 8))
    proxies = jnp.ones((num_proxies, 8))
    labels = jnp.zeros((batch,), jnp.int32)

    def scratch_bytes(block_size: int) -> int:
      step = jax.jit(
        jax.value_and_grad(
          lambda x, p: losses.proxy_nca_loss(
            x, labels, p, block_size=block_size
          ),
          argnums=(0, 1),
        )
      )
      compiled = step.lower(x, proxies).compile()
      return compiled.memory_analysis().temp_size_in_bytes

    batch_by_proxies = batch * num_proxies * 4
    self.assertGreaterEqual(scratch_bytes(num_proxies), batch_by_proxies)
    self.assertLess(scratch_bytes(block), batch_by_proxies // 8)

  def test_automatic_choice_blocks_only_large_proxy_matrices(self):
    choose = proxy_blocks.chosen_block_size
    self.assertIsNone(choose(None, proxy_blocks.AUTO_ABOVE))
    # 65,537 is prime: blocks of 4,096 and a remainder.
    self.assertEqual(choose(None, proxy_blocks.AUTO_ABOVE + 1), 4096)
    # Else the largest divisor in (2,048, 4,096]: no remainder block.
    self.assertEqual(choose(None, 1_000_000), 4000)
    self.assertEqual(choose(None, 125_000), 3125)
    self.assertEqual(choose(None, 3000 * 40), 4000)
    self.assertEqual(choose(None, 4096 * 17), 4096)
    self.assertIsNone(choose(13, 13))  # One block is every logit at once.
    self.assertEqual(choose(5, 13), 5)

  def test_bad_block_size_is_a_clear_error(self):
    x, labels, proxies = _problem()
    for bad in (0, -3, 2.5):
      with self.assertRaisesRegex(
        ValueError, "block_size must be a positive integer or None"
      ):
        losses.proxy_nca_loss(x, labels, proxies, block_size=bad)


class ShardedBlockedProxyNcaTest(parameterized.TestCase):
  # 13 proxies on 8 devices: 16 rows, 2 per device (the last three rows
  # padding); blocks of one row, and of two with 37 proxies (5 per device:
  # two full blocks and a remainder).
  # The native kernel ignores the block size: its case is the one with a
  # device that holds padding rows only.
  @parameterized.product(
    [dict(shape=shape, kernel="xla") for shape in ((NUM_CLASSES, 1), (37, 2))]
    + [dict(shape=(NUM_CLASSES, 1), kernel="native")],
    case=list(CASES),
  )
  def test_matches_float64_reference_and_padding_gets_no_gradient(
    self, case, shape, kernel
  ):
    num_proxies, block_size = shape
    mesh = parallel.create_mesh()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 6)).astype(np.float32)
    labels = rng.integers(0, num_proxies, size=8).astype(np.int32)
    proxies = rng.normal(size=(num_proxies, 6)).astype(np.float32)
    padded = jax.device_put(
      proxies_lib.pad_proxies(jnp.asarray(proxies), mesh.size),
      parallel.row_sharded(mesh),
    )
    loss = functools.partial(
      sharded.sharded_proxy_nca_loss,
      mesh=mesh,
      num_proxies=num_proxies,
      block_size=block_size,
      **_options(case),
    )
    with _sums(kernel):
      grad_p = _assert_matches_reference(case, loss, x, labels, proxies, padded)
    np.testing.assert_array_equal(grad_p[num_proxies:], 0.0)


def _margin_softmax_reference(x, labels, weights, name, margin, scale):
  """CosFace / ArcFace in float64 loops: -log softmax of the target logit
  s psi(cos_y) among s cos_c (c != y); ArcFace's psi = cos(theta + m) up to
  theta = pi - m, then cos theta - m sin m."""
  x, w = np.float64(x), np.float64(weights)
  total = 0.0
  for i, y in enumerate(labels):
    cosines = [
      float(x[i] @ w[c]) / np.sqrt((x[i] @ x[i]) * (w[c] @ w[c]))
      for c in range(len(w))
    ]
    target = cosines[y]
    if name == "cosface":
      target -= margin
    elif np.arccos(target) <= np.pi - margin:
      target = np.cos(np.arccos(target) + margin)
    else:
      target -= margin * np.sin(margin)
    logits = [scale * target] + [
      scale * cos for c, cos in enumerate(cosines) if c != y
    ]
    peak = max(logits)
    lse = peak + np.log(sum(np.exp(v - peak) for v in logits))
    total += lse - scale * target
  return total / len(labels)


class BlockedMarginSoftmaxTest(parameterized.TestCase):
  # Scale 4 keeps float32's rounding of the blocked sums below the
  # tolerance.
  # One device: a remainder (13 = 2 x 5 + 3) and one full block plus one;
  # 8 devices (2 classes each, 3 padding rows): blocks of one class.
  @parameterized.product(
    name=["cosface", "arcface"], blocks=[(5, 1), (12, 1), (1, 8)]
  )
  def test_value_and_gradients_match_float64_reference(self, name, blocks):
    block_size, sharded_over = blocks
    x, labels, weights = _problem(5)
    # Sample 0 at 170 degrees from its class weight: past pi - m.
    w0 = weights[labels[0]] / np.linalg.norm(weights[labels[0]])
    other = x[0] - (x[0] @ w0) * w0
    x[0] = np.cos(np.radians(170)) * w0 + np.sin(
      np.radians(170)
    ) * other / np.linalg.norm(other)
    options = dict(margin=0.4, scale=4.0)

    def ref(x, w):
      return _margin_softmax_reference(x, labels, w, name, **options)

    if sharded_over == 1:
      loss = functools.partial(
        getattr(losses, f"{name}_loss"), block_size=block_size, **options
      )
      rows = weights
    else:
      mesh = parallel.create_mesh()
      spec = getattr(margin_softmax, f"{name}_spec")(**options)
      loss = functools.partial(
        sharded.sharded_margin_softmax_loss,
        spec=spec,
        mesh=mesh,
        num_classes=NUM_CLASSES,
        block_size=block_size,
      )
      rows = jax.device_put(
        proxies_lib.pad_proxies(jnp.asarray(weights), mesh.size),
        parallel.row_sharded(mesh),
      )
    value, (grad_x, grad_w) = jax.jit(
      jax.value_and_grad(
        lambda x, w: loss(x, jnp.asarray(labels), w), argnums=(0, 1)
      )
    )(x, rows)
    np.testing.assert_allclose(value, ref(x, weights), rtol=2e-6)
    np.testing.assert_allclose(
      grad_x, references.numerical_grad(lambda v: ref(v, weights), x), atol=2e-5
    )
    np.testing.assert_allclose(
      grad_w[:NUM_CLASSES],
      references.numerical_grad(lambda v: ref(x, v), weights),
      atol=2e-5,
    )
    np.testing.assert_array_equal(grad_w[NUM_CLASSES:], 0.0)


if __name__ == "__main__":
  absltest.main()
