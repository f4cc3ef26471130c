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
"""Every side-by-side benchmark of issue 34 in one run: ours, the peer, the
floor.

First the machine: its CPU (lscpu), cores, load, library versions, the
float32 matmul rate of NumPy (OpenBLAS), PyTorch and a jitted ``jnp.dot``
(n x n products) and the memory bandwidth (copies of a large array: NumPy,
PyTorch, a jitted in-place 2 x + 1). Then the benchmarks, through their
modules' functions at the mode's sizes (``SIZES``; each module's own
command keeps the full sizes and every option), one row each
(summary_rows.py):

- retrieval: ``evaluation.per_query_scores`` vs faiss ``IndexFlatIP``
  (evaluation_at_scale.py); floor: N^2 D flops, the symmetric half of the
  similarities;
- kmeans: the Lloyd iterations of ``clustering.kmeans`` vs ``faiss.Kmeans``
  from the same seeds, as many iterations (kmeans_at_equal_work.py), on
  the retrieval's set; floor: L x 2 N k D flops;
- search_batch, search_one: ``nearest.DeviceGallery`` vs faiss
  ``IndexFlatIP``, a batch and one query (search_at_scale.py); floor:
  2 Q N D flops or reading the gallery, 4 N D bytes (float32's: a batch
  screened in bfloat16, on CPUs with AVX-512 BF16, can go below it);
- train_step, train_step_onednn: convnet-S vs PyTorch + PML
  (train_step_vs_pytorch.py, run as its own command: it sets one JAX CPU
  device per core before JAX starts), with XLA's convolutions and with
  oneDNN's (``--onednn_conv``, proxy_nca_jax/native/convolution.py; left
  out where it does not build); no floor counted;
- proxy_step: the Proxy-NCA step at C proxies in blocks
  (proxy_step_floor.py); no peer; floor: 3 x 2 B C D flops or 6 C D x 4
  bytes.

A floor is the time of the work at the best measured rates (the fastest
library's matmul, the fastest copy), the larger of flop and byte time.
ours / peer and ours / floor are ratios of times: below 1, ours is faster.

  python -m benchmarks.summary          # ~6 min on 2 quiet cores (estimate)
  python -m benchmarks.summary --quick  # smaller sizes, ~2 min (estimate)
  python -m benchmarks.summary --smoke  # tiny sizes: checks the plumbing
  python -m benchmarks.summary --table  # results/summary_*.json as tables

Writes benchmarks/results/summary_<cpu kind>.json (``--quick`` and
``--smoke``: the temporary folder), unless ``--out``.
"""

import datetime
import glob
import json
import math
import os
import pathlib
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import faiss
import jax
import jaxlib
import numpy as np
import pytorch_metric_learning
import torch
from absl import app, flags

from benchmarks import cpu_timing, proxy_step_floor, summary_rows
from proxy_nca_jax import evaluation

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

# Per mode: the matmul side, the bandwidth arrays (MiB) and repeats of the
# rates; each benchmark's sizes (the train step's are its command's flags);
# timed calls (the proxy step's median, the others' best, each after a
# first call that compiles).
SIZES = {
  "default": {
    "matmul": 4096,
    "bandwidth_mib": 256,
    "rate_repeats": 5,
    "evaluation": {"num": 60_502, "classes": 11_316, "dim": 512},
    "kmeans_iters": 10,
    "search": {
      "num": 1_000_000,
      "dim": 128,
      "classes": 10_000,
      "queries": 1_000,
      "k": 10,
      "repeats": 2,
      "single_queries": 20,
    },
    "train_step": ["--steps=300", "--eval_examples=10000"],
    "proxy_step": {"classes": 1_000_000, "dim": 128, "batch": 256},
    "step_repeats": 3,
    "repeats": 1,
  },
  "quick": {
    "matmul": 2048,
    "bandwidth_mib": 128,
    "rate_repeats": 3,
    "evaluation": {"num": 15_000, "classes": 2_805, "dim": 512},
    "kmeans_iters": 10,
    "search": {
      "num": 200_000,
      "dim": 128,
      "classes": 2_000,
      "queries": 1_000,
      "k": 10,
      "repeats": 1,
      "single_queries": 10,
    },
    "train_step": ["--steps=60", "--eval_examples=2000"],
    "proxy_step": {"classes": 100_000, "dim": 128, "batch": 256},
    "step_repeats": 3,
    "repeats": 1,
  },
  "smoke": {
    "matmul": 256,
    "bandwidth_mib": 4,
    "rate_repeats": 2,
    "evaluation": {"num": 600, "classes": 100, "dim": 64},
    "kmeans_iters": 5,
    "search": {
      "num": 5_000,
      "dim": 32,
      "classes": 100,
      "queries": 50,
      "k": 5,
      "repeats": 1,
      "single_queries": 3,
    },
    "train_step": [
      "--steps=12",
      "--warmup_steps=2",
      "--chunk_steps=5",
      "--eval_examples=200",
    ],
    "proxy_step": {"classes": 4_096, "dim": 32, "batch": 16},
    "step_repeats": 2,
    "repeats": 1,
  },
}
_ISA = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")

# The command's flags (see evaluation_at_scale.py for why they are guarded).
if __name__ == "__main__":
  _QUICK = flags.DEFINE_bool("quick", False, "Smaller sizes (docstring).")
  _SMOKE = flags.DEFINE_bool("smoke", False, "Tiny sizes: the plumbing.")
  _SKIP = flags.DEFINE_list(
    "skip",
    [],
    "Benchmarks left out: evaluation, search, proxy_step, train_step.",
  )
  _OUT = flags.DEFINE_string("out", None, "JSON path (default: docstring).")
  _TABLE = flags.DEFINE_bool(
    "table", False, "Print results/summary_*.json as Markdown and stop."
  )


def _median_s(fn: Callable[[], Any], repeats: int) -> float:
  return cpu_timing.median_after_warmup(fn, repeats)["median_s"]


def machine_rates(n: int, mib: int, repeats: int) -> dict[str, Any]:
  """float32 matmul GFLOP/s (n x n products) and copy GB/s (read + write
  of ``mib`` MiB), each library's median; the floors are the best."""
  a, b = np.random.default_rng(0).standard_normal((2, n, n), np.float32)
  out = np.empty_like(a)
  flops = 2 * n**3
  ta, tb, tout = map(torch.from_numpy, (a, b, out))
  matmul = {
    "numpy": flops / _median_s(lambda: np.matmul(a, b, out=out), repeats),
    "torch": flops / _median_s(lambda: torch.mm(ta, tb, out=tout), repeats),
  }
  matmul = {name: rate / 1e9 for name, rate in matmul.items()}
  matmul["jax"] = proxy_step_floor.matmul_gflops(n, n, n, repeats)
  num = mib * 2**20 // 4
  src, dst = np.ones(num, np.float32), np.empty(num, np.float32)
  tsrc, tdst = torch.from_numpy(src), torch.from_numpy(dst)
  moved = 2 * 4 * num / 1e9
  bandwidth = {
    "numpy copy": moved / _median_s(lambda: np.copyto(dst, src), repeats),
    "torch copy": moved / _median_s(lambda: tdst.copy_(tsrc), repeats),
    "jax 2x+1 in place": proxy_step_floor.stream_gbs(num, repeats),
  }
  return {
    "matmul_n": n,
    "matmul_gflops": matmul,
    "floor_gflops": max(matmul.values()),
    "bandwidth_mib": mib,
    "bandwidth_gbs": bandwidth,
    "floor_gbs": max(bandwidth.values()),
  }


def machine_record() -> dict[str, Any]:
  """The CPU (lscpu), cores, platform, threads and library versions."""
  fields = cpu_timing.lscpu_fields()
  return {
    "cpu_kind": cpu_timing.cpu_kind(fields),
    "model_name": fields.get("Model name"),
    "vendor": fields.get("Vendor ID"),
    "family": fields.get("CPU family"),
    "model": fields.get("Model"),
    "stepping": fields.get("Stepping"),
    "cores": os.cpu_count(),
    "threads_per_core": fields.get("Thread(s) per core"),
    "caches": {c: fields.get(f"{c} cache") for c in ("L1d", "L2", "L3")},
    "hypervisor": fields.get("Hypervisor vendor"),
    "isa": [f for f in _ISA if f in fields.get("Flags", "").split()],
    "platform": platform.platform(),
    "python": platform.python_version(),
    "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
    "torch_threads": torch.get_num_threads(),
    "faiss_threads": faiss.omp_get_max_threads(),
    "versions": {
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "numpy": np.__version__,
      "torch": torch.__version__,
      "faiss": faiss.__version__,
      "pytorch_metric_learning": pytorch_metric_learning.__version__,
    },
  }


def _finite(value: Any) -> Any:
  """``value`` with NaN and infinities as None (strict JSON)."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_finite(v) for v in value]
  if isinstance(value, np.generic):
    return _finite(value.item())
  return value


def run(mode: str, skip: Sequence[str] = ()) -> dict[str, Any]:
  """The machine's rates, then every benchmark not in ``skip``."""
  sizes = SIZES[mode]
  start = time.perf_counter()
  report = {
    "schema": 1,
    "mode": mode,
    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "machine": machine_record(),
    "load_1min_before": os.getloadavg()[0],
    "sizes": sizes,
    "skipped": [name for name in summary_rows.BENCHMARKS if name in skip],
    "benchmarks": {},
    "rows": [],
  }
  meter = cpu_timing.LoadMeter()
  report["rates"] = machine_rates(
    sizes["matmul"], sizes["bandwidth_mib"], sizes["rate_repeats"]
  )
  report["rates"]["other_cores"] = meter.stop()
  for name, rows_of in summary_rows.BENCHMARKS.items():
    if name in skip:
      continue
    meter.start()
    began = time.perf_counter()
    rows = rows_of(sizes, report["rates"])
    report["benchmarks"][name] = {
      "rows": [row["key"] for row in rows],
      "seconds": time.perf_counter() - began,
      "other_cores": meter.stop(),
      "load_1min_end": os.getloadavg()[0],
    }
    report["rows"] += rows
  report["load_1min_after"] = os.getloadavg()[0]
  report["wall_s"] = time.perf_counter() - start
  return _finite(report)


def _time(seconds: float | None) -> str:
  if seconds is None:
    return "-"
  return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _ratio(value: float | None) -> str:
  return "-" if value is None else f"{value:.2f}"


def format_table(report: dict[str, Any]) -> str:
  """A heading (machine, rates, load, versions) and the table."""
  machine, rates = report["machine"], report["rates"]
  n = rates["matmul_n"]
  matmul = ", ".join(f"{k} {v:.0f}" for k, v in rates["matmul_gflops"].items())
  memory = ", ".join(f"{k} {v:.1f}" for k, v in rates["bandwidth_gbs"].items())
  versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
  others = [b["other_cores"] for b in report["benchmarks"].values()]
  lines = [
    f"### {machine['model_name']} ({machine['cpu_kind']}), "
    f"{machine['cores']} cores: {report['mode']} mode, {report['date']}",
    "",
    f"float32 matmul {n}^3, GFLOP/s: {matmul} (floor "
    f"{rates['floor_gflops']:.0f}); copy of {rates['bandwidth_mib']} MiB, "
    f"GB/s: {memory} (floor {rates['floor_gbs']:.1f}). Load (1 min) "
    f"{report['load_1min_before']:.1f} before, "
    f"{report['load_1min_after']:.1f} after; other processes' cores "
    f"during the benchmarks: at most {max(others, default=0):.2f}. "
    f"{versions}. {report['wall_s'] / 60:.1f} minutes"
    + (
      f"; skipped: {', '.join(report['skipped'])}."
      if report["skipped"]
      else "."
    ),
    "",
  ]
  table = evaluation.markdown_table(
    ["work", "peer", "ours", "peer's", "ours / peer", "floor", "ours / floor"],
    [
      [
        row["work"],
        row["peer"] or "-",
        _time(row["ours_s"]),
        _time(row["peer_s"]),
        _ratio(row["ours_over_peer"]),
        _time(row["floor_s"]),
        _ratio(row["ours_over_floor"]),
      ]
      for row in report["rows"]
    ],
  )
  return "\n".join([*lines, table])


def render_results(folder: pathlib.Path = RESULTS) -> str:
  """One table per machine kind: each summary_<kind>.json in ``folder``."""
  tables = []
  for path in sorted(glob.glob(str(folder / "summary_*.json"))):
    with open(path) as f:
      tables.append(format_table(json.load(f)))
  return "\n\n".join(tables)


def write_report(report: dict[str, Any], path: str) -> None:
  """Writes strict JSON atomically (a temporary file, then a rename)."""
  folder = os.path.dirname(os.path.abspath(path))
  with tempfile.NamedTemporaryFile("w", dir=folder, delete=False) as f:
    json.dump(report, f, indent=1, allow_nan=False)
  os.replace(f.name, path)


def default_path(report: dict[str, Any]) -> str:
  """results/summary_<kind>.json in the default mode; in the others, the
  temporary folder (their figures are no record)."""
  name = f"summary_{report['machine']['cpu_kind']}"
  if report["mode"] == "default":
    return str(RESULTS / f"{name}.json")
  return os.path.join(tempfile.gettempdir(), f"{name}_{report['mode']}.json")


def main(argv: list[str]) -> None:
  del argv
  if _TABLE.value:
    print(render_results() or f"No summary_*.json in {RESULTS} yet.")
    return
  if _QUICK.value and _SMOKE.value:
    raise app.UsageError("--quick or --smoke, not both.")
  unknown = set(_SKIP.value) - set(summary_rows.BENCHMARKS)
  if unknown:
    raise app.UsageError(
      f"--skip: {sorted(unknown)} not in {[*summary_rows.BENCHMARKS]}."
    )
  mode = "smoke" if _SMOKE.value else "quick" if _QUICK.value else "default"
  report = run(mode, _SKIP.value)
  path = _OUT.value or default_path(report)
  write_report(report, path)
  print(format_table(report))
  print(f"\nWritten: {path}")


if __name__ == "__main__":
  jax.config.update("jax_platforms", "cpu")
  app.run(main)
