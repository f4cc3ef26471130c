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
"""Tests of the data-point losses against float64 NumPy loop transcriptions.

Each reference below is written from the paper's equation, one pair or
triplet at a time, independently of the masked JAX code. Values are compared
at float32 precision and gradients against central finite differences of the
reference. The property tests of every loss (finite values and gradients,
batch-order invariance, jit == eager, zero on batches without pairs) are in
losses_test.py.
"""

import functools
import itertools

import chex
import jax
import numpy as np
from absl.testing import absltest, parameterized

from proxy_nca_jax.losses import pair
from tests.testing import references


def _jit(fn, **options):
  """``fn`` with ``options`` bound, jitted (eager evaluation compiles each
  operation)."""
  return jax.jit(functools.partial(fn, **options))


def _unit(v: np.ndarray) -> np.ndarray:
  v = np.float64(v)
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _sq(x: np.ndarray) -> np.ndarray:
  """Squared distances between the rows of x, float64 loops."""
  n = len(x)
  return np.array(
    [[np.sum((x[i] - x[j]) ** 2) for j in range(n)] for i in range(n)]
  )


def _pairs(labels):
  """Ordered (anchor, positive) pairs and each anchor's negatives."""
  n = len(labels)
  positives = [
    (i, j)
    for i in range(n)
    for j in range(n)
    if i != j and labels[i] == labels[j]
  ]
  negatives = {
    i: [k for k in range(n) if labels[k] != labels[i]] for i in range(n)
  }
  return positives, negatives


def reference_triplet_all(x, labels, margin):
  d = _sq(_unit(x))
  positives, negatives = _pairs(labels)
  hinges = [
    max(margin + d[a, p] - d[a, k], 0.0)
    for a, p in positives
    for k in negatives[a]
  ]
  return float(np.mean(hinges)) if hinges else 0.0


def reference_batch_hard(x, labels, margin):
  d = _sq(_unit(x))
  positives, negatives = _pairs(labels)
  losses = []
  for a in range(len(x)):
    pos = [d[a, p] for b, p in positives if b == a]
    if pos and negatives[a]:
      hardest_neg = min(d[a, k] for k in negatives[a])
      losses.append(max(margin + max(pos) - hardest_neg, 0.0))
  return float(np.mean(losses)) if losses else 0.0


def reference_lifted(x, labels, margin):
  """Song et al. 2016, Eq. 4, over unordered positive pairs."""
  dist = np.sqrt(_sq(_unit(x)))
  _, negatives = _pairs(labels)
  n = len(x)
  terms = []
  for i, j in itertools.combinations(range(n), 2):
    if labels[i] != labels[j]:
      continue
    total = sum(np.exp(margin - dist[i, k]) for k in negatives[i])
    total += sum(np.exp(margin - dist[j, k]) for k in negatives[j])
    terms.append(max(np.log(total) + dist[i, j], 0.0) ** 2 if total else 0.0)
  return float(np.sum(terms) / (2 * len(terms))) if terms else 0.0


def reference_npairs(x, labels, scale):
  """Sohn 2016, Eq. 3, inner products on unit vectors times 2 * scale."""
  x = _unit(x)
  positives, negatives = _pairs(labels)
  losses = []
  for i, j in positives:
    if negatives[i]:
      total = sum(
        np.exp(2 * scale * (x[i] @ x[k] - x[i] @ x[j])) for k in negatives[i]
      )
      losses.append(np.log1p(total))
  return float(np.mean(losses)) if losses else 0.0


def reference_contrastive(x, labels, margin):
  """Hadsell et al. 2006, Eq. 4, averaged over ordered pairs."""
  dist = np.sqrt(_sq(_unit(x)))
  terms = []
  for i, j in itertools.permutations(range(len(x)), 2):
    if labels[i] == labels[j]:
      terms.append(0.5 * dist[i, j] ** 2)
    else:
      terms.append(0.5 * max(margin - dist[i, j], 0.0) ** 2)
  return float(np.mean(terms)) if terms else 0.0


def reference_nca(x, labels, form, scale):
  d = scale * _sq(_unit(x))
  positives, negatives = _pairs(labels)
  n = len(x)
  losses = []
  if form == "softmax":  # Goldberger et al. 2004: -log p_i.
    for i in range(n):
      pos = [j for a, j in positives if a == i]
      if not pos:
        continue
      z = sum(np.exp(-d[i, k]) for k in range(n) if k != i)
      losses.append(-np.log(sum(np.exp(-d[i, j]) for j in pos) / z))
  else:  # Movshovitz-Attias et al. 2017 NCA over points, per pair.
    for i, j in positives:
      if negatives[i]:
        z = sum(np.exp(-d[i, k]) for k in negatives[i])
        losses.append(-np.log(np.exp(-d[i, j]) / z))
  return float(np.mean(losses)) if losses else 0.0


def reference_triplet_semihard(x, labels, margin):
  """FaceNet semi-hard triplet loss, written as explicit loops."""
  d = _sq(_unit(x))
  n = len(x)
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


# name: (loss, reference, options).
CASES = {
  "triplet_all": (
    pair.triplet_all_loss,
    reference_triplet_all,
    {"margin": 0.3},
  ),
  "triplet_batch_hard": (
    pair.triplet_batch_hard_loss,
    reference_batch_hard,
    {"margin": 0.3},
  ),
  "lifted_structure": (
    pair.lifted_structure_loss,
    reference_lifted,
    {"margin": 1.0},
  ),
  "npairs": (pair.npairs_loss, reference_npairs, {"scale": 2.0}),
  "contrastive": (
    pair.contrastive_loss,
    reference_contrastive,
    {"margin": 1.2},
  ),
  "nca_softmax": (
    pair.nca_loss,
    lambda x, y, scale: reference_nca(x, y, "softmax", scale),
    {"form": "softmax", "scale": 3.0},
  ),
  "nca_paper": (
    pair.nca_loss,
    lambda x, y, scale: reference_nca(x, y, "paper", scale),
    {"form": "paper", "scale": 3.0},
  ),
}


def _reference_options(name, options):
  return {k: v for k, v in options.items() if k != "form"}


def _batch(seed, size=10, dim=4, classes=3):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(size, dim)).astype(np.float32)
  labels = rng.integers(0, classes, size=size).astype(np.int32)
  return x, labels


class PairLossesTest(parameterized.TestCase):
  @parameterized.parameters(sorted(CASES))
  def test_value_and_gradient_match_reference(self, name):
    loss, reference, options = CASES[name]
    x, labels = _batch(7, size=8, dim=3)
    value, grad = jax.jit(
      jax.value_and_grad(lambda x: loss(x, labels, **options))
    )(x)

    def ref(v):
      return reference(v, labels, **_reference_options(name, options))

    np.testing.assert_allclose(value, ref(x), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(
      grad, references.numerical_grad(ref, x), atol=5e-5
    )

  def test_triplet_losses_on_a_hand_computed_batch(self):
    # Unit vectors at 0, 90 and 180 degrees; squared distances d(0, 1) = 2,
    # d(0, 2) = 4, d(1, 2) = 2. Class 0: samples 0 and 1; class 1: sample 2.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    labels = np.array([0, 0, 1], np.int32)
    # Triplets (0, 1, 2): 0.5 + 2 - 4 -> 0; (1, 0, 2): 0.5 + 2 - 2 = 0.5.
    np.testing.assert_allclose(
      _jit(pair.triplet_all_loss, margin=0.5)(x, labels), 0.25, rtol=1e-6
    )
    # Anchor 2 has no positive: batch-hard averages anchors 0 and 1 only.
    np.testing.assert_allclose(
      _jit(pair.triplet_batch_hard_loss, margin=0.5)(x, labels),
      0.25,
      rtol=1e-6,
    )

  def test_contrastive_on_a_hand_computed_batch(self):
    # Pair (0, 1) similar at D = sqrt(2): D^2 / 2 = 1. Pairs with sample 2:
    # D(0, 2) = 2 >= margin costs 0; D(1, 2) = sqrt(2): (1.5 - sqrt(2))^2 / 2.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    labels = np.array([0, 0, 1], np.int32)
    want = (2 * 1.0 + 2 * 0.5 * (1.5 - np.sqrt(2)) ** 2) / 6
    np.testing.assert_allclose(
      _jit(pair.contrastive_loss, margin=1.5)(x, labels), want, rtol=1e-5
    )

  @parameterized.parameters(0.5, 1.0, 2.0)
  def test_lifted_structure_hinge_never_closes_on_unit_norm_batches(
    self, margin
  ):
    # 8 classes of 8 images, each class on one of +-e1..+-e4 (a perfect
    # embedding): every image has 8 negatives at distance 2 (the opposite
    # pole) and 48 at sqrt(2). Each positive pair (D = 0) pools both its
    # images' 56 negatives, so J = margin + log(2 (8 e^-2 + 48 e^-sqrt2))
    # for every pair: the hinge stays open however well classes separate,
    # and no batch goes below J >= margin - 2 + log(112) (docs/README, RQ4).
    poles = np.concatenate([np.eye(8)[:4], -np.eye(8)[:4]])
    x = np.repeat(poles, 8, axis=0).astype(np.float32)
    labels = np.repeat(np.arange(8), 8).astype(np.int32)
    j = margin + np.log(2 * (8 * np.exp(-2.0) + 48 * np.exp(-np.sqrt(2.0))))
    loss = _jit(pair.lifted_structure_loss, margin=margin)
    np.testing.assert_allclose(loss(x, labels), 0.5 * j**2, rtol=1e-5)
    random_x, _ = _batch(3, size=64, dim=8)
    floor = 0.5 * (margin - 2.0 + np.log(112.0)) ** 2
    self.assertGreater(float(loss(random_x, labels)), floor)

  def test_npairs_with_two_per_class_is_the_multiclass_n_pair_loss(self):
    # Sohn's N-pair-mc loss on pairs (x_i, x_i+) with the other pairs'
    # positives as negatives, made symmetric and with both members of every
    # other pair as negatives, is what npairs_loss computes.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 4))
    labels = np.repeat(np.arange(4), 2).astype(np.int32)
    f = _unit(x)
    total, count = 0.0, 0
    for i in range(8):
      j = i + 1 if i % 2 == 0 else i - 1
      others = [k for k in range(8) if labels[k] != labels[i]]
      logits = [f[i] @ f[k] for k in others]
      total += np.log1p(np.sum(np.exp(np.array(logits) - f[i] @ f[j])))
      count += 1
    got = _jit(pair.npairs_loss, scale=0.5)(np.float32(x), labels)
    np.testing.assert_allclose(got, total / count, rtol=1e-5)

  def test_nca_softmax_with_one_positive_is_softmax_cross_entropy(self):
    x, _ = _batch(4, size=6)
    labels = np.array([0, 0, 1, 2, 3, 4], np.int32)
    d = 2.0 * _sq(_unit(x))
    # Only anchors 0 and 1 have a positive (each other).
    want = np.mean(
      [
        d[0, 1] + np.log(np.sum(np.exp(-np.delete(d[0], 0)))),
        d[1, 0] + np.log(np.sum(np.exp(-np.delete(d[1], 1)))),
      ]
    )
    got = _jit(pair.nca_loss, form="softmax", scale=2.0)(x, labels)
    np.testing.assert_allclose(got, want, rtol=1e-5)

  def test_nca_rejects_bad_options(self):
    x, labels = _batch(0)
    with self.assertRaisesRegex(ValueError, "form must be one of"):
      pair.nca_loss(x, labels, form="goldberger")
    with self.assertRaisesRegex(ValueError, "scale must be positive"):
      pair.nca_loss(x, labels, scale=-1.0)

  def test_shape_errors(self):
    x, labels = _batch(0)
    with self.assertRaisesRegex(ValueError, "labels must have shape"):
      pair.contrastive_loss(x, labels[:3])
    with self.assertRaisesRegex(ValueError, "embeddings must have shape"):
      pair.contrastive_loss(x[0], labels)


class TripletSemihardLossTest(parameterized.TestCase):
  @parameterized.parameters(0, 1, 2)
  def test_value_matches_reference(self, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 5)).astype(np.float32)
    labels = rng.integers(0, 4, size=16).astype(np.int32)
    got = _jit(pair.triplet_semihard_loss, margin=0.2)(x, labels)
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
    got = _jit(pair.triplet_semihard_loss, margin=0.5)(x, labels)
    np.testing.assert_allclose(got, 0.25, rtol=1e-6)

  def test_single_class_batch_is_zero_and_finite(self):
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    labels = np.zeros(6, np.int32)
    value, grad = jax.jit(jax.value_and_grad(pair.triplet_semihard_loss))(
      x, labels
    )
    self.assertEqual(float(value), 0.0)
    chex.assert_tree_all_finite(grad)


if __name__ == "__main__":
  absltest.main()
