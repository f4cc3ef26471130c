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
"""k-means in JAX: the clusters that NMI and AMI compare with the labels.

The clustering metric of the paper (Sec. 5, following Song et al. 2016) is
the NMI between k-means clusters and class labels (mutual_information.py).
k-means here is seeded with k-means++ and restarted several times (lowest
inertia kept); distances are computed in tiles so memory is O(tile * k),
usable for k in the tens of thousands (k = 11,316 on 60,502 points for
Stanford Online Products).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from proxy_nca_jax import errors
from proxy_nca_jax.native import nearest_centroid
from proxy_nca_jax.native import screening as bfloat16_screening

# Upper bound on the (points x centroids) distance tile in k-means, in
# elements (16 MiB of float32), so memory is O(tile * k), not O(N * k).
_KMEANS_TILE_ELEMENTS = 1 << 22
# k-means++ seeding is sequential in k. Up to this many centres it is the
# exact greedy algorithm; beyond, centres are drawn in this many rounds of
# ceil(k / rounds) D^2-weighted draws each (k-means|| without its
# reclustering step, Bahmani et al. 2012), so k = 11,316 costs about one
# Lloyd iteration instead of 11,316 passes over the data.
_SEEDING_ROUNDS = 128
# From this many clusters on, `kmeans` screens by default (see there).
_SCREENED_CLUSTERS = 1024


def _squared_distances(
  x: jax.Array, x_sq: jax.Array, centroids: jax.Array
) -> jax.Array:
  """(B, k) squared Euclidean distances, clamped at 0 against cancellation."""
  cross = jnp.dot(x, centroids.T, precision=jax.lax.Precision.HIGHEST)
  c_sq = jnp.sum(centroids * centroids, axis=1)
  return jnp.maximum(x_sq[:, None] - 2.0 * cross + c_sq[None, :], 0.0)


def _nearest_by_xla(
  x_tiles: jax.Array, valid_tiles: jax.Array, centroids: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Each point's nearest centroid by XLA's float32 products, one tile of
  points at a time: (T, B) int32 assignments and the inertia (sum of the
  valid points' squared distances), float32 scalar."""
  c_sq = jnp.sum(centroids * centroids, axis=1)

  def tile(inertia, inputs):
    x, valid = inputs
    # argmin |x - c|^2 = argmax 2 x.c - |c|^2. top_k (lowest index first
    # among equals, like argmin) is several times faster on CPU than
    # argmin's two-operand reduction over k in the tens of thousands.
    cross = jnp.dot(x, centroids.T, precision=jax.lax.Precision.HIGHEST)
    best, assignment = jax.lax.top_k(2.0 * cross - c_sq, 1)
    dist = jnp.maximum(jnp.sum(x * x, axis=1) - best[:, 0], 0.0)
    inertia += jnp.sum(jnp.where(valid, dist, 0.0))
    return inertia, assignment[:, 0].astype(jnp.int32)

  inertia, assignments = jax.lax.scan(
    tile, jnp.zeros(()), (x_tiles, valid_tiles)
  )
  return assignments, inertia


def _nearest_screened(
  x_tiles: jax.Array, valid_tiles: jax.Array, centroids: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """`_nearest_by_xla`'s results from the bfloat16-screened kernel
  (native/nearest_centroid.py): the float64 nearest centroids."""
  tiles, size, dim = x_tiles.shape
  nearest, distances, _ = nearest_centroid.nearest(
    x_tiles.reshape(-1, dim), centroids
  )
  inertia = jnp.sum(jnp.where(valid_tiles.reshape(-1), distances, 0.0))
  return nearest.reshape(tiles, size), inertia


def _assign(
  x_tiles: jax.Array,
  valid_tiles: jax.Array,
  centroids: jax.Array,
  screened: bool,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Assigns points to their nearest centroid (`_nearest_screened` or
  `_nearest_by_xla`).

  Args:
    x_tiles: (T, B, D) float32 points, padded.
    valid_tiles: (T, B) bool, False on padding.
    centroids: (k, D) float32.
    screened: whether to use the screened kernel.

  Returns:
    assignments (T, B) int32, per-centroid sums (k, D) and counts (k,) of the
    valid points, and the inertia (sum of squared distances), float32 scalar.
  """
  k, d = centroids.shape
  nearest = _nearest_screened if screened else _nearest_by_xla
  assignments, inertia = nearest(x_tiles, valid_tiles, centroids)
  # Padding goes to segment k, which segment_sum drops. Summing in point
  # order (not by a one-hot matmul) costs O(N * D), not O(N * k * D).
  segments = jnp.where(valid_tiles, assignments, k).reshape(-1)
  sums = jax.ops.segment_sum(x_tiles.reshape(-1, d), segments, k)
  counts = jax.ops.segment_sum(
    valid_tiles.reshape(-1).astype(jnp.float32), segments, k
  )
  return assignments, sums, counts, inertia


def _draw(key: jax.Array, weight: jax.Array, num: int) -> jax.Array:
  """Draws `num` indices with probability proportional to `weight`.

  Inverse-CDF sampling: unlike `jax.random.categorical`, the draw does not
  depend on how many zero-weight (padding) entries trail the array, so
  tiling never changes a k-means result.

  Args:
    key: a PRNG key.
    weight: (N,) non-negative float32, padding (zero weight) at the end.
    num: number of draws (with replacement).

  Returns:
    (num,) int32 indices of entries with positive weight; all 0 if every
    weight is 0 (index 0 is never padding).
  """
  cdf = jnp.cumsum(weight)
  u = jax.random.uniform(key, (num,)) * cdf[-1]
  index = jnp.searchsorted(cdf, u, side="right")
  # Rounding can put u on the total, and an all-zero weight gives u = total =
  # 0: either way searchsorted returns N, so clamp to the last positive entry.
  last = jnp.max(jnp.where(weight > 0, jnp.arange(weight.shape[0]), 0))
  return jnp.minimum(index, last).astype(jnp.int32)


def _kmeans_plus_plus(
  key: jax.Array, x: jax.Array, valid: jax.Array, k: int
) -> jax.Array:
  """k-means++ seeding (Arthur & Vassilvitskii 2007).

  The first centre is a uniformly drawn point. For k <= `_SEEDING_ROUNDS`,
  each next one is the best (by resulting inertia) of 2 + floor(log k)
  candidates drawn with probability proportional to the squared distance to
  the nearest chosen centre, as in scikit-learn. For larger k, each of
  `_SEEDING_ROUNDS` rounds draws ceil(k / rounds) centres at once with those
  probabilities (with replacement: a repeated point leaves an empty
  cluster). Padding is never drawn. Once every point coincides with a
  centre, the remaining centres repeat point 0 (their clusters stay empty).

  Args:
    key: a PRNG key.
    x: (N, D) float32 points, padded at the end.
    valid: (N,) bool, False on padding.
    k: number of centres.

  Returns:
    (k, D) float32 initial centroids.
  """
  x_sq = jnp.sum(x * x, axis=1)
  key, first_key = jax.random.split(key)
  first = x[_draw(first_key, valid.astype(x.dtype), 1)]
  nearest = _squared_distances(x, x_sq, first)[:, 0]
  if k > _SEEDING_ROUNDS:
    per_round = math.ceil((k - 1) / _SEEDING_ROUNDS)
    rounds = math.ceil((k - 1) / per_round)
    centroids = jnp.zeros((1 + rounds * per_round, x.shape[1]), x.dtype)
    centroids = centroids.at[0].set(first[0])

    def batch(i, carry):
      centroids, nearest, key = carry
      key, draw_key = jax.random.split(key)
      drawn = x[_draw(draw_key, jnp.where(valid, nearest, 0.0), per_round)]
      dist = _squared_distances(x, x_sq, drawn)
      nearest = jnp.minimum(nearest, jnp.min(dist, axis=1))
      centroids = jax.lax.dynamic_update_slice_in_dim(
        centroids, drawn, 1 + i * per_round, axis=0
      )
      return centroids, nearest, key

    centroids, _, _ = jax.lax.fori_loop(
      0, rounds, batch, (centroids, nearest, key)
    )
    return centroids[:k]

  trials = 2 + int(math.log(k))
  centroids = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first[0])

  def step(i, carry):
    centroids, nearest, key = carry
    key, draw_key = jax.random.split(key)
    candidates = _draw(draw_key, jnp.where(valid, nearest, 0.0), trials)
    dist = _squared_distances(x, x_sq, x[candidates])
    updated = jnp.minimum(nearest[:, None], dist)
    potential = jnp.sum(jnp.where(valid[:, None], updated, 0.0), axis=0)
    best = jnp.argmin(potential)
    centroids = centroids.at[i].set(x[candidates[best]])
    return centroids, updated[:, best], key

  centroids, _, _ = jax.lax.fori_loop(1, k, step, (centroids, nearest, key))
  return centroids


def _relocate_to_empty_clusters(
  sums: jax.Array,
  counts: jax.Array,
  x_tiles: jax.Array,
  valid_tiles: jax.Array,
  assignments: jax.Array,
  centroids: jax.Array,
) -> tuple[jax.Array, jax.Array]:
  """Gives each empty cluster a point farthest from its centroid.

  scikit-learn's relocation (``_relocate_empty_clusters_dense``): the E
  empty clusters, in index order, take the E points farthest from their
  assigned centroids, farthest first; each moved point leaves the sum and
  count of its former cluster. (faiss splits a large cluster instead.)

  Args:
    sums: (k, D) per-cluster sums of the points; counts: (k,) float32.
    x_tiles, valid_tiles, assignments: (T, B, D), (T, B), (T, B) as in
      `_assign`.
    centroids: (k, D), those the points were assigned to.

  Returns:
    The updated (sums, counts).
  """
  k, d = centroids.shape
  x = x_tiles.reshape(-1, d)
  assigned = assignments.reshape(-1)
  distances = jnp.sum((x - centroids[assigned]) ** 2, axis=1)
  distances = jnp.where(valid_tiles.reshape(-1), distances, -jnp.inf)
  _, farthest = jax.lax.top_k(distances, min(k, distances.shape[0]))
  empty = counts == 0
  # Empty cluster j takes the farthest point of rank (empties before j).
  rank = jnp.cumsum(empty) - 1
  moved = farthest[jnp.clip(rank, 0, farthest.shape[0] - 1)]
  moved_x = jnp.where(empty[:, None], x[moved], 0.0)
  left = jnp.where(empty, assigned[moved], k)  # k: dropped by the scatter.
  sums = sums.at[left].add(-moved_x, mode="drop")
  counts = counts.at[left].add(-1.0, mode="drop")
  sums = jnp.where(empty[:, None], moved_x, sums)
  counts = jnp.where(empty, 1.0, counts)
  return sums, counts


@functools.partial(jax.jit, static_argnames=("k", "screened"))
def _kmeans_single(
  key: jax.Array,
  x_tiles: jax.Array,
  valid_tiles: jax.Array,
  tolerance: jax.Array,
  num_iters: jax.Array,
  *,
  k: int,
  screened: bool,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """One k-means run: seeding then at most `num_iters` Lloyd iterations.

  Stops early once the centroids move by at most `tolerance` (total squared
  shift, already scaled). ``screened``: `_assign`'s.

  Returns (centroids (k, D), assignments (T, B) int32, inertia scalar,
  iterations run int32).
  """
  d = x_tiles.shape[-1]
  centroids = _kmeans_plus_plus(
    key, x_tiles.reshape(-1, d), valid_tiles.reshape(-1), k
  )

  def lloyd(carry):
    i, centroids, _ = carry
    assignments, sums, counts, _ = _assign(
      x_tiles, valid_tiles, centroids, screened
    )
    sums, counts = jax.lax.cond(
      jnp.any(counts == 0),
      _relocate_to_empty_clusters,
      lambda *args: args[:2],
      sums,
      counts,
      x_tiles,
      valid_tiles,
      assignments,
      centroids,
    )
    means = sums / jnp.maximum(counts, 1.0)[:, None]
    # A cluster still empty keeps its previous centroid, not NaN.
    updated = jnp.where(counts[:, None] > 0, means, centroids)
    return i + 1, updated, jnp.sum((updated - centroids) ** 2)

  def going_on(carry):
    i, _, shift = carry
    return (i < num_iters) & (shift > tolerance)

  iters, centroids, _ = jax.lax.while_loop(
    going_on, lloyd, (jnp.int32(0), centroids, jnp.float32(jnp.inf))
  )
  assignments, _, _, inertia = _assign(
    x_tiles, valid_tiles, centroids, screened
  )
  return centroids, assignments, inertia, iters


def _screened(x: np.ndarray, k: int, screening: bool | None) -> bool:
  """Whether `kmeans` (``screening``: its argument) screens; see there."""
  return bfloat16_screening.chosen(
    screening,
    pays=k >= _SCREENED_CLUSTERS,
    vectors=x,
    kernels="nearest_centroid",
    caller="kmeans",
  )


def kmeans(
  x: np.ndarray | jax.Array,
  k: int,
  *,
  seed: int = 0,
  num_iters: int = 50,
  num_restarts: int = 3,
  tolerance: float = 0.0,
  screening: bool | None = None,
) -> tuple[jax.Array, jax.Array]:
  """K-means clustering in JAX; keeps the restart with the lowest inertia.

  Each restart seeds with k-means++ (`jax.random`, from `seed`; see
  `_kmeans_plus_plus` for large k) and runs at most `num_iters` Lloyd
  iterations (jit-compiled, `lax.while_loop`), stopping early once the
  total squared centroid shift is at most `tolerance` times the mean
  per-dimension variance of the data (scikit-learn's convention); with the
  default 0 it stops only when no centroid moves, so the result is that of
  exactly `num_iters` iterations. Distances are computed in tiles of points
  so that memory is O(tile * k) rather than O(N * k); centroid sums are
  segment sums, O(N * D). A cluster left empty by an assignment takes a
  point farthest from its centroid (`_relocate_to_empty_clusters`, as
  scikit-learn); one still empty keeps its previous centroid, so no NaN
  appears. Deterministic for a given seed (on GPU,
  segment sums use atomics and can differ in the last bits).

  Screening: with many clusters on a CPU with AVX-512 BF16, each point's
  nearest centroid comes from a native kernel that rules out most centroids
  in bfloat16, at twice float32's rate, and decides among the rest in
  float64 (native/nearest_centroid.py: an error bound proves the nearest is
  never ruled out). Its assignments are the float64 ones; XLA's float32
  products agree with them except where two centroids are within float32
  rounding of a point's nearest distance.

  Args:
    x: (N, D) float array of points (computed in float32).
    k: number of clusters, 1 <= k <= N.
    seed: seed of the PRNG key.
    num_iters: most Lloyd iterations per restart.
    num_restarts: number of independent seedings.
    tolerance: early-stopping threshold, relative (see above), >= 0.
    screening: None (default) screens where it pays: the CPU backend, a
      CPU with AVX-512 BF16, k >= 1,024, finite points of norms at most
      1e18, and the kernel built. True screens wherever the kernel runs
      (slowly without AVX-512 BF16), False never.

  Returns:
    centroids: (k, D) float32.
    assignments: (N,) int32, index of each point's nearest centroid.

  Raises:
    ValueError: on malformed inputs or arguments out of range, or
      ``screening=True`` where the kernel cannot run.
  """
  x = np.asarray(x, dtype=np.float32)
  if x.ndim != 2:
    raise errors.InvalidInputError(f"x must be (N, D), got shape {x.shape}.")
  n = x.shape[0]
  if not 1 <= k <= n:
    raise errors.InvalidInputError(f"k must be in [1, {n}], got {k}.")
  if num_iters < 0 or num_restarts < 1 or tolerance < 0:
    raise errors.InvalidInputError(
      f"Need num_iters >= 0, num_restarts >= 1 and tolerance >= 0, got "
      f"{num_iters}, {num_restarts} and {tolerance}."
    )
  tile = max(1, min(n, _KMEANS_TILE_ELEMENTS // k))
  num_tiles = math.ceil(n / tile)
  x_tiles = np.zeros((num_tiles * tile, x.shape[1]), np.float32)
  x_tiles[:n] = x
  valid = np.arange(num_tiles * tile) < n
  x_tiles = jnp.asarray(x_tiles.reshape(num_tiles, tile, -1))
  valid = jnp.asarray(valid.reshape(num_tiles, tile))
  scaled_tolerance = jnp.float32(tolerance * np.mean(np.var(x, axis=0)))
  screened = _screened(x, k, screening)

  best = None
  for key in jax.random.split(jax.random.key(seed), num_restarts):
    result = _kmeans_single(
      key,
      x_tiles,
      valid,
      scaled_tolerance,
      jnp.int32(num_iters),
      k=k,
      screened=screened,
    )
    # Strict comparison: the earliest restart wins ties (determinism).
    if best is None or float(result[2]) < float(best[2]):
      best = result
  centroids, assignments, _, _ = best
  return centroids, assignments.reshape(-1)[:n]
