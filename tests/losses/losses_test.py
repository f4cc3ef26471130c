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

import functools

import chex
import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized
from hypothesis import strategies as st

from configs import fashion_mnist
from proxy_nca_jax import losses
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.losses import _checks, dynamic, pair
from proxy_nca_jax.training import loss_binding
from tests.testing import references


def _jit(fn, **options):
  """``fn`` with ``options`` bound, jitted (eager evaluation is slower)."""
  return jax.jit(functools.partial(fn, **options))


def _create_loss_fn(loss_config):
  """``loss_binding.create_loss_fn`` at step 0 (the step only draws sampled
  negatives: tests/losses/sampled_proxies_test.py)."""
  loss_fn = loss_binding.create_loss_fn(loss_config)
  return lambda x, labels, proxies: loss_fn(x, labels, proxies, 0)


def _unit(v: np.ndarray) -> np.ndarray:
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def reference_proxy_nca(
  x, labels, proxies, form, scale, smoothing=0.0, a=1.0, b=1.0
):
  """Paper Eq. 4 (form='paper') or its softmax form, one sample at a time.

  With smoothing > 0 (softmax form): cross-entropy against the target
  1 - smoothing on the class proxy and smoothing / (C - 1) elsewhere.
  Distances are |a x - b p|^2 between normalised vectors.
  """
  x, p = a * _unit(np.float64(x)), b * _unit(np.float64(proxies))
  total = 0.0
  for xi, yi in zip(x, labels, strict=True):
    d = scale * np.sum((xi[None, :] - p) ** 2, axis=1)
    if smoothing:
      log_q = -d - np.log(np.sum(np.exp(-d)))
      target = np.full(len(p), smoothing / (len(p) - 1))
      target[yi] = 1.0 - smoothing
      total += -np.sum(target * log_q)
      continue
    others = [z for z in range(len(p)) if form == "softmax" or z != yi]
    total += -np.log(np.exp(-d[yi]) / np.sum(np.exp(-d[others])))
  return total / len(x)


def _proxy_distances(x, proxies, a=1.0, b=1.0):
  x, p = a * _unit(np.float64(x)), b * _unit(np.float64(proxies))
  return np.array([[np.sum((xi - pz) ** 2) for pz in p] for xi in x])


def _dynamic_targets(x, proxies, similar, dissimilar):
  """Yields (anchor, positive proxy, negative proxies) per valid anchor.

  Groups: i and the samples similar to it. A group claims proxy q when more
  of its samples have q as nearest proxy than of any group of a negative of
  i. Negatives of i: proxies claimed by its negatives' groups; positive:
  i's nearest proxy among the rest.
  """
  d = _proxy_distances(x, proxies)
  nearest = [int(np.argmin(row)) for row in d]
  n, num_proxies = len(x), len(proxies)

  def votes(i, q):
    group = [i] + [j for j in range(n) if similar[i][j]]
    return sum(nearest[j] == q for j in group)

  def claims(i, q):
    rivals = [votes(k, q) for k in range(n) if dissimilar[i][k]]
    return votes(i, q) > max(rivals, default=0)

  for i in range(n):
    negatives = [
      q
      for q in range(num_proxies)
      if any(claims(k, q) for k in range(n) if dissimilar[i][k])
    ]
    free = [q for q in range(num_proxies) if q not in negatives]
    if negatives and free:
      yield i, min(free, key=lambda q: d[i, q]), negatives


def reference_dynamic_proxy_nca(
  x, proxies, similar, dissimilar, form, scale, a=1.0, b=1.0
):
  d = scale * _proxy_distances(x, proxies, a, b)
  losses_ = []
  for i, pos, negatives in _dynamic_targets(x, proxies, similar, dissimilar):
    denominator = sum(np.exp(-d[i, z]) for z in negatives)
    if form == "softmax":
      denominator += np.exp(-d[i, pos])
    losses_.append(-np.log(np.exp(-d[i, pos]) / denominator))
  return float(np.mean(losses_)) if losses_ else 0.0


def reference_proxy_ranking(x, labels, proxies, margin):
  d = _proxy_distances(x, proxies)
  terms = [
    max(margin + d[i, y] - d[i, z], 0.0)
    for i, y in enumerate(labels)
    for z in range(len(proxies))
    if z != y
  ]
  return float(np.mean(terms))


def reference_dynamic_proxy_ranking(x, proxies, similar, dissimilar, margin):
  d = _proxy_distances(x, proxies)
  losses_ = []
  for i, pos, negatives in _dynamic_targets(x, proxies, similar, dissimilar):
    losses_.append(
      np.mean([max(margin + d[i, pos] - d[i, z], 0.0) for z in negatives])
    )
  return float(np.mean(losses_)) if losses_ else 0.0


def reference_proxy_anchor(x, labels, proxies, alpha, delta):
  """Kim et al. 2020, Eq. 4, one proxy at a time."""
  x, p = _unit(np.float64(x)), _unit(np.float64(proxies))
  pulls, pushes = [], []
  for c in range(len(p)):
    s = x @ p[c]
    members = [i for i, y in enumerate(labels) if y == c]
    others = [i for i, y in enumerate(labels) if y != c]
    if members:
      pulls.append(np.log1p(np.sum(np.exp(-alpha * (s[members] - delta)))))
    pushes.append(np.log1p(np.sum(np.exp(alpha * (s[others] + delta)))))
  return np.mean(pulls) + np.mean(pushes)


def label_relations(labels):
  labels = np.asarray(labels)
  same = labels[:, None] == labels[None, :]
  return same & ~np.eye(len(labels), dtype=bool), ~same


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
    grad_x, grad_p = jax.jit(
      jax.grad(losses.proxy_nca_loss, argnums=(0, 2)),
      static_argnames=("form", "scale"),
    )(
      jnp.asarray(self.x),
      jnp.asarray(self.labels),
      jnp.asarray(self.proxies),
      form=form,
      scale=scale,
    )
    want_x = references.numerical_grad(
      lambda x: reference_proxy_nca(x, self.labels, self.proxies, form, scale),
      self.x,
    )
    want_p = references.numerical_grad(
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
    for form in _checks.PROXY_NCA_FORMS:
      value, grads = jax.jit(
        jax.value_and_grad(losses.proxy_nca_loss, argnums=(0, 2)),
        static_argnames="form",
      )(x, labels, proxies, form=form)
      chex.assert_tree_all_finite((value, grads))
      # Bounded (geometry.l2_normalize's choice): the gradient of a zero
      # row is the upstream one, O(scale), not O(1 / eps).
      for grad in grads:
        self.assertLess(float(np.max(np.abs(grad))), 100.0)

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
    got = pair.triplet_semihard_loss(x, labels, margin=0.2)
    np.testing.assert_allclose(
      got, reference_triplet_semihard(x, labels, 0.2), rtol=1e-5, atol=1e-6
    )

  def test_gradient_matches_reference(self):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1], np.int32)
    got = jax.jit(
      jax.grad(pair.triplet_semihard_loss), static_argnames="margin"
    )(x, labels, margin=1.0)
    want = references.numerical_grad(
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
    got = pair.triplet_semihard_loss(x, labels, margin=0.5)
    np.testing.assert_allclose(got, 0.25, rtol=1e-6)

  def test_single_class_batch_is_zero_and_finite(self):
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    labels = np.zeros(6, np.int32)
    value, grad = jax.jit(jax.value_and_grad(pair.triplet_semihard_loss))(
      x, labels
    )
    self.assertEqual(float(value), 0.0)
    chex.assert_tree_all_finite(grad)


def _data(seed, batch=12, dim=5, classes=4, num_proxies=None):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, dim)).astype(np.float32)
  labels = rng.integers(0, classes, size=batch).astype(np.int32)
  proxies = rng.normal(size=(num_proxies or classes, dim)).astype(np.float32)
  return x, labels, proxies


class ProxyNcaExtensionsTest(parameterized.TestCase):
  @parameterized.parameters((0.1, (1.0, 1.0)), (0.4, (2.0, 0.5)))
  def test_label_smoothing_and_norms_match_reference(self, smoothing, norms):
    x, labels, proxies = _data(0)
    a, b = norms
    loss = jax.jit(
      jax.value_and_grad(
        lambda x, p: losses.proxy_nca_loss(
          x,
          labels,
          p,
          scale=3.0,
          label_smoothing=smoothing,
          embedding_norm=a,
          proxy_norm=b,
        ),
        argnums=(0, 1),
      )
    )
    value, (grad_x, grad_p) = loss(x, proxies)

    def ref(x, p):
      return reference_proxy_nca(
        x, labels, p, "softmax", 3.0, smoothing=smoothing, a=a, b=b
      )

    np.testing.assert_allclose(value, ref(x, proxies), rtol=1e-5)
    np.testing.assert_allclose(
      grad_x, references.numerical_grad(lambda v: ref(v, proxies), x), atol=2e-5
    )
    np.testing.assert_allclose(
      grad_p, references.numerical_grad(lambda v: ref(x, v), proxies), atol=2e-5
    )

  @parameterized.parameters("paper", "softmax")
  def test_norms_only_enter_through_their_product_with_scale(self, form):
    x, labels, proxies = _data(1)
    fn = jax.jit(
      jax.value_and_grad(losses.proxy_nca_loss, argnums=(0, 2)),
      static_argnames=("form", "scale", "embedding_norm", "proxy_norm"),
    )
    split = fn(
      x, labels, proxies, form=form, embedding_norm=2.0, proxy_norm=4.5
    )
    single = fn(x, labels, proxies, form=form, scale=9.0)
    chex.assert_trees_all_close(split, single, rtol=1e-5, atol=1e-6)

  def test_zero_smoothing_is_the_softmax_form(self):
    x, labels, proxies = _data(2)
    np.testing.assert_allclose(
      losses.proxy_nca_loss(x, labels, proxies, label_smoothing=0.0),
      reference_proxy_nca(x, labels, proxies, "softmax", 1.0),
      rtol=1e-5,
    )

  def test_labels_outside_the_proxies_are_left_out_inside_jit(self):
    # Traced labels cannot be checked: such samples are left out. (Concrete
    # ones raise: BoundaryErrorsTest.)
    x, labels, proxies = _data(3)
    outside = labels.copy()
    outside[:4] = [-1, 4, 99, 7]
    for form in _checks.PROXY_NCA_FORMS:
      np.testing.assert_allclose(
        _jit(losses.proxy_nca_loss, form=form, scale=2.0)(x, outside, proxies),
        reference_proxy_nca(x[4:], labels[4:], proxies, form, 2.0),
        rtol=1e-5,
      )

  @parameterized.named_parameters(
    ("smoothing_paper", dict(label_smoothing=0.1, form="paper"), "softmax"),
    (
      "smoothing_dynamic",
      dict(label_smoothing=0.1, assignment="dynamic"),
      "assignment='static'",
    ),
    ("smoothing_one", dict(label_smoothing=1.0), r"in \[0, 1\)"),
    ("assignment", dict(assignment="nearest"), "assignment must be one of"),
    ("norm", dict(proxy_norm=0.0), "proxy_norm must be positive"),
  )
  def test_bad_options_raise(self, kwargs, message):
    x, labels, proxies = _data(0)
    with self.assertRaisesRegex(ValueError, message):
      losses.proxy_nca_loss(x, labels, proxies, **kwargs)


class DynamicAssignmentTest(parameterized.TestCase):
  @parameterized.parameters(("paper", 2), ("softmax", 4), ("paper", 7))
  def test_labels_match_reference(self, form, num_proxies):
    # Fewer, as many and more proxies than the 4 classes.
    x, labels, proxies = _data(4, num_proxies=num_proxies)
    similar, dissimilar = label_relations(labels)
    fn = jax.jit(
      jax.value_and_grad(
        lambda x, p: losses.proxy_nca_loss(
          x, labels, p, form=form, scale=2.0, assignment="dynamic"
        ),
        argnums=(0, 1),
      )
    )
    value, (grad_x, grad_p) = fn(x, proxies)

    def ref(x, p):
      return reference_dynamic_proxy_nca(x, p, similar, dissimilar, form, 2.0)

    np.testing.assert_allclose(value, ref(x, proxies), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
      grad_x, references.numerical_grad(lambda v: ref(v, proxies), x), atol=2e-5
    )
    np.testing.assert_allclose(
      grad_p, references.numerical_grad(lambda v: ref(x, v), proxies), atol=2e-5
    )

  def test_triplets_match_reference_and_labels(self):
    x, labels, proxies = _data(5, num_proxies=3)
    n = len(labels)
    triplets = np.array(
      [
        (a, p, k)
        for a in range(n)
        for p in range(n)
        for k in range(n)
        if a != p and labels[a] == labels[p] and labels[k] != labels[a]
      ]
    ).T
    similar, dissimilar = proxies_lib.relations_from_triplets(
      *jnp.asarray(triplets), n
    )
    want_similar, want_dissimilar = label_relations(labels)
    # Anchors with no negative make no triplet, so they have no positive.
    want_similar &= want_dissimilar.any(axis=1)[:, None]
    np.testing.assert_array_equal(similar, want_similar)
    np.testing.assert_array_equal(dissimilar, want_dissimilar)
    for form in _checks.PROXY_NCA_FORMS:
      from_triplets = _jit(
        dynamic.dynamic_proxy_nca_loss, form=form, scale=3.0
      )(x, proxies, similar, dissimilar)
      from_labels = _jit(
        losses.proxy_nca_loss, form=form, scale=3.0, assignment="dynamic"
      )(x, labels, proxies)
      np.testing.assert_allclose(from_triplets, from_labels, rtol=1e-6)

  def test_relaxed_triplets_use_only_the_given_relations(self):
    x, _, proxies = _data(6, batch=5, num_proxies=3)
    # Anchor 0 is like 1 and unlike 2; anchor 3 is like 4 and unlike 0.
    # The -1 row and the out-of-range index 5 pad the triplets and are
    # ignored.
    anchors = jnp.array([0, 3, -1, 0])
    positives = jnp.array([1, 4, 2, 1])
    negatives = jnp.array([2, 0, 3, 5])
    similar, dissimilar = proxies_lib.relations_from_triplets(
      anchors, positives, negatives, 5
    )
    want_similar = np.zeros((5, 5), bool)
    want_similar[0, 1] = want_similar[3, 4] = True
    want_dissimilar = np.zeros((5, 5), bool)
    want_dissimilar[0, 2] = want_dissimilar[3, 0] = True
    np.testing.assert_array_equal(similar, want_similar)
    np.testing.assert_array_equal(dissimilar, want_dissimilar)
    got = dynamic.dynamic_proxy_nca_loss(
      x, proxies, similar, dissimilar, form="paper"
    )
    want = reference_dynamic_proxy_nca(
      x, proxies, want_similar, want_dissimilar, "paper", 1.0
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  def test_arg_min_carries_no_gradient(self):
    # Anchor 0, its positive 1 and its negative 2: the loss only moves the
    # anchor's positive and negative proxies.
    x, _, proxies = _data(7, batch=3, num_proxies=5)
    similar = jnp.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], bool)
    dissimilar = jnp.array([[0, 0, 1], [0, 0, 0], [0, 0, 0]], bool)
    grad_p = jax.jit(
      jax.grad(
        functools.partial(dynamic.dynamic_proxy_nca_loss, form="paper"),
        argnums=1,
      )
    )(x, proxies, similar, dissimilar)
    ((anchor, positive, negatives),) = _dynamic_targets(
      x, proxies, np.asarray(similar), np.asarray(dissimilar)
    )
    self.assertEqual(anchor, 0)
    touched = np.flatnonzero(np.abs(grad_p).sum(axis=1) > 0)
    self.assertCountEqual(touched, {positive, *negatives})

  def test_claims_decide_positive_and_negative_proxies(self):
    # Proxies at 0, 120 and 240 degrees. Class A: two samples near proxy 0
    # and one (sample 2) at 100 degrees, nearest proxy 1. Class B: two
    # samples near proxy 1. B claims proxy 1 (2 votes to 1), A proxy 0.
    def unit(degrees):
      radians = np.deg2rad(degrees)
      return np.stack([np.cos(radians), np.sin(radians)], -1)

    proxies = unit(np.array([0.0, 120.0, 240.0]))
    x = unit(np.array([5.0, -5.0, 100.0, 115.0, 125.0]))
    labels = np.array([0, 0, 0, 1, 1])
    similar, dissimilar = proxies_lib.relations_from_labels(jnp.asarray(labels))
    positive, negatives = proxies_lib.dynamic_targets(
      proxies_lib.proxy_distances(x, proxies), similar, dissimilar
    )
    # Sample 2 sits at B's proxy: it is pushed from it and pulled to its
    # nearest unclaimed-by-B proxy, A's proxy 0 (100 degrees away, proxy 2 is
    # 140 degrees away); B's samples keep proxy 1 and are pushed from 0.
    np.testing.assert_array_equal(positive, [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(negatives, [[0, 1, 0]] * 3 + [[1, 0, 0]] * 2)

  def test_a_shared_nearest_proxy_supervises_no_anchor(self):
    # Two classes of three samples, all nearest proxy 0 (3 votes each): no
    # group claims it, so no anchor has a negative, and the loss and its
    # gradients are 0 (the start of GLYPHS-ZS's dynamic runs, docs/glyphs_rq5).
    rng = np.random.default_rng(3)
    proxies = _unit(rng.normal(size=(4, 5))).astype(np.float32)
    x = (proxies[0] + 0.01 * rng.normal(size=(6, 5))).astype(np.float32)
    labels = jnp.array([0, 0, 0, 1, 1, 1])
    similar, dissimilar = proxies_lib.relations_from_labels(labels)
    _, negatives = proxies_lib.dynamic_targets(
      proxies_lib.proxy_distances(x, proxies), similar, dissimilar
    )
    self.assertFalse(np.any(proxies_lib.supervised_anchors(negatives)))
    loss, grads = jax.value_and_grad(
      functools.partial(dynamic.dynamic_proxy_nca_loss, scale=8.0),
      argnums=(0, 1),
    )(jnp.asarray(x), jnp.asarray(proxies), similar, dissimilar)
    self.assertEqual(float(loss), 0.0)
    for grad in grads:
      np.testing.assert_array_equal(grad, 0.0)
    # Sample 2 moved to proxy 3 breaks the tie: class 1 claims proxy 0 (3
    # votes to 2), class 0 proxy 3 (1 to 0), so every anchor has a negative:
    # the proxy the other class claims.
    x[2] = proxies[3]
    _, negatives = proxies_lib.dynamic_targets(
      proxies_lib.proxy_distances(x, proxies), similar, dissimilar
    )
    np.testing.assert_array_equal(
      negatives, [[True] + [False] * 3] * 3 + [[False] * 3 + [True]] * 3
    )
    self.assertTrue(np.all(proxies_lib.supervised_anchors(negatives)))

  def test_supervised_anchors_are_the_reference_valid_anchors(self):
    for seed in range(5):
      x, labels, proxies = _data(seed, batch=12, num_proxies=3)
      similar, dissimilar = proxies_lib.relations_from_labels(labels)
      _, negatives = proxies_lib.dynamic_targets(
        proxies_lib.proxy_distances(x, proxies), similar, dissimilar
      )
      want = [
        i
        for i, _, _ in _dynamic_targets(
          x, proxies, np.asarray(similar), np.asarray(dissimilar)
        )
      ]
      np.testing.assert_array_equal(
        np.flatnonzero(proxies_lib.supervised_anchors(negatives)), want
      )

  def test_equals_static_when_every_sample_is_nearest_its_class_proxy(self):
    # All classes present, every sample closest to its own class proxy: each
    # class claims its proxy, so the positive is the class proxy and the
    # negatives are all the others, as with static assignment.
    rng = np.random.default_rng(8)
    proxies = rng.normal(size=(4, 6)).astype(np.float32)
    labels = np.tile(np.arange(4, dtype=np.int32), 3)
    x = proxies[labels] + 0.05 * rng.normal(size=(12, 6)).astype(np.float32)
    np.testing.assert_array_equal(
      np.argmin(_proxy_distances(x, proxies), axis=1), labels
    )
    for form in _checks.PROXY_NCA_FORMS:
      static = _jit(losses.proxy_nca_loss, form=form, scale=4.0)(
        x, labels, proxies
      )
      dynamic_value = _jit(
        losses.proxy_nca_loss, form=form, scale=4.0, assignment="dynamic"
      )(x, labels, proxies)
      np.testing.assert_allclose(dynamic_value, static, rtol=1e-5)
    np.testing.assert_allclose(
      _jit(losses.proxy_ranking_loss, margin=1.0)(x, labels, proxies),
      _jit(losses.proxy_ranking_loss, margin=1.0, assignment="dynamic")(
        x, labels, proxies
      ),
      rtol=1e-5,
    )

  def test_relation_shape_errors(self):
    x, _, proxies = _data(0, batch=4)
    good = jnp.zeros((4, 4), bool)
    with self.assertRaisesRegex(ValueError, "similar must be a bool array"):
      dynamic.dynamic_proxy_nca_loss(x, proxies, good[:3], good)
    with self.assertRaisesRegex(ValueError, "dissimilar must be a bool"):
      dynamic.dynamic_proxy_nca_loss(x, proxies, good, good.astype(int))
    with self.assertRaisesRegex(ValueError, "one shape"):
      proxies_lib.relations_from_triplets(
        jnp.zeros(3, int), jnp.zeros(2, int), jnp.zeros(3, int), 4
      )


class ProxyRankingLossTest(parameterized.TestCase):
  def test_static_matches_reference(self):
    x, labels, proxies = _data(9)
    fn = jax.jit(
      jax.value_and_grad(
        lambda x, p: losses.proxy_ranking_loss(x, labels, p, margin=0.7),
        argnums=(0, 1),
      )
    )
    value, (grad_x, grad_p) = fn(x, proxies)

    def ref(x, p):
      return reference_proxy_ranking(x, labels, p, 0.7)

    np.testing.assert_allclose(value, ref(x, proxies), rtol=1e-5)
    np.testing.assert_allclose(
      grad_x, references.numerical_grad(lambda v: ref(v, proxies), x), atol=2e-5
    )
    np.testing.assert_allclose(
      grad_p, references.numerical_grad(lambda v: ref(x, v), proxies), atol=2e-5
    )

  @parameterized.parameters(2, 4, 6)
  def test_dynamic_matches_reference(self, num_proxies):
    x, labels, proxies = _data(10, num_proxies=num_proxies)
    similar, dissimilar = label_relations(labels)
    fn = jax.jit(
      jax.value_and_grad(
        lambda x, p: losses.proxy_ranking_loss(
          x, labels, p, margin=0.7, assignment="dynamic"
        ),
        argnums=(0, 1),
      )
    )
    value, (grad_x, grad_p) = fn(x, proxies)

    def ref(x, p):
      return reference_dynamic_proxy_ranking(x, p, similar, dissimilar, 0.7)

    np.testing.assert_allclose(value, ref(x, proxies), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
      grad_x, references.numerical_grad(lambda v: ref(v, proxies), x), atol=2e-5
    )
    np.testing.assert_allclose(
      grad_p, references.numerical_grad(lambda v: ref(x, v), proxies), atol=2e-5
    )

  def test_hand_computed_case(self):
    # Sample on proxy 0; proxies 1 (orthogonal, d = 2) and 2 (opposite,
    # d = 4): hinges max(0, 2.5 + 0 - 2) = 0.5 and max(0, 2.5 - 4) = 0.
    proxies = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    got = losses.proxy_ranking_loss(
      proxies[:1], np.array([0], np.int32), proxies, margin=2.5
    )
    np.testing.assert_allclose(got, 0.25, rtol=1e-6)

  def test_bad_options_raise(self):
    x, labels, proxies = _data(0)
    with self.assertRaisesRegex(ValueError, "assignment must be one of"):
      losses.proxy_ranking_loss(x, labels, proxies, assignment="x")
    with self.assertRaisesRegex(ValueError, "at least two proxies"):
      losses.proxy_ranking_loss(x, 0 * labels, proxies[:1])


class ProxyAnchorLossTest(parameterized.TestCase):
  @parameterized.parameters((32.0, 0.1), (4.0, 0.3))
  def test_matches_reference(self, alpha, delta):
    # Class 5 has no sample: it only enters the negative term.
    x, labels, proxies = _data(11, classes=5, num_proxies=6)
    fn = jax.jit(
      jax.value_and_grad(
        lambda x, p: losses.proxy_anchor_loss(
          x, labels, p, alpha=alpha, delta=delta
        ),
        argnums=(0, 1),
      )
    )
    value, (grad_x, grad_p) = fn(x, proxies)

    def ref(x, p):
      return reference_proxy_anchor(x, labels, p, alpha, delta)

    np.testing.assert_allclose(value, ref(x, proxies), rtol=1e-5)
    np.testing.assert_allclose(
      grad_x,
      references.numerical_grad(lambda v: ref(v, proxies), x),
      rtol=1e-4,
      atol=1e-4,
    )
    np.testing.assert_allclose(
      grad_p,
      references.numerical_grad(lambda v: ref(x, v), proxies),
      rtol=1e-4,
      atol=1e-4,
    )


def loss_config(name, **overrides):
  config = fashion_mnist.get_config().loss
  config.name = name
  for key, value in overrides.items():
    config[key] = value
  return config


class CreateLossFnTest(parameterized.TestCase):
  def test_config_defaults(self):
    config = fashion_mnist.get_config().loss
    self.assertEqual(config.name, "proxy_nca")
    self.assertEqual(config.form, "softmax")
    self.assertEqual(config.scale, 16.0)
    self.assertEqual(config.margin, 0.2)
    self.assertEqual(config.assignment, "static")
    self.assertEqual(config.label_smoothing, 0.0)
    self.assertEqual((config.embedding_norm, config.proxy_norm), (1.0, 1.0))
    self.assertEqual(config.proxy_anchor_alpha, 32.0)
    self.assertEqual(config.proxy_anchor_delta, 0.1)
    self.assertEqual(config.lifted_margin, 1.0)
    self.assertEqual(config.contrastive_margin, 1.0)

  @parameterized.parameters(*losses.LOSSES)
  def test_every_loss_dispatches_with_its_options(self, name):
    x, labels, proxies = _data(12)
    config = loss_config(name)
    direct = {
      "proxy_nca": lambda: losses.proxy_nca_loss(
        x, labels, proxies, scale=16.0
      ),
      "proxy_ranking": lambda: losses.proxy_ranking_loss(
        x, labels, proxies, margin=0.2
      ),
      "proxy_anchor": lambda: losses.proxy_anchor_loss(
        x, labels, proxies, alpha=32.0, delta=0.1
      ),
      "triplet_all": lambda: pair.triplet_all_loss(x, labels),
      "triplet_semihard": lambda: pair.triplet_semihard_loss(x, labels),
      "triplet_batch_hard": lambda: pair.triplet_batch_hard_loss(x, labels),
      "lifted_structure": lambda: pair.lifted_structure_loss(
        x, labels, margin=1.0
      ),
      "npairs": lambda: pair.npairs_loss(x, labels, scale=16.0),
      "contrastive": lambda: pair.contrastive_loss(x, labels, margin=1.0),
      "nca": lambda: pair.nca_loss(x, labels, scale=16.0),
    }[name]
    got = _create_loss_fn(config)(x, labels, proxies)
    np.testing.assert_allclose(got, direct(), rtol=1e-6)

  def test_options_reach_the_loss(self):
    x, labels, proxies = _data(13)
    config = loss_config(
      "proxy_nca", form="paper", scale=2.0, assignment="dynamic"
    )
    np.testing.assert_allclose(
      _create_loss_fn(config)(x, labels, proxies),
      losses.proxy_nca_loss(
        x, labels, proxies, form="paper", scale=2.0, assignment="dynamic"
      ),
      rtol=1e-6,
    )
    config = loss_config("nca", form="paper", scale=2.0)
    np.testing.assert_allclose(
      _create_loss_fn(config)(x, labels, proxies),
      pair.nca_loss(x, labels, form="paper", scale=2.0),
      rtol=1e-6,
    )

  @parameterized.named_parameters(
    ("name", dict(name="arcface"), "loss.name must be one of"),
    ("form", dict(form="nca"), "form must be one of"),
    ("smoothing", dict(form="paper", label_smoothing=0.1), "softmax"),
    ("assignment", dict(name="proxy_ranking", assignment="x"), "assignment"),
    ("nca_scale", dict(name="nca", scale=0.0), "scale must be positive"),
  )
  def test_bad_config_raises_when_created(self, overrides, message):
    config = loss_config(overrides.pop("name", "proxy_nca"), **overrides)
    with self.assertRaisesRegex(ValueError, message):
      _create_loss_fn(config)


# Property tests of every loss, through create_loss_fn: config.loss overrides
# for each loss and each option that changes the computation.
PROPERTY_CASES = {
  "proxy_nca": ("proxy_nca", {}),
  "proxy_nca_paper": ("proxy_nca", {"form": "paper"}),
  "proxy_nca_smoothed": ("proxy_nca", {"label_smoothing": 0.1}),
  "proxy_nca_norms": ("proxy_nca", {"embedding_norm": 3.0, "proxy_norm": 0.5}),
  "proxy_nca_dynamic": ("proxy_nca", {"assignment": "dynamic"}),
  "proxy_nca_dynamic_paper": (
    "proxy_nca",
    {"assignment": "dynamic", "form": "paper"},
  ),
  "proxy_ranking": ("proxy_ranking", {}),
  "proxy_ranking_dynamic": ("proxy_ranking", {"assignment": "dynamic"}),
  "proxy_anchor": ("proxy_anchor", {}),
  **{name: (name, {}) for name in losses.PAIR_LOSSES},
  "nca_paper": ("nca", {"form": "paper"}),
}
BATCH, DIM, CLASSES = 8, 3, 4


def _case_fn(case, jit=True):
  """value_and_grad of the case's loss w.r.t. embeddings and proxies."""
  name, overrides = PROPERTY_CASES[case]
  fn = jax.value_and_grad(
    _create_loss_fn(loss_config(name, **overrides)), argnums=(0, 2)
  )
  return jax.jit(fn) if jit else fn


_jitted_case_fn = functools.cache(_case_fn)


def _assert_finite_everywhere(test, x, labels, proxies):
  for case in PROPERTY_CASES:
    value, grads = _jitted_case_fn(case)(x, labels, proxies)
    with test.subTest(case):
      chex.assert_tree_all_finite((value, grads))


# Coordinates: exact zeros, or magnitudes from 1e-3 to 1e3 of either sign.
# (Below ~1e-30 the true gradient of the normalisation, ~1/|x|, overflows
# float32 whatever the implementation.)
_coordinates = st.one_of(
  st.just(0.0),
  st.builds(
    lambda magnitude, negative: -magnitude if negative else magnitude,
    st.floats(float(np.float32(1e-3)), 1e3, width=32),
    st.booleans(),
  ),
)


@st.composite
def _batches(draw):
  """Embeddings with repeated rows and zero rows, labels, proxies, a shuffle."""

  def rows(count):
    pool = draw(
      st.lists(
        st.lists(_coordinates, min_size=DIM, max_size=DIM),
        min_size=1,
        max_size=count,
      )
    )
    picks = draw(
      st.lists(st.integers(0, len(pool) - 1), min_size=count, max_size=count)
    )
    return np.array([pool[i] for i in picks], np.float32)

  x = rows(BATCH)
  labels = np.array(
    draw(st.lists(st.integers(0, CLASSES - 1), min_size=BATCH, max_size=BATCH)),
    np.int32,
  )
  proxies = rows(CLASSES)
  order = np.array(draw(st.permutations(range(BATCH))))
  return x, labels, proxies, order


@pytest.mark.slow
class LossPropertiesTest(parameterized.TestCase):
  @hypothesis.settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
  )
  @hypothesis.given(_batches())
  def test_finite_and_invariant_to_the_order_of_the_batch(self, batch):
    x, labels, proxies, order = batch
    for case in PROPERTY_CASES:
      fn = _jitted_case_fn(case)
      value, (grad_x, grad_p) = fn(x, labels, proxies)
      chex.assert_tree_all_finite((value, grad_x, grad_p))
      shuffled, (shuffled_x, shuffled_p) = fn(x[order], labels[order], proxies)
      tolerance = 1e-4 * (1.0 + np.max(np.abs(grad_x)) + np.max(np.abs(grad_p)))
      np.testing.assert_allclose(
        shuffled, value, rtol=1e-4, atol=1e-4, err_msg=case
      )
      np.testing.assert_allclose(
        shuffled_x, grad_x[order], atol=tolerance, err_msg=case
      )
      np.testing.assert_allclose(
        shuffled_p, grad_p, atol=tolerance, err_msg=case
      )

  @parameterized.named_parameters(
    ("zeros", 0.0, False),
    ("duplicates", 1.0, True),
    ("huge", 1e30, False),
    ("tiny", 1e-30, False),
    ("largest", 3e38, True),
  )
  def test_finite_on_extreme_inputs(self, magnitude, duplicated):
    rng = np.random.default_rng(0)
    x = magnitude * np.sign(rng.normal(size=(BATCH, DIM))).astype(np.float32)
    if duplicated:
      x[:] = x[0]
    proxies = magnitude * np.ones((CLASSES, DIM), np.float32)
    for labels in (
      np.arange(BATCH, dtype=np.int32) % CLASSES,
      np.zeros(BATCH, np.int32),
    ):
      _assert_finite_everywhere(self, x, labels, proxies)

  def test_pair_losses_are_zero_without_positives_or_negatives(self):
    x, _, proxies = _data(15, batch=BATCH, dim=DIM, classes=CLASSES)
    single_class = np.zeros(BATCH, np.int32)
    all_distinct = np.arange(BATCH, dtype=np.int32)
    for case, (name, _) in PROPERTY_CASES.items():
      if name not in losses.PAIR_LOSSES:
        continue
      for labels in (single_class, all_distinct):
        value, grads = _jitted_case_fn(case)(x, labels, proxies)
        chex.assert_tree_all_finite(grads)
        if name != "contrastive":  # Pairs of one kind still cost there.
          self.assertEqual(float(value), 0.0, msg=case)

  def test_jit_matches_eager(self):
    x, labels, proxies = _data(14, batch=BATCH, dim=DIM, classes=CLASSES)
    x[1] = x[0]  # A duplicated embedding.
    x[2] = 0.0  # And a zero one.
    labels[:2] = labels[0]
    for case in PROPERTY_CASES:
      name, overrides = PROPERTY_CASES[case]
      loss_fn = _create_loss_fn(loss_config(name, **overrides))
      with self.subTest(case):
        np.testing.assert_allclose(
          jax.jit(loss_fn)(x, labels, proxies),
          loss_fn(x, labels, proxies),
          rtol=1e-5,
          atol=1e-5,
        )
    # Gradients too where the arg-min and gathers of dynamic assignment are.
    case = "proxy_nca_dynamic_paper"
    chex.assert_trees_all_close(
      _jitted_case_fn(case)(x, labels, proxies),
      _case_fn(case, jit=False)(x, labels, proxies),
      rtol=1e-5,
      atol=1e-5,
    )

  # Fewer and more proxies than the 4 classes.
  @parameterized.parameters(("proxy_nca", 2), ("proxy_ranking", 7))
  def test_dynamic_with_any_number_of_proxies(self, name, num_proxies):
    x, labels, proxies = _data(
      16, batch=BATCH, dim=DIM, classes=CLASSES, num_proxies=num_proxies
    )
    x[1] = x[0]  # A duplicated embedding.
    x[2] = 0.0  # And a zero one.
    labels[:2] = labels[0]
    loss_fn = _create_loss_fn(loss_config(name, assignment="dynamic"))
    fn = jax.value_and_grad(loss_fn, argnums=(0, 2))
    value, grads = jax.jit(fn)(x, labels, proxies)
    chex.assert_tree_all_finite((value, grads))
    chex.assert_trees_all_close(
      (value, grads), fn(x, labels, proxies), rtol=1e-5, atol=1e-5
    )
    order = np.random.default_rng(num_proxies).permutation(BATCH)
    shuffled, (grad_x, grad_p) = jax.jit(fn)(x[order], labels[order], proxies)
    np.testing.assert_allclose(shuffled, value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_x, grads[0][order], atol=1e-5)
    np.testing.assert_allclose(grad_p, grads[1], atol=1e-5)


class BoundaryErrorsTest(parameterized.TestCase):
  """The same ValueError from every loss for the same mistake."""

  def _all_losses(self, x, labels, proxies):
    """(name, thunk) for every public loss on one batch."""
    similar, dissimilar = label_relations(np.asarray(labels))
    for name in losses.PROXY_LOSSES:
      yield (
        name,
        lambda n=name: getattr(losses, f"{n}_loss")(x, labels, proxies),
      )
    for name in losses.PAIR_LOSSES:
      yield name, lambda n=name: getattr(losses, f"{n}_loss")(x, labels)
    for name in ("dynamic_proxy_nca", "dynamic_proxy_ranking"):
      yield (
        name,
        lambda n=name: getattr(losses, f"{n}_loss")(
          x, proxies, similar, dissimilar
        ),
      )

  def test_empty_batch(self):
    x = np.zeros((0, 4), np.float32)
    labels = np.zeros((0,), np.int32)
    proxies = np.ones((3, 4), np.float32)
    names = []
    for name, thunk in self._all_losses(x, labels, proxies):
      with self.assertRaisesRegex(ValueError, r"The batch is empty", msg=name):
        thunk()
      names.append(name)
    self.assertLen(names, len(losses.LOSSES) + 2)

  @parameterized.parameters("proxy_nca", "proxy_ranking", "proxy_anchor")
  def test_concrete_labels_outside_the_proxies_are_named(self, name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    proxies = rng.normal(size=(3, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, -1, 7])
    fn = getattr(losses, f"{name}_loss")
    with self.assertRaisesRegex(ValueError, r"labels -1, 3, 7 are not proxy"):
      fn(x, labels, proxies)
    with self.assertRaisesRegex(ValueError, r"labels 3 are not proxy"):
      fn(x[:4], jnp.asarray(labels[:4]), proxies)
    # Inside jit the labels are traced: such samples are left out, as
    # documented (the sharded training relies on it).
    if name != "proxy_anchor":
      np.testing.assert_allclose(
        jax.jit(fn)(x, labels, proxies),
        fn(x[:3], labels[:3], proxies),
        rtol=1e-6,
      )


if __name__ == "__main__":
  absltest.main()
