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
"""Each point's nearest centroid, screened in bfloat16 (nearest_centroid.cc).

k-means' assignment (`evaluation.clustering`) takes, for each point x, the
centroid c of the largest s(c) = x . c - h(c), h(c) = |c|^2 / 2 (the
smallest |x - c|^2). The kernel computes a(c) = x~ . c~ - h32(c), x~ and c~
rounded to bfloat16, summed in float32, h32 = h in float32, and scores in
float64 only the centroids with a(c) >= (the largest a) - margin; its
answer is the float64 one (nearest_centroid.cc says why the nearest is
always among them). The margin is 2 E, E a bound on |a(c) - s(c)| for every
c, with D features, u = 2**-24 the unit roundoff of float32 and
g = D u / (1 - D u):

- bfloat16 rounding, exactly ``x . c - x~ . c~ = x . (c - c~) + (x - x~) . c~``,
  so at most ``|x| R + r C`` (Cauchy-Schwarz), r = |x - x~|, R the largest
  |c - c~| and C the largest |c~|; measured, not assumed: r and R are the
  actual rounding errors, a few times smaller than bfloat16's worst case;
- the float32 sum of the exact bf16 products: ``g |x~| C``;
- h32: ``(g + u) H``, H the largest h; subtracting it: ``u (|a| + h)``;
  both within ``(g + 2 u) (|x~| C + H)`` with the sum's;
- values VDPBF16PS flushes to zero: ``D 2**-124 (1 + |x| + C)``
  (screening.py).

These norms are computed in float32, so the margin is enlarged by 1 %,
far more than their own rounding, and the kernel lowers each threshold by
one more float32 step. Points and centroids must be finite with norms at
most 1e18 (`screening.screenable`), so that no product or sum overflows.
"""

import jax
import jax.numpy as jnp

# Items per panel and panels per micro-tile (bf16_tile.h's kLanes, kPanels).
_LANES = 16
_PANELS = 3


def _bfloat16_bits(values: jax.Array) -> jax.Array:
  """uint32 bits of float32 ``values`` (finite) rounded to the nearest
  bfloat16, ties to even, in the high half (bf16_tile.h's ToBf16).

  In integers: under jit, XLA may drop a float32 -> bfloat16 -> float32
  round trip (it allows excess precision), which would zero the rounding
  errors that the margin measures.
  """
  bits = jax.lax.bitcast_convert_type(values, jnp.uint32)
  rounding = jnp.uint32(0x7FFF) + ((bits >> 16) & jnp.uint32(1))
  return (bits + rounding) & jnp.uint32(0xFFFF0000)


def _bfloat16(values: jax.Array) -> jax.Array:
  """float32 ``values`` (finite) rounded to bfloat16, as float32."""
  return jax.lax.bitcast_convert_type(_bfloat16_bits(values), jnp.float32)


def pack(centroids: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The centroids as the kernel reads them.

  Args:
    centroids: (K, D) float32.

  Returns:
    (P, ceil(D / 2), 16, 2) uint16 bfloat16 bits: panels of 16 centroids
    (P a multiple of 3, the last ones zero), feature pair p of centroid j
    of a panel at [., p, j]; and (16 P,) float32 h32 = |c|^2 / 2, +inf on
    the padding.
  """
  size, dim = centroids.shape
  pairs = -(-dim // 2)
  panels = _PANELS * -(-size // (_LANES * _PANELS))
  bits = (_bfloat16_bits(centroids) >> 16).astype(jnp.uint16)
  bits = jnp.pad(bits, ((0, panels * _LANES - size), (0, 2 * pairs - dim)))
  packed = bits.reshape(panels, _LANES, pairs, 2).transpose(0, 2, 1, 3)
  half_norms = 0.5 * jnp.sum(centroids * centroids, axis=1)
  half_norms = jnp.pad(
    half_norms, (0, panels * _LANES - size), constant_values=jnp.inf
  )
  return packed, half_norms


def _norms(rows: jax.Array) -> jax.Array:
  """(N,) float32 Euclidean norms of ``rows``, at least the exact ones
  less their float32 sums' rounding (which the 1 % covers).

  Each row is divided by a power of two at least its largest entry
  (exactly), so that no square underflows but those of entries below
  2**-63 of it; their sum, at most D 2**-126, is added.
  """
  _, exponent = jnp.frexp(jnp.max(jnp.abs(rows), axis=1))
  scale = jnp.ldexp(jnp.ones(rows.shape[0], rows.dtype), exponent)
  scaled = rows / scale[:, None]
  squares = jnp.sum(scaled * scaled, axis=1) + rows.shape[1] * 2.0**-126
  return scale * jnp.sqrt(squares)


def margins(points: jax.Array, centroids: jax.Array) -> jax.Array:
  """(N,) float32 margins, 2 E of the module docstring, 1 % enlarged.

  Args:
    points: (N, D) float32, `screening.screenable`.
    centroids: (K, D) float32.
  """
  dim = 2 * -(-points.shape[1] // 2)
  unit = 2.0**-24
  sums = dim * unit / (1 - dim * unit)
  rounded = _bfloat16(centroids)
  largest_error = jnp.max(_norms(centroids - rounded))
  largest_norm = jnp.max(_norms(rounded))
  largest_half = jnp.max(0.5 * jnp.sum(centroids * centroids, axis=1))
  norms = _norms(points)
  errors = _norms(points - _bfloat16(points))
  bound = (
    norms * largest_error
    + errors * largest_norm
    + (sums + 2 * unit) * ((norms + errors) * largest_norm + largest_half)
    + dim * 2.0**-124 * (1 + norms + largest_norm)
  )
  return 2 * 1.01 * bound


def nearest(
  points: jax.Array,
  centroids: jax.Array,
  *,
  target: str = "NearestCentroid",
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Each point's nearest centroid (the float64 answer; lowest index among
  equals); CPU only, once `library.available("nearest_centroid")`.

  Args:
    points: (N, D) float32, `screening.screenable`.
    centroids: (K, D) float32, K >= 1.
    target: the FFI handler (the tests also call the portable build's,
      ``NearestCentroidPortable``).

  Returns:
    (N,) int32 nearest centroids; (N,) float32 squared distances to them
    (from float64); (N,) int32 centroids scored in float64 per point (the
    ones the screening left).
  """
  num = points.shape[0]
  packed, half_norms = pack(centroids)
  shapes = (
    jax.ShapeDtypeStruct((num,), jnp.int32),
    jax.ShapeDtypeStruct((num,), jnp.float32),
    jax.ShapeDtypeStruct((num,), jnp.int32),
  )
  return jax.ffi.ffi_call(target, shapes)(
    points, packed, centroids, half_norms, margins(points, centroids)
  )
