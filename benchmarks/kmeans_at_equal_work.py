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
"""Our k-means and faiss's at equal work: same seeds, iterations and points.

``compare`` is the k-means part of ``python -m
benchmarks.evaluation_at_scale`` and the ``kmeans`` row of ``python -m
benchmarks.summary``; README.md, "k-means at equal work", says what each
side does and why the comparison is set up this way.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

import faiss
import jax
import numpy as np

from benchmarks.cpu_timing import measure
from proxy_nca_jax import evaluation
from proxy_nca_jax.evaluation import clustering, mutual_information


@contextlib.contextmanager
def _our_lloyd_iterations() -> Iterator[list[jax.Array]]:
  """Collects the Lloyd iterations each run of `clustering.kmeans` made.

  `kmeans` returns centroids and assignments only; the jitted run it calls
  per restart (`clustering._kmeans_single`) also returns its iteration
  count, which this wrapper keeps (an unfetched device scalar: nothing is
  waited for). The compiled program is the same. To go once `kmeans`
  reports the count itself.
  """
  original = clustering._kmeans_single
  counts = []

  def recording(*args, **kwargs):
    result = original(*args, **kwargs)
    counts.append(result[3])
    return result

  clustering._kmeans_single = recording
  try:
    yield counts
  finally:
    clustering._kmeans_single = original


def _inertia(x: np.ndarray, centroids: np.ndarray, assignments: np.ndarray):
  """Sum of squared distances of the points to their centroids (float64)."""
  return float(np.sum((x - centroids[assignments]) ** 2, dtype=np.float64))


def compare(
  x: np.ndarray,
  labels: np.ndarray,
  k: int,
  *,
  max_iters: int = 10,
  repeats: int = 1,
) -> dict[str, Any]:
  """Our k-means and faiss's at equal work (README.md, "k-means at equal
  work").

  Both start from the same seeds: ours (`clustering.kmeans` with
  ``num_iters=0``: its k-means++ / k-means|| seeding), handed to faiss as
  ``init_centroids``. Ours then runs at most ``max_iters`` Lloyd iterations
  and stops once no centroid moves; faiss runs exactly as many (its own
  early stop, faiss >= 1.14.2, turned off). Both use all points (faiss's
  subsampling above ``max_points_per_centroid`` per cluster turned off),
  squared Euclidean distances (not spherical), one run (no restarts).

  Timed, best of ``repeats`` each, after a compiling call of ours:
  ``ours(0)`` = seeding + the final assignment, ``ours(max_iters)`` = the
  same + the Lloyd iterations, so ours' Lloyd time is their difference;
  faiss's Lloyd time is its ``train`` from the seeds; its final assignment
  (``index.search``, for the labels) is timed apart. Each Lloyd iteration
  and each assignment computes the 2 N k D flops of the points' products
  with the centroids, all but a 2/D share of its flops.

  Returns:
    The sizes, ``lloyd_iterations`` (both sides), ``flops_per_assignment``
    and per side: ``lloyd_s``, NMI, AMI, inertia after its final
    assignment, memory and load; ours also ``seeding_and_assignment_s`` and
    ``first_call_s``; faiss ``iterations`` (from its statistics),
    ``assignment_s``, ``search_s`` (its own timer of the iterations'
    searches) and ``splits`` (empty clusters it re-seeded).
  """
  n, d = x.shape

  def ours(num_iters: int):
    with _our_lloyd_iterations() as counts:
      centroids, assignments = clustering.kmeans(
        x, k, num_iters=num_iters, num_restarts=1, seed=0
      )
      assignments = np.asarray(assignments)
    if len(counts) != 1:
      raise RuntimeError(
        "clustering.kmeans no longer runs clustering._kmeans_single once: "
        "_our_lloyd_iterations cannot count its iterations."
      )
    return np.asarray(centroids), assignments, int(counts[0])

  # Compiles (the iteration count is not part of the compiled program).
  first = measure(lambda: ours(0), 1)
  seeding = measure(lambda: ours(0), repeats)
  full = measure(lambda: ours(max_iters), repeats)
  seeds = seeding.pop("result")[0]
  centroids, assignments, iterations = full.pop("result")

  options = {
    "niter": iterations,
    "nredo": 1,
    "max_points_per_centroid": n,
    "min_points_per_centroid": 1,
    "spherical": False,
  }
  if hasattr(faiss.ClusteringParameters(), "early_stop_threshold"):
    # A relative change of the objective is never <= -1: no early stop.
    options["early_stop_threshold"] = -1.0

  def faiss_train():
    kmeans = faiss.Kmeans(d, k, **options)
    kmeans.train(x, init_centroids=seeds)
    return kmeans

  trained = measure(faiss_train, repeats)
  kmeans = trained.pop("result")
  assigned = measure(lambda: kmeans.index.search(x, 1)[1][:, 0], repeats)
  faiss_assignments = assigned.pop("result")
  stats = kmeans.iteration_stats

  def quality(centroids: np.ndarray, assignments: np.ndarray):
    return {
      "nmi": mutual_information.normalized_mutual_info(labels, assignments),
      "ami": mutual_information.adjusted_mutual_info(labels, assignments),
      "inertia": _inertia(x, centroids, assignments),
    }

  def timing(run: dict[str, Any]) -> dict[str, Any]:
    return {key: run[key] for key in ("rss_extra_mb", "load_1min")}

  return {
    "points": n,
    "dim": d,
    "clusters": k,
    "max_iters": max_iters,
    "lloyd_iterations": iterations,
    "flops_per_assignment": 2 * n * k * d,
    "ours": {
      "lloyd_s": full["best_s"] - seeding["best_s"],
      "seeding_and_assignment_s": seeding["best_s"],
      "total_s": full["best_s"],
      "first_call_s": first["best_s"],
      **quality(centroids, assignments),
      **timing(full),
    },
    "faiss": {
      "lloyd_s": trained["best_s"],
      "iterations": len(stats),
      "assignment_s": assigned["best_s"],
      "search_s": stats[-1]["time_search"] if stats else 0.0,
      "splits": int(sum(s["nsplit"] for s in stats)),
      **quality(kmeans.centroids, faiss_assignments),
      **timing(trained),
    },
  }


def format_table(kmeans: dict[str, Any]) -> str:
  """`compare`'s result as a Markdown table and a note."""
  iterations = kmeans["lloyd_iterations"]
  flops = iterations * kmeans["flops_per_assignment"]

  def rate(seconds: float) -> str:
    return f"{flops / seconds / 1e9:.0f}" if flops and seconds > 0 else "-"

  table = evaluation.markdown_table(
    [
      f"k-means, {kmeans['points']:,} x {kmeans['dim']}, "
      f"{kmeans['clusters']:,} clusters, same seeds, {iterations} Lloyd "
      "iterations",
      "time (s)",
      "GFLOP/s",
      "NMI",
      "AMI",
      "inertia",
    ],
    [
      [
        name,
        f"{kmeans[name]['lloyd_s']:.2f}",
        rate(kmeans[name]["lloyd_s"]),
        f"{kmeans[name]['nmi']:.4f}",
        f"{kmeans[name]['ami']:.4f}",
        f"{kmeans[name]['inertia']:.1f}",
      ]
      for name in ("ours", "faiss")
    ],
  )
  ours, theirs = kmeans["ours"], kmeans["faiss"]
  note = (
    f"Ours stopped after {iterations} of at most {kmeans['max_iters']} "
    f"iterations (no centroid moved); faiss ran {theirs['iterations']}, "
    f"re-seeding {theirs['splits']} empty clusters. Not compared: our "
    f"seeding + final assignment {ours['seeding_and_assignment_s']:.2f} s "
    f"(first call, compiling: {ours['first_call_s']:.2f} s); faiss's final "
    f"assignment {theirs['assignment_s']:.2f} s. "
    f"{kmeans['flops_per_assignment'] / 1e9:.1f} GFLOP per assignment."
  )
  return f"{table}\n\n{note}"
