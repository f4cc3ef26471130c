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
"""Exact k-nearest-neighbour search: the neighbour lists behind a search.

The same ranking as the metrics (`evaluation`): float32 similarities of
`similarity.similarities` ordered by (similarity descending, gallery index
ascending). The gallery is held on the device in chunks of `chunk_rows`
rows, and queries go in blocks; a (block x chunk) tile of similarities is
never larger than ``block_rows * chunk_rows`` floats, so memory is the
gallery plus a few tiles whatever the gallery's size.

Within a tile the k best are found in two selections instead of one over
the whole row (a full `lax.top_k` over a long row costs as much as the
matmul on CPU). The row is cut into groups of `_GROUP` consecutive columns;
the k groups with the largest maxima are chosen (ties: lower group first),
then the k best among the k * `_GROUP` columns of those groups, taken in
gallery order (ties go to the lower position, hence index). This is
exact: every one of the k chosen groups holds an item at least as high as
the k-th chosen maximum t, so the k-th neighbour is >= t; an item of a
group not chosen is <= t, and when it equals t its group comes after every
chosen group whose maximum is t, so k items rank before it. The best k of
each chunk are merged with the running best (earlier chunks first, so
`lax.top_k`'s lower-position-first rule keeps ties by index).
"""

import concurrent.futures
import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from proxy_nca_jax import errors, native
from proxy_nca_jax.evaluation import similarity
from proxy_nca_jax.native import screening

# Consecutive columns whose maximum stands for them in the first selection.
_GROUP = 64
# Queries per device call, and gallery rows per chunk: 256 x 16384 tiles
# (16 MiB) were the fastest of 4096 to 32768 rows measured at 1,000,000 x
# 128 on a 2-core AMD EPYC (benchmarks/README.md, "Search at scale").
DEFAULT_BLOCK_ROWS = 256
DEFAULT_CHUNK_ROWS = 16384
# Screening (`DeviceGallery`): by default for galleries of at least
# _SCREENED_ITEMS items (below, float32 is quick and no kernel is built);
# batches of at least _SCREENED_QUERIES queries, for at most
# _SCREENED_NEIGHBOURS neighbours; _SCREENED_BATCH
# queries per screening call, each listing at most max(_SCREEN_CAPACITY,
# 4 k) items; the listed items scored in float32 for _RESCORED queries at a
# time, at least _RESCORED_WIDTH items (a power of two) per product.
_SCREENED_QUERIES = 2
_SCREENED_ITEMS = 65536
_SCREENED_NEIGHBOURS = 1024
_SCREENED_BATCH = 4096
_SCREEN_CAPACITY = 256
_RESCORED = 128
_RESCORED_WIDTH = 1024


@functools.partial(jax.jit, static_argnames=("k", "masked"))
def _merge_chunk(
  queries: jax.Array,
  chunk: jax.Array,
  first_row: jax.Array,
  num_rows: jax.Array,
  exclude: jax.Array,
  best: tuple[jax.Array, jax.Array],
  *,
  k: int,
  masked: bool,
) -> tuple[jax.Array, jax.Array]:
  """The running k best of each query, updated with one gallery chunk.

  Args:
    queries: (B, D) float32.
    chunk: (S, D) float32, gallery rows first_row .. first_row + S - 1; rows
      from ``num_rows`` on are padding.
    first_row: int32, gallery index of chunk[0].
    num_rows: int32, real rows of the chunk.
    exclude: (B,) int32, a gallery index each query must not return (itself,
      when the queries are gallery rows), or -1.
    best: (similarities (B, k) float32, indices (B, k) int32) so far, best
      first; -inf and index -1 where fewer than k were seen.
    k: neighbours kept, at most the chunk's rows.

  Returns:
    The updated ``best``.
  """
  sims = similarity.similarities(queries, chunk)
  if masked:
    columns = jnp.arange(chunk.shape[0])
    keep = (columns < num_rows) & (first_row + columns != exclude[:, None])
    sims = jnp.where(keep, sims, -jnp.inf)
  grouped = sims.reshape(sims.shape[0], -1, _GROUP)
  _, groups = jax.lax.top_k(grouped.max(axis=2), min(k, grouped.shape[1]))
  # In gallery order, so that a candidate's position orders ties by index.
  groups = jnp.sort(groups, axis=1)
  candidates = jnp.take_along_axis(grouped, groups[:, :, None], axis=1)
  candidates = candidates.reshape(sims.shape[0], -1)
  values, positions = jax.lax.top_k(candidates, min(k, candidates.shape[1]))
  group_of = jnp.take_along_axis(groups, positions // _GROUP, axis=1)
  rows = first_row + group_of * _GROUP + positions % _GROUP
  # Padding and excluded items never displace real ones: mark them -1.
  rows = jnp.where(values == -jnp.inf, -1, rows)
  values = jnp.concatenate([best[0], values], axis=1)
  rows = jnp.concatenate([best[1], rows], axis=1)
  merged, order = jax.lax.top_k(values, k)
  return merged, jnp.take_along_axis(rows, order, axis=1)


@functools.partial(jax.jit, static_argnames=("k", "capacity"))
def _screen(queries, packed, size, query_margins, exclude, *, k, capacity):
  return screening.screen(
    queries, packed, size, query_margins, exclude, k=k, capacity=capacity
  )


@functools.partial(jax.jit, static_argnames=("k",))
def _best_of_items(
  queries: jax.Array,
  rows: jax.Array,
  items: jax.Array,
  exclude: jax.Array,
  *,
  k: int,
) -> tuple[jax.Array, jax.Array]:
  """The k best of listed gallery rows, by float32 similarity then index.

  Args:
    queries: (B, D) float32.
    rows: (U, D) float32, the gallery rows of ``items``.
    items: (U,) int32 gallery indices, ascending, then -1 for padding.
    exclude: (B,) int32, an item each query must not return, or -1.
    k: neighbours kept.
  """
  sims = similarity.similarities(queries, rows)
  keep = (items >= 0)[None, :] & (items[None, :] != exclude[:, None])
  values, positions = jax.lax.top_k(jnp.where(keep, sims, -jnp.inf), k)
  return values, items[positions]


@dataclasses.dataclass
class DeviceGallery:
  """A gallery's unit embeddings on the device, in equal chunks.

  Build it once (`from_array`) and search it many times (`search`). With
  ``screened`` (`from_array`'s default on CPUs with AVX-512 BF16), a batch
  of queries is first screened with bfloat16 similarities
  (`native.screening`: a proven bound keeps every item that can be in a
  query's top k) and only the items listed are scored in float32: the same
  answer at nearly twice float32's rate. The bfloat16 copy (half the
  gallery's size) is made at the first screened search.
  """

  chunks: list[jax.Array]
  size: int
  chunk_rows: int
  # The float32 rows, kept to score the items a screening lists; None when
  # not screened.
  rows: np.ndarray | None = None
  # The packed bfloat16 gallery and its largest norm, once made.
  bfloat16: tuple[jax.Array, float] | None = None

  @classmethod
  def from_array(
    cls,
    gallery: np.ndarray,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    *,
    screened: bool | None = None,
  ) -> "DeviceGallery":
    """Copies ``gallery`` (G, D) float32 (a memory map is fine) in chunks.

    The last chunk is padded; the chunk size is a multiple of the group
    size, and no larger than the gallery needs. On CPU, chunks of a
    64-byte-aligned array (a memory-mapped ``.npy``, for one) are used in
    place, not copied: do not modify ``gallery`` while searching it.

    Args:
      gallery: (G, D) float32.
      chunk_rows: gallery rows per chunk.
      screened: screen batches with bfloat16 similarities (class
        docstring); default: where it pays, galleries of at least
        `_SCREENED_ITEMS` items on a CPU with AVX-512 BF16. The kernel is
        built at the first screened search; where it cannot be, or for a
        gallery with non-finite values, the search is not screened.
    """
    gallery = np.asarray(gallery)
    if gallery.ndim != 2 or gallery.shape[0] == 0:
      raise errors.InvalidInputError(
        f"The gallery must be a non-empty (G, D) array, got {gallery.shape}."
      )
    size = gallery.shape[0]
    rows = _GROUP * -(-min(chunk_rows, size) // _GROUP)
    chunks = []
    for start in range(0, size, rows):
      part = np.asarray(gallery[start : start + rows], np.float32)
      if part.shape[0] < rows:
        part = np.concatenate(
          [part, np.zeros((rows - part.shape[0], part.shape[1]), np.float32)]
        )
      chunks.append(jax.device_put(part))
    engine = cls(chunks=chunks, size=size, chunk_rows=rows)
    if screened is None:
      screened = size >= _SCREENED_ITEMS and _screening_pays()
    if screened:
      engine.rows = gallery
    return engine

  @property
  def screened(self) -> bool:
    """Whether batches are screened (none once the gallery was found
    non-finite)."""
    return self.rows is not None

  def _bfloat16_gallery(self) -> tuple[jax.Array, float] | None:
    """`bfloat16`, made on first use; None (and no more screening) where
    the kernel cannot be built or for a gallery with values screening
    cannot bound (`screening.pack_gallery`)."""
    if self.bfloat16 is None and self.rows is not None:
      made = None
      if native.available("screening"):
        made = screening.pack_gallery(self.rows)
      if made is None:
        self.rows = None
        return None
      packed, norm = made
      self.bfloat16 = (jax.device_put(packed), norm)
    return self.bfloat16

  @property
  def dim(self) -> int:
    return self.chunks[0].shape[1]

  def search(
    self,
    queries: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    block_rows: int = DEFAULT_BLOCK_ROWS,
  ) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest gallery items of each query, exactly.

    Args:
      queries: (Q, D) float32.
      k: neighbours per query, 1 <= k <= the gallery's size (minus one with
        ``exclude``).
      exclude: (Q,) int, the gallery index each query must not return (its
        own row when queries are gallery items), or -1; default none.
      block_rows: queries per device call.

    Returns:
      (similarities (Q, k) float32, gallery indices (Q, k) int64), best
      first, ordered by (similarity descending, index ascending).
    """
    queries = np.asarray(queries, np.float32)
    if queries.ndim != 2 or queries.shape[1] != self.dim:
      raise errors.InvalidInputError(
        f"Queries of shape {queries.shape} against a gallery of "
        f"{self.dim}-d embeddings: embed them with the gallery's model."
      )
    usable = self.size - (exclude is not None)
    if not 1 <= k <= usable:
      raise errors.InvalidInputError(
        f"k={k} must be between 1 and {usable} for a gallery of "
        f"{self.size} items{', each query left out' * (exclude is not None)}."
      )
    excluded = np.full(len(queries), -1, np.int32)
    if exclude is not None:
      excluded[:] = np.asarray(exclude, np.int32)
    if (
      not self.screened
      or len(queries) < _SCREENED_QUERIES
      or k > _SCREENED_NEIGHBOURS
      or self._bfloat16_gallery() is None
    ):
      return self._search_all(queries, excluded, k, block_rows)
    return self._search_screened(queries, excluded, k)

  def _search_screened(
    self, queries: np.ndarray, excluded: np.ndarray, k: int
  ) -> tuple[np.ndarray, np.ndarray]:
    """`search` by screening (class docstring); the queries it cannot
    screen (non-finite, or too many near-ties) are searched in full."""
    packed, largest_norm = self.bfloat16
    sims = np.empty((len(queries), k), np.float32)
    found = np.empty((len(queries), k), np.int64)
    finite = screening.screenable_rows(queries)
    screened = np.flatnonzero(finite)
    left = [np.flatnonzero(~finite)]
    for start in range(0, len(screened), _SCREENED_BATCH):
      batch = screened[start : start + _SCREENED_BATCH]
      # Padded to a power of two up to a rescoring group, then to whole
      # groups: few shapes to compile, little padding for small batches.
      size = 1 << max(3, (len(batch) - 1).bit_length())
      if size > _RESCORED:
        size = -(-len(batch) // _RESCORED) * _RESCORED
      padded = np.zeros(size, np.int64)
      padded[: len(batch)] = batch
      batch_queries = queries[padded]
      listed, counts = jax.device_get(
        _screen(
          jnp.asarray(batch_queries),
          packed,
          jnp.int32(self.size),
          jnp.asarray(screening.margins(batch_queries, largest_norm)),
          jnp.asarray(excluded[padded]),
          k=k,
          capacity=max(_SCREEN_CAPACITY, 4 * k),
        )
      )
      counts = np.where(np.arange(len(padded)) < len(batch), counts, -2)
      left.append(padded[counts == -1])
      for group in range(0, len(padded), _RESCORED):
        kept = group + np.flatnonzero(counts[group : group + _RESCORED] >= 0)
        if len(kept):
          rows = padded[group : group + _RESCORED]
          sims[padded[kept]], found[padded[kept]] = self._best_listed(
            queries[rows], excluded[rows], listed[kept], k, kept - group
          )
    rest = np.concatenate(left)
    if len(rest):
      sims[rest], found[rest] = self._search_all(
        queries[rest], excluded[rest], k, DEFAULT_BLOCK_ROWS
      )
    return sims, found

  def _best_listed(
    self,
    queries: np.ndarray,
    excluded: np.ndarray,
    listed: np.ndarray,
    k: int,
    wanted: np.ndarray,
  ) -> tuple[np.ndarray, np.ndarray]:
    """The k best of the items listed for ``queries[wanted]``, in float32.

    All the group's queries are scored against the union of their lists
    (one product): a superset of each query's list, hence of its top k.
    """
    items = np.unique(listed)
    items = items[items >= 0]
    width = max(_RESCORED_WIDTH, 1 << (len(items) - 1).bit_length())
    padded_items = np.full(width, -1, np.int32)
    padded_items[: len(items)] = items
    rows = np.zeros((width, self.dim), np.float32)
    rows[: len(items)] = self.rows[items]
    values, indices = jax.device_get(
      _best_of_items(
        jnp.asarray(queries),
        jnp.asarray(rows),
        jnp.asarray(padded_items),
        jnp.asarray(excluded),
        k=k,
      )
    )
    return values[wanted], indices[wanted]

  def _search_all(
    self,
    queries: np.ndarray,
    excluded: np.ndarray,
    k: int,
    block_rows: int,
  ) -> tuple[np.ndarray, np.ndarray]:
    """`search` over every float32 similarity, chunk by chunk."""
    num = queries.shape[0]
    block = max(1, min(block_rows, num))
    padded = -(-num // block) * block
    query_rows = np.zeros((padded, self.dim), np.float32)
    query_rows[:num] = queries
    padded_excluded = np.full(padded, -1, np.int32)
    padded_excluded[:num] = excluded
    masked_always = bool((excluded >= 0).any())

    def search_block(start: int) -> tuple[np.ndarray, np.ndarray]:
      block_queries = jnp.asarray(query_rows[start : start + block])
      block_excluded = jnp.asarray(padded_excluded[start : start + block])
      best = (
        jnp.full((block, k), -jnp.inf, jnp.float32),
        jnp.full((block, k), -1, jnp.int32),
      )
      for i, chunk in enumerate(self.chunks):
        first = i * self.chunk_rows
        rows = min(self.chunk_rows, self.size - first)
        best = _merge_chunk(
          block_queries,
          chunk,
          jnp.int32(first),
          jnp.int32(rows),
          block_excluded,
          best,
          k=k,
          masked=masked_always or rows < self.chunk_rows,
        )
      return jax.device_get(best)

    # XLA's top-k runs on one core: two blocks at a time keep both busy.
    workers = min(2, os.cpu_count() or 1, padded // block)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      results = list(pool.map(search_block, range(0, padded, block)))
    sims = np.concatenate([s for s, _ in results])[:num]
    rows = np.concatenate([r for _, r in results])[:num]
    return sims, rows.astype(np.int64)


def _screening_pays() -> bool:
  """Screening is the default on CPUs with AVX-512 BF16 (twice float32's
  rate); elsewhere its portable kernel would be slower than XLA's dot."""
  return jax.default_backend() == "cpu" and "avx512_bf16" in (
    native.library.cpu_flags()
  )


def nearest_neighbours(
  queries: np.ndarray,
  gallery: np.ndarray,
  k: int,
  *,
  exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """`DeviceGallery.search` of a gallery used once."""
  return DeviceGallery.from_array(gallery).search(queries, k, exclude=exclude)
