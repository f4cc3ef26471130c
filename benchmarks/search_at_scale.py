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
"""Search at scale: our exact search vs faiss IndexFlatIP, side by side.

A 1,000,000 x 128 gallery of unit vectors with class structure (10,000
class centres plus Gaussian noise, L2-normalised) and queries drawn the same
way. Measured in one process, one after the other:

- ours: ``evaluation.nearest.DeviceGallery`` (built from the array: the
  chunks on the device), then ``search`` for the top 10;
- faiss: ``IndexFlatIP`` (``add`` the array), then ``search`` for the top
  10 (exact, float32).

Batches of 1,000 queries (throughput) and of 1 query (latency, the median
of ``--single_queries`` calls). The gallery is a memory-mapped ``.npy``
file, as the search command opens what ``index`` wrote; ours reads its
chunks in place, faiss copies them into its index. Extra memory: the peak
resident set size during build + search minus the size before, all of it
and its anonymous part (not pages of the mapped file). The top-10 lists
are compared; every difference is explained by the float32 gap between the
similarities that swapped (near-ties: faiss's BLAS sums in another order).

Run (2 CPU cores: about 3 minutes):

  python -m benchmarks.search_at_scale [--gallery=1000000] [--json_out=F]

Needs faiss-cpu (``pip install -e .[benchmark]``).
"""

import json
import os
import shutil
import tempfile
import time

import faiss
import jax
import numpy as np
from absl import app, flags

from benchmarks import cpu_timing
from benchmarks.cpu_timing import measure
from proxy_nca_jax import evaluation
from proxy_nca_jax.evaluation import nearest

_GALLERY = flags.DEFINE_integer("gallery", 1_000_000, "Gallery size.")
_DIM = flags.DEFINE_integer("dim", 128, "Embedding dimension.")
_CLASSES = flags.DEFINE_integer("classes", 10_000, "Class centres.")
_QUERIES = flags.DEFINE_integer("queries", 1_000, "Queries of the batch.")
_SINGLE = flags.DEFINE_integer(
  "single_queries", 20, "Single-query searches timed (median)."
)
_K = flags.DEFINE_integer("k", 10, "Neighbours per query.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Timed runs of each batch.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write results here.")


def clustered_unit_vectors(
  num: int, classes: int, dim: int, seed: int, noise: float = 0.08
) -> np.ndarray:
  """(num, dim) float32 unit vectors around ``classes`` random centres."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((classes, dim), dtype=np.float32)
  centres /= np.linalg.norm(centres, axis=1, keepdims=True)
  x = centres[rng.integers(0, classes, num)]
  x += noise * rng.standard_normal((num, dim), dtype=np.float32)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  return x


def compare_lists(
  gallery: np.ndarray,
  queries: np.ndarray,
  ours: np.ndarray,
  theirs: np.ndarray,
) -> dict[str, float]:
  """Queries whose top-k lists differ, and the largest float64 gap between
  the similarities of the two items at a position where they differ (tiny:
  near-ties ordered differently by float32 rounding)."""
  differ = np.flatnonzero((ours != theirs).any(axis=1))
  worst = 0.0
  for q in differ:
    query = queries[q].astype(np.float64)
    mine = gallery[ours[q]].astype(np.float64) @ query
    other = gallery[theirs[q]].astype(np.float64) @ query
    worst = max(worst, float(np.abs(mine - other).max()))
  return {"queries_differing": int(len(differ)), "max_gap": worst}


def main(argv: list[str]) -> None:
  del argv
  machine = cpu_timing.machine_description()
  num, dim, k = _GALLERY.value, _DIM.value, _K.value
  # As the search command opens a gallery: the .npy that index writes,
  # memory-mapped (both engines read it from there).
  folder = tempfile.mkdtemp(prefix="search_at_scale_")
  path = os.path.join(folder, "embeddings.npy")
  np.save(path, clustered_unit_vectors(num, _CLASSES.value, dim, seed=0))
  gallery = np.load(path, mmap_mode="r")
  queries = clustered_unit_vectors(_QUERIES.value, _CLASSES.value, dim, 1)
  print(f"{machine}\ngallery {num} x {dim}, {len(queries)} queries, k={k}")

  # Compile once outside the timing (shapes of both batch sizes).
  warm = nearest.DeviceGallery.from_array(gallery[: 2 * nearest._GROUP])
  warm.search(queries[:1], 1)
  del warm

  def ours_build_and_search():
    engine = nearest.DeviceGallery.from_array(gallery)
    return engine, engine.search(queries, k)

  def faiss_build_and_search():
    index = faiss.IndexFlatIP(dim)
    index.add(gallery)
    return index, index.search(queries, k)

  report = {"machine": machine, "gallery": [num, dim], "k": k}
  ours = measure(ours_build_and_search, _REPEATS.value)
  theirs = measure(faiss_build_and_search, _REPEATS.value)
  engine, (_, our_rows) = ours.pop("result")
  index, (_, their_rows) = theirs.pop("result")

  def timed_search(fn):
    return measure(fn, _REPEATS.value)

  ours_search = timed_search(lambda: engine.search(queries, k))
  theirs_search = timed_search(lambda: index.search(queries, k))
  ours_search.pop("result"), theirs_search.pop("result")

  def single(fn):
    times = []
    for q in range(_SINGLE.value):
      start = time.perf_counter()
      fn(queries[q : q + 1])
      times.append(time.perf_counter() - start)
    return float(np.median(times)), os.getloadavg()[0]

  engine.search(queries[:1], k)  # Compile the batch-1 shapes.
  ours_single, load_ours = single(lambda q: engine.search(q, k))
  theirs_single, load_theirs = single(lambda q: index.search(q, k))
  report.update(
    {
      "build_and_search": {"ours": ours, "faiss": theirs},
      "search_batch": {"ours": ours_search, "faiss": theirs_search},
      "single_query_s": {
        "ours": ours_single,
        "faiss": theirs_single,
        "load_1min": [load_ours, load_theirs],
      },
      "lists": compare_lists(gallery, queries, our_rows, their_rows),
    }
  )
  shutil.rmtree(folder)
  print(format_report(report))
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump(report, f, indent=1, default=float)


def format_report(report: dict) -> str:
  """The report as a Markdown table (ours beside faiss) and two lines."""
  both = report["build_and_search"]
  batch = report["search_batch"]
  single = report["single_query_s"]
  queries = _QUERIES.value
  ours_rss, faiss_rss = (both[n]["rss_extra_mb"] for n in ("ours", "faiss"))
  ours_anon, faiss_anon = (both[n]["anon_extra_mb"] for n in ("ours", "faiss"))
  table = evaluation.markdown_table(
    ["", "ours", "faiss IndexFlatIP", "ours / faiss"],
    [
      [
        f"search, batch of {queries}: queries/s",
        f"{queries / batch['ours']['best_s']:.0f}",
        f"{queries / batch['faiss']['best_s']:.0f}",
        f"{batch['faiss']['best_s'] / batch['ours']['best_s']:.2f}",
      ],
      [
        "search, batch of 1: ms per query (median)",
        f"{single['ours'] * 1e3:.1f}",
        f"{single['faiss'] * 1e3:.1f}",
        f"{single['faiss'] / single['ours']:.2f}",
      ],
      [
        "build + batch search: extra resident memory (MB)",
        f"{ours_rss:.0f}",
        f"{faiss_rss:.0f}",
        f"{ours_rss / faiss_rss:.2f}",
      ],
      [
        "build + batch search: extra anonymous memory (MB)",
        f"{ours_anon:.0f}",
        f"{faiss_anon:.0f}",
        f"{ours_anon / faiss_anon:.2f}",
      ],
      [
        "build + batch search: seconds",
        f"{both['ours']['best_s']:.2f}",
        f"{both['faiss']['best_s']:.2f}",
        f"{both['faiss']['best_s'] / both['ours']['best_s']:.2f}",
      ],
    ],
  )
  lines = [table]
  lists = report["lists"]
  lines.append(
    f"\nTop-{report['k']} lists differ for {lists['queries_differing']} of "
    f"{queries} queries (largest float64 gap between swapped items: "
    f"{lists['max_gap']:.2e})."
  )
  loads = batch["ours"]["load_1min"] + batch["faiss"]["load_1min"]
  lines.append(f"Load average (1 min) during the batch searches: {loads}.")
  return "\n".join(lines)


if __name__ == "__main__":
  jax.config.update("jax_platforms", "cpu")
  app.run(main)
