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
"""The counting of the retrieval metrics screened in bfloat16
(native/screened_counting.py).

The margin against the largest error of every pair, computed apart in
float64; the kernels, in the AVX-512 BF16 build (where the CPU has it) and
the portable one, against a ranking of float64 similarities written without
the BLAS (NumPy's einsum) and rounded to float32, as the kernels define
them: every query's rank of every positive, with exact copies (the tie
rule) and near copies below bfloat16's resolution. Through
`evaluation.retrieval_metrics`: tests/evaluation/evaluation_test.py's
brute-force cases with ``screening=True``, and the default rule here.
make test installs g++, so the kernels must build here.
"""

from unittest import mock

import ml_dtypes
import numpy as np
from absl.testing import absltest, parameterized

from proxy_nca_jax import errors, evaluation, native
from proxy_nca_jax.evaluation import counting
from proxy_nca_jax.native import screened_counting
from tests.testing import embedding_cases, native_kernels

_FAST = ("MemberSimilarities", "ScreenedCounts")
_PORTABLE = ("MemberSimilaritiesPortable", "ScreenedCountsPortable")


def _similarities(x):
  """(N, N) float32: the float64 dot products by einsum (its own loops, no
  BLAS; equal rows give equal values) rounded to float32."""
  x = x.astype(np.float64)
  return np.einsum("nd,md->nm", x, x).astype(np.float32)


def _reference_counts(x, labels):
  """Each item's positives in rank order and the items ranked before each:
  (N, M) thresholds (+inf beyond R), their indices and the counts, from a
  stable sort of every row (the query left out)."""
  sim = _similarities(x)
  num = len(x)
  r = np.bincount(labels)[labels] - 1
  width = max(int(r.max()), 1)
  thresholds = np.full((num, width), np.inf, np.float32)
  index = np.full((num, width), np.iinfo(np.int32).max, np.int32)
  counts = np.zeros((num, width), np.int64)
  for a in range(num):
    others = np.delete(np.arange(num), a)
    order = others[np.argsort(-sim[a, others], kind="stable")]
    positions = np.flatnonzero(labels[order] == labels[a])
    thresholds[a, : r[a]] = sim[a, order[positions]]
    index[a, : r[a]] = order[positions]
    counts[a, : r[a]] = positions
  return thresholds, index, counts, r


def _clustered(num, dim, classes, seed, scaled=False):
  """Unit vectors around class centres (``scaled``: of norms from 0.01 to
  100), with exact copies (other classes too) and near copies apart below
  bfloat16's resolution."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, num)
  centres = rng.normal(size=(classes, dim))
  x = centres[labels] + 1.5 * rng.normal(size=(num, dim))
  x = embedding_cases.unit(x)
  if scaled:
    x *= (10.0 ** rng.uniform(-2, 2, (num, 1))).astype(np.float32)
  x[num // 2 : num // 2 + 5] = x[3]  # Copies: only the tie rule decides.
  x[10:14] = x[20] + 1e-5 * rng.normal(size=(4, dim)).astype(np.float32)
  return x, labels


def _bf16(values):
  return values.astype(ml_dtypes.bfloat16).astype(np.float64)


class MarginTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("random", "random"), ("halfway", "halfway"), ("tiny", "tiny")
  )
  def test_covers_every_pairs_error(self, case):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((80, 96)).astype(np.float32)
    x[40:] *= 5
    halfway = np.nextafter(np.float32(1 + 2**-8), np.float32(0))
    if case == "halfway":
      # Entries just below a bfloat16 halfway point, one sign: the rounding
      # errors add up instead of cancelling.
      x[:5] = halfway
    if case == "tiny":
      # Rows of 1e-21 beside one of 1e16: their rounding errors' squares
      # would vanish in float32, not their products with the large row.
      x[:5] = 1e-21 * halfway
      x[5] = 1e16 * halfway
    v = np.einsum("nd,md->nm", _bf16(x), _bf16(x))  # Exact here.
    s = np.einsum("nd,md->nm", x.astype(np.float64), x.astype(np.float64))
    error = np.abs(v - s).max(axis=1)
    margins = screened_counting.margins(x)
    self.assertEqual(margins.dtype, np.float32)
    # The margin holds the bound and two float32 steps of the largest |s|.
    steps = 2.0**-22 * np.abs(s).max(axis=1)
    self.assertTrue((error + steps <= margins).all())
    if case == "random":
      # Measured rounding errors: well below bfloat16's worst case,
      # (2 b + b**2) |x| |y|, b = 2**-8.
      norms = np.linalg.norm(x.astype(np.float64), axis=1)
      worst = (2 * 2**-8 + 2**-16) * norms * norms.max()
      self.assertLess(np.median(margins / worst), 0.6)

  def test_slices_of_rows_give_the_same_margins(self):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 70)).astype(np.float32)
    x *= rng.uniform(0.1, 3, (300, 1)).astype(np.float32)
    whole = screened_counting.margins(x)
    with mock.patch.object(screened_counting, "_SLICE_ROWS", 7):
      np.testing.assert_array_equal(screened_counting.margins(x), whole)


class KernelTest(parameterized.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    native_kernels.require("screened_counting")
    native_kernels.require_portable("screened_counting")

  @parameterized.named_parameters(
    # Remainders in every split: 8 rows, 16 lanes, tiles of 48, pairs.
    ("remainders", 997, 33, 150, _FAST, 0.1),
    # Several chunks of rows (64 KiB of bfloat16: 512 at 64 features),
    # blocks of items (480) and tasks of the triangle.
    ("chunks_and_blocks", 2500, 64, 400, _FAST, 0.1),
    # R up to 32 in 16 dimensions: more pairs lie near a threshold.
    ("r_up_to_32", 600, 16, 25, _FAST, 0.25),
    # Norms from 0.01 to 100: a small row's margin is set by the largest
    # rows' rounding errors.
    ("norms_from_0.01_to_100", 800, 48, 120, _FAST, 0.1, True),
    ("remainders_portable", 997, 33, 150, _PORTABLE, 0.1),
  )
  def test_counts_every_positives_rank(
    self, num, dim, classes, targets, most_scored, scaled=False
  ):
    x, labels = _clustered(num, dim, classes, seed=num + dim, scaled=scaled)
    # Ordered by class, as counting.py hands them over.
    order = np.argsort(labels, kind="stable")
    x, labels = x[order], labels[order]
    thresholds, index, want, r = _reference_counts(x, labels)
    start = np.searchsorted(labels, labels).astype(np.int32)
    count = np.bincount(labels)[labels].astype(np.int32)
    members = screened_counting.member_similarities(
      x, start, count, int(count.max()), target=targets[0]
    )
    sim = _similarities(x)
    for a in (0, 11, num // 2, num - 1):
      np.testing.assert_array_equal(
        members[a, : count[a]], sim[a, start[a] : start[a] + count[a]]
      )
      self.assertTrue(np.isnan(members[a, count[a] :]).all())
    max_k = 20
    counts, scored = screened_counting.counts(
      x,
      thresholds,
      index,
      np.arange(num, dtype=np.int32),
      max_k,
      target=targets[1],
    )
    # Exact below the cap (R, max(max_k, R) for the first positive), at or
    # past it beyond.
    valid = np.arange(want.shape[1]) < r[:, None]
    caps = np.broadcast_to(r[:, None], want.shape).copy()
    caps[:, 0] = np.maximum(max_k, r)
    exact = valid & (want < caps)
    np.testing.assert_array_equal(counts[exact], want[exact])
    capped = valid & ~exact
    self.assertGreater(capped.sum(), 0)
    self.assertTrue((counts[capped] >= caps[capped]).all())
    # Copies and near copies were scored again; most pairs were not.
    self.assertGreater(scored[num // 2 : num // 2 + 5].min(), 0)
    self.assertLess(scored.sum(), most_scored * num * (num - 1))


class ScreeningRuleTest(absltest.TestCase):
  def test_default_screens_large_sets_where_avx512_bf16_is(self):
    x, labels = _clustered(300, 8, 60, seed=0)
    flags = native.library.cpu_flags() | {"avx512_bf16"}
    with mock.patch.object(native.library, "cpu_flags", lambda: flags):
      self.assertFalse(counting.screens(x, True, None))
      with mock.patch.object(counting, "SCREENED_ITEMS", 300):
        self.assertTrue(counting.screens(x, True, None))
        self.assertFalse(counting.screens(x, False, None))  # A gallery.
        self.assertFalse(counting.screens(x, True, False))
    with (
      mock.patch.object(native.library, "cpu_flags", frozenset),
      mock.patch.object(counting, "SCREENED_ITEMS", 300),
    ):
      self.assertFalse(counting.screens(x, True, None))
    self.assertTrue(counting.screens(x, True, True))

  def test_forced_where_it_cannot_run_is_a_clear_error(self):
    x, labels = _clustered(100, 8, 20, seed=1)
    with self.assertRaisesRegex(errors.InvalidInputError, "screening=None"):
      evaluation.retrieval_metrics(
        x, labels, gallery=x, gallery_labels=labels, screening=True
      )
    x[5] *= 1e19
    with self.assertRaisesRegex(errors.InvalidInputError, "norms at most"):
      evaluation.retrieval_metrics(x, labels, screening=True)


if __name__ == "__main__":
  absltest.main()
