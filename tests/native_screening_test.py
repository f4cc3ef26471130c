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
"""The bfloat16 screening of the exact search (native/screening.py).

The packed gallery against ml_dtypes' bfloat16 rounding; the margin against
the worst rounding error that can be built; the kernel's lists against
float64 similarities (NumPy's einsum, no BLAS): they hold every
item that can be in the top k and nothing far below it, in the AVX-512 BF16
build (where the CPU has it) and the portable one. The screened search
itself is checked in tests/evaluation/nearest_test.py. make test installs
g++, so the kernel must build here.
"""

from unittest import mock

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from absl.testing import absltest, parameterized

from proxy_nca_jax.native import screening
from tests.testing import native_kernels


def _clustered(rng, num, dim, classes=20, noise=0.3):
  centres = rng.standard_normal((classes, dim))
  x = centres[rng.integers(0, classes, num)]
  x = x + noise * rng.standard_normal((num, dim))
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _float64_similarities(queries, gallery):
  """Dot products in float64 by NumPy's einsum (its own loops, no BLAS)."""
  return np.einsum(
    "qd,gd->qg", queries.astype(np.float64), gallery.astype(np.float64)
  )


class PackTest(parameterized.TestCase):
  @parameterized.parameters((100, 7), (48, 128), (1, 2))
  def test_layout_and_rounding_are_ml_dtypes_bfloat16(self, size, dim):
    rng = np.random.default_rng(size)
    gallery = rng.standard_normal((size, dim)).astype(np.float32)
    # Exact halfway cases round to even.
    gallery[0, 0] = np.float32(1 + 2**-8)
    gallery[0, 1 % dim] = np.float32(1 + 3 * 2**-8)
    packed, norm = screening.pack_gallery(gallery)
    self.assertAlmostEqual(norm, np.linalg.norm(gallery, axis=1).max(), 5)
    self.assertEqual(packed.ctypes.data % 64, 0)  # device_put uses it in place.
    self.assertEqual(packed.shape[0] % 3, 0)
    self.assertEqual(packed.shape[1:], (-(-dim // 2), 16, 2))
    # Back to (items, features): panel, item in panel; pair, half.
    rows = packed.transpose(0, 2, 1, 3).reshape(-1, packed.shape[1] * 2)
    want = gallery.astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(rows[:size, :dim], want)
    self.assertEqual(rows[0, 0], np.float32(1).view(np.uint32) >> 16)
    self.assertFalse(rows[size:].any() or rows[:, dim:].any())

  def test_slices_give_the_whole_arrays_answer(self):
    gallery = np.random.default_rng(2).standard_normal((100, 6))
    gallery = gallery.astype(np.float32)
    whole, norm = screening.pack_gallery(gallery)
    with mock.patch.object(screening, "_PACK_ROWS", 16):
      sliced, sliced_norm = screening.pack_gallery(gallery)
    np.testing.assert_array_equal(sliced, whole)
    self.assertEqual(sliced_norm, norm)

  def test_values_that_cannot_be_screened_are_refused(self):
    self.assertIsNotNone(screening.pack_gallery(np.ones((3, 2), np.float32)))
    # Norms, not entries: 512 entries of 1e17 make a norm of 2.3e18, whose
    # products could reach float32's range in a sum.
    np.testing.assert_array_equal(
      screening.screenable_rows(
        np.stack([np.full(512, 1e17), np.full(512, 1e16)]).astype(np.float32)
      ),
      [False, True],
    )
    for bad in (np.nan, np.inf, 1e20):
      vectors = np.ones((40, 2), np.float32)
      vectors[33, 1] = bad
      with mock.patch.object(screening, "_PACK_ROWS", 16):  # A later slice.
        self.assertIsNone(screening.pack_gallery(vectors), bad)
      np.testing.assert_array_equal(
        screening.screenable_rows(vectors[32:35]), [True, False, True]
      )
      self.assertFalse(screening.screenable(vectors), bad)
    self.assertTrue(screening.screenable(np.ones((4, 3), np.float32)))


class MarginTest(absltest.TestCase):
  def test_covers_the_worst_rounding_and_is_tight(self):
    # Every entry just below a bfloat16 halfway point, all of one sign: each
    # product loses close to 2 b of itself, b = 2**-8.
    dim = 128
    below_half = np.nextafter(np.float32(1 + 2**-8), np.float32(0))
    queries = np.full((1, dim), below_half, np.float32)
    gallery = np.full((1, dim), below_half, np.float32)
    rounded = [
      v.astype(ml_dtypes.bfloat16).astype(np.float64)
      for v in (queries, gallery)
    ]
    error = abs(
      float(rounded[0][0] @ rounded[1][0])
      - float(_float64_similarities(queries, gallery)[0, 0])
    )
    norm = float(np.linalg.norm(gallery.astype(np.float64)))
    bound = float(screening.margins(queries, norm)[0]) / 2
    self.assertLessEqual(error, bound)
    self.assertGreater(error, 0.9 * bound)  # Not a loose bound.


_FAST = "ScreenCandidates"  # AVX-512 BF16 where the CPU has it.
_PORTABLE = "ScreenCandidatesPortable"  # What CPUs without it run.


class ScreenTest(parameterized.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    native_kernels.require("screening")
    native_kernels.require_portable("screening")

  @parameterized.named_parameters(
    ("remainders", 997, 33, 5, 37, _FAST),
    ("features_128", 600, 128, 10, 8, _FAST),
    ("k_1", 300, 16, 1, 9, _FAST),
    ("near_copies", 500, 64, 8, 16, _FAST),
    # Several of the kernel's chunks of queries per thread (64 KiB of
    # bfloat16 queries: 128 at 256 features) for up to 15 threads.
    ("chunks_of_queries", 400, 256, 3, 2000, _FAST),
    ("remainders_portable", 997, 33, 5, 37, _PORTABLE),
    ("near_copies_portable", 500, 64, 8, 16, _PORTABLE),
  )
  def test_lists_every_possible_neighbour_and_little_else(
    self, size, dim, k, num, target
  ):
    rng = np.random.default_rng(size + dim)
    gallery = _clustered(rng, size, dim)
    queries = _clustered(rng, num, dim)
    if "near_copies" in self._testMethodName:
      # Copies of each query differing below bfloat16's resolution.
      for a in range(num):
        gallery[rng.integers(0, size, 6)] = queries[a] * (
          1 + 1e-5 * rng.standard_normal(dim)
        ).astype(np.float32)
    exclude = rng.integers(-1, size, num).astype(np.int32)
    margins = screening.margins(queries, np.linalg.norm(gallery, axis=1).max())
    listed, counts = screening.screen(
      jnp.asarray(queries),
      jnp.asarray(screening.pack_gallery(gallery)[0]),
      size,
      jnp.asarray(margins),
      jnp.asarray(exclude),
      k=k,
      capacity=max(256, 4 * k),
      target=target,
    )
    listed, counts = np.asarray(listed), np.asarray(counts)
    sims = _float64_similarities(queries, gallery)
    left_out = exclude >= 0
    sims[np.flatnonzero(left_out), exclude[left_out]] = -np.inf
    self.assertTrue((counts >= k).all(), counts)
    for a in range(num):
      items = listed[a, : counts[a]]
      self.assertTrue((listed[a, counts[a] :] == -1).all())
      np.testing.assert_array_equal(items, np.unique(items))
      self.assertNotIn(exclude[a], items)
      kth = np.sort(sims[a])[-k]
      # float32's own error (1e-5 at most here) aside, every item at or
      # above the k-th similarity is listed ...
      must = np.flatnonzero(sims[a] >= kth - 1e-5)
      self.assertContainsSubset(must, items)
      # ... and none below the k-th by more than twice the margin.
      self.assertTrue((sims[a, items] >= kth - 2 * margins[a] - 1e-5).all())
    self.assertLess(counts.mean(), size / 4)

  def test_ties_beyond_the_capacity_ask_for_a_full_search(self):
    gallery = np.ones((700, 8), np.float32) / np.sqrt(8)
    queries = gallery[:3]
    listed, counts = screening.screen(
      jnp.asarray(queries),
      jnp.asarray(screening.pack_gallery(gallery)[0]),
      700,
      jnp.asarray(screening.margins(queries, 1.0)),
      jnp.asarray(np.full(3, -1, np.int32)),
      k=5,
      capacity=256,
    )
    np.testing.assert_array_equal(counts, [-1, -1, -1])
    self.assertTrue((np.asarray(listed) == -1).all())


if __name__ == "__main__":
  absltest.main()
