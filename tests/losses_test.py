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
"""Tests of losses.py against float64 NumPy transcriptions of the equations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from proxy_nca_jax import losses


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def reference_proxy_nca(x, labels, proxies, form, scale):
  """Paper Eq. 4 (form='paper') or its softmax form, one sample at a time."""
  x, p = _unit(np.float64(x)), _unit(np.float64(proxies))
  total = 0.0
  for xi, yi in zip(x, labels, strict=True):
    d = scale * np.sum((xi[None, :] - p) ** 2, axis=1)
    others = [z for z in range(len(p)) if form == "softmax" or z != yi]
    total += -np.log(np.exp(-d[yi]) / np.sum(np.exp(-d[others])))
  return total / len(x)


def reference_triplet_semihard(x, labels, margin):
  """FaceNet semi-hard triplet loss, written as explicit loops."""
  x = _unit(np.float64(x))
  n = len(x)
  d = np.array(
    [[np.sum((x[i] - x[j]) ** 2) for j in range(n)] for i in range(n)]
  )
  hinges = []
  for a in range(n):
    negatives = [k for k in range(n) if labels[k] != labels[a]]
    if not negatives:
      continue
    for p in range(n):
      if p == a or labels[p] != labels[a]:
        continue
      farther = [d[a, k] for k in negatives if d[a, k] > d[a, p]]
      d_neg = min(farther) if farther else max(d[a, k] for k in negatives)
      hinges.append(max(margin + d[a, p] - d_neg, 0.0))
  return float(np.mean(hinges)) if hinges else 0.0


def numerical_grad(f, x, eps=1e-6):
  """Central finite differences of a float64 function."""
  x = np.float64(x)
  grad = np.zeros_like(x)
  for idx in np.ndindex(x.shape):
    step = np.zeros_like(x)
    step[idx] = eps
    grad[idx] = (f(x + step) - f(x - step)) / (2 * eps)
  return grad


class ProxyNcaLossTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.x = rng.normal(size=(12, 6)).astype(np.float32)
    self.labels = rng.integers(0, 5, size=12).astype(np.int32)
    self.proxies = rng.normal(size=(5, 6)).astype(np.float32)

  @parameterized.product(form=["paper", "softmax"], scale=[1.0, 3.0, 9.0])
  def test_value_matches_reference(self, form, scale):
    got = losses.proxy_nca_loss(
      jnp.asarray(self.x),
      jnp.asarray(self.labels),
      jnp.asarray(self.proxies),
      form=form,
      scale=scale,
    )
    want = reference_proxy_nca(self.x, self.labels, self.proxies, form, scale)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  @parameterized.parameters("paper", "softmax")
  def test_gradients_match_reference(self, form):
    scale = 3.0
    grad_x, grad_p = jax.grad(losses.proxy_nca_loss, argnums=(0, 2))(
      jnp.asarray(self.x),
      jnp.asarray(self.labels),
      jnp.asarray(self.proxies),
      form=form,
      scale=scale,
    )
    want_x = numerical_grad(
      lambda x: reference_proxy_nca(x, self.labels, self.proxies, form, scale),
      self.x,
    )
    want_p = numerical_grad(
      lambda p: reference_proxy_nca(self.x, self.labels, p, form, scale),
      self.proxies,
    )
    np.testing.assert_allclose(grad_x, want_x, atol=2e-5)
    np.testing.assert_allclose(grad_p, want_p, atol=2e-5)

  def test_paper_form_can_be_negative_and_is_below_softmax_form(self):
    # Embeddings sitting on their own proxy: the paper form goes negative
    # (the positive is not in the denominator), the softmax form cannot.
    proxies = np.eye(4, dtype=np.float32)
    labels = np.arange(4, dtype=np.int32)
    paper = losses.proxy_nca_loss(
      proxies, labels, proxies, form="paper", scale=3.0
    )
    soft = losses.proxy_nca_loss(
      proxies, labels, proxies, form="softmax", scale=3.0
    )
    # Hand value: d_pos = 0, d_neg = 3 * 2 = 6 for the 3 others.
    np.testing.assert_allclose(paper, np.log(3) - 6.0, rtol=1e-6)
    np.testing.assert_allclose(soft, np.log(1 + 3 * np.exp(-6.0)), rtol=1e-5)

  def test_invariant_to_embedding_and_proxy_norms(self):
    base = losses.proxy_nca_loss(self.x, self.labels, self.proxies, scale=2.0)
    scaled = losses.proxy_nca_loss(
      7.0 * self.x, self.labels, 0.1 * self.proxies, scale=2.0
    )
    np.testing.assert_allclose(base, scaled, rtol=1e-5)

  def test_zero_vectors_give_finite_loss_and_gradients(self):
    x = np.zeros((3, 4), np.float32)
    proxies = np.zeros((2, 4), np.float32)
    labels = np.array([0, 1, 0], np.int32)
    for form in losses.PROXY_NCA_FORMS:
      value, grads = jax.value_and_grad(losses.proxy_nca_loss, argnums=(0, 2))(
        x, labels, proxies, form=form
      )
      chex.assert_tree_all_finite((value, grads))

  def test_jit_matches_eager(self):
    fn = jax.jit(losses.proxy_nca_loss, static_argnames=("form", "scale"))
    eager = losses.proxy_nca_loss(
      self.x, self.labels, self.proxies, form="paper"
    )
    np.testing.assert_allclose(
      fn(self.x, self.labels, self.proxies, form="paper"), eager, rtol=1e-6
    )

  @parameterized.named_parameters(
    ("unknown_form", dict(form="nca"), "form must be one of"),
    ("bad_scale", dict(scale=0.0), "scale must be positive"),
  )
  def test_bad_options_raise(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      losses.proxy_nca_loss(self.x, self.labels, self.proxies, **kwargs)

  def test_shape_errors(self):
    with self.assertRaisesRegex(ValueError, "proxies must have shape"):
      losses.proxy_nca_loss(self.x, self.labels, self.proxies[:, :3])
    with self.assertRaisesRegex(ValueError, "labels must have shape"):
      losses.proxy_nca_loss(self.x, self.labels[:3], self.proxies)
    with self.assertRaisesRegex(ValueError, "at least two proxies"):
      losses.proxy_nca_loss(
        self.x, 0 * self.labels, self.proxies[:1], form="paper"
      )


class TripletSemihardLossTest(parameterized.TestCase):
  @parameterized.parameters(0, 1, 2)
  def test_value_matches_reference(self, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 5)).astype(np.float32)
    labels = rng.integers(0, 4, size=16).astype(np.int32)
    got = losses.triplet_semihard_loss(x, labels, margin=0.2)
    np.testing.assert_allclose(
      got, reference_triplet_semihard(x, labels, 0.2), rtol=1e-5, atol=1e-6
    )

  def test_gradient_matches_reference(self):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1], np.int32)
    got = jax.grad(losses.triplet_semihard_loss)(x, labels, margin=1.0)
    want = numerical_grad(
      lambda v: reference_triplet_semihard(v, labels, 1.0), x
    )
    np.testing.assert_allclose(got, want, atol=2e-5)

  def test_hand_computed_case(self):
    # Unit vectors at 0, 90 and 180 degrees: anchor 0 and positive 1 are at
    # squared distance 2; the only negative (2) is at 2 from 1 and 4 from 0.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    labels = np.array([0, 0, 1], np.int32)
    # Pair (0, 1): semi-hard negative at 4 -> max(0.5 + 2 - 4, 0) = 0.
    # Pair (1, 0): d(1, 2) = 2 is not > 2, so the farthest negative (2) is
    # used -> max(0.5 + 2 - 2, 0) = 0.5. Mean over the two pairs: 0.25.
    got = losses.triplet_semihard_loss(x, labels, margin=0.5)
    np.testing.assert_allclose(got, 0.25, rtol=1e-6)

  def test_single_class_batch_is_zero_and_finite(self):
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    labels = np.zeros(6, np.int32)
    value, grad = jax.value_and_grad(losses.triplet_semihard_loss)(x, labels)
    self.assertEqual(float(value), 0.0)
    chex.assert_tree_all_finite(grad)


if __name__ == "__main__":
  absltest.main()
