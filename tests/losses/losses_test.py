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
"""Tests of the proxy losses against float64 NumPy transcriptions.

Proxy-NCA (losses/proxy_nca.py), dynamic assignment (losses/dynamic.py),
proxy ranking and Proxy-Anchor against tests/testing/loss_references.py;
then properties and boundary errors of every loss, the data-point losses
included (their values: pair_losses_test.py).
"""

import functools
import inspect

import chex
import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized
from hypothesis import strategies as st

from proxy_nca_jax import losses
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.losses import _checks, dynamic
from proxy_nca_jax.training import loss_binding
from tests.testing import loss_cases, loss_references, references


def _jit(fn, **options):
  """``fn`` with ``options`` bound, jitted (eager evaluation is slower)."""
  return jax.jit(functools.partial(fn, **options))


@jax.jit
def _dynamic_targets(x, proxies, similar, dissimilar):
  """``proxies.dynamic_targets`` of the batch's distances, jitted."""
  return proxies_lib.dynamic_targets(
    proxies_lib.proxy_distances(x, proxies), similar, dissimilar
  )


def label_relations(labels):
  labels = np.asarray(labels)
  same = labels[:, None] == labels[None, :]
  return same & ~np.eye(len(labels), dtype=bool), ~same


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
    want = loss_references.proxy_nca(
      self.x, self.labels, self.proxies, form, scale
    )
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
      lambda x: loss_references.proxy_nca(
        x, self.labels, self.proxies, form, scale
      ),
      self.x,
    )
    want_p = references.numerical_grad(
      lambda p: loss_references.proxy_nca(self.x, self.labels, p, form, scale),
      self.proxies,
    )
    np.testing.assert_allclose(grad_x, want_x, atol=2e-5)
    np.testing.assert_allclose(grad_p, want_p, atol=2e-5)

  def test_paper_form_can_be_negative_and_is_below_softmax_form(self):
    # Embeddings sitting on their own proxy: the paper form goes negative
    # (the positive is not in the denominator), the softmax form cannot.
    proxies = np.eye(4, dtype=np.float32)
    labels = np.arange(4, dtype=np.int32)
    paper = _jit(losses.proxy_nca_loss, form="paper", scale=3.0)(
      proxies, labels, proxies
    )
    soft = _jit(losses.proxy_nca_loss, form="softmax", scale=3.0)(
      proxies, labels, proxies
    )
    # Hand value: d_pos = 0, d_neg = 3 * 2 = 6 for the 3 others.
    np.testing.assert_allclose(paper, np.log(3) - 6.0, rtol=1e-6)
    np.testing.assert_allclose(soft, np.log(1 + 3 * np.exp(-6.0)), rtol=1e-5)

  def test_invariant_to_embedding_and_proxy_norms(self):
    fn = _jit(losses.proxy_nca_loss, scale=2.0)
    base = fn(self.x, self.labels, self.proxies)
    scaled = fn(7.0 * self.x, self.labels, 0.1 * self.proxies)
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


class ProxyNcaExtensionsTest(parameterized.TestCase):
  @parameterized.parameters((0.1, (1.0, 1.0)), (0.4, (2.0, 0.5)))
  def test_label_smoothing_and_norms_match_reference(self, smoothing, norms):
    x, labels, proxies = loss_cases.random_batch(0)
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
      return loss_references.proxy_nca(
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
    x, labels, proxies = loss_cases.random_batch(1)
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
    x, labels, proxies = loss_cases.random_batch(2)
    np.testing.assert_allclose(
      losses.proxy_nca_loss(x, labels, proxies, label_smoothing=0.0),
      loss_references.proxy_nca(x, labels, proxies, "softmax", 1.0),
      rtol=1e-5,
    )

  def test_labels_outside_the_proxies_are_left_out_inside_jit(self):
    # Traced labels cannot be checked: such samples are left out. (Concrete
    # ones raise: BoundaryErrorsTest.)
    x, labels, proxies = loss_cases.random_batch(3)
    outside = labels.copy()
    outside[:4] = [-1, 4, 99, 7]
    for form in _checks.PROXY_NCA_FORMS:
      np.testing.assert_allclose(
        _jit(losses.proxy_nca_loss, form=form, scale=2.0)(x, outside, proxies),
        loss_references.proxy_nca(x[4:], labels[4:], proxies, form, 2.0),
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
    x, labels, proxies = loss_cases.random_batch(0)
    with self.assertRaisesRegex(ValueError, message):
      losses.proxy_nca_loss(x, labels, proxies, **kwargs)


class DynamicAssignmentTest(parameterized.TestCase):
  @parameterized.parameters(("paper", 2), ("softmax", 4), ("paper", 7))
  def test_labels_match_reference(self, form, num_proxies):
    # Fewer, as many and more proxies than the 4 classes.
    x, labels, proxies = loss_cases.random_batch(4, num_proxies=num_proxies)
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
      return loss_references.dynamic_proxy_nca(
        x, p, similar, dissimilar, form, 2.0
      )

    np.testing.assert_allclose(value, ref(x, proxies), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
      grad_x, references.numerical_grad(lambda v: ref(v, proxies), x), atol=2e-5
    )
    np.testing.assert_allclose(
      grad_p, references.numerical_grad(lambda v: ref(x, v), proxies), atol=2e-5
    )

  def test_triplets_match_reference_and_labels(self):
    x, labels, proxies = loss_cases.random_batch(5, num_proxies=3)
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
    x, _, proxies = loss_cases.random_batch(6, batch=5, num_proxies=3)
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
    got = _jit(dynamic.dynamic_proxy_nca_loss, form="paper")(
      x, proxies, similar, dissimilar
    )
    want = loss_references.dynamic_proxy_nca(
      x, proxies, want_similar, want_dissimilar, "paper", 1.0
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  def test_arg_min_carries_no_gradient(self):
    # Anchor 0, its positive 1 and its negative 2: the loss only moves the
    # anchor's positive and negative proxies.
    x, _, proxies = loss_cases.random_batch(7, batch=3, num_proxies=5)
    similar = jnp.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], bool)
    dissimilar = jnp.array([[0, 0, 1], [0, 0, 0], [0, 0, 0]], bool)
    grad_p = jax.jit(
      jax.grad(
        functools.partial(dynamic.dynamic_proxy_nca_loss, form="paper"),
        argnums=1,
      )
    )(x, proxies, similar, dissimilar)
    ((anchor, positive, negatives),) = loss_references.dynamic_targets(
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
    positive, negatives = _dynamic_targets(x, proxies, similar, dissimilar)
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
    proxies = loss_references.unit(rng.normal(size=(4, 5))).astype(np.float32)
    x = (proxies[0] + 0.01 * rng.normal(size=(6, 5))).astype(np.float32)
    labels = jnp.array([0, 0, 0, 1, 1, 1])
    similar, dissimilar = proxies_lib.relations_from_labels(labels)
    _, negatives = _dynamic_targets(x, proxies, similar, dissimilar)
    self.assertFalse(np.any(proxies_lib.supervised_anchors(negatives)))
    loss, grads = jax.jit(
      jax.value_and_grad(
        functools.partial(dynamic.dynamic_proxy_nca_loss, scale=8.0),
        argnums=(0, 1),
      )
    )(jnp.asarray(x), jnp.asarray(proxies), similar, dissimilar)
    self.assertEqual(float(loss), 0.0)
    for grad in grads:
      np.testing.assert_array_equal(grad, 0.0)
    # Sample 2 moved to proxy 3 breaks the tie: class 1 claims proxy 0 (3
    # votes to 2), class 0 proxy 3 (1 to 0), so every anchor has a negative:
    # the proxy the other class claims.
    x[2] = proxies[3]
    _, negatives = _dynamic_targets(x, proxies, similar, dissimilar)
    np.testing.assert_array_equal(
      negatives, [[True] + [False] * 3] * 3 + [[False] * 3 + [True]] * 3
    )
    self.assertTrue(np.all(proxies_lib.supervised_anchors(negatives)))

  def test_supervised_anchors_are_the_reference_valid_anchors(self):
    for seed in range(5):
      x, labels, proxies = loss_cases.random_batch(
        seed, batch=12, num_proxies=3
      )
      similar, dissimilar = proxies_lib.relations_from_labels(labels)
      _, negatives = _dynamic_targets(x, proxies, similar, dissimilar)
      want = [
        i
        for i, _, _ in loss_references.dynamic_targets(
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
      np.argmin(loss_references.proxy_distances(x, proxies), axis=1), labels
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
    x, _, proxies = loss_cases.random_batch(0, batch=4)
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
    x, labels, proxies = loss_cases.random_batch(9)
    fn = jax.jit(
      jax.value_and_grad(
        lambda x, p: losses.proxy_ranking_loss(x, labels, p, margin=0.7),
        argnums=(0, 1),
      )
    )
    value, (grad_x, grad_p) = fn(x, proxies)

    def ref(x, p):
      return loss_references.proxy_ranking(x, labels, p, 0.7)

    np.testing.assert_allclose(value, ref(x, proxies), rtol=1e-5)
    np.testing.assert_allclose(
      grad_x, references.numerical_grad(lambda v: ref(v, proxies), x), atol=2e-5
    )
    np.testing.assert_allclose(
      grad_p, references.numerical_grad(lambda v: ref(x, v), proxies), atol=2e-5
    )

  @parameterized.parameters(2, 4, 6)
  def test_dynamic_matches_reference(self, num_proxies):
    x, labels, proxies = loss_cases.random_batch(10, num_proxies=num_proxies)
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
      return loss_references.dynamic_proxy_ranking(
        x, p, similar, dissimilar, 0.7
      )

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
    got = _jit(losses.proxy_ranking_loss, margin=2.5)(
      proxies[:1], np.array([0], np.int32), proxies
    )
    np.testing.assert_allclose(got, 0.25, rtol=1e-6)

  def test_bad_options_raise(self):
    x, labels, proxies = loss_cases.random_batch(0)
    with self.assertRaisesRegex(ValueError, "assignment must be one of"):
      losses.proxy_ranking_loss(x, labels, proxies, assignment="x")
    with self.assertRaisesRegex(ValueError, "at least two proxies"):
      losses.proxy_ranking_loss(x, 0 * labels, proxies[:1])


class ProxyAnchorLossTest(parameterized.TestCase):
  @parameterized.parameters((32.0, 0.1), (4.0, 0.3))
  def test_matches_reference(self, alpha, delta):
    # Class 5 has no sample: it only enters the negative term.
    x, labels, proxies = loss_cases.random_batch(11, classes=5, num_proxies=6)
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
      return loss_references.proxy_anchor(x, labels, p, alpha, delta)

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
  # The class-weight losses at the config's defaults (K = 3 sub-centres,
  # 10 SoftTriple centres with tau = 0.2), and SoftTriple without tau.
  **{
    name: (name, {})
    for name in ("normalized_softmax", *losses.CLASS_WEIGHT_LOSSES)
  },
  "soft_triple_no_tau": ("soft_triple", {"soft_triple_tau": 0.0}),
  **{name: (name, {}) for name in losses.PAIR_LOSSES},
  "nca_paper": ("nca", {"form": "paper"}),
}
BATCH, DIM, CLASSES = 8, 3, 4
# dynamic_arcface's class sizes (its margins): all different.
CLASS_COUNTS = np.array([1, 3, 9, 27])


def _config(case):
  name, overrides = PROPERTY_CASES[case]
  return loss_cases.loss_config(name, **overrides)


def _centers(case):
  """K, the proxy rows of a class for the case's loss (1 but for the losses
  with several centres a class)."""
  return loss_binding.centers_per_class(_config(case))


# Proxy rows the tests draw: each case takes its CLASSES * K first.
MAX_CENTERS = max(_centers(case) for case in PROPERTY_CASES)


def _case_proxies(case, proxies):
  """The case's proxies, CLASSES * K rows, from CLASSES * MAX_CENTERS."""
  return proxies[: CLASSES * _centers(case)]


def _case_loss_fn(case):
  return loss_cases.create_loss_fn(_config(case), class_counts=CLASS_COUNTS)


def _case_fn(case, jit=True):
  """value_and_grad of the case's loss w.r.t. embeddings and proxies."""
  fn = jax.value_and_grad(_case_loss_fn(case), argnums=(0, 2))
  return jax.jit(fn) if jit else fn


_jitted_case_fn = functools.cache(_case_fn)


def _assert_finite_everywhere(test, x, labels, proxies):
  for case in PROPERTY_CASES:
    case_proxies = _case_proxies(case, proxies)
    value, grads = _jitted_case_fn(case)(x, labels, case_proxies)
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
  proxies = rows(CLASSES * MAX_CENTERS)
  order = np.array(draw(st.permutations(range(BATCH))))
  return x, labels, proxies, order


class PropertyCasesTest(absltest.TestCase):
  def test_every_loss_has_a_property_case(self):
    self.assertSameElements(
      {name for name, _ in PROPERTY_CASES.values()}, losses.LOSSES
    )


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
    x, labels, all_proxies, order = batch
    for case in PROPERTY_CASES:
      proxies = _case_proxies(case, all_proxies)
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
    proxies = magnitude * np.ones((CLASSES * MAX_CENTERS, DIM), np.float32)
    for labels in (
      np.arange(BATCH, dtype=np.int32) % CLASSES,
      np.zeros(BATCH, np.int32),
    ):
      _assert_finite_everywhere(self, x, labels, proxies)

  def test_pair_losses_are_zero_without_positives_or_negatives(self):
    x, _, proxies = loss_cases.random_batch(
      15, batch=BATCH, dim=DIM, classes=CLASSES
    )
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
    x, labels, all_proxies = loss_cases.random_batch(
      14,
      batch=BATCH,
      dim=DIM,
      classes=CLASSES,
      num_proxies=CLASSES * MAX_CENTERS,
    )
    x[1] = x[0]  # A duplicated embedding.
    x[2] = 0.0  # And a zero one.
    labels[:2] = labels[0]
    for case in PROPERTY_CASES:
      loss_fn = _case_loss_fn(case)
      proxies = _case_proxies(case, all_proxies)
      with self.subTest(case):
        np.testing.assert_allclose(
          jax.jit(loss_fn)(x, labels, proxies),
          loss_fn(x, labels, proxies),
          rtol=1e-5,
          atol=1e-5,
        )
    # Gradients too where the arg-min and gathers of dynamic assignment
    # are, and SubCenter-ArcFace's arg-max over sub-centres.
    for case in ("proxy_nca_dynamic_paper", "subcenter_arcface"):
      proxies = _case_proxies(case, all_proxies)
      chex.assert_trees_all_close(
        _jitted_case_fn(case)(x, labels, proxies),
        _case_fn(case, jit=False)(x, labels, proxies),
        rtol=1e-5,
        atol=1e-5,
      )

  # Fewer and more proxies than the 4 classes.
  @parameterized.parameters(("proxy_nca", 2), ("proxy_ranking", 7))
  def test_dynamic_with_any_number_of_proxies(self, name, num_proxies):
    x, labels, proxies = loss_cases.random_batch(
      16, batch=BATCH, dim=DIM, classes=CLASSES, num_proxies=num_proxies
    )
    x[1] = x[0]  # A duplicated embedding.
    x[2] = 0.0  # And a zero one.
    labels[:2] = labels[0]
    loss_fn = loss_cases.create_loss_fn(
      loss_cases.loss_config(name, assignment="dynamic")
    )
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


def _proxy_loss(name, num_classes):
  """(the proxy loss ``name`` with its defaults, its K): dynamic_arcface
  with class sizes 1..num_classes."""
  fn = getattr(losses, f"{name}_loss")
  parameters = inspect.signature(fn).parameters
  k = 1
  if "centers_per_class" in parameters:
    k = parameters["centers_per_class"].default
  if "class_counts" in parameters:
    fn = functools.partial(fn, class_counts=np.arange(1, num_classes + 1))
  return fn, k


class BoundaryErrorsTest(parameterized.TestCase):
  """The same ValueError from every loss for the same mistake."""

  def _all_losses(self, x, labels, proxies):
    """(name, thunk) for every public loss on one batch; ``proxies``, one
    row a class, repeated K times a class for a loss with K centres."""
    similar, dissimilar = label_relations(np.asarray(labels))
    for name in losses.PROXY_LOSSES:
      fn, k = _proxy_loss(name, len(proxies))
      yield (
        name,
        lambda fn=fn, k=k: fn(x, labels, np.repeat(proxies, k, axis=0)),
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

  @parameterized.parameters(*losses.PROXY_LOSSES)
  def test_concrete_labels_outside_the_proxies_are_named(self, name):
    # 3 classes; with K centres a class, 3 K proxy rows: labels 3 and 7
    # are outside the classes even where they are rows.
    rng = np.random.default_rng(0)
    fn, k = _proxy_loss(name, 3)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    proxies = rng.normal(size=(3 * k, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 3, -1, 7])
    with self.assertRaisesRegex(
      ValueError, r"labels -1, 3, 7 are not proxy rows \[0, 3\)"
    ):
      fn(x, labels, proxies)
    with self.assertRaisesRegex(ValueError, r"labels 3 are not proxy"):
      fn(x[:4], jnp.asarray(labels[:4]), proxies)
    # Inside jit the labels are traced: such samples are left out, as
    # documented (the sharded training relies on it).
    if name != "proxy_anchor":
      np.testing.assert_allclose(
        jax.jit(fn)(x, labels, proxies),
        jax.jit(fn)(x[:3], labels[:3], proxies),
        rtol=1e-6,
      )


if __name__ == "__main__":
  absltest.main()
