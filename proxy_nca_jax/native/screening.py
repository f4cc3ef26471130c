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
"""Screening a top-k search with bfloat16 similarities (screened_search.cc).

The exact search (`evaluation.nearest`) ranks by the float32 similarity s of
`similarity.similarities`. Screening computes a = the dot product of the
bfloat16-rounded vectors, summed in float32 (AVX-512 BF16 does it at twice
float32's rate), and lists, for each query, every item with
``a >= (k-th largest a) - margin``. With ``margin = 2 * bound`` and
``|a - s| <= bound`` for every item, the list holds the exact top k: the k
items of the largest a have s >= T - bound (T the k-th largest a), so the
k-th largest s is >= T - bound, and an item with s at least that has
a >= T - 2 * bound. Ties at the k-th place are all listed, so ordering the
listed items by (s, index) gives the exact answer.

The bound (`margins`), for D features, u = 2**-24 and b = 2**-8 (the unit
roundoffs of float32 and bfloat16: 24 and 8 significant bits), with
``g_d = D u / (1 - D u)`` bounding the error of any float32 sum of D
products in any order:

- rounding to bfloat16: ``|q~ . g~ - q . g| <= (2 b + b^2) sum |q_i g_i|``;
- a's float32 sum: ``g_d (1 + b)^2 sum |q_i g_i|`` (the products of two
  bfloat16 are exact in float32);
- s's float32 sum (XLA's, any order): ``g_d sum |q_i g_i|``;
- ``sum |q_i g_i| <= |q| |g|`` (Cauchy-Schwarz), |g| the gallery's largest
  norm; plus ``D 2**-124 (1 + |q| + |g|)`` for values VDPBF16PS flushes
  to zero (subnormal inputs and results).

The margin is rounded up to float32 and the kernel lowers each threshold by
one more float32 step, so the comparisons' own rounding cannot drop an item.
Galleries or queries with non-finite values or norms near float32's
range are not screened (`screenable_rows`).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from proxy_nca_jax import errors
from proxy_nca_jax.native import library

# Items per panel of the packed gallery, and panels per micro-tile
# (screened_search.cc's kLanes and kPanels).
_LANES = 16
_PANELS = 3
# Rows of larger norms are not screened: by Cauchy-Schwarz every partial
# sum of a bfloat16 product then stays below 1e36 (float32's range: 3.4e38).
_LARGEST_NORM = 1e18
# Gallery rows converted at a time by `pack_gallery`.
_PACK_ROWS = 65536


def screenable_rows(vectors: np.ndarray) -> np.ndarray:
  """(N,) bool: which rows of ``vectors`` (N, D) may be screened (finite,
  norms at most 1e18)."""
  vectors = np.asarray(vectors)
  with np.errstate(over="ignore", invalid="ignore"):  # inf: refused.
    norms = np.linalg.norm(vectors, axis=1)
  return np.isfinite(vectors).all(axis=1) & (norms <= _LARGEST_NORM)


def chosen(
  screening: bool | None,
  *,
  pays: bool,
  vectors: np.ndarray,
  kernels: str,
  caller: str,
  also_needs: tuple[str, bool] | None = None,
) -> bool:
  """Whether a caller's bfloat16 screening runs, by its ``screening``
  argument: None where it pays and can run, True always, False never.

  Args:
    screening: the caller's argument.
    pays: the caller's size rule holds (it also needs AVX-512 BF16).
    vectors: what is screened: finite rows of norms at most 1e18.
    kernels: the native library that screens (`library.KERNELS`).
    caller: the call named in the error, e.g. ``"kmeans"``.
    also_needs: another condition to run, (what it is, whether it holds).

  Raises:
    InvalidInputError: ``screening`` is True and it cannot run.
  """
  if screening is False:
    return False
  if screening is None and (
    not pays or "avx512_bf16" not in library.cpu_flags()
  ):
    return False  # Before the checks below: they scan, build the kernel.
  runs = (
    (also_needs is None or also_needs[1])
    and jax.default_backend() == "cpu"
    and screenable(vectors)
    and library.available(kernels)
  )
  if screening is None:
    return runs
  if not runs:
    other = f"{also_needs[0]}, " if also_needs else ""
    raise errors.InvalidInputError(
      f"{caller}(screening=True) needs {other}the CPU backend, finite "
      "values of norms at most 1e18 and the native kernel (g++; "
      "PROXY_NCA_JAX_NATIVE not 0). Pass screening=None to screen only "
      "where it can."
    )
  return True


def screenable(vectors: np.ndarray) -> bool:
  """Whether every row of ``vectors`` may be screened (`screenable_rows`);
  k-means' and the counting's screenings need them all."""
  return bool(screenable_rows(vectors).all())


def bfloat16_bits(values: np.ndarray) -> np.ndarray:
  """uint16 bits of float32 ``values`` rounded to nearest-even bfloat16."""
  bits = np.ascontiguousarray(values, np.float32).view(np.uint32)
  rounding = np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
  return ((bits + rounding) >> np.uint32(16)).astype(np.uint16)


def pack_gallery(gallery: np.ndarray) -> tuple[np.ndarray, float] | None:
  """The gallery's bfloat16 rows in screened_search.cc's layout, and its
  largest row norm, in one pass over it; None if a row cannot be screened
  (`screenable_rows`).

  Args:
    gallery: (G, D) float32 (a memory map is read in slices).

  Returns:
    (P, ceil(D / 2), 16, 2) uint16: panels of 16 items (P a multiple of 3,
    the last items zero), feature pair p of item j of a panel at [., p, j].
    64-byte aligned, so that `jax.device_put` on CPU uses it in place
    instead of holding a second copy. And the largest Euclidean norm of the
    rows (`margins`' ``gallery_norm``).
  """
  size, dim = gallery.shape
  pairs = -(-dim // 2)
  panels = _PANELS * -(-size // (_LANES * _PANELS))
  shape = (panels, pairs, _LANES, 2)
  memory = np.zeros(2 * math.prod(shape) + 64, np.uint8)
  offset = -memory.ctypes.data % 64
  packed = memory[offset : offset + 2 * math.prod(shape)].view(np.uint16)
  packed = packed.reshape(shape)
  largest_norm = 0.0
  step = _PACK_ROWS  # A multiple of the panel's 16 items.
  for start in range(0, size, step):
    part = np.asarray(gallery[start : start + step], np.float32)
    if not screenable_rows(part).all():
      return None
    largest_norm = max(largest_norm, float(np.linalg.norm(part, axis=1).max()))
    rows = bfloat16_bits(part)
    count = rows.shape[0]
    padded = np.zeros((-(-count // _LANES) * _LANES, 2 * pairs), np.uint16)
    padded[:count, :dim] = rows
    first = start // _LANES
    packed[first : first + padded.shape[0] // _LANES] = padded.reshape(
      -1, _LANES, pairs, 2
    ).transpose(0, 2, 1, 3)
  return packed, largest_norm


def margins(queries: np.ndarray, gallery_norm: float) -> np.ndarray:
  """(Q,) float32 margins, 2 x the bound of the module docstring, rounded up.

  Args:
    queries: (Q, D) float32.
    gallery_norm: the largest Euclidean norm of the gallery's rows.
  """
  dim = 2 * -(-queries.shape[1] // 2)
  unit, half = 2.0**-24, 2.0**-8
  sums = dim * unit / (1 - dim * unit)
  relative = (2 * half + half**2) + sums * (2 + 2 * half + half**2)
  norms = np.linalg.norm(np.asarray(queries, np.float64), axis=1)
  flushed = dim * 2.0**-124 * (1 + norms + gallery_norm)
  bound = relative * norms * gallery_norm + flushed
  # 1.0001: float64's own rounding of the lines above, with room to spare.
  return np.nextafter((2 * 1.0001 * bound).astype(np.float32), np.inf)


def screen(
  queries: jax.Array,
  packed: jax.Array,
  size: jax.Array,
  query_margins: jax.Array,
  exclude: jax.Array,
  *,
  k: int,
  capacity: int,
  target: str = "ScreenCandidates",
) -> tuple[jax.Array, jax.Array]:
  """Each query's listed items (module docstring); CPU only, once
  `library.available("screening")` is True.

  Args:
    queries: (Q, D) float32, finite.
    packed: `pack_gallery`'s packed array.
    size: int32 scalar, the gallery's items (the rest of `packed` is
      padding).
    query_margins: (Q,) float32, `margins`.
    exclude: (Q,) int32, an item each query must not list (or -1).
    k: the neighbours wanted, at most the gallery's usable items.
    capacity: the most items listed per query, >= 2 k.
    target: the FFI handler (the tests also call the portable build's,
      ``ScreenCandidatesPortable``).

  Returns:
    ((Q, capacity) int32 items in index order, -1 after the last;
    (Q,) int32 counts, -1 where a query listed more than `capacity` (many
    ties: search it without screening)).
  """
  shapes = (
    jax.ShapeDtypeStruct((queries.shape[0], capacity), jnp.int32),
    jax.ShapeDtypeStruct((queries.shape[0],), jnp.int32),
  )
  return jax.ffi.ffi_call(target, shapes)(
    queries,
    packed,
    jnp.asarray(size, jnp.int32),
    query_margins,
    exclude,
    k=np.int64(k),
  )
