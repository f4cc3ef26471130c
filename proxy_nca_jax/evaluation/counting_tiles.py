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
"""The device side of the counting algorithm (counting.py): similarity tiles.

A tile is the (block x block) similarities of a query block and a gallery
block. For each of its queries it gives the similarities of the query's
class members inside the tile and counts, for each positive threshold, the
items ranked before it; with the set as its own gallery the tile also does
so, transposed, for the queries of its columns. `tile_sweep` maps a list of
tiles, sharded over a 1-D mesh of this process's devices (`tile_mesh`).
"""

import functools

import jax
import jax.numpy as jnp

from proxy_nca_jax.evaluation import similarity


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
    arrays: dict of the replicated inputs (see `counting.per_query_scores`).
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
def tile_sweep(mesh, bq: int, bg: int, num_members: int, symmetric: bool):
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


def tile_mesh(mesh: jax.sharding.Mesh | None) -> jax.sharding.Mesh:
  """A 1-D mesh over this process's devices of `mesh` (default: all)."""
  devices = jax.local_devices() if mesh is None else mesh.local_devices
  return jax.make_mesh(
    (len(devices),),
    ("tiles",),
    axis_types=(jax.sharding.AxisType.Auto,),
    devices=devices,
  )
