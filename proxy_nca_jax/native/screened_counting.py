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
"""The counting algorithm screened in bfloat16 (screened_counting.cc).

For a set that is its own gallery (`evaluation.counting`), ordered by
class. The similarity every pair is ranked by is s = fl32(Dot), the float64
dot product of the float32 vectors (exact products, a fixed order of sums,
bf16_tile.h) rounded to float32: thresholds and re-scored pairs alike.
The kernel compares v, the dot product of the bfloat16-rounded vectors
summed in float32, with each threshold t of a query a: v > t + E_a proves
s > t, v < t - E_a proves s < t, and a pair in between is scored again. E_a
bounds |v - s| for every pair of a, with D terms, u = 2**-24 and
g = D u / (1 - D u):

- bfloat16 rounding, exactly ``x.y - x~.y~ = x.(y - y~) + (x - x~).y~``, so
  at most ``|x| R + r C`` (Cauchy-Schwarz), r = |x - x~| and R the largest
  one, C the largest |y~|: the measured rounding errors, as in
  nearest_centroid.py;
- v's float32 sum of the exact bfloat16 products: ``g |x~| C``;
- values VDPBF16PS flushes to zero: ``D 2**-124 (1 + |x| + C)``;
- rounding s to float32: once |s64 - t| exceeds two float32 steps of
  |s| <= |x| X (X the largest |y|), fl32(s64) and t are ordered as s64 and
  t, so ``2**-22 |x| X`` more, with the float64 sums' own error (below
  ``D 2**-53 |x| X``) inside it.

The norms and the bound are summed in float64, the bound enlarged by
0.01 % and rounded up to float32, and the kernel moves each comparison one
more float32 step outwards. Rows must be finite with norms at most 1e18
(`screening.screenable`).
"""

import jax
import jax.numpy as jnp
import numpy as np

from proxy_nca_jax.native import screening

# Rows whose norms `margins` computes at a time: its temporaries are a
# few arrays of this many rows (32 MB each at 512 features).
_SLICE_ROWS = 16384


def _row_norms(items: np.ndarray) -> tuple[np.ndarray, ...]:
  """(N,) float64 |x|, |x - x~| and |x~| of each row, x~ = bfloat16(x),
  each at least the exact value: float64 sums of squares (einsum, no BLAS;
  no float32 square underflows) taken up by their largest error, far below
  1e-10 relative; by slices of rows, so that the temporaries stay small."""
  rows = []
  for start in range(0, items.shape[0], _SLICE_ROWS):
    x = np.asarray(items[start : start + _SLICE_ROWS], np.float32)
    bits = screening.bfloat16_bits(x).astype(np.uint32) << np.uint32(16)
    rounded = bits.view(np.float32).astype(np.float64)
    x = x.astype(np.float64)
    error = x - rounded
    rows.append([np.einsum("nd,nd->n", v, v) for v in (x, error, rounded)])
  squares = np.concatenate(rows, axis=1)
  return tuple(np.sqrt(squares * (1 + 1e-10)))


def margins(items: np.ndarray) -> np.ndarray:
  """(N,) float32 E of the module docstring for each row of ``items``."""
  dim = 2 * -(-items.shape[1] // 2)
  unit = 2.0**-24
  norms, errors, rounded_norms = _row_norms(items)
  largest_error, largest_rounded = errors.max(), rounded_norms.max()
  sums = dim * unit / (1 - dim * unit)
  bound = (
    norms * largest_error
    + errors * largest_rounded
    + sums * rounded_norms * largest_rounded
    + dim * 2.0**-124 * (1 + norms + largest_rounded)
    + 2.0**-22 * norms * norms.max()
  )
  return np.nextafter((1.0001 * bound).astype(np.float32), np.float32(np.inf))


def member_similarities(
  items: np.ndarray,
  start: np.ndarray,
  count: np.ndarray,
  width: int,
  *,
  target: str = "MemberSimilarities",
) -> np.ndarray:
  """(N, width) float32 s of each item with each member of its class
  (rows start[a] ... start[a] + count[a] - 1 of ``items``), NaN beyond.

  CPU only, once `library.available("screened_counting")`; ``target``: the
  FFI handler (the tests also call ``MemberSimilaritiesPortable``).
  """
  result = jax.ShapeDtypeStruct((items.shape[0], width), jnp.float32)
  return np.asarray(
    jax.ffi.ffi_call(target, result)(
      np.asarray(items, np.float32),
      np.asarray(start, np.int32),
      np.asarray(count, np.int32),
    )
  )


def counts(
  items: np.ndarray,
  thresholds: np.ndarray,
  threshold_index: np.ndarray,
  item_index: np.ndarray,
  max_k: int,
  *,
  target: str = "ScreenedCounts",
) -> tuple[np.ndarray, np.ndarray]:
  """Items ranked before each positive of each item (screened_counting.cc).

  Args:
    items: (N, D) float32, screenable; the set and its own gallery.
    thresholds: (N, M) float32: each item's positive similarities
      (`member_similarities`) in rank order, +inf beyond its R.
    threshold_index: (N, M) int32 gallery indices of those positives.
    item_index: (N,) int32 gallery index of each row.
    max_k: the largest K of Recall@K asked for.
    target: the FFI handler (or ``ScreenedCountsPortable``).

  Returns:
    (N, M) int32 counts, each item's self left out: exact below the cap,
    R for a positive and max(max_k, R) for the first one, at or past it
    otherwise (garbage beyond R); and (N,) int32, the pairs each query
    scored again.
  """
  packed = screening.pack_gallery(items)
  if packed is None:
    raise ValueError("rows that cannot be screened (screening.screenable)")
  shapes = (
    jax.ShapeDtypeStruct(thresholds.shape, jnp.int32),
    jax.ShapeDtypeStruct((items.shape[0],), jnp.int32),
  )
  found, scored = jax.ffi.ffi_call(target, shapes)(
    np.asarray(items, np.float32),
    packed[0],
    np.asarray(thresholds, np.float32),
    np.asarray(threshold_index, np.int32),
    np.asarray(item_index, np.int32),
    margins(items),
    max_k=np.int64(max_k),
  )
  return np.asarray(found), np.asarray(scored)
