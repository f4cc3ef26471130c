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
"""The rows of summary.py: each benchmark's functions, ours vs the peer vs
the floor.

Each ``*_rows(sizes, rates)`` runs one benchmark at ``sizes`` (an entry of
``summary.SIZES``) and returns its rows (``make_row``); ``rates`` are the
machine's measured matmul and copy rates, whose best give the floors.
"""

import functools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import (
  evaluation_at_scale,
  kmeans_at_equal_work,
  proxy_step_floor,
  search_at_scale,
)
from proxy_nca_jax import native
from proxy_nca_jax.losses import proxy_blocks

REPO = pathlib.Path(__file__).resolve().parents[1]


def _floor_s(rates: dict[str, Any], flops: float, bytes_: float = 0) -> float:
  return max(
    flops / (rates["floor_gflops"] * 1e9), bytes_ / (rates["floor_gbs"] * 1e9)
  )


def make_row(
  key: str,
  work: str,
  ours_s: float,
  peer: str | None,
  peer_s: float | None,
  floor_s: float | None,
  **details: Any,
) -> dict[str, Any]:
  """One line of the table; the ratios are ours_s / peer_s, ours_s /
  floor_s (None without a peer or a floor)."""
  return {
    "key": key,
    "work": work,
    "peer": peer,
    "ours_s": ours_s,
    "peer_s": peer_s,
    "floor_s": floor_s,
    "ours_over_peer": ours_s / peer_s if peer_s else None,
    "ours_over_floor": ours_s / floor_s if floor_s else None,
    "details": details,
  }


def evaluation_rows(sizes: dict[str, Any], rates: dict[str, Any]):
  """Exact retrieval metrics and k-means at equal work, one SOP-like set."""
  s = sizes["evaluation"]
  x, labels = evaluation_at_scale.sop_like_embeddings(
    s["num"], s["classes"], s["dim"], evaluation_at_scale.SOP_NOISE
  )
  n, d = x.shape
  found = evaluation_at_scale.retrieval_side_by_side(
    x, labels, repeats=sizes["repeats"]
  )
  ours, theirs = (found["retrieval"][m] for m in ("ours", "faiss"))
  values = found["values"]
  retrieval = make_row(
    "retrieval",
    f"exact retrieval metrics, {n:,} x {d}",
    ours["best_s"],
    f"faiss IndexFlatIP, k = {found['faiss_k']:,}",
    theirs["best_s"],
    _floor_s(rates, flops=n * n * d),
    first_call_s=ours["first_call_s"],
    extra_rss_mb={"ours": ours["rss_extra_mb"], "peer": theirs["rss_extra_mb"]},
    max_metric_difference=max(
      abs(values["ours"][m] - values["faiss"][m]) for m in values["ours"]
    ),
    queries_scored_differently=found["differences_vs_faiss"]["count"],
    values=values["ours"],
  )
  kmeans = kmeans_at_equal_work.compare(
    x,
    labels,
    s["classes"],
    max_iters=sizes["kmeans_iters"],
    repeats=sizes["repeats"],
  )
  iterations = kmeans["lloyd_iterations"]
  return [
    retrieval,
    make_row(
      "kmeans",
      f"k-means, {n:,} x {d}, {s['classes']:,} clusters: {iterations} Lloyd "
      "iterations from the same seeds",
      kmeans["ours"]["lloyd_s"],
      "faiss Kmeans",
      kmeans["faiss"]["lloyd_s"],
      _floor_s(rates, flops=iterations * kmeans["flops_per_assignment"]),
      **{k: v for k, v in kmeans.items() if k not in ("points", "dim")},
    ),
  ]


def search_rows(sizes: dict[str, Any], rates: dict[str, Any]):
  """Exact top-k search of a batch and of one query in a large gallery."""
  found = search_at_scale.side_by_side(**sizes["search"])
  (n, d), q, k = found["gallery"], found["queries"], found["k"]
  batch, single = found["search_batch"], found["single_query_s"]
  memory = found["build_and_search"]
  screened = ", bfloat16-screened" if found["screened"] else ""
  return [
    make_row(
      "search_batch",
      f"top-{k} search, batch of {q:,}, {n:,} x {d}{screened}",
      batch["ours"]["best_s"],
      "faiss IndexFlatIP",
      batch["faiss"]["best_s"],
      _floor_s(rates, flops=2 * q * n * d, bytes_=4 * n * d),
      lists_differing=found["lists"]["queries_differing"],
      anon_extra_mb={
        "ours": memory["ours"]["anon_extra_mb"],
        "peer": memory["faiss"]["anon_extra_mb"],
      },
    ),
    make_row(
      "search_one",
      f"top-{k} search, one query, same gallery (median)",
      single["ours"],
      "faiss IndexFlatIP",
      single["faiss"],
      _floor_s(rates, flops=2 * n * d, bytes_=4 * n * d),
    ),
  ]


def proxy_step_rows(sizes: dict[str, Any], rates: dict[str, Any]):
  """The Proxy-NCA train step at C proxies vs its floor, in the library's
  automatic blocks (every logit at once at the smoke size), whose sums are
  native/proxy_sums.cc's where it builds."""
  s = sizes["proxy_step"]
  c, d, b = s["classes"], s["dim"], s["batch"]
  block = proxy_blocks.chosen_block_size(None, c) or c
  rng = np.random.default_rng(0)
  embeddings = jnp.asarray(rng.normal(size=(b, d)).astype(np.float32))
  labels = jnp.asarray(rng.integers(0, c, b).astype(np.int32))
  proxies = jax.random.normal(jax.random.key(1), (c, d), jnp.float32)
  loss_fn = functools.partial(
    proxy_step_floor._proxy_nca, labels=labels, block_size=block
  )
  step, scratch_gib = proxy_step_floor.compiled_step(
    loss_fn, optax.adam(1e-2), embeddings, proxies
  )
  if block >= c:
    blocks = "every logit at once"
  elif proxy_blocks.native_sums(embeddings, proxies):
    blocks = "native blocked sums"
  else:
    blocks = f"XLA's blocks of {block:,}"
  del proxies
  flops, bytes_ = proxy_step_floor.step_work(c, b, d)
  return [
    make_row(
      "proxy_step",
      f"Proxy-NCA train step, {c:,} proxies x {d}, batch {b}, {blocks}",
      proxy_step_floor.median_s(step, sizes["step_repeats"]),
      None,
      None,
      _floor_s(rates, flops, bytes_),
      flops=flops,
      bytes=bytes_,
      scratch_gib=scratch_gib,
    )
  ]


def train_step_row(result: dict[str, Any]) -> dict[str, Any]:
  """The row of a train_step_vs_pytorch JSON result."""
  ours, theirs, steps = result["ours"], result["PyTorch"], result["steps"]
  keep = ("recall@1", "map@r", "nmi")
  trained = {
    side: {m: result["metrics"][f"{side}, {steps} steps"][m] for m in keep}
    for side in ("ours", "PyTorch")
  }
  onednn = result.get("onednn_conv", False)
  return make_row(
    "train_step_onednn" if onednn else "train_step",
    f"convnet-S train step, batch {result['batch_size']}"
    f"{', oneDNN convolutions' if onednn else ''} "
    f"({result['dataset']}; median of {ours['timed_steps']} steps)",
    ours["median_ms"] / 1e3,
    "PyTorch + PML ProxyNCALoss",
    theirs["median_ms"] / 1e3,
    None,
    quiet_median_s={
      "ours": ours["quiet_median_ms"] / 1e3,
      "peer": theirs["quiet_median_ms"] / 1e3,
    },
    quiet_steps={"ours": ours["quiet_steps"], "peer": theirs["quiet_steps"]},
    trained_metrics=trained,
    jax_devices=result["jax_devices"],
    torch_threads=result["torch_threads"],
  )


def train_step_rows(sizes: dict[str, Any], rates: dict[str, Any]):
  """train_step_vs_pytorch as a command (it chooses its JAX devices), with
  XLA's convolutions and, where its kernels build, with oneDNN's
  (model.conv="onednn"; without g++ or libdnnl-dev that row is left out
  and a line says why)."""
  del rates
  rows = []
  variants = ["--noonednn_conv"]
  if native.available("onednn_conv"):
    variants.append("--onednn_conv")
  else:
    print(
      "train_step_onednn left out: oneDNN's kernels did not build "
      "(apt-get install g++ libdnnl-dev)",
      file=sys.stderr,
    )
  with tempfile.TemporaryDirectory() as folder:
    for convolutions in variants:
      out = os.path.join(folder, f"train_step{convolutions}.json")
      command = [
        sys.executable,
        "-m",
        "benchmarks.train_step_vs_pytorch",
        *sizes["train_step"],
        convolutions,
        f"--json_out={out}",
      ]
      done = subprocess.run(
        command,
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
      )
      if done.returncode:
        raise RuntimeError(f"{' '.join(command)}:\n{done.stderr[-3000:]}")
      with open(out) as f:
        rows.append(train_step_row(json.load(f)))
  return rows


BENCHMARKS = {
  "evaluation": evaluation_rows,
  "search": search_rows,
  "proxy_step": proxy_step_rows,
  "train_step": train_step_rows,
}
