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
"""k-means' screened nearest centroids (native/nearest_centroid.py).

The packed centroids against ml_dtypes' bfloat16 rounding; the margin's
bound against the largest error of every (point, centroid) pair, computed
apart in float64; the kernel's answers, in the AVX-512 BF16 build (where
the CPU has it) and the portable one, against float64 distances written
without the BLAS: the nearest centroid (the lowest index among equal
distances), its squared distance, and few centroids scored in float64.
k-means with the kernel is checked in tests/evaluation/clustering_test.py.
make test installs g++, so the kernel must build here.
"""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from absl.testing import absltest, parameterized

from proxy_nca_jax.native import nearest_centroid
from tests.testing import native_kernels

_FAST = "NearestCentroid"  # AVX-512 BF16 where the CPU has it.
_PORTABLE = "NearestCentroidPortable"  # What CPUs without it run.


def _float64_distances(points, centroids):
  """(N, K) squared distances in float64 by NumPy's einsum (its own loops,
  no BLAS): |x|^2 - 2 x . c + |c|^2, equal rows giving equal values."""
  x, c = points.astype(np.float64), centroids.astype(np.float64)
  return (
    np.einsum("nd,nd->n", x, x)[:, None]
    - 2 * np.einsum("nd,kd->nk", x, c)
    + np.einsum("kd,kd->k", c, c)
  )


def _bf16(values):
  return values.astype(ml_dtypes.bfloat16).astype(np.float64)


class PackTest(parameterized.TestCase):
  @parameterized.parameters((100, 7), (48, 128), (1, 2))
  def test_layout_rounding_and_half_norms(self, size, dim):
    rng = np.random.default_rng(size)
    centroids = rng.standard_normal((size, dim)).astype(np.float32)
    # Exact halfway cases round to even.
    centroids[0, 0] = np.float32(1 + 2**-8)
    centroids[0, 1 % dim] = np.float32(1 + 3 * 2**-8)
    packed, half_norms = map(
      np.asarray, jax.jit(nearest_centroid.pack)(jnp.asarray(centroids))
    )
    self.assertEqual(packed.dtype, np.uint16)
    self.assertEqual(packed.shape[0] % 3, 0)
    self.assertEqual(packed.shape[1:], (-(-dim // 2), 16, 2))
    rows = packed.transpose(0, 2, 1, 3).reshape(-1, packed.shape[1] * 2)
    want = centroids.astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(rows[:size, :dim], want)
    self.assertEqual(rows[0, 0], np.float32(1).view(np.uint32) >> 16)
    self.assertFalse(rows[size:].any() or rows[:, dim:].any())
    np.testing.assert_allclose(
      half_norms[:size],
      0.5 * np.sum(centroids.astype(np.float64) ** 2, axis=1),
      rtol=1e-6,
    )
    self.assertTrue(np.isposinf(half_norms[size:]).all())


class MarginTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("random", "random"), ("halfway", "halfway"), ("tiny", "tiny")
  )
  def test_covers_every_pairs_error(self, case):
    rng = np.random.default_rng(7)
    points = rng.standard_normal((60, 96)).astype(np.float32)
    centroids = 3 * rng.standard_normal((40, 96)).astype(np.float32)
    below = np.nextafter(np.float32(1 + 2**-8), np.float32(0))
    if case == "halfway":
      # Entries just below a bfloat16 halfway point, one sign: the rounding
      # errors add up instead of cancelling.
      points[:5] = below
      centroids[:5] = 2 * below
    if case == "tiny":
      # Points of 1e-21 beside a centroid of 1e16: the squares of their
      # rounding errors underflow in float32, not their products with it.
      points[:5] = 1e-21 * below
      centroids[0] = 1e16 * below
    # a = bf16 products summed (exactly, here) less h in float32; s exact.
    a = np.einsum("nd,kd->nk", _bf16(points), _bf16(centroids)) - (
      0.5 * np.sum(centroids.astype(np.float32) ** 2, axis=1)
    )
    s = -0.5 * _float64_distances(points, centroids) + 0.5 * np.sum(
      points.astype(np.float64) ** 2, axis=1, keepdims=True
    )
    error = np.abs(a - s).max(axis=1)
    margins = [
      np.asarray(margins(jnp.asarray(points), jnp.asarray(centroids)))
      for margins in (
        nearest_centroid.margins,
        jax.jit(nearest_centroid.margins),
      )
    ]
    # Compiled as one program, XLA must not drop the bfloat16 rounding.
    np.testing.assert_allclose(margins[1], margins[0], rtol=1e-5)
    bound = margins[1] / (2 * 1.01)
    self.assertTrue((error <= bound).all(), (error / bound).max())
    if case != "tiny":
      # Measured rounding errors make it about half the worst case's bound,
      # (2 b + b**2) |x| |c|, b = 2**-8, that the search's screening uses.
      worst = (2 * 2**-8 + 2**-16) * np.outer(
        np.linalg.norm(points, axis=1), np.linalg.norm(centroids, axis=1)
      ).max(axis=1)
      self.assertLess(np.median(bound / worst), 0.6)


class NearestTest(parameterized.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    native_kernels.require("nearest_centroid")
    native_kernels.require_portable("nearest_centroid")

  @parameterized.named_parameters(
    # Remainders in every split: 16 lanes, panels of 48, pairs, 8 points.
    ("remainders", 997, 33, 131, _FAST),
    ("one_centroid", 50, 16, 1, _FAST),
    ("features_128", 600, 128, 300, _FAST),
    # Several chunks of points (64 KiB of bfloat16: 128 at 256 features)
    # and blocks of centroids (64 KiB: 48 at 256 features) per thread.
    ("chunks_and_blocks", 2000, 256, 500, _FAST),
    ("remainders_portable", 997, 33, 131, _PORTABLE),
  )
  def test_is_the_float64_nearest(self, num, dim, size, target):
    rng = np.random.default_rng(num + dim)
    centres = rng.standard_normal((size, dim))
    centroids = centres + 0.2 * rng.standard_normal((size, dim))
    points = centres[rng.integers(0, size, num)]
    points += 0.3 * rng.standard_normal((num, dim))
    centroids = centroids.astype(np.float32)
    points = points.astype(np.float32)
    if size > 2:
      # Equal centroids: the lowest index wins. Near copies, apart below
      # bfloat16's resolution: only float64 tells them apart.
      centroids[size - 1] = centroids[1]
      centroids[2] = centroids[0] + 1e-4 * rng.standard_normal(dim)
      points[:20] = centroids[0] + 5e-5 * rng.standard_normal((20, dim))
    nearest, distances, scored = map(
      np.asarray,
      nearest_centroid.nearest(
        jnp.asarray(points), jnp.asarray(centroids), target=target
      ),
    )
    want = _float64_distances(points, centroids)
    np.testing.assert_array_equal(nearest, np.argmin(want, axis=1))
    np.testing.assert_allclose(distances, want.min(axis=1), rtol=1e-6)
    self.assertTrue(((scored >= 1) & (scored <= size)).all())
    if size > 2:
      self.assertGreaterEqual(scored[:20].min(), 2)  # 0 and 2 both scored.
      self.assertNotIn(size - 1, nearest)
    if size >= 100:
      self.assertLess(scored.mean(), size / 10)


if __name__ == "__main__":
  absltest.main()
