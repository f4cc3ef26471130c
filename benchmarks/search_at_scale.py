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
  chunks on the device), then ``search`` for the top 10; on a CPU with
  AVX-512 BF16 a batch is screened with bfloat16 similarities first (the
  bfloat16 copy is made by the first batch search, so build + search pays
  for it), with the same exact answer (``native/screening.py``);
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
from typing import Any

import faiss
import jax
import numpy as np
from absl import app, flags

from benchmarks import cpu_timing
from benchmarks.cpu_timing import measure
from proxy_nca_jax import evaluation
from proxy_nca_jax.evaluation import nearest

# The command's flags exist only when this file runs as the command:
# summary.py imports the functions below beside other benchmarks' whose
# flags have the same names (absl refuses a name defined twice).
if __name__ == "__main__":
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


def side_by_side(
  num: int = 1_000_000,
  dim: int = 128,
  classes: int = 10_000,
  queries: int = 1_000,
  k: int = 10,
  repeats: int = 2,
  single_queries: int = 20,
) -> dict[str, Any]:
  """Our search and faiss's on a ``num`` x ``dim`` gallery (module docstring).

  Returns:
    {'gallery', 'queries', 'k', 'build_and_search' and 'search_batch' (per
    side: `measure`'s timing and memory of the batch of ``queries``),
    'single_query_s' (per side: the median of ``single_queries`` searches
    of one query; the load averages), 'lists' (`compare_lists`)}.
  """
  # As the search command opens a gallery: the .npy that index writes,
  # memory-mapped (both engines read it from there).
  folder = tempfile.mkdtemp(prefix="search_at_scale_")
  try:
    path = os.path.join(folder, "embeddings.npy")
    np.save(path, clustered_unit_vectors(num, classes, dim, seed=0))
    gallery = np.load(path, mmap_mode="r")
    batch = clustered_unit_vectors(queries, classes, dim, 1)
    return _timed_searches(gallery, batch, k, repeats, single_queries)
  finally:
    shutil.rmtree(folder)


def _timed_searches(
  gallery: np.ndarray,
  queries: np.ndarray,
  k: int,
  repeats: int,
  single_queries: int,
) -> dict[str, Any]:
  """`side_by_side`'s measurements on a memory-mapped gallery."""
  dim = gallery.shape[1]
  # Compile outside the timing: the shapes of both batch sizes, k and the
  # gallery's chunks.
  warm = nearest.DeviceGallery.from_array(gallery)
  warm.search(queries, k), warm.search(queries[:1], k)
  del warm

  def ours_build_and_search():
    engine = nearest.DeviceGallery.from_array(gallery)
    return engine, engine.search(queries, k)

  def faiss_build_and_search():
    index = faiss.IndexFlatIP(dim)
    index.add(gallery)
    return index, index.search(queries, k)

  ours = measure(ours_build_and_search, repeats)
  theirs = measure(faiss_build_and_search, repeats)
  engine, (_, our_rows) = ours.pop("result")
  index, (_, their_rows) = theirs.pop("result")
  ours_search = measure(lambda: engine.search(queries, k), repeats)
  theirs_search = measure(lambda: index.search(queries, k), repeats)
  ours_search.pop("result"), theirs_search.pop("result")

  def single(fn):
    times = []
    for q in range(single_queries):
      start = time.perf_counter()
      fn(queries[q : q + 1])
      times.append(time.perf_counter() - start)
    return float(np.median(times)), os.getloadavg()[0]

  ours_single, load_ours = single(lambda q: engine.search(q, k))
  theirs_single, load_theirs = single(lambda q: index.search(q, k))
  return {
    "gallery": list(gallery.shape),
    "queries": len(queries),
    "k": k,
    "screened": engine.screened,
    "build_and_search": {"ours": ours, "faiss": theirs},
    "search_batch": {"ours": ours_search, "faiss": theirs_search},
    "single_query_s": {
      "ours": ours_single,
      "faiss": theirs_single,
      "load_1min": [load_ours, load_theirs],
    },
    "lists": compare_lists(gallery, queries, our_rows, their_rows),
  }


def main(argv: list[str]) -> None:
  del argv
  machine = cpu_timing.machine_description()
  print(
    f"{machine}\ngallery {_GALLERY.value} x {_DIM.value}, "
    f"{_QUERIES.value} queries, k={_K.value}"
  )
  report = {
    "machine": machine,
    **side_by_side(
      _GALLERY.value,
      _DIM.value,
      _CLASSES.value,
      _QUERIES.value,
      _K.value,
      _REPEATS.value,
      _SINGLE.value,
    ),
  }
  print(format_report(report))
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump(report, f, indent=1, default=float)


def format_report(report: dict) -> str:
  """The report as a Markdown table (ours beside faiss) and two lines."""
  both = report["build_and_search"]
  batch = report["search_batch"]
  single = report["single_query_s"]
  queries = report["queries"]
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
