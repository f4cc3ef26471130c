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
"""k-means in JAX and normalised mutual information (NMI).

NMI between k-means clusters and class labels is the clustering metric of
the paper (Sec. 5, following Song et al. 2016). k-means here is seeded with
k-means++ and restarted several times (lowest inertia kept); distances are
computed in tiles so memory is O(tile * k), usable for k in the tens of
thousands.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

# Upper bound on the (points x centroids) distance tile in k-means, in
# elements (16 MiB of float32), so memory is O(tile * k), not O(N * k).
_KMEANS_TILE_ELEMENTS = 1 << 22


def _squared_distances(
  x: jax.Array, x_sq: jax.Array, centroids: jax.Array
) -> jax.Array:
  """(B, k) squared Euclidean distances, clamped at 0 against cancellation."""
  cross = jnp.dot(x, centroids.T, precision=jax.lax.Precision.HIGHEST)
  c_sq = jnp.sum(centroids * centroids, axis=1)
  return jnp.maximum(x_sq[:, None] - 2.0 * cross + c_sq[None, :], 0.0)


def _assign(
  x_tiles: jax.Array, valid_tiles: jax.Array, centroids: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Assigns points to their nearest centroid, one tile of points at a time.

  Args:
    x_tiles: (T, B, D) float32 points, padded.
    valid_tiles: (T, B) bool, False on padding.
    centroids: (k, D) float32.

  Returns:
    assignments (T, B) int32, per-centroid sums (k, D) and counts (k,) of the
    valid points, and the inertia (sum of squared distances), float32 scalar.
  """
  k, d = centroids.shape

  def tile(carry, inputs):
    sums, counts, inertia = carry
    x, valid = inputs
    dist = _squared_distances(x, jnp.sum(x * x, axis=1), centroids)
    assignment = jnp.argmin(dist, axis=1).astype(jnp.int32)
    one_hot = (assignment[:, None] == jnp.arange(k)) & valid[:, None]
    one_hot = one_hot.astype(x.dtype)
    sums += jnp.dot(one_hot.T, x, precision=jax.lax.Precision.HIGHEST)
    counts += jnp.sum(one_hot, axis=0)
    inertia += jnp.sum(jnp.where(valid, jnp.min(dist, axis=1), 0.0))
    return (sums, counts, inertia), assignment

  init = (jnp.zeros((k, d)), jnp.zeros((k,)), jnp.zeros(()))
  (sums, counts, inertia), assignments = jax.lax.scan(
    tile, init, (x_tiles, valid_tiles)
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
  """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007).

  The first centre is a uniformly drawn point; each next one is the best (by
  resulting inertia) of 2 + floor(log k) candidates drawn with probability
  proportional to the squared distance to the nearest chosen centre, as in
  scikit-learn. Padding is never drawn. Once every point coincides with a
  centre, the remaining centres repeat point 0 (their clusters stay empty).

  Args:
    key: a PRNG key.
    x: (N, D) float32 points, padded at the end.
    valid: (N,) bool, False on padding.
    k: number of centres.

  Returns:
    (k, D) float32 initial centroids.
  """
  trials = 2 + int(math.log(k))
  x_sq = jnp.sum(x * x, axis=1)
  key, first_key = jax.random.split(key)
  first = x[_draw(first_key, valid.astype(x.dtype), 1)]
  centroids = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first[0])
  nearest = _squared_distances(x, x_sq, first)[:, 0]

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


@functools.partial(jax.jit, static_argnames=("k", "num_iters"))
def _kmeans_single(
  key: jax.Array,
  x_tiles: jax.Array,
  valid_tiles: jax.Array,
  *,
  k: int,
  num_iters: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One k-means run: seeding then `num_iters` Lloyd iterations.

  Returns (centroids (k, D), assignments (T, B) int32, inertia scalar).
  """
  d = x_tiles.shape[-1]
  centroids = _kmeans_plus_plus(
    key, x_tiles.reshape(-1, d), valid_tiles.reshape(-1), k
  )

  def lloyd(_, centroids):
    _, sums, counts, _ = _assign(x_tiles, valid_tiles, centroids)
    means = sums / jnp.maximum(counts, 1.0)[:, None]
    # An empty cluster keeps its previous centroid instead of becoming NaN.
    return jnp.where(counts[:, None] > 0, means, centroids)

  centroids = jax.lax.fori_loop(0, num_iters, lloyd, centroids)
  assignments, _, _, inertia = _assign(x_tiles, valid_tiles, centroids)
  return centroids, assignments, inertia


def kmeans(
  x: np.ndarray | jax.Array,
  k: int,
  *,
  seed: int = 0,
  num_iters: int = 50,
  num_restarts: int = 3,
) -> tuple[jax.Array, jax.Array]:
  """K-means clustering in JAX; keeps the restart with the lowest inertia.

  Each restart seeds with greedy k-means++ (`jax.random`, from `seed`) and
  runs a fixed number of Lloyd iterations (jit-compiled, `lax.fori_loop`).
  Distances are computed in tiles of points so that memory is
  O(tile * k) rather than O(N * k). A cluster that becomes empty keeps its
  previous centroid, so no NaN appears. Deterministic for a given seed.

  Args:
    x: (N, D) float array of points (computed in float32).
    k: number of clusters, 1 <= k <= N.
    seed: seed of the PRNG key.
    num_iters: Lloyd iterations per restart.
    num_restarts: number of independent seedings.

  Returns:
    centroids: (k, D) float32.
    assignments: (N,) int32, index of each point's nearest centroid.

  Raises:
    ValueError: on malformed inputs or arguments out of range.
  """
  x = np.asarray(x, dtype=np.float32)
  if x.ndim != 2:
    raise ValueError(f"x must be (N, D), got shape {x.shape}.")
  n = x.shape[0]
  if not 1 <= k <= n:
    raise ValueError(f"k must be in [1, {n}], got {k}.")
  if num_iters < 0 or num_restarts < 1:
    raise ValueError(
      f"Need num_iters >= 0 and num_restarts >= 1, got {num_iters} and "
      f"{num_restarts}."
    )
  tile = max(1, min(n, _KMEANS_TILE_ELEMENTS // k))
  num_tiles = math.ceil(n / tile)
  x_tiles = np.zeros((num_tiles * tile, x.shape[1]), np.float32)
  x_tiles[:n] = x
  valid = np.arange(num_tiles * tile) < n
  x_tiles = jnp.asarray(x_tiles.reshape(num_tiles, tile, -1))
  valid = jnp.asarray(valid.reshape(num_tiles, tile))

  best = None
  for key in jax.random.split(jax.random.key(seed), num_restarts):
    result = _kmeans_single(key, x_tiles, valid, k=k, num_iters=num_iters)
    # Strict comparison: the earliest restart wins ties (determinism).
    if best is None or float(result[2]) < float(best[2]):
      best = result
  centroids, assignments, _ = best
  return centroids, assignments.reshape(-1)[:n]


def normalized_mutual_info(
  labels_true: np.ndarray | jax.Array, labels_pred: np.ndarray | jax.Array
) -> float:
  """Normalised mutual information with arithmetic averaging.

  NMI = MI(U, V) / ((H(U) + H(V)) / 2), natural logarithms, computed in
  float64 NumPy from the (sparse) contingency table; the same as scikit-learn's
  `normalized_mutual_info_score` with its default
  ``average_method='arithmetic'``, including its convention of 1.0 when both
  labelings are a single cluster.

  Args:
    labels_true: (N,) integer labels.
    labels_pred: (N,) integer labels (e.g. cluster assignments).

  Returns:
    NMI in [0, 1], a Python float.

  Raises:
    ValueError: if the two label vectors are not 1-D of the same length.
  """
  u = np.asarray(labels_true)
  v = np.asarray(labels_pred)
  if u.ndim != 1 or u.shape != v.shape:
    raise ValueError(
      f"Need two 1-D label vectors of equal length, got "
      f"{np.shape(labels_true)} and {np.shape(labels_pred)}."
    )
  u_values, u_index = np.unique(u, return_inverse=True)
  v_values, v_index = np.unique(v, return_inverse=True)
  if len(u_values) == len(v_values) <= 1:
    return 1.0
  # Only the non-zero cells of the contingency table: O(N) memory even with
  # thousands of classes and clusters (a dense table would be |U| x |V|).
  cells, counts = np.unique(
    u_index.astype(np.int64) * len(v_values) + v_index, return_counts=True
  )
  n = float(u.shape[0])
  p_u = np.bincount(u_index) / n
  p_v = np.bincount(v_index) / n
  p_uv = counts / n
  outer = p_u[cells // len(v_values)] * p_v[cells % len(v_values)]
  mi = max(float(np.sum(p_uv * np.log(p_uv / outer))), 0.0)
  h_u = -float(np.sum(p_u * np.log(p_u)))
  h_v = -float(np.sum(p_v * np.log(p_v)))
  return mi / ((h_u + h_v) / 2.0)
