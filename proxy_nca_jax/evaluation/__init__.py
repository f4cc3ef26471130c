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
computed once and that one value is used everywhere it is compared. (On
CPUs with AVX-512 BF16 the counting of a large set that is its own gallery
is screened in bfloat16, `counting.screens`: there each similarity is the
float64 dot product rounded to float32, which XLA's float32 sums can miss by
a rounding, so such a pair may swap between the two paths, as it may
between two CPUs' XLA.)

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

Each algorithm has its module (counting.py,
sorted_prefix.py); this one validates, chooses and summarises. Separate
query and gallery sets (``evals.query_gallery``) are chosen in
query_gallery.py. k-means is in
clustering.py, NMI and AMI in mutual_information.py, and the text tables of
results in tables.py. Everything here takes arrays: a run's config is
applied in inference/split_evaluation.py, and files and figures are written
in reports/.

Typical use:

  metrics = evaluation.evaluate_embeddings(
      embeddings, labels, ks=(1, 2, 4, 8), block_size=1024,
      kmeans_restarts=3, kmeans_iters=50)
  print(evaluation.format_results_table({'step 600': metrics}, ['map@r']))
"""

from collections.abc import Mapping, Sequence

import jax
import numpy as np

from proxy_nca_jax import errors
from proxy_nca_jax.evaluation import (
  clustering,
  counting,
  mutual_information,
  sorted_prefix,
)
from proxy_nca_jax.evaluation.tables import (
  format_results_table,
  markdown_table,
  results_table,
)

# Default side of a similarity tile (queries per block). At 60,502 x 512 the
# extra memory is the embeddings on the device (124 MB) plus a few tiles of
# 4 MB; see benchmarks/README.md for the measured peak. Tiles of 1024 were
# 30% faster than tiles of 2048 there (same run, 2-core AMD EPYC): the
# counting passes over a tile run from cache (benchmarks/README.md, issue 34).
DEFAULT_BLOCK_SIZE = 1024
# Largest R handled by counting (one pass over a tile per positive); above
# it the sorted-prefix algorithm is faster.
MAX_COUNTED_R = 32

Array = np.ndarray | jax.Array

__all__ = [
  "DEFAULT_BLOCK_SIZE",
  "clustering_metrics",
  "evaluate_embeddings",
  "format_results_table",
  "markdown_table",
  "results_table",
  "per_query_scores",
  "retrieval_metrics",
  "summarize_retrieval",
]


def _validate_embeddings(
  embeddings: Array, labels: Array, what: str = "embeddings"
) -> tuple[np.ndarray, np.ndarray]:
  """Returns float32 (N, D) embeddings and the (N,) integer labels."""
  x = np.asarray(embeddings, dtype=np.float32)
  y = np.asarray(labels)
  if x.ndim != 2:
    raise errors.InvalidInputError(
      f"{what} must be (N, D), got shape {x.shape}."
    )
  if y.shape != (x.shape[0],):
    raise errors.InvalidInputError(
      f"labels of {what} must have shape ({x.shape[0]},), got {y.shape}."
    )
  if not np.issubdtype(y.dtype, np.integer):
    raise errors.InvalidInputError(
      f"labels must be integers, got dtype {y.dtype}."
    )
  if x.shape[0] < 1:
    raise errors.InvalidInputError(f"{what} are empty.")
  if not np.all(np.isfinite(x)):
    raise errors.InvalidInputError(f"{what} contain NaN or infinite values.")
  return x, y


def per_query_scores(
  embeddings: Array,
  labels: Array,
  *,
  gallery: Array | None = None,
  gallery_labels: Array | None = None,
  max_k: int = 1,
  block_size: int = DEFAULT_BLOCK_SIZE,
  mesh: jax.sharding.Mesh | None = None,
  screening: bool | None = None,
) -> dict[str, np.ndarray]:
  """Each query's rank of its first positive, precision sum and hits.

  Arguments as `retrieval_metrics`; `max_k` is the largest K that will be
  asked of the result (ranks of first positives beyond the first
  max(max_k, R) neighbours may be reported as inf by the sorted-prefix
  algorithm and the screened counting).

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
      raise errors.InvalidInputError("gallery_labels given without a gallery.")
    g, yg = q, yq
    if q.shape[0] < 2:
      raise errors.InvalidInputError(
        f"Need at least 2 embeddings, got {q.shape[0]}."
      )
  else:
    if gallery_labels is None:
      raise errors.InvalidInputError("A gallery needs gallery_labels.")
    g, yg = _validate_embeddings(gallery, gallery_labels, "gallery")
    if g.shape[1] != q.shape[1]:
      raise errors.InvalidInputError(
        f"Queries have dimension {q.shape[1]}, the gallery {g.shape[1]}."
      )
  if block_size < 1:
    raise errors.InvalidInputError(
      f"block_size must be >= 1, got {block_size}."
    )
  _, dense = np.unique(np.concatenate([yq, yg]), return_inverse=True)
  dense = dense.reshape(-1).astype(np.int32)
  yq, yg = dense[: len(yq)], dense[len(yq) :]
  r = np.bincount(yg, minlength=dense.max() + 1)[yq] - symmetric
  max_r = int(r.max())
  if max_r == 0:
    scores = np.full(len(yq), np.inf), np.zeros(len(yq)), np.zeros(len(yq))
  elif max_r <= MAX_COUNTED_R:
    scores = counting.per_query_scores(
      q,
      yq,
      g,
      yg,
      block_size,
      symmetric,
      mesh,
      max_k,
      counting.screens(q, symmetric, screening),
    )
  else:
    depth = min(max(max_r, max_k), g.shape[0] - symmetric)
    scores = sorted_prefix.per_query_scores(
      q, yq, g, yg, r, depth, block_size, symmetric
    )
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
  screening: bool | None = None,
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
    screening: how the counting algorithm computes a set that is its own
      gallery (`counting.screens`): None (default) screens in bfloat16
      from `counting.SCREENED_ITEMS` items on CPUs with AVX-512 BF16, True
      always (an error where it cannot run), False never. Screened, the
      similarities ranked are the float64 dot products rounded to float32
      (the ranking is as exact; pairs that XLA's float32 sums put within a
      rounding of each other may swap, as between two CPUs' XLA).

  Returns:
    {'recall@K' for K in ks, 'precision@1', 'r_precision', 'map@r'}, Python
    floats.

  Raises:
    ValueError: on malformed inputs, a K < 1 or a block_size < 1.
  """
  ks = tuple(int(k) for k in ks)
  if not ks or min(ks) < 1:
    raise errors.InvalidInputError(
      f"Need at least one K and every K >= 1, got {ks}."
    )
  scores = per_query_scores(
    embeddings,
    labels,
    gallery=gallery,
    gallery_labels=gallery_labels,
    max_k=max(ks),
    block_size=block_size,
    mesh=mesh,
    screening=screening,
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
    entropies (`mutual_information.normalized_mutual_info`,
    `mutual_information.adjusted_mutual_info`).
  """
  x, y = _validate_embeddings(embeddings, labels)
  k = len(np.unique(y))
  _, assignments = clustering.kmeans(
    x, k, seed=seed, num_iters=num_iters, num_restarts=num_restarts
  )
  assignments = np.asarray(assignments)
  return {
    "nmi": mutual_information.normalized_mutual_info(y, assignments),
    "ami": mutual_information.adjusted_mutual_info(y, assignments),
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
