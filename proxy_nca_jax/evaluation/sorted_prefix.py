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
"""Retrieval ranks by sorted prefixes: for classes with many members.

The sorted-prefix algorithm of `evaluation` (see its docstring for the
ranking order and tie rule): blocks of queries are ranked against the whole
gallery on the device as integer keys; the host selects and sorts each
query's first `depth` neighbours.
"""

import concurrent.futures
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from proxy_nca_jax.evaluation import similarity

# Most ranking keys one device call of the sorted-prefix algorithm returns
# (8 MiB of uint32). On CPU, calls this small keep their buffers in cache;
# measured at N = 35,000, blocks of 2048 queries were several times slower
# per query than blocks of 64.
_KEYS_PER_CALL = 1 << 21


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
  sim = similarity.similarities(queries, gallery)
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


def per_query_scores(
  q: np.ndarray,
  yq: np.ndarray,
  g: np.ndarray,
  yg: np.ndarray,
  r: np.ndarray,
  depth: int,
  block_size: int,
  symmetric: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-query scores by the sorted-prefix algorithm.

  See `evaluation.per_query_scores` for the arguments and outputs.
  """
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
