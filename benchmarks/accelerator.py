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
"""The accelerator benchmark: ours against PyTorch, pml and faiss on one GPU.

  python -m benchmarks.accelerator --out=benchmarks/results/accelerator
  python -m benchmarks.accelerator --smoke --out=/tmp/smoke   # CPU, tiny

Side by side in one process, each case timed after a warm-up call (which
compiles), the median of ``--timed`` timed calls:

1. Backbone train steps, images/s at ``--image_size`` px, batch ``--batch``:
   ResNet-50 with the ProxyNCA++ recipe (max pooling, layer norm, 512-d) and
   BN-Inception with the paper's (average pooling, 64-d), both with Adam,
   and ViT-S/16 with the ViT recipe at equal work (side_by_side.vit_config:
   AdamW, class token into 512-d; no layer decay, no stochastic depth), all
   with Proxy-NCA in its softmax form (scale 9) over 100 proxies (CUB's
   training classes). Ours: the run's jitted train step
   (``setup.assemble``), backbone in bfloat16 (``model.dtype``). PyTorch:
   the same network written in PyTorch (benchmarks/torch_networks.py,
   side_by_side.TorchEmbedder; the CNNs ``channels_last``), autocast to
   bfloat16, pytorch-metric-learning's ``ProxyNCALoss``, the same optimiser
   and learning rates (side_by_side.torch_optimizer); a step is forward,
   backward and the optimiser update.
2. Proxy-NCA loss and gradient (with respect to the embeddings and the
   proxies), batch ``--batch`` x 512, at 11,318 (SOP's training classes)
   and 1,000,000 proxies: ``losses.proxy_nca_loss`` jitted against
   ``ProxyNCALoss`` forward and backward, both on the accelerator.
3. SOP-scale evaluation (60,502 x 512 SOP-like embeddings,
   benchmarks/evaluation_at_scale.py): our exact per-query scores on the
   accelerator against faiss ``IndexFlatIP`` on the CPU, and on the GPU when
   the installed faiss has GPU support.

Writes OUT.md (one Markdown table per part, the device and versions) and
OUT.json. ``--smoke`` runs every part at tiny shapes (32 px, batch 4, the
two-block ``vit_test`` for ViT-S/16, 100 and 1,000 proxies, 2,000 x 64
embeddings, one timed call) on whatever device is there; the test suite
runs it, so the command is known to work before a GPU ever runs it. Needs
the benchmark extra (torch==2.13.0, pytorch-metric-learning, faiss-cpu).
"""

import json
import os
from typing import Any

import faiss
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytorch_metric_learning
import torch
from absl import app, flags
from pytorch_metric_learning import losses as pml_losses

from benchmarks import cpu_timing, evaluation_at_scale, side_by_side
from configs import cub200
from proxy_nca_jax import evaluation, losses, parallel
from proxy_nca_jax.models import vit
from proxy_nca_jax.training import setup

_OUT = flags.DEFINE_string(
  "out", "benchmarks/results/accelerator", "Writes OUT.md and OUT.json."
)
_SMOKE = flags.DEFINE_bool("smoke", False, "Tiny shapes: checks every part.")
_BATCH = flags.DEFINE_integer("batch", 128, "Images (embeddings) per step.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side, pixels.")
_TIMED = flags.DEFINE_integer("timed", 20, "Timed calls per case (median).")
_PARTS = flags.DEFINE_list(
  "parts", ["backbones", "loss", "evaluation"], "Parts to run."
)

PARTS = ("backbones", "loss", "evaluation")
# Each backbone's recipe (configs/benchmark_common.py).
BACKBONES = {
  "resnet50": "proxynca_pp",
  "bn_inception": "paper",
  "vit_s16": "vit",
}
_BACKBONES = flags.DEFINE_list(
  "backbones", list(BACKBONES), "Backbones timed by the backbones part."
)
TRAIN_CLASSES = 100  # CUB-200-2011's training classes.
SOFTMAX_SCALE = 9.0
EMBEDDING_DIM = 512
LOSS_PROXIES = (11_318, 1_000_000)
SOP_TEST = (60_502, 11_316)  # Images, classes.
KS = (1, 10, 100, 1000)
SOP_NOISE = 0.11  # Per dimension, as benchmarks/evaluation_at_scale.py.


def _shapes() -> dict[str, Any]:
  """The sizes of this run: the real ones, or tiny ones with --smoke."""
  if _SMOKE.value:
    return {
      "batch": 4,
      "image_size": 32,
      "timed": 1,
      "loss_proxies": (100, 1000),
      "sop": (2000, 400),
      "dim": 64,
      "vit": vit.TEST_MODEL,
    }
  return {
    "vit": "vit_s16",
    "batch": _BATCH.value,
    "image_size": _IMAGE_SIZE.value,
    "timed": _TIMED.value,
    "loss_proxies": LOSS_PROXIES,
    "sop": SOP_TEST,
    "dim": EMBEDDING_DIM,
  }


def _torch_device() -> torch.device:
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: torch.device) -> None:
  if device.type == "cuda":
    torch.cuda.synchronize()


def backbone_config(
  name: str, batch: int, image_size: int, model: str | None = None
) -> ml_collections.ConfigDict:
  """CUB's config of ``name``'s recipe, random weights, bfloat16 backbone,
  softmax Proxy-NCA at scale 9 (what pml's ProxyNCALoss computes).

  ``model``: the network, when not ``name`` (``vit_test`` for ``vit_s16``
  in a smoke run).
  """
  if BACKBONES[name] == "vit":
    return side_by_side.vit_config(
      model or name, batch, image_size, dtype="bfloat16"
    )
  config = cub200.get_config(f"recipe={BACKBONES[name]}")
  with config.unlocked():
    config.input.batch_size = batch
    config.input.image_size = image_size
    config.model.dtype = "bfloat16"
    config.loss.form = "softmax"
    config.loss.scale = SOFTMAX_SCALE
    config.optimizer.name = "adam"
    config.optimizer.eps = 1e-8
  return config


def time_backbone(name: str, shapes: dict[str, Any]) -> dict[str, Any]:
  """Train-step images/s of ours and of PyTorch for one backbone."""
  batch, size = shapes["batch"], shapes["image_size"]
  model = shapes["vit"] if BACKBONES[name] == "vit" else name
  config = backbone_config(name, batch, size, model)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(batch, size, size, 3)).astype(np.float32)
  labels = rng.integers(0, TRAIN_CLASSES, batch).astype(np.int32)

  mesh = parallel.create_mesh()
  parts = setup.assemble(config, mesh, TRAIN_CLASSES)
  step_fn = parts.train_step()
  data = parallel.global_batch({"image": images, "label": labels}, mesh)
  holder = {"state": parts.initial_state()}

  def ours() -> None:
    holder["state"], metrics = step_fn(holder["state"], data)
    jax.block_until_ready(metrics)

  device = _torch_device()
  # channels_last helps PyTorch's convolutions; a ViT's tokens are
  # flattened from the standard layout, as in timm.
  memory_format = (
    torch.contiguous_format if model in vit.MODELS else torch.channels_last
  )
  net = side_by_side.TorchEmbedder(config)
  net = net.to(device, memory_format=memory_format)
  loss_fn = pml_losses.ProxyNCALoss(
    num_classes=TRAIN_CLASSES,
    embedding_size=config.model.embedding_dim,
    softmax_scale=SOFTMAX_SCALE,
  ).to(device)
  optimizer = side_by_side.torch_optimizer(config, net, loss_fn.parameters())
  x = torch.from_numpy(images).permute(0, 3, 1, 2).to(device)
  x = x.contiguous(memory_format=memory_format)
  y = torch.from_numpy(labels).long().to(device)

  def theirs() -> None:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16):
      embeddings = net(x)
    loss_fn(embeddings.float(), y).backward()
    optimizer.step()
    _sync(device)

  row = {
    "backbone": model,
    "recipe": BACKBONES[name],
    "batch": batch,
    "optimizer": config.optimizer.name,
  }
  for who, fn in (("ours", ours), ("pytorch", theirs)):
    timing = cpu_timing.median_after_warmup(fn, shapes["timed"])
    row[who] = {**timing, "images_per_s": batch / timing["median_s"]}
  row["ours_over_pytorch"] = (
    row["ours"]["images_per_s"] / row["pytorch"]["images_per_s"]
  )
  return row


def time_loss(num_proxies: int, shapes: dict[str, Any]) -> dict[str, Any]:
  """Proxy-NCA value and gradient at ``num_proxies``: ours vs pml's."""
  batch, dim = shapes["batch"], shapes["dim"]
  rng = np.random.default_rng(1)
  embeddings = rng.normal(size=(batch, dim)).astype(np.float32)
  embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
  proxies = rng.normal(size=(num_proxies, dim)).astype(np.float32)
  labels = rng.integers(0, num_proxies, batch).astype(np.int32)

  grad_fn = jax.jit(
    jax.value_and_grad(
      lambda e, p, y: losses.proxy_nca_loss(
        e, y, p, scale=SOFTMAX_SCALE, form="softmax"
      ),
      argnums=(0, 1),
    )
  )
  args = tuple(jnp.asarray(a) for a in (embeddings, proxies, labels))

  def ours() -> None:
    jax.block_until_ready(grad_fn(*args))

  device = _torch_device()
  loss_fn = pml_losses.ProxyNCALoss(
    num_classes=num_proxies, embedding_size=dim, softmax_scale=SOFTMAX_SCALE
  ).to(device)
  with torch.no_grad():
    loss_fn.proxies.copy_(torch.from_numpy(proxies))
  e = torch.from_numpy(embeddings).to(device).requires_grad_(True)
  y = torch.from_numpy(labels).long().to(device)

  def theirs() -> None:
    e.grad = None
    loss_fn.proxies.grad = None
    loss_fn(e, y).backward()
    _sync(device)

  row = {"proxies": num_proxies, "batch": batch, "dim": dim}
  row["loss_ours"] = float(grad_fn(*args)[0])
  with torch.no_grad():
    row["loss_pml"] = loss_fn(e, y).item()
  for who, fn in (("ours", ours), ("pml", theirs)):
    row[who] = cpu_timing.median_after_warmup(fn, shapes["timed"])
  row["ours_over_pml_speed"] = row["pml"]["median_s"] / row["ours"]["median_s"]
  return row


def time_evaluation(shapes: dict[str, Any]) -> dict[str, Any]:
  """Recall@K and MAP@R of SOP-like embeddings: ours vs faiss search."""
  num, classes = shapes["sop"]
  x, labels = evaluation_at_scale.sop_like_embeddings(
    num, classes, shapes["dim"], noise=SOP_NOISE
  )
  r = np.bincount(labels)[labels] - 1
  k = min(max(max(KS), int(r.max())) + 1, num)
  holder: dict[str, Any] = {}

  def ours() -> None:
    holder["ours"] = evaluation.per_query_scores(x, labels, max_k=max(KS))

  def faiss_cpu() -> None:
    holder["faiss_cpu"] = evaluation_at_scale.faiss_search(x, k)

  cases = [("ours", ours), ("faiss_cpu", faiss_cpu)]
  if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
    resources = faiss.StandardGpuResources()

    def faiss_gpu() -> None:
      index = faiss.GpuIndexFlatIP(resources, x.shape[1])
      index.add(x)
      holder["faiss_gpu"] = index.search(x, k)

    cases.append(("faiss_gpu", faiss_gpu))
  row: dict[str, Any] = {"num": num, "classes": classes, "dim": x.shape[1]}
  for who, fn in cases:
    row[who] = cpu_timing.median_after_warmup(fn, shapes["timed"])
  ks = tuple(kk for kk in KS if kk < num)
  found, _ = evaluation_at_scale.without_self(*holder["faiss_cpu"])
  faiss_scores = evaluation_at_scale.scores_from_neighbours(found, labels, r)
  row["metrics_ours"] = evaluation.summarize_retrieval(holder["ours"], ks)
  row["metrics_faiss"] = evaluation.summarize_retrieval(faiss_scores, ks)
  for who, _ in cases[1:]:
    row[f"ours_over_{who}_speed"] = (
      row[who]["median_s"] / row["ours"]["median_s"]
    )
  return row


def describe_devices() -> dict[str, Any]:
  return {
    **cpu_timing.machine_description(),
    "jax_devices": [d.device_kind for d in jax.devices()],
    "jax_backend": jax.default_backend(),
    "torch_device": (
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    ),
    "jax": jax.__version__,
    "torch": torch.__version__,
    "pytorch_metric_learning": pytorch_metric_learning.__version__,
    "faiss": faiss.__version__,
    "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
    "load_1min": os.getloadavg()[0],
  }


def format_markdown(report: dict[str, Any]) -> str:
  """The report as Markdown: the machine, then one table per part."""
  machine = report["machine"]
  smoke = " (smoke: tiny shapes, not results)" if report["smoke"] else ""
  lines = [
    f"# Accelerator benchmark{smoke}",
    "",
    f"JAX on {', '.join(sorted(set(machine['jax_devices'])))} "
    f"({machine['jax_backend']}); PyTorch on {machine['torch_device']}; "
    f"CPU {machine['cpu']}; load (1 min) {machine['load_1min']:.1f}. "
    f"jax {machine['jax']}, torch {machine['torch']}, "
    f"pytorch-metric-learning {machine['pytorch_metric_learning']}, faiss "
    f"{machine['faiss']}. Medians of {report['timed']} timed calls after a "
    "warm-up call.",
  ]
  if rows := report.get("backbones"):
    header = ["backbone (recipe)", "batch", "ours images/s"]
    header += ["PyTorch images/s", "ours / PyTorch", "ours first call s"]
    lines += [
      "",
      evaluation.markdown_table(
        header,
        [
          [
            f"{r['backbone']} ({r['recipe']})",
            str(r["batch"]),
            f"{r['ours']['images_per_s']:.1f}",
            f"{r['pytorch']['images_per_s']:.1f}",
            f"{r['ours_over_pytorch']:.2f}",
            f"{r['ours']['first_call_s']:.1f}",
          ]
          for r in rows
        ],
      ),
    ]
  if rows := report.get("loss"):
    header = ["proxies", "batch x dim", "ours ms", "pml ms"]
    header += ["speed ours / pml", "loss ours", "loss pml"]
    lines += [
      "",
      evaluation.markdown_table(
        header,
        [
          [
            f"{r['proxies']:,}",
            f"{r['batch']} x {r['dim']}",
            f"{r['ours']['median_s'] * 1e3:.2f}",
            f"{r['pml']['median_s'] * 1e3:.2f}",
            f"{r['ours_over_pml_speed']:.2f}",
            f"{r['loss_ours']:.5f}",
            f"{r['loss_pml']:.5f}",
          ]
          for r in rows
        ],
      ),
    ]
  if row := report.get("evaluation"):
    size = f"{row['num']:,} x {row['dim']} ({row['classes']:,} classes)"
    rows = [["ours", row["ours"]["median_s"], 1.0, row["metrics_ours"]]]
    for who in ("faiss_cpu", "faiss_gpu"):
      if who in row:
        name = f"{who.replace('_', ' ')} (search only)"
        speed = row[f"ours_over_{who}_speed"]
        rows.append([name, row[who]["median_s"], speed, row["metrics_faiss"]])
    lines += [
      "",
      evaluation.markdown_table(
        [size, "seconds", "speed ours / it", "MAP@R", "Recall@1"],
        [
          [
            name,
            f"{s:.3f}",
            f"{v:.2f}",
            f"{m['map@r']:.4f}",
            f"{m['recall@1']:.4f}",
          ]
          for name, s, v, m in rows
        ],
      ),
    ]
  return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
  del argv
  unknown = sorted(set(_PARTS.value) - set(PARTS))
  if unknown:
    raise app.UsageError(f"Unknown --parts {unknown}; use {list(PARTS)}.")
  unknown = sorted(set(_BACKBONES.value) - set(BACKBONES))
  if unknown:
    raise app.UsageError(
      f"Unknown --backbones {unknown}; use {list(BACKBONES)}."
    )
  shapes = _shapes()
  report: dict[str, Any] = {
    "smoke": _SMOKE.value,
    "timed": shapes["timed"],
    "machine": describe_devices(),
  }
  if "backbones" in _PARTS.value:
    report["backbones"] = [time_backbone(n, shapes) for n in _BACKBONES.value]
  if "loss" in _PARTS.value:
    report["loss"] = [time_loss(c, shapes) for c in shapes["loss_proxies"]]
  if "evaluation" in _PARTS.value:
    report["evaluation"] = time_evaluation(shapes)
  markdown = format_markdown(report)
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(f"{_OUT.value}.md", "w") as f:
    f.write(markdown)
  with open(f"{_OUT.value}.json", "w") as f:
    json.dump(report, f, indent=2)
  print(markdown)
  print(f"wrote {_OUT.value}.md and {_OUT.value}.json")


if __name__ == "__main__":
  app.run(main)
