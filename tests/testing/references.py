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
"""Float64 references that give the same answer on every machine.

A BLAS matmul is not an exact reference where a result hinges on a tie: on
some CPUs (OpenBLAS's SkylakeX kernels, for one) ``x @ g.T`` gives exact
copies of a vector different float64 similarities to the same query,
depending on where the copies sit in the matrix. The similarities here are
computed once per pair of *distinct* vectors, each as a correctly rounded
sum of its exact float64 products (`math.fsum`), and then indexed: copies
tie, on any CPU, whatever ``matmul`` is passed in.

Exact copies aside, a float32 engine cannot order two items whose exact
similarities differ by less than its rounding error: on a barely trained
network (similarities near 1) two gallery items 1 ulp apart are tied by one
CPU's float32 dot and ordered by another's. `query_gallery_metric_bounds`
gives the lowest and highest metrics that any float32 dot product may lead
to; where no such near-tie exists, the two are the exact metrics.
"""

import math
from collections.abc import Callable, Sequence

import numpy as np

Matmul = Callable[[np.ndarray, np.ndarray], np.ndarray]


def fsum_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(n, d) x (m, d) -> (n, m) dot products, each correctly rounded.

  Products of float32 (or float64) entries are formed in float64 and summed
  by `math.fsum`, which rounds the exact sum once: the result depends on
  the two vectors alone, not on their positions or on the BLAS.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.array([[math.fsum(row * col) for col in b] for row in a])


def similarities(
  queries: np.ndarray,
  gallery: np.ndarray,
  matmul: Matmul = fsum_matmul,
) -> np.ndarray:
  """(Nq, Ng) float64 dot products; exact copies always get equal values.

  Args:
    queries: (Nq, D) vectors.
    gallery: (Ng, D) vectors.
    matmul: computes the dot products of the distinct vectors; whatever it
      does with positions, each distinct pair is computed once.

  Returns:
    (Nq, Ng) float64 similarities.
  """
  q, g = np.asarray(queries, np.float64), np.asarray(gallery, np.float64)
  distinct, inverse = np.unique(
    np.concatenate([q, g]), axis=0, return_inverse=True
  )
  inverse = inverse.reshape(-1)
  table = np.asarray(matmul(distinct, distinct), np.float64)
  return table[np.ix_(inverse[: len(q)], inverse[len(q) :])]


def retrieval_per_query(
  embeddings: np.ndarray,
  labels: np.ndarray,
  gallery: np.ndarray | None = None,
  gallery_labels: np.ndarray | None = None,
  matmul: Matmul = fsum_matmul,
) -> dict[str, np.ndarray]:
  """Brute-force ranks, one query at a time, from `similarities`.

  Neighbours are ordered by a stable sort of -similarity (equal values keep
  gallery-index order); with no gallery, the set is its own gallery and a
  query is not its own neighbour.

  Returns:
    dict of (Nq,) arrays: 'first_positive_rank' (float, inf without a
    positive), 'precision_sum' (MAP@R's numerator), 'hits' (positives in
    the first R) and 'r'.
  """
  labels = np.asarray(labels)
  symmetric = gallery is None
  g = embeddings if symmetric else gallery
  g_labels = labels if symmetric else np.asarray(gallery_labels)
  sim = similarities(embeddings, g, matmul)
  ranked = []
  for i in range(sim.shape[0]):
    others = np.arange(sim.shape[1])
    if symmetric:
      others = np.delete(others, i)
    order = others[np.argsort(-sim[i, others], kind="stable")]
    ranked.append(g_labels[order] == labels[i])
  return _scores(ranked)


def _scores(ranked: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
  """`retrieval_per_query`'s dict from each query's ranked gallery, given as
  booleans (True: the query's class)."""
  out = {"first_positive_rank": [], "precision_sum": [], "hits": [], "r": []}
  for correct in ranked:
    r = int(correct.sum())
    top = correct[:r]
    out["first_positive_rank"].append(np.argmax(correct) if r else np.inf)
    out["precision_sum"].append(
      float(np.sum(np.cumsum(top) / np.arange(1, r + 1) * top)) if r else 0.0
    )
    out["hits"].append(int(top.sum()))
    out["r"].append(r)
  return {key: np.array(value) for key, value in out.items()}


def retrieval_metrics(
  embeddings: np.ndarray,
  labels: np.ndarray,
  ks: Sequence[int],
  gallery: np.ndarray | None = None,
  gallery_labels: np.ndarray | None = None,
  matmul: Matmul = fsum_matmul,
) -> dict[str, float]:
  """Recall@K, Precision@1, MAP@R and R-Precision from `retrieval_per_query`.

  MAP@R and R-Precision average over the queries with R > 0 (NaN if none).
  """
  scores = retrieval_per_query(
    embeddings, labels, gallery, gallery_labels, matmul
  )
  return summarize(scores, ks)


def summarize(
  scores: dict[str, np.ndarray], ks: Sequence[int]
) -> dict[str, float]:
  """Recall@K, Precision@1, MAP@R and R-Precision of per-query scores (the
  dict of `retrieval_per_query`); MAP@R and R-Precision over R > 0."""
  rank, r = scores["first_positive_rank"], scores["r"]
  result = {f"recall@{k}": float(np.mean(rank < k)) for k in ks}
  result["precision@1"] = float(np.mean(rank < 1))
  has_r = r > 0
  result["map@r"] = (
    float(np.mean(scores["precision_sum"][has_r] / r[has_r]))
    if has_r.any()
    else np.nan
  )
  result["r_precision"] = (
    float(np.mean(scores["hits"][has_r] / r[has_r])) if has_r.any() else np.nan
  )
  return result


def query_gallery_metrics(
  embeddings: np.ndarray,
  labels: np.ndarray,
  queries: np.ndarray,
  gallery: np.ndarray,
  ks: Sequence[int],
  matmul: Matmul = fsum_matmul,
) -> dict[str, float]:
  """`retrieval_metrics` of the rows ``queries`` (indices or a mask) of a
  set against its rows ``gallery``."""
  embeddings, labels = np.asarray(embeddings), np.asarray(labels)
  return retrieval_metrics(
    embeddings[queries],
    labels[queries],
    ks,
    gallery=embeddings[gallery],
    gallery_labels=labels[gallery],
    matmul=matmul,
  )


def float32_dot_error_bound(
  queries: np.ndarray, gallery: np.ndarray
) -> np.ndarray:
  """(Nq, Ng) bounds on how far a float32 dot product may be from the exact.

  A dot product of D float32 terms computed in float32, in any order of
  summation and with or without fused multiply-adds, is within
  gamma_D sum_k |q_k g_k| of the exact value, gamma_D = D u / (1 - D u) with
  u = 2^-24 (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd
  ed., Eq. 3.5).
  """
  d = np.shape(queries)[1]
  gamma = d * 2.0**-24 / (1 - d * 2.0**-24)
  return gamma * fsum_matmul(np.abs(queries), np.abs(gallery))


def _indistinguishable_groups(sim: np.ndarray, bound: np.ndarray) -> list:
  """The gallery in groups, most similar first: within a group the float32
  order is unknown; between groups it is the exact order.

  Each item's float32 similarity lies in [sim - bound, sim + bound]; the
  groups are the connected unions of these intervals, so every item of a
  group scores strictly above every item of the groups after it.
  """
  order = np.argsort(-(sim + bound), kind="stable")
  groups, lowest = [], np.inf
  for j in order:
    if sim[j] + bound[j] < lowest:
      groups.append([])
    groups[-1].append(j)
    lowest = min(lowest, sim[j] - bound[j])
  return groups


def query_gallery_metric_bounds(
  embeddings: np.ndarray,
  labels: np.ndarray,
  queries: np.ndarray,
  gallery: np.ndarray,
  ks: Sequence[int],
) -> tuple[dict[str, float], dict[str, float]]:
  """The lowest and highest `query_gallery_metrics` a float32 engine may give.

  Items that a float32 dot product cannot tell apart
  (`float32_dot_error_bound`) may come in any order; within each group of
  them the positives are put last for the lowest metrics and first for the
  highest. Moving a positive ahead of a negative never lowers Recall@K,
  Precision@1, R-Precision or MAP@R, so any order the engine picks gives
  metrics in between.

  Returns:
    (lowest, highest), each a dict as `query_gallery_metrics`'s; they are
    equal when no two items of a query's ranking are that close.
  """
  embeddings, labels = np.asarray(embeddings), np.asarray(labels)
  q, g = embeddings[queries], embeddings[gallery]
  q_labels, g_labels = labels[queries], labels[gallery]
  sim = similarities(q, g)
  bound = float32_dot_error_bound(q, g)
  lowest, highest = [], []
  for i in range(len(q)):
    groups = _indistinguishable_groups(sim[i], bound[i])
    correct = [g_labels[group] == q_labels[i] for group in groups]
    lowest.append(np.concatenate([np.sort(c) for c in correct]))
    highest.append(np.concatenate([np.sort(c)[::-1] for c in correct]))
  return summarize(_scores(lowest), ks), summarize(_scores(highest), ks)


def numerical_grad(
  f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6
) -> np.ndarray:
  """Central finite differences of a float64 function, one entry at a time."""
  x = np.float64(x)
  grad = np.zeros_like(x)
  for idx in np.ndindex(x.shape):
    step = np.zeros_like(x)
    step[idx] = eps
    grad[idx] = (f(x + step) - f(x - step)) / (2 * eps)
  return grad
