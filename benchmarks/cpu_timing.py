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
"""Timing on a shared CPU machine: load meter, malloc tuning, machine record.

The benchmarks here ran on 2 cores shared with other people's jobs, so each
timing records how much CPU *other* processes used meanwhile (``LoadMeter``)
and can keep only the quiet stretches (``time_quietly``). ``lscpu_fields``
and ``cpu_kind`` name the machine a result belongs to.
"""

import ctypes
import os
import platform
import re
import statistics
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


class LoadMeter:
  """Cores used by *other* processes between ``start`` and ``stop``.

  Reads /proc/stat (all CPU time but idle and iowait, steal included) and
  subtracts this process's own user + system time (all its threads) and
  that of the child processes it has waited for (a benchmark run as a
  command is not another job).
  """

  def __init__(self):
    self._ticks = os.sysconf("SC_CLK_TCK")
    self._begin = self._read()

  def _read(self) -> tuple[int, int, float]:
    with open("/proc/stat") as f:
      fields = [int(v) for v in f.readline().split()[1:9]]
    busy = sum(fields) - fields[3] - fields[4]
    with open("/proc/self/stat") as f:
      own = f.read().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime (proc(5): fields 14 to 17).
    return busy, sum(int(v) for v in own[11:15]), time.perf_counter()

  def start(self) -> None:
    self._begin = self._read()

  def stop(self) -> float:
    """Average number of cores other processes used since ``start``."""
    busy, mine, now = self._read()
    other = (busy - self._begin[0]) - (mine - self._begin[1])
    return max(other, 0) / self._ticks / max(now - self._begin[2], 1e-9)


def time_quietly(
  fn: Callable[[], Any],
  *,
  wanted: int = 30,
  block: int = 5,
  quiet_threshold: float = 0.1,
  budget_s: float = 300.0,
) -> dict[str, float]:
  """Times ``fn()`` (which must block until done) in blocks of calls.

  A block counts as quiet when other processes used less than
  ``quiet_threshold`` cores during it. Stops after ``wanted`` quiet calls
  or ``budget_s`` seconds, whichever comes first.

  Returns:
    dict with quiet_median_ms, quiet_calls, all_median_ms, all_calls.
  """
  meter = LoadMeter()
  quiet, every = [], []
  deadline = time.perf_counter() + budget_s
  while len(quiet) < wanted and time.perf_counter() < deadline:
    times = []
    meter.start()
    for _ in range(block):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
    every += times
    if meter.stop() < quiet_threshold:
      quiet += times
    else:
      time.sleep(0.2)  # Let the other job's burst pass.
  return {
    "quiet_median_ms": float(np.median(quiet) * 1e3) if quiet else np.nan,
    "quiet_calls": len(quiet),
    "all_median_ms": float(np.median(every) * 1e3),
    "all_calls": len(every),
  }


def tune_malloc() -> bool:
  """Stops glibc malloc from returning freed memory to the kernel.

  With glibc's defaults, a framework that frees and re-allocates its large
  activation buffers every step can have them unmapped (or trimmed) and
  page-faulted back in each time, which costs both JAX and PyTorch several
  milliseconds of kernel time per convnet-S step (README.md here). 1 GiB
  trim and mmap thresholds keep the buffers mapped (the resident set stays
  at its peak instead; XLA's per-execution temporary buffer alone can
  exceed glibc's 32 MiB maximum default threshold). Process-wide; must run
  before the large allocations; equivalent to starting the process with
  ``GLIBC_TUNABLES=glibc.malloc.trim_threshold=1073741824:``
  ``glibc.malloc.mmap_threshold=1073741824``.

  Returns:
    True if glibc accepted both settings (False elsewhere, e.g. musl/macOS).
  """
  try:
    libc = ctypes.CDLL("libc.so.6")
  except OSError:
    return False
  return bool(
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    and libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
  )


def machine_description() -> dict[str, str]:
  """The CPU, its core count, Python and XLA_FLAGS, for the record."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {
    "cpu": f"{cpu}, {os.cpu_count()} cores",
    "python": platform.python_version(),
    "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
  }


def lscpu_fields() -> dict[str, str]:
  """``lscpu``'s fields ('Model name', 'Vendor ID', 'CPU family', 'Model',
  'Flags', 'L3 cache', ...); {} where lscpu is missing or fails."""
  try:
    out = subprocess.run(
      ["lscpu"],
      capture_output=True,
      text=True,
      check=True,
      env={**os.environ, "LC_ALL": "C"},
    ).stdout
  except (OSError, subprocess.CalledProcessError):
    return {}
  fields = {}
  for line in out.splitlines():
    key, colon, value = line.partition(":")
    if colon and key.strip() not in fields:
      fields[key.strip()] = value.strip()
  return fields


def cpu_kind(fields: dict[str, str]) -> str:
  """A file-name slug for the kind of CPU, from ``lscpu_fields``: the model
  name without trademarks, clock and filler words, then the family and
  model numbers, which tell apart CPUs that a VM names alike (e.g.
  'amd_epyc_f25_m17', a Zen 4; 'amd_epyc_f25_m1', a Zen 3)."""
  name = fields.get("Model name") or platform.machine() or "cpu"
  name = re.sub(r"\(r\)|\(tm\)|@.*$", " ", name.lower())
  words = [w for w in re.split(r"[^a-z0-9]+", name) if w]
  words = [w for w in words if w not in ("cpu", "processor")]
  kind = "_".join(words) or "cpu"
  if fields.get("CPU family") and fields.get("Model"):
    kind += f"_f{fields['CPU family']}_m{fields['Model']}"
  return kind


def _rss() -> tuple[int, int]:
  """This process's resident set size and its anonymous part (resident
  minus file-backed pages, e.g. of memory-mapped files), in bytes."""
  with open("/proc/self/statm") as f:
    resident, shared = (int(v) for v in f.read().split()[1:3])
  page = os.sysconf("SC_PAGE_SIZE")
  return resident * page, (resident - shared) * page


def _peak_rss() -> int | None:
  """The kernel's peak resident set size of this process (VmHWM) in bytes,
  or None where /proc/self/status lacks it."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def _reset_peak_rss() -> bool:
  """Resets VmHWM to the current resident set size (Linux >= 4.0: "5" to
  /proc/self/clear_refs); False where that is not possible."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


class _PeakRss:
  """Peak resident set size during a block, minus the size at its start, in
  MB (``extra_mb``; ``anon_extra_mb`` for the anonymous part).

  The total's peak is the kernel's own (VmHWM, reset at the start), exact
  and free. The anonymous part has no kernel peak: a thread samples it every
  `SAMPLE_S`. (Sampling every millisecond, as this did before, took a core's
  share from the work it measured: our retrieval call 14.8 -> 18.4-20.5 s
  on 2 cores.)
  """

  SAMPLE_S = 0.02

  def __enter__(self):
    self.start = _rss()
    self.peak = self.start
    self._kernel_peak = _reset_peak_rss()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def _sample(self):
    while not self._stop.wait(self.SAMPLE_S):
      self.peak = tuple(map(max, self.peak, _rss()))

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = tuple(map(max, self.peak, _rss()))
    kernel_peak = _peak_rss() if self._kernel_peak else None
    total = max(self.peak[0], kernel_peak or 0)
    self.extra_mb = (total - self.start[0]) / 2**20
    self.anon_extra_mb = (self.peak[1] - self.start[1]) / 2**20


def median_after_warmup(
  fn: Callable[[], Any], repeats: int
) -> dict[str, float]:
  """One warm-up call (it compiles), then the median of ``repeats`` calls.

  ``fn`` must wait for its own result (``jax.block_until_ready``,
  ``torch.cuda.synchronize``).

  Returns:
    {'first_call_s': the warm-up's seconds, 'median_s'}.
  """
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return {"first_call_s": first, "median_s": statistics.median(times)}


def measure(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
  """Runs `fn` `repeats` times: result, times, memory, load averages."""
  times, rss, anon, traced, loads = [], [], [], [], []
  result = None
  for _ in range(repeats):
    tracemalloc.start()
    with _PeakRss() as memory:
      start = time.perf_counter()
      result = fn()
      times.append(time.perf_counter() - start)
    traced.append(tracemalloc.get_traced_memory()[1] / 2**20)
    tracemalloc.stop()
    rss.append(memory.extra_mb)
    anon.append(memory.anon_extra_mb)
    loads.append(os.getloadavg()[0])
  return {
    "result": result,
    "seconds": times,
    "best_s": min(times),
    "rss_extra_mb": max(rss),
    "anon_extra_mb": max(anon),
    "tracemalloc_peak_mb": max(traced),
    "load_1min": loads,
  }
