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
"""Evaluation at scale: exact retrieval metrics and NMI vs faiss and PML.

SOP-sized synthetic embeddings (60,502 x 512, 11,316 classes of 2 to 12
images, like Stanford Online Products' test split; class centres plus
Gaussian noise, L2-normalised). Measured side by side in one process:

- Retrieval (``retrieval_side_by_side``): Recall@{1,10,100,1000}, MAP@R and
  R-Precision, each query against the other 60,501 images.
  * ours: ``evaluation.per_query_scores`` (exact, blocked, symmetric).
  * faiss: ``IndexFlatIP`` exact search for k = max(1000, max R) + 1
    neighbours (timed: index and search), then, untimed, the query removed
    from its own list and the same per-query metric code on the neighbour
    lists (``scores_from_neighbours`` below).
  * pytorch-metric-learning: ``AccuracyCalculator`` (precision_at_1,
    r_precision, mean_average_precision_at_r; k = max_bin_count).
  Per-query disagreements with faiss are listed with the float32 gap
  between the similarities whose order differs (near-ties).
- Clustering, k = 11,316 (kmeans_at_equal_work.py): our
  ``clustering.kmeans`` and ``faiss.Kmeans`` at equal work: the same
  seeds (ours, handed to faiss), the same number of Lloyd iterations (the
  number ours ran before its centroids stopped moving, at most
  ``--kmeans_iters``; faiss's own early stop turned off), all points (no
  subsampling); each side's Lloyd iterations timed apart from the seeding
  and the final assignment; NMI, AMI and inertia of both (README.md,
  "k-means at equal work").

Time: wall clock of the call, best of ``--repeats`` (our first call also
compiles; its time is reported separately). Peak extra memory: the largest
resident set size during the call (the kernel's VmHWM, reset before
it), minus the resident set size just before it; tracemalloc's peak of
Python-visible allocations (NumPy, PyTorch CPU tensors) is given beside it.
The load average of the machine is printed with every measurement.

Run (2 CPU cores: about 10 minutes; ``--quick``: 6,000 points, a minute):

  python -m benchmarks.evaluation_at_scale
  python -m benchmarks.evaluation_at_scale --quick

Needs ``pip install torch==2.13.0 pytorch-metric-learning faiss-cpu``
(``pip install -e .[benchmark]``).
"""

import json
import os
import platform
from typing import Any

import faiss
import jax
import numpy as np
from absl import app, flags

from benchmarks import kmeans_at_equal_work
from benchmarks.cpu_timing import measure
from proxy_nca_jax import evaluation

# Per-dimension noise around a class centre: SOP-like nearest-neighbour
# difficulty (Recall@1 about 0.46).
SOP_NOISE = 0.11

# The command's flags exist only when this file runs as the command:
# summary.py imports the functions below beside other benchmarks' whose
# flags have the same names (absl refuses a name defined twice).
if __name__ == "__main__":
  _QUICK = flags.DEFINE_bool("quick", False, "6,000 points, 1,121 classes.")
  _NUM = flags.DEFINE_integer("num", 60_502, "Number of embeddings.")
  _CLASSES = flags.DEFINE_integer("classes", 11_316, "Number of classes.")
  _DIM = flags.DEFINE_integer("dim", 512, "Embedding dimension.")
  _NOISE = flags.DEFINE_float(
    "noise", SOP_NOISE, "Per-dimension noise around a class centre."
  )
  _BLOCK = flags.DEFINE_integer(
    "block_size", evaluation.DEFAULT_BLOCK_SIZE, "Our tile side."
  )
  _REPEATS = flags.DEFINE_integer("repeats", 2, "Timed runs of each method.")
  _KMEANS_ITERS = flags.DEFINE_integer(
    "kmeans_iters",
    10,
    "Most Lloyd iterations (ours stops earlier once its centroids stop "
    "moving; faiss then runs as many).",
  )
  _PML = flags.DEFINE_bool("pml", True, "Also run pytorch-metric-learning.")
  _JSON_OUT = flags.DEFINE_string("json_out", None, "Also write results here.")

_KS = (1, 10, 100, 1000)
_SOP_SIZES = np.arange(2, 13)


def sop_like_embeddings(
  num: int, classes: int, dim: int, noise: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
  """Unit-norm clustered embeddings with SOP-like class sizes (2 to 12).

  Sizes are drawn with probability falling geometrically from 2 to 12
  (mean about 5.3, as SOP's 60,502 / 11,316), then nudged to sum to `num`.

  Returns:
    (embeddings float32 (num, dim), labels int64 (num,)), shuffled.
  """
  rng = np.random.default_rng(seed)
  p = np.exp(-(_SOP_SIZES - 2) / 2.6)
  sizes = rng.choice(_SOP_SIZES, size=classes, p=p / p.sum())
  while (gap := num - sizes.sum()) != 0:
    room = sizes < 12 if gap > 0 else sizes > 2
    chosen = rng.choice(np.flatnonzero(room), min(abs(gap), room.sum()), False)
    sizes[chosen] += np.sign(gap)
  labels = rng.permutation(np.repeat(np.arange(classes), sizes))
  centres = rng.normal(size=(classes, dim)).astype(np.float32)
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  x = centres[labels]
  x += noise * rng.standard_normal((num, dim), dtype=np.float32)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  return x, labels


def scores_from_neighbours(
  neighbours: np.ndarray, labels: np.ndarray, r: np.ndarray
) -> dict[str, np.ndarray]:
  """`evaluation.per_query_scores` from ranked neighbour lists.

  Args:
    neighbours: (N, k) gallery indices, best first, the query removed.
    labels: (N,) labels of queries and gallery (the same set).
    r: (N,) positives of each query, all <= k.

  Returns:
    The dict of `evaluation.per_query_scores` (first positive ranks beyond
    k are inf).
  """
  same = labels[neighbours] == labels[:, None]
  rank = np.where(same.any(axis=1), same.argmax(axis=1), np.inf)
  max_r = int(r.max())
  correct = same[:, :max_r] & (np.arange(max_r) < r[:, None])
  hits = np.cumsum(correct, axis=1)
  precision_sum = (hits * correct) @ (1.0 / np.arange(1, max_r + 1))
  return {
    "first_positive_rank": rank,
    "precision_sum": precision_sum,
    "hits": correct.sum(axis=1),
    "r": r,
  }


def faiss_search(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Exact inner-product search of the set in itself: (sims, indices)."""
  index = faiss.IndexFlatIP(x.shape[1])
  index.add(x)
  return index.search(x, k)


def without_self(
  sims: np.ndarray, found: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """Drops each query from its own list (or, if ties pushed it out, the last
  neighbour): (indices, sims), one column fewer."""
  n, k = found.shape
  is_self = found == np.arange(n)[:, None]
  drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k - 1)
  keep = np.ones_like(found, bool)
  keep[np.arange(n), drop] = False
  return found[keep].reshape(n, k - 1), sims[keep].reshape(n, k - 1)


def pml_metrics(x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
  """pytorch-metric-learning's AccuracyCalculator on the same set."""
  import torch  # noqa: PLC0415 (optional, heavy)
  from pytorch_metric_learning.utils import (  # noqa: PLC0415
    accuracy_calculator,
  )

  calculator = accuracy_calculator.AccuracyCalculator(
    include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
    k="max_bin_count",
    device=torch.device("cpu"),
  )
  result = calculator.get_accuracy(
    torch.from_numpy(x), torch.from_numpy(labels)
  )
  return {
    "precision@1": result["precision_at_1"],
    "r_precision": result["r_precision"],
    "map@r": result["mean_average_precision_at_r"],
  }


def _closest_to_a_positive(
  x: np.ndarray, labels: np.ndarray, query: int, depth: int
) -> float:
  """Smallest exact similarity gap between a positive and any other item.

  Similarities in float64 from the float32 vectors, the query left out;
  only positives among the first `depth` neighbours are considered (those
  that can change Recall@K up to `depth` or MAP@R).
  """
  sims = x.astype(np.float64) @ x[query].astype(np.float64)
  sims[query] = -np.inf
  order = np.argsort(-sims, kind="stable")[:depth]
  ranked = np.sort(sims[sims > -np.inf])
  gaps = []
  for p in order[labels[order] == labels[query]]:
    at = np.searchsorted(ranked, sims[p])
    near = ranked[max(at - 1, 0) : at + 2]
    near = near[near != sims[p]] if np.sum(near == sims[p]) == 1 else near
    gaps.append(float(np.min(np.abs(near - sims[p]))) if len(near) else 0.0)
  return min(gaps, default=np.inf)


def explain_differences(
  ours: dict[str, np.ndarray],
  theirs: dict[str, np.ndarray],
  x: np.ndarray,
  labels: np.ndarray,
  depth: int,
) -> dict[str, Any]:
  """Queries scored differently, and whether float32 near-ties explain it.

  Two exact float32 searches can rank a query's neighbours differently only
  where a positive and another item have (nearly) equal similarity, since
  the two programs round the dot products differently (~1e-7). For each
  differing query this gives the smallest exact (float64) gap between one
  of its positives and any other item; the same for as many agreeing
  queries drawn at random, for scale.
  """
  # faiss's lists stop at `depth`: a first positive beyond is inf there.
  rank = [np.minimum(s["first_positive_rank"], depth) for s in (ours, theirs)]
  differ = np.flatnonzero(
    (rank[0] != rank[1])
    | (ours["hits"] != theirs["hits"])
    | ~np.isclose(ours["precision_sum"], theirs["precision_sum"], 0, 1e-9)
  )
  agree = np.setdiff1d(np.arange(len(labels)), differ)
  rng = np.random.default_rng(0)
  sample = rng.choice(agree, min(max(len(differ), 200), len(agree)), False)
  gaps = [_closest_to_a_positive(x, labels, q, depth) for q in differ]
  typical = [_closest_to_a_positive(x, labels, q, depth) for q in sample]
  return {
    "queries": differ.tolist()[:50],
    "count": int(len(differ)),
    "max_gap": max(gaps, default=0.0),
    "agreeing_sampled": int(len(sample)),
    "agreeing_median_gap": float(np.median(typical)) if typical else None,
    "agreeing_below_max_gap": int(
      np.sum(np.array(typical) <= max(gaps, default=0))
    ),
  }


def retrieval_side_by_side(
  x: np.ndarray,
  labels: np.ndarray,
  *,
  block_size: int = evaluation.DEFAULT_BLOCK_SIZE,
  repeats: int = 2,
  pml: bool = False,
) -> dict[str, Any]:
  """Our exact retrieval metrics, faiss's and (``pml``) PML's on one set.

  Args:
    x: (N, D) float32 unit-norm embeddings, each a query against the rest.
    labels: (N,) int labels.
    block_size: our tile side.
    repeats: timed calls of each method (best kept); ours is called once
      more before, to compile.
    pml: also run pytorch-metric-learning's AccuracyCalculator.

  Returns:
    {'retrieval': {method: `measure`'s timing and memory, ours also
    'first_call_s'}, 'values': {method: metric values}, 'differences_vs_faiss':
    `explain_differences`, 'faiss_k': neighbours faiss searched}.
  """
  r = np.bincount(labels)[labels] - 1
  k = max(1000, int(r.max())) + 1

  def ours():
    return evaluation.per_query_scores(
      x, labels, max_k=max(_KS), block_size=block_size
    )

  compile_run = measure(ours, 1)
  runs = {"ours": measure(ours, repeats)}
  runs["ours"]["first_call_s"] = compile_run["best_s"]
  # Measured: building the index and searching; removing each query from
  # its own list is bookkeeping of this benchmark, left out.
  runs["faiss"] = measure(lambda: faiss_search(x, k), repeats)
  found, _ = without_self(*runs["faiss"]["result"])
  runs["faiss"]["result"] = None
  faiss_scores = scores_from_neighbours(found, labels, r)
  if pml:
    runs["pml"] = measure(lambda: pml_metrics(x, labels), repeats)
  values = {
    "ours": evaluation.summarize_retrieval(runs["ours"]["result"], _KS),
    "faiss": evaluation.summarize_retrieval(faiss_scores, _KS),
  }
  if pml:
    values["pml"] = runs["pml"]["result"]
  return {
    "retrieval": {
      name: {key: value for key, value in run.items() if key != "result"}
      for name, run in runs.items()
    },
    "values": values,
    "differences_vs_faiss": explain_differences(
      runs["ours"]["result"], faiss_scores, x, labels, k - 1
    ),
    "faiss_k": k,
  }


def main(argv: list[str]) -> None:
  del argv
  num, classes = (6000, 1121) if _QUICK.value else (_NUM.value, _CLASSES.value)
  x, labels = sop_like_embeddings(num, classes, _DIM.value, _NOISE.value)
  report: dict[str, Any] = {
    "data": {"num": num, "classes": classes, "dim": _DIM.value},
    "machine": {
      "platform": platform.platform(),
      "cpus": os.cpu_count(),
      "jax_devices": [str(d) for d in jax.devices()],
      "jax": jax.__version__,
      "faiss": faiss.__version__,
      "numpy": np.__version__,
    },
  }
  print(f"{num} x {_DIM.value}, {classes} classes; load {os.getloadavg()}")
  report.update(
    retrieval_side_by_side(
      x,
      labels,
      block_size=_BLOCK.value,
      repeats=_REPEATS.value,
      pml=_PML.value,
    )
  )
  report["kmeans"] = kmeans_at_equal_work.compare(
    x, labels, classes, max_iters=_KMEANS_ITERS.value
  )
  print(format_report(report))
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump(report, f, indent=2)


def format_report(report: dict[str, Any]) -> str:
  """The report as Markdown tables."""
  base = report["retrieval"]["faiss"]["best_s"]
  retrieval = evaluation.markdown_table(
    [
      "retrieval",
      "time (s)",
      "/ faiss",
      "extra RSS (MB)",
      "tracemalloc (MB)",
      "load (1 min)",
    ],
    [
      [
        name,
        f"{run['best_s']:.2f}",
        f"{run['best_s'] / base:.2f}",
        f"{run['rss_extra_mb']:.0f}",
        f"{run['tracemalloc_peak_mb']:.0f}",
        ", ".join(f"{v:.1f}" for v in run["load_1min"]),
      ]
      for name, run in report["retrieval"].items()
    ],
  )
  keys = [f"recall@{k}" for k in _KS] + ["precision@1", "r_precision", "map@r"]
  values = evaluation.markdown_table(
    ["metric", *report["values"]],
    [
      [key]
      + [
        f"{v[key]:.6f}" if key in v else "-" for v in report["values"].values()
      ]
      for key in keys
    ],
  )
  diff = report["differences_vs_faiss"]
  if diff["count"]:
    differences = (
      f"queries scored differently from faiss: {diff['count']}; each has a "
      f"positive within {diff['max_gap']:.1e} (exact) of another item's "
      f"similarity. {diff['agreeing_sampled']} agreeing queries drawn for "
      f"scale: median gap {diff['agreeing_median_gap']:.1e}, "
      f"{diff['agreeing_below_max_gap']} at or below {diff['max_gap']:.1e}."
    )
  else:
    differences = "every query is scored the same as from faiss's lists."
  return "\n".join(
    [
      retrieval,
      "",
      values,
      "",
      differences,
      "",
      kmeans_at_equal_work.format_table(report["kmeans"]),
    ]
  )


if __name__ == "__main__":
  app.run(main)
