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
"""Retrieval and clustering metrics of an embedding: Recall@K, MAP@R, NMI.

Queries are ranked against a gallery by dot-product similarity, computed in
float32 at full (`HIGHEST`) matmul precision. For L2-normalised embeddings
the dot product is the cosine similarity and |a - b|^2 = 2 - 2 a.b, so
ranking by descending similarity is ranking by ascending distance. By
default the evaluation set is both the queries and the gallery, and a query
is never its own neighbour; a separate gallery can be given instead.

Ties: neighbours are ranked by (similarity descending, gallery index
ascending), so among exactly equal similarities the lower index comes first:
the order of ``np.argsort(-similarity, kind='stable')``. Every metric uses
this order, so results are exact and deterministic, ties included. Exact
means exact for the float32 similarities: two that differ only beyond
float32 precision (about 1e-7) tie here and rank by index, where a float64
ranking could order them the other way. Each query-gallery similarity is
computed once and that one value is used everywhere it is compared.

The N x N similarity matrix is never built. Two exact algorithms, chosen by
the largest R (other items of a query's class in the gallery):

- Counting (R <= ``MAX_COUNTED_R``, e.g. Stanford Online Products). Only
  ranks matter: Recall@K needs the rank of each query's first positive, and
  MAP@R the ranks of its positives when they are below R. The rank of a
  positive is the number of gallery items ranked before it, a count against
  one threshold. Items are grouped by class, so a first pass over the few
  tiles near the diagonal finds every positive's similarity; a second pass
  over all (block x block) tiles counts, for each query, the items ranked
  before each of its positives. With the set as its own gallery only tiles
  on and above the diagonal are computed: each one counts for its rows and,
  transposed, for its columns. Tiles are spread over the devices of the
  mesh. No top-k and no sort: the working set is a few tiles.
- Sorted prefix (larger R, e.g. Fashion-MNIST's 7,000 per class). Blocks of
  queries are ranked against the whole gallery on the device; the host
  selects and sorts each query's first max(R, K) neighbours.

Typical use:

  metrics = evaluation.evaluate_embeddings(
      embeddings, labels, ks=(1, 2, 4, 8), block_size=2048,
      kmeans_restarts=3, kmeans_iters=50)
  print(evaluation.format_results_table({'step 600': metrics}, ['map@r']))
"""

import concurrent.futures
import functools
import math
import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from proxy_nca_jax import clustering

# Default side of a similarity tile (queries per block). At 60,502 x 512 the
# extra memory is the embeddings on the device (124 MB) plus a few tiles of
# 16 MB; see benchmarks/README.md for the measured peak.
DEFAULT_BLOCK_SIZE = 2048
# Largest R handled by counting (one pass over a tile per positive); above
# it the sorted-prefix algorithm is faster.
MAX_COUNTED_R = 32
# Most ranking keys one device call of the sorted-prefix algorithm returns
# (8 MiB of uint32). On CPU, calls this small keep their buffers in cache;
# measured at N = 35,000, blocks of 2048 queries were several times slower
# per query than blocks of 64.
_KEYS_PER_CALL = 1 << 21
# Tiles one device computes per call of the counting algorithm.
_TILES_PER_DEVICE = 4
# Gallery index of padding: never ranked before a tying item.
_PAD_INDEX = np.iinfo(np.int32).max

Array = np.ndarray | jax.Array


def _validate_embeddings(
  embeddings: Array, labels: Array, what: str = "embeddings"
) -> tuple[np.ndarray, np.ndarray]:
  """Returns float32 (N, D) embeddings and the (N,) integer labels."""
  x = np.asarray(embeddings, dtype=np.float32)
  y = np.asarray(labels)
  if x.ndim != 2:
    raise ValueError(f"{what} must be (N, D), got shape {x.shape}.")
  if y.shape != (x.shape[0],):
    raise ValueError(
      f"labels of {what} must have shape ({x.shape[0]},), got {y.shape}."
    )
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"labels must be integers, got dtype {y.dtype}.")
  if x.shape[0] < 1:
    raise ValueError(f"{what} are empty.")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{what} contain NaN or infinite values.")
  return x, y


@jax.jit
def _ranking_keys(
  queries: jax.Array, first_query: jax.Array, gallery: jax.Array
) -> jax.Array:
  """Keys that sort the gallery into each query's neighbour order.

  Args:
    queries: (B, D) float32; padding rows at the end.
    first_query: int32 scalar, gallery index of queries[0] when the queries
      are gallery rows (their own keys are then excluded), else the gallery
      size.
    gallery: (N, D) float32.

  Returns:
    (B, N) uint32 keys, ascending as similarity descends; equal keys mean
    equal similarities. A query's own key is 2^32 - 1, the largest.
  """
  sim = jnp.dot(queries, gallery.T, precision=jax.lax.Precision.HIGHEST)
  # -0.0 == +0.0 as floats but not as bits: canonicalise before bit tricks.
  sim = jnp.where(sim == 0.0, 0.0, sim)
  bits = jax.lax.bitcast_convert_type(sim, jnp.int32)
  # IEEE-754 bits order non-negative floats like integers and negative ones
  # in reverse; flipping the magnitude bits of the non-negative ones makes
  # the unsigned key decrease as the similarity increases.
  keys = bits ^ (~(bits >> 31) & 0x7FFFFFFF)
  rows = jnp.arange(queries.shape[0])
  keys = keys.at[rows, first_query + rows].set(-1, mode="drop")
  return jax.lax.bitcast_convert_type(keys, jnp.uint32)


def _prefix_scores(
  keys: np.ndarray,
  query_labels: np.ndarray,
  r: np.ndarray,
  gallery_labels: np.ndarray,
  depth: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-query scores from the sorted first `depth` neighbours.

  Each key is packed with its gallery index into one uint64, so a plain sort
  yields exactly the (similarity desc, index asc) order; an O(N) selection
  (`np.partition`) then a sort of only the first `depth` keeps it cheap.

  Args:
    keys: (C, N) uint32 from `_ranking_keys`.
    query_labels: (C,) int.
    r: (C,) int, positives of each query in the gallery.
    gallery_labels: (N,) int.
    depth: neighbours to rank, >= max(r), <= N.

  Returns:
    (first positive rank (C,) float64, inf if none among the first `depth`;
    precision sum (C,) float64; hits (C,) int64), see `per_query_scores`.
  """
  max_r = max(int(r.max()), 1)
  packed = keys.astype(np.uint64)
  packed <<= np.uint64(32)
  packed |= np.arange(gallery_labels.shape[0], dtype=np.uint64)
  if depth < packed.shape[1]:
    packed = np.partition(packed, depth - 1, axis=1)[:, :depth]
  first = np.sort(packed, axis=1)
  # The gallery index is the low word of each packed key.
  same = gallery_labels[first.astype(np.uint32)] == query_labels[:, None]
  rank = np.where(same.any(axis=1), same.argmax(axis=1), np.inf)
  correct = same[:, :max_r] & (np.arange(max_r) < r[:, None])
  hits = np.cumsum(correct, axis=1, dtype=np.int32)
  precision_sum = (hits * correct) @ (1.0 / np.arange(1, max_r + 1))
  return rank, precision_sum, correct.sum(axis=1)


def _sorted_prefix(
  q: np.ndarray,
  yq: np.ndarray,
  g: np.ndarray,
  yg: np.ndarray,
  r: np.ndarray,
  depth: int,
  block_size: int,
  symmetric: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The sorted-prefix algorithm: per-query scores, see `per_query_scores`."""
  nq, ng = q.shape[0], g.shape[0]
  block = max(1, min(block_size, nq, _KEYS_PER_CALL // ng))
  # Pad the last block so that every call has the same shapes (one compile).
  queries = np.zeros((math.ceil(nq / block) * block, q.shape[1]), np.float32)
  queries[:nq] = q
  gallery = jnp.asarray(g)

  def rank_block(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    stop = min(start + block, nq)
    first = jnp.int32(start if symmetric else ng)
    keys = _ranking_keys(
      jnp.asarray(queries[start : start + block]), first, gallery
    )
    rows = slice(start, stop)
    return _prefix_scores(
      np.asarray(keys)[: stop - start], yq[rows], r[rows], yg, depth
    )

  # NumPy's sorts and the XLA kernel release the GIL: threads overlap them.
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    results = list(pool.map(rank_block, range(0, nq, block)))
  return tuple(np.concatenate(a) for a in zip(*results, strict=True))


def _count_before(
  sims: jax.Array,
  thresholds: jax.Array,
  threshold_index: jax.Array,
  item_index: jax.Array,
  num: jax.Array,
) -> jax.Array:
  """Items ranked before each threshold, one pass over `sims` per threshold.

  Args:
    sims: (B, G) float32, queries along axis 0, items along axis 1.
    thresholds: (B, M) float32, similarity of each query's positives.
    threshold_index: (B, M) int32, their gallery indices.
    item_index: (G,) int32, gallery index of each item.
    num: int32 scalar, thresholds to count (the rest stay 0).

  Returns:
    (B, M) int32: items with (similarity, index) before each threshold.
  """

  def count(m, counts):
    t = thresholds[:, m, None]
    before = (sims > t) | (
      (sims == t) & (item_index[None, :] < threshold_index[:, m, None])
    )
    return counts.at[:, m].set(jnp.sum(before, axis=1, dtype=jnp.int32))

  init = jnp.zeros(thresholds.shape, jnp.int32)
  return jax.lax.fori_loop(0, num, count, init)


def _members(sims: jax.Array, start: jax.Array, offset: jax.Array, num: int):
  """(B, num) sims[a, start[a] + s - offset], NaN outside the tile."""
  pos = start[:, None] + jnp.arange(num) - offset
  inside = (pos >= 0) & (pos < sims.shape[1])
  pos = jnp.clip(pos, 0, sims.shape[1] - 1)
  return jnp.where(inside, jnp.take_along_axis(sims, pos, axis=1), jnp.nan)


def _tile(tile, arrays, *, bq: int, bg: int, num_members: int, symmetric):
  """Similarities of one (query block, gallery block) tile and their use.

  Args:
    tile: (4,) int32: query block, gallery block, thresholds to count for
      the rows, thresholds to count for the columns (symmetric only).
    arrays: dict of the replicated inputs (see `_counting`).
    bq: queries per block.
    bg: gallery items per block.
    num_members: most gallery items of one query's class.
    symmetric: queries are the gallery; the tile also counts for the
      queries of its columns, against its rows.

  Returns:
    dict of 'rows' and, if symmetric, 'cols': members (b, num_members)
    float32 similarities of class members inside the tile (NaN elsewhere)
    and counts (b, M) int32.
  """
  i, j = tile[0] * bq, tile[1] * bg
  a = arrays
  sims = jnp.dot(
    jax.lax.dynamic_slice_in_dim(a["q"], i, bq),
    jax.lax.dynamic_slice_in_dim(a["g"], j, bg).T,
    precision=jax.lax.Precision.HIGHEST,
  )

  def side(s, first, items, num):
    rows = functools.partial(jax.lax.dynamic_slice_in_dim, start_index=first)
    return {
      "members": _members(
        s, rows(a["member_start"], slice_size=s.shape[0]), items, num_members
      ),
      "counts": _count_before(
        s,
        rows(a["thresholds"], slice_size=s.shape[0]),
        rows(a["threshold_index"], slice_size=s.shape[0]),
        jax.lax.dynamic_slice_in_dim(a["index"], items, s.shape[1]),
        num,
      ),
    }

  out = {"rows": side(sims, i, j, tile[2])}
  if symmetric:
    out["cols"] = side(sims.T, j, i, tile[3])
  return out


@functools.cache
def _tile_sweep(mesh, bq: int, bg: int, num_members: int, symmetric: bool):
  """Jitted: tiles (T, 4) sharded over `mesh` -> stacked `_tile` outputs."""
  tile_fn = functools.partial(
    _tile, bq=bq, bg=bg, num_members=num_members, symmetric=symmetric
  )

  def local(tiles, arrays):
    return jax.lax.map(lambda t: tile_fn(t, arrays), tiles)

  spec = jax.sharding.PartitionSpec(mesh.axis_names[0])
  return jax.jit(
    jax.shard_map(
      local,
      mesh=mesh,
      in_specs=(spec, jax.sharding.PartitionSpec()),
      out_specs=spec,
      check_vma=False,
    )
  )


def _tile_mesh(mesh: jax.sharding.Mesh | None) -> jax.sharding.Mesh:
  """A 1-D mesh over this process's devices of `mesh` (default: all)."""
  devices = jax.local_devices() if mesh is None else mesh.local_devices
  return jax.make_mesh(
    (len(devices),),
    ("tiles",),
    axis_types=(jax.sharding.AxisType.Auto,),
    devices=devices,
  )


def _counting(
  q: np.ndarray,
  yq: np.ndarray,
  g: np.ndarray,
  yg: np.ndarray,
  block_size: int,
  symmetric: bool,
  mesh: jax.sharding.Mesh | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The counting algorithm: per-query scores, see `per_query_scores`."""
  nq, ng = q.shape[0], g.shape[0]
  # Classes ordered by (gallery size, label), items by class: a block holds
  # whole classes of similar R and its positives lie in one or two blocks.
  size = np.bincount(yg, minlength=max(yq.max(), yg.max()) + 1)
  class_rank = np.empty_like(size)
  class_rank[np.lexsort((np.arange(len(size)), size))] = np.arange(len(size))
  q_order = np.argsort(class_rank[yq], kind="stable")
  g_order = q_order if symmetric else np.argsort(class_rank[yg], kind="stable")
  g_rank = class_rank[yg[g_order]]
  q_rank = class_rank[yq[q_order]]
  start = np.searchsorted(g_rank, q_rank).astype(np.int32)
  count = size[yq[q_order]]  # Class members in the gallery, self included.
  r = count - symmetric
  num_members, num_thresholds = int(count.max()), max(int(r.max()), 1)

  bq, bg = min(block_size, nq), min(block_size, ng)
  tq, tg = math.ceil(nq / bq), math.ceil(ng / bg)

  def padded(values, rows, fill, order=None):
    out = np.full((rows, *values.shape[1:]), fill, values.dtype)
    if order is None:
      out[: len(values)] = values
    else:  # No temporary copy of the (N, D) embeddings.
      np.take(values, order, axis=0, out=out[: len(order)])
    return out

  mesh = _tile_mesh(mesh)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("tiles"))
  arrays = {
    "q": padded(q, tq * bq, 0.0, q_order),
    "g": None if symmetric else padded(g, tg * bg, 0.0, g_order),
    "member_start": padded(start, tq * bq, 0),
    "index": padded(g_order.astype(np.int32), tg * bg, _PAD_INDEX),
    "thresholds": np.full((tq * bq, num_thresholds), np.inf, np.float32),
    "threshold_index": np.full((tq * bq, num_thresholds), _PAD_INDEX, np.int32),
  }
  if symmetric:
    arrays["g"] = arrays["q"]  # One copy on the device.
  arrays = jax.device_put(arrays, replicated)
  sweep = _tile_sweep(mesh, bq, bg, num_members, symmetric)
  chunk = _TILES_PER_DEVICE * mesh.size

  def run(tiles: np.ndarray):
    """Yields (tiles, outputs on the host), one device call per chunk."""
    pending = []
    for begin in range(0, len(tiles), chunk):
      part = padded(tiles[begin : begin + chunk], chunk, 0)
      part[len(tiles) - begin :, 2:] = 0  # Padding tiles count nothing.
      pending.append(
        (
          tiles[begin : begin + chunk],
          sweep(jax.device_put(part, split), arrays),
        )
      )
      if len(pending) > 1:  # Keep the device busy while the host works.
        done, out = pending.pop(0)
        yield done, jax.device_get(out)
    for done, out in pending:
      yield done, jax.device_get(out)

  def sides(tiles, out):
    for k, (i, j, _, _) in enumerate(tiles):
      yield slice(i * bq, (i + 1) * bq), out["rows"], k
      if symmetric and i != j:
        yield slice(j * bg, (j + 1) * bg), out["cols"], k

  # Pass 1: the tiles holding positive pairs give every class member's
  # similarity (each pair is in exactly one tile, as row or as column).
  rows = np.arange(nq)
  has = count > 0
  first_block = np.zeros(tq, np.int64) + tg
  last_block = np.full(tq, -1)
  np.minimum.at(first_block, rows[has] // bq, start[has] // bg)
  np.maximum.at(last_block, rows[has] // bq, (start + count - 1)[has] // bg)
  near = {
    (min(i, j), max(i, j)) if symmetric else (i, j)
    for i in range(tq)
    for j in range(first_block[i], last_block[i] + 1)
  }
  near = np.array(sorted(near), np.int32).reshape(-1, 2)
  members = np.full((tq * bq, num_members), np.nan, np.float32)
  zeros = np.zeros((len(near), 2), np.int32)
  for tiles, out in run(np.concatenate([near, zeros], axis=1)):
    for block, side_out, k in sides(tiles, out):
      members[block] = np.fmax(members[block], side_out["members"][k])
  members = members[:nq]
  if np.isnan(members[np.arange(num_members) < count[:, None]]).any():
    raise AssertionError("A class member was in no tile of pass 1.")

  # Positives in rank order: (similarity desc, gallery index asc).
  slot = np.arange(num_members)
  position = np.minimum(start[:, None] + slot, ng - 1)
  member_index = g_order[position].astype(np.int32)
  positive = slot < count[:, None]
  if symmetric:
    own = position == rows[:, None]
    own_sim = members[rows, np.argmax(own, axis=1)]
    positive &= ~own
  key = np.where(positive, -members, np.inf)
  order = np.lexsort((member_index, key), axis=1)[:, :num_thresholds]
  thresholds = np.take_along_axis(-key, order, axis=1)
  threshold_index = np.take_along_axis(member_index, order, axis=1)
  valid = np.arange(num_thresholds) < r[:, None]
  thresholds = np.where(valid, thresholds, np.inf).astype(np.float32)
  threshold_index = np.where(valid, threshold_index, _PAD_INDEX)
  arrays["thresholds"] = jax.device_put(
    padded(thresholds, tq * bq, np.inf), replicated
  )
  arrays["threshold_index"] = jax.device_put(
    padded(threshold_index, tq * bq, _PAD_INDEX), replicated
  )

  # Pass 2: every tile counts the items ranked before each positive.
  block_r = padded(r, tq * bq, 0).reshape(tq, bq).max(axis=1)
  i, j = np.triu_indices(tq) if symmetric else np.indices((tq, tg))
  i, j = i.reshape(-1), j.reshape(-1)
  cols = np.where(i != j, block_r[j], 0) if symmetric else 0 * i
  counts = np.zeros((tq * bq, num_thresholds), np.int64)
  tiles = np.stack([i, j, block_r[i], cols], axis=1).astype(np.int32)
  for done, out in run(tiles):
    for block, side_out, k in sides(done, out):
      counts[block] += side_out["counts"][k]
  counts = counts[:nq]
  # Padding items (zero vectors, similarity exactly 0) and the query itself
  # were counted like any item; take them back out.
  counts -= (tg * bg - ng) * (thresholds < 0.0)
  if symmetric:
    s = own_sim[:, None]
    counts -= (s > thresholds) | (
      (s == thresholds) & (g_order[rows, None] < threshold_index)
    )

  ranked = np.where(valid, counts, np.iinfo(np.int64).max)
  hit = ranked < r[:, None]
  rank = np.where(r > 0, ranked[:, 0], np.inf)
  precision_sum = np.sum(
    np.where(hit, (np.arange(num_thresholds) + 1) / (ranked + 1.0), 0.0),
    axis=1,
  )
  unsort = np.argsort(q_order)
  return rank[unsort], precision_sum[unsort], hit.sum(axis=1)[unsort]


def per_query_scores(
  embeddings: Array,
  labels: Array,
  *,
  gallery: Array | None = None,
  gallery_labels: Array | None = None,
  max_k: int = 1,
  block_size: int = DEFAULT_BLOCK_SIZE,
  mesh: jax.sharding.Mesh | None = None,
) -> dict[str, np.ndarray]:
  """Each query's rank of its first positive, precision sum and hits.

  Arguments as `retrieval_metrics`; `max_k` is the largest K that will be
  asked of the result (ranks of first positives beyond the first
  max(max_k, R) neighbours may be reported as inf by the sorted-prefix
  algorithm).

  Returns:
    dict of (Nq,) arrays, in query order:
      'r': int64, positives of the query in the gallery (R).
      'first_positive_rank': float64, 0-based rank of the first positive
        (inf if there is none).
      'precision_sum': float64, sum of precision@i over the positions
        i <= R that hold a positive (MAP@R's numerator).
      'hits': int64, positives among the first R neighbours.
  """
  q, yq = _validate_embeddings(embeddings, labels)
  symmetric = gallery is None
  if symmetric:
    if gallery_labels is not None:
      raise ValueError("gallery_labels given without a gallery.")
    g, yg = q, yq
    if q.shape[0] < 2:
      raise ValueError(f"Need at least 2 embeddings, got {q.shape[0]}.")
  else:
    if gallery_labels is None:
      raise ValueError("A gallery needs gallery_labels.")
    g, yg = _validate_embeddings(gallery, gallery_labels, "gallery")
    if g.shape[1] != q.shape[1]:
      raise ValueError(
        f"Queries have dimension {q.shape[1]}, the gallery {g.shape[1]}."
      )
  if block_size < 1:
    raise ValueError(f"block_size must be >= 1, got {block_size}.")
  _, dense = np.unique(np.concatenate([yq, yg]), return_inverse=True)
  dense = dense.reshape(-1).astype(np.int32)
  yq, yg = dense[: len(yq)], dense[len(yq) :]
  r = np.bincount(yg, minlength=dense.max() + 1)[yq] - symmetric
  max_r = int(r.max())
  if max_r == 0:
    scores = np.full(len(yq), np.inf), np.zeros(len(yq)), np.zeros(len(yq))
  elif max_r <= MAX_COUNTED_R:
    scores = _counting(q, yq, g, yg, block_size, symmetric, mesh)
  else:
    depth = min(max(max_r, max_k), g.shape[0] - symmetric)
    scores = _sorted_prefix(q, yq, g, yg, r, depth, block_size, symmetric)
  names = ("first_positive_rank", "precision_sum", "hits")
  result = dict(zip(names, scores, strict=True))
  result["hits"] = result["hits"].astype(np.int64)
  result["r"] = r.astype(np.int64)
  return result


def summarize_retrieval(
  scores: Mapping[str, np.ndarray], ks: Sequence[int]
) -> dict[str, float]:
  """Recall@K, Precision@1, R-Precision and MAP@R from `per_query_scores`."""
  rank, r = scores["first_positive_rank"], scores["r"]
  metrics = {f"recall@{k}": float(np.mean(rank < k)) for k in ks}
  metrics["precision@1"] = float(np.mean(rank < 1))
  has_r = r > 0
  if np.any(has_r):
    metrics["r_precision"] = float(np.mean(scores["hits"][has_r] / r[has_r]))
    metrics["map@r"] = float(np.mean(scores["precision_sum"][has_r] / r[has_r]))
  else:
    metrics["r_precision"] = metrics["map@r"] = float("nan")
  return metrics


def retrieval_metrics(
  embeddings: Array,
  labels: Array,
  *,
  gallery: Array | None = None,
  gallery_labels: Array | None = None,
  ks: Sequence[int] = (1, 2, 4, 8),
  block_size: int = DEFAULT_BLOCK_SIZE,
  mesh: jax.sharding.Mesh | None = None,
) -> dict[str, float]:
  """Recall@K, Precision@1, R-Precision and MAP@R of the queries.

  Each query is ranked against the gallery (by default the other N - 1
  items of the set itself) by (dot-product similarity descending, gallery
  index ascending). R is the number of gallery items of the query's class
  (the query itself excluded).

  - Recall@K: fraction of queries with at least one same-class item among
    their K nearest neighbours, i.e. mean(rank of first positive < K), for
    any K (K beyond the gallery size counts every positive). Queries with
    R = 0 count as misses.
  - Precision@1: fraction of queries whose nearest neighbour is of their
    class; equal to Recall@1 by definition, returned for completeness.
  - R-Precision: (same-class items among the first R neighbours) / R.
  - MAP@R (Musgrave et al. 2020, "A Metric Learning Reality Check"):
    (1 / R) * sum, over the positions i <= R whose neighbour is of the
    query's class, of precision@i.

  R-Precision and MAP@R average over the queries with R > 0 only (NaN if
  there are none).

  Args:
    embeddings: (Nq, D) float query embeddings, NumPy or JAX, assumed
      L2-normalised (cosine similarity = dot product); used in float32.
    labels: (Nq,) integer class labels of the queries.
    gallery: optional (Ng, D) float gallery; None: the queries themselves,
      each query excluded from its own neighbours.
    gallery_labels: (Ng,) integer labels of `gallery`.
    ks: the K of each Recall@K.
    block_size: side of a similarity tile (queries per device block). Peak
      extra memory grows as block_size^2 (see `DEFAULT_BLOCK_SIZE`).
    mesh: tiles are spread over this process's devices of `mesh` (default:
      all local devices); the result does not depend on it.

  Returns:
    {'recall@K' for K in ks, 'precision@1', 'r_precision', 'map@r'}, Python
    floats.

  Raises:
    ValueError: on malformed inputs, a K < 1 or a block_size < 1.
  """
  ks = tuple(int(k) for k in ks)
  if not ks or min(ks) < 1:
    raise ValueError(f"Need at least one K and every K >= 1, got {ks}.")
  scores = per_query_scores(
    embeddings,
    labels,
    gallery=gallery,
    gallery_labels=gallery_labels,
    max_k=max(ks),
    block_size=block_size,
    mesh=mesh,
  )
  return summarize_retrieval(scores, ks)


def clustering_metrics(
  embeddings: Array,
  labels: Array,
  *,
  seed: int = 0,
  num_iters: int = 50,
  num_restarts: int = 3,
) -> dict[str, float]:
  """NMI and AMI between k-means clusters of the embeddings and the labels.

  Args:
    embeddings: (N, D) float array.
    labels: (N,) integer class labels; k = number of distinct labels.
    seed: k-means seed.
    num_iters: Lloyd iterations per restart.
    num_restarts: k-means restarts (lowest inertia kept).

  Returns:
    {'nmi': NMI, 'ami': AMI}, both with arithmetic averaging of the
    entropies (`clustering.normalized_mutual_info`,
    `clustering.adjusted_mutual_info`).
  """
  x, y = _validate_embeddings(embeddings, labels)
  k = len(np.unique(y))
  _, assignments = clustering.kmeans(
    x, k, seed=seed, num_iters=num_iters, num_restarts=num_restarts
  )
  assignments = np.asarray(assignments)
  return {
    "nmi": clustering.normalized_mutual_info(y, assignments),
    "ami": clustering.adjusted_mutual_info(y, assignments),
  }


def evaluate_embeddings(
  embeddings: Array,
  labels: Array,
  *,
  ks: Sequence[int],
  block_size: int,
  kmeans_restarts: int,
  kmeans_iters: int,
  seed: int = 0,
  mesh: jax.sharding.Mesh | None = None,
) -> dict[str, float]:
  """All metrics: `retrieval_metrics` and `clustering_metrics` together.

  Args:
    embeddings: (N, D) float array, assumed L2-normalised.
    labels: (N,) integer class labels.
    ks: the K of each Recall@K.
    block_size: side of a similarity tile of the retrieval metrics.
    kmeans_restarts: k-means restarts.
    kmeans_iters: Lloyd iterations per restart.
    seed: k-means seed.
    mesh: devices for the retrieval metrics (default: all local ones).

  Returns:
    The union of both dicts: recall@K, precision@1, r_precision, map@r, nmi,
    ami.
  """
  metrics = retrieval_metrics(
    embeddings, labels, ks=ks, block_size=block_size, mesh=mesh
  )
  metrics.update(
    clustering_metrics(
      embeddings,
      labels,
      seed=seed,
      num_iters=kmeans_iters,
      num_restarts=kmeans_restarts,
    )
  )
  return metrics


def format_results_table(
  rows: Mapping[str, Mapping[str, float]], keys: Sequence[str]
) -> str:
  """Formats named results as a plain-text table, 4 decimals per value.

  Args:
    rows: result name (e.g. 'step 0 (untrained)') -> metrics dict.
    keys: the metric keys to show, one column each, in this order; a metric
      missing from a row is shown as '-'.

  Returns:
    The table, one header line, one rule and one line per row, no trailing
    newline. Example::

                         recall@1   map@r
      ------------------ -------- -------
      step 0 (untrained)   0.8900  0.2500
  """
  name_width = max([len(name) for name in rows] + [0])
  widths = [max(len(key), 6) for key in keys]

  def line(name: str, cells: Sequence[str]) -> str:
    parts = [name.ljust(name_width)]
    parts += [cell.rjust(w) for cell, w in zip(cells, widths, strict=True)]
    return " ".join(parts).rstrip()

  lines = [
    line("", list(keys)),
    line("-" * name_width, ["-" * w for w in widths]),
  ]
  for name, metrics in rows.items():
    cells = [f"{metrics[key]:.4f}" if key in metrics else "-" for key in keys]
    lines.append(line(name, cells))
  return "\n".join(lines)


def evaluate_with_config(
  embeddings: Array,
  labels: Array,
  config: ml_collections.ConfigDict,
  *,
  block_size: int | None = None,
  mesh: jax.sharding.Mesh | None = None,
) -> dict[str, float]:
  """`evaluate_embeddings` with the run's ``config.evals`` and ``config.seed``.

  Args:
    embeddings: (N, D) float array, assumed L2-normalised.
    labels: (N,) integer class labels.
    config: a full run config.
    block_size: overrides ``config.evals.block_size`` when given.
    mesh: devices to spread the work over (default: as evaluate_embeddings).

  Returns:
    The metrics of `evaluate_embeddings`.
  """
  return evaluate_embeddings(
    embeddings,
    labels,
    ks=tuple(config.evals.recall_ks),
    block_size=block_size or config.evals.block_size,
    kmeans_restarts=config.evals.kmeans_restarts,
    kmeans_iters=config.evals.kmeans_iters,
    seed=config.seed,
    mesh=mesh,
  )
