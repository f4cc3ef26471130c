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
only tiles on and above the diagonal are computed. This module is the host
side: the layout by class, the two passes and the scores; the tiles are
computed on the devices by counting_tiles.py.

On CPUs with AVX-512 BF16, a large set that is its own gallery is counted
by a native kernel instead (`screens`, native/screened_counting.py): every
pair's similarity in bfloat16 once, each pair near a threshold scored again
exactly; the similarities ranked are then the float64 dot products rounded
to float32, the same value for a pair however it is reached.
"""

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from proxy_nca_jax.evaluation import counting_tiles
from proxy_nca_jax.native import screened_counting
from proxy_nca_jax.native import screening as bfloat16_screening

# Tiles one device computes per call of the counting algorithm.
_TILES_PER_DEVICE = 4
# Gallery index of padding: never ranked before a tying item.
_PAD_INDEX = np.iinfo(np.int32).max
# From this many items on, a set that is its own gallery is screened by
# default (`screens`).
SCREENED_ITEMS = 16384


def _padded(
  values: np.ndarray, rows: int, fill, order: np.ndarray | None = None
) -> np.ndarray:
  """`values` (or `values[order]`) in `rows` rows, the rest `fill`."""
  out = np.full((rows, *values.shape[1:]), fill, values.dtype)
  if order is None:
    out[: len(values)] = values
  else:  # No temporary copy of the (N, D) embeddings.
    np.take(values, order, axis=0, out=out[: len(order)])
  return out


def _class_layout(
  yq: np.ndarray, yg: np.ndarray, symmetric: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Queries and gallery items ordered by class, and where classes start.

  Classes are ordered by (gallery size, label), items by class: a block
  holds whole classes of similar R and its positives lie in one or two
  blocks.

  Returns:
    q_order (Nq,) and g_order (Ng,): the order of the queries and of the
    gallery items; start (Nq,) int32: for each ordered query, the position
    of its class's first item in the ordered gallery; count (Nq,): its
    class members in the gallery, self included.
  """
  size = np.bincount(yg, minlength=max(yq.max(), yg.max()) + 1)
  class_rank = np.empty_like(size)
  class_rank[np.lexsort((np.arange(len(size)), size))] = np.arange(len(size))
  q_order = np.argsort(class_rank[yq], kind="stable")
  g_order = q_order if symmetric else np.argsort(class_rank[yg], kind="stable")
  g_rank = class_rank[yg[g_order]]
  q_rank = class_rank[yq[q_order]]
  start = np.searchsorted(g_rank, q_rank).astype(np.int32)
  count = size[yq[q_order]]  # Class members in the gallery, self included.
  return q_order, g_order, start, count


@dataclasses.dataclass(frozen=True)
class _Sweeps:
  """Runs the jitted tile sweep on the host's lists of tiles.

  Attributes:
    sweep: from `counting_tiles.tile_sweep`.
    arrays: the replicated inputs on the device (see `per_query_scores`);
      the thresholds are replaced in place between the two passes.
    split: sharding of the tiles over the mesh.
    chunk: tiles per device call.
    bq: queries per block.
    bg: gallery items per block.
    symmetric: queries are the gallery.
  """

  sweep: Callable[..., Any]
  arrays: dict[str, jax.Array]
  split: jax.sharding.NamedSharding
  chunk: int
  bq: int
  bg: int
  symmetric: bool

  def run(
    self, tiles: np.ndarray
  ) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """Yields (tiles, outputs on the host), one device call per chunk."""
    chunk = self.chunk
    pending = []
    for begin in range(0, len(tiles), chunk):
      part = _padded(tiles[begin : begin + chunk], chunk, 0)
      part[len(tiles) - begin :, 2:] = 0  # Padding tiles count nothing.
      pending.append(
        (
          tiles[begin : begin + chunk],
          self.sweep(jax.device_put(part, self.split), self.arrays),
        )
      )
      if len(pending) > 1:  # Keep the device busy while the host works.
        done, out = pending.pop(0)
        yield done, jax.device_get(out)
    for done, out in pending:
      yield done, jax.device_get(out)

  def sides(
    self, tiles: np.ndarray, out: dict[str, Any]
  ) -> Iterator[tuple[slice, dict[str, np.ndarray], int]]:
    """Yields (query rows, side outputs, tile position) of each tile side."""
    for k, (i, j, _, _) in enumerate(tiles):
      yield slice(i * self.bq, (i + 1) * self.bq), out["rows"], k
      if self.symmetric and i != j:
        yield slice(j * self.bg, (j + 1) * self.bg), out["cols"], k


def _member_similarities(
  sweeps: _Sweeps,
  start: np.ndarray,
  count: np.ndarray,
  tq: int,
  tg: int,
  num_members: int,
) -> np.ndarray:
  """Pass 1: (Nq, num_members) float32 similarity of each class member.

  The tiles holding positive pairs give every class member's similarity
  (each pair is in exactly one tile, as row or as column).
  """
  bq, bg, symmetric = sweeps.bq, sweeps.bg, sweeps.symmetric
  nq = len(count)
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
  for tiles, out in sweeps.run(np.concatenate([near, zeros], axis=1)):
    for block, side_out, k in sweeps.sides(tiles, out):
      members[block] = np.fmax(members[block], side_out["members"][k])
  members = members[:nq]
  if np.isnan(members[np.arange(num_members) < count[:, None]]).any():
    raise AssertionError("A class member was in no tile of pass 1.")
  return members


def _positive_thresholds(
  members: np.ndarray,
  start: np.ndarray,
  count: np.ndarray,
  r: np.ndarray,
  g_order: np.ndarray,
  ng: int,
  num_thresholds: int,
  symmetric: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
  """Each query's positives in rank order: (similarity desc, index asc).

  Returns:
    thresholds (Nq, M) float32 similarities and threshold_index (Nq, M)
    gallery indices of the first M = num_thresholds positives (inf and
    `_PAD_INDEX` beyond R); valid (Nq, M) bool, the slots below R; and,
    if symmetric, each query's similarity to itself (Nq,), else None.
  """
  num_members = members.shape[1]
  rows = np.arange(len(count))
  slot = np.arange(num_members)
  position = np.minimum(start[:, None] + slot, ng - 1)
  member_index = g_order[position].astype(np.int32)
  positive = slot < count[:, None]
  own_sim = None
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
  return thresholds, threshold_index, valid, own_sim


def _counts_before_positives(
  sweeps: _Sweeps, r: np.ndarray, tq: int, tg: int, num_thresholds: int
) -> np.ndarray:
  """Pass 2: (Nq, M) int64, every item counted before each positive.

  Padding items and, with the set as its own gallery, the query itself are
  counted like any item.
  """
  bq, symmetric = sweeps.bq, sweeps.symmetric
  block_r = _padded(r, tq * bq, 0).reshape(tq, bq).max(axis=1)
  i, j = np.triu_indices(tq) if symmetric else np.indices((tq, tg))
  i, j = i.reshape(-1), j.reshape(-1)
  cols = np.where(i != j, block_r[j], 0) if symmetric else 0 * i
  counts = np.zeros((tq * bq, num_thresholds), np.int64)
  tiles = np.stack([i, j, block_r[i], cols], axis=1).astype(np.int32)
  for done, out in sweeps.run(tiles):
    for block, side_out, k in sweeps.sides(done, out):
      counts[block] += side_out["counts"][k]
  return counts[: len(r)]


def _scores(
  counts: np.ndarray,
  valid: np.ndarray,
  r: np.ndarray,
  num_thresholds: int,
  q_order: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """First-positive rank, precision sum and hits, back in query order."""
  ranked = np.where(valid, counts, np.iinfo(np.int64).max)
  hit = ranked < r[:, None]
  rank = np.where(r > 0, ranked[:, 0], np.inf)
  precision_sum = np.sum(
    np.where(hit, (np.arange(num_thresholds) + 1) / (ranked + 1.0), 0.0),
    axis=1,
  )
  unsort = np.argsort(q_order)
  return rank[unsort], precision_sum[unsort], hit.sum(axis=1)[unsort]


def screens(q: np.ndarray, symmetric: bool, screening: bool | None) -> bool:
  """Whether the counting of `q` is screened (``screening``: None where it
  pays and can run, True always, False never).

  It pays for a set that is its own gallery of `SCREENED_ITEMS` items or
  more on a CPU with AVX-512 BF16; it runs on the CPU backend, for finite
  rows of norms at most 1e18, once the native kernel is built.

  Raises:
    InvalidInputError: ``screening`` is True and it cannot run.
  """
  return bfloat16_screening.chosen(
    screening,
    pays=len(q) >= SCREENED_ITEMS,
    vectors=q,
    kernels="screened_counting",
    caller="retrieval_metrics",
    also_needs=("the set as its own gallery", symmetric),
  )


def _screened_scores(
  q: np.ndarray,
  q_order: np.ndarray,
  start: np.ndarray,
  count: np.ndarray,
  r: np.ndarray,
  num_members: int,
  num_thresholds: int,
  max_k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The counting of a set that is its own gallery, screened in bfloat16
  by the native kernels (native/screened_counting.py); first positives
  ranked max(max_k, R) or beyond get rank inf."""
  items = np.take(q, q_order, axis=0)
  members = screened_counting.member_similarities(
    items, start, count, num_members
  )
  thresholds, threshold_index, valid, _ = _positive_thresholds(
    members, start, count, r, q_order, len(q), num_thresholds, True
  )
  counts, _ = screened_counting.counts(
    items, thresholds, threshold_index, q_order.astype(np.int32), max_k
  )
  rank, precision_sum, hits = _scores(
    counts.astype(np.int64), valid, r, num_thresholds, q_order
  )
  query_r = np.empty_like(r)
  query_r[q_order] = r
  rank[rank >= np.maximum(max_k, query_r)] = np.inf
  return rank, precision_sum, hits


def per_query_scores(
  q: np.ndarray,
  yq: np.ndarray,
  g: np.ndarray,
  yg: np.ndarray,
  block_size: int,
  symmetric: bool,
  mesh: jax.sharding.Mesh | None,
  max_k: int,
  screened: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-query scores by the counting algorithm.

  See `evaluation.per_query_scores` for the arguments and outputs;
  ``screened`` (see `screens`) counts with the native kernels, on the CPU,
  whatever ``mesh`` and ``block_size``, and may report first positives
  ranked max(max_k, R) or beyond as inf.
  """
  nq, ng = q.shape[0], g.shape[0]
  q_order, g_order, start, count = _class_layout(yq, yg, symmetric)
  r = count - symmetric
  num_members, num_thresholds = int(count.max()), max(int(r.max()), 1)
  if screened:
    return _screened_scores(
      q, q_order, start, count, r, num_members, num_thresholds, max_k
    )

  bq, bg = min(block_size, nq), min(block_size, ng)
  tq, tg = math.ceil(nq / bq), math.ceil(ng / bg)

  mesh = counting_tiles.tile_mesh(mesh)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("tiles"))
  arrays = {
    "q": _padded(q, tq * bq, 0.0, q_order),
    "g": None if symmetric else _padded(g, tg * bg, 0.0, g_order),
    "member_start": _padded(start, tq * bq, 0),
    "index": _padded(g_order.astype(np.int32), tg * bg, _PAD_INDEX),
    "thresholds": np.full((tq * bq, num_thresholds), np.inf, np.float32),
    "threshold_index": np.full((tq * bq, num_thresholds), _PAD_INDEX, np.int32),
  }
  if symmetric:
    arrays["g"] = arrays["q"]  # One copy on the device.
  arrays = jax.device_put(arrays, replicated)
  sweep = counting_tiles.tile_sweep(
    mesh,
    bq,
    bg,
    num_members,
    symmetric,
    native_counts=counting_tiles.counts_natively(mesh),
  )
  chunk = _TILES_PER_DEVICE * mesh.size
  sweeps = _Sweeps(sweep, arrays, split, chunk, bq, bg, symmetric)

  members = _member_similarities(sweeps, start, count, tq, tg, num_members)
  thresholds, threshold_index, valid, own_sim = _positive_thresholds(
    members, start, count, r, g_order, ng, num_thresholds, symmetric
  )
  arrays["thresholds"] = jax.device_put(
    _padded(thresholds, tq * bq, np.inf), replicated
  )
  arrays["threshold_index"] = jax.device_put(
    _padded(threshold_index, tq * bq, _PAD_INDEX), replicated
  )

  counts = _counts_before_positives(sweeps, r, tq, tg, num_thresholds)
  # Padding items (zero vectors, similarity exactly 0) and the query itself
  # were counted like any item; take them back out.
  counts -= (tg * bg - ng) * (thresholds < 0.0)
  if symmetric:
    rows = np.arange(nq)
    s = own_sim[:, None]
    counts -= (s > thresholds) | (
      (s == thresholds) & (g_order[rows, None] < threshold_index)
    )
  return _scores(counts, valid, r, num_thresholds, q_order)
