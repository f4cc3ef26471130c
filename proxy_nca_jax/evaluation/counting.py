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
"""Retrieval ranks by counting: for classes with few members (e.g. SOP).

The counting algorithm of `evaluation` (see its docstring for the
ranking order and tie rule): the rank of a positive is the number of
gallery items ranked before it, counted tile by tile over (block x block)
similarity tiles spread over the devices; with the set as its own gallery
only tiles on and above the diagonal are computed.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from proxy_nca_jax.evaluation import similarity

# Tiles one device computes per call of the counting algorithm.
_TILES_PER_DEVICE = 4
# Gallery index of padding: never ranked before a tying item.
_PAD_INDEX = np.iinfo(np.int32).max


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
    arrays: dict of the replicated inputs (see `per_query_scores`).
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
  sims = similarity.similarities(
    jax.lax.dynamic_slice_in_dim(a["q"], i, bq),
    jax.lax.dynamic_slice_in_dim(a["g"], j, bg),
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


def per_query_scores(
  q: np.ndarray,
  yq: np.ndarray,
  g: np.ndarray,
  yg: np.ndarray,
  block_size: int,
  symmetric: bool,
  mesh: jax.sharding.Mesh | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-query scores by the counting algorithm.

  See `evaluation.per_query_scores` for the arguments and outputs.
  """
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
