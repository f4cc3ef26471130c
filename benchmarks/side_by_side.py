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
"""Our train step and PyTorch's side by side: the PyTorch mirror of a
config, and a timer that alternates the two.

What train_step_vs_pytorch.py (convnet-S), vit_train_step_vs_pytorch.py
(ViT-S/16) and accelerator.py share:

* ``vit_config``: the ViT fine-tuning recipe (configs/cub200.py
  ``recipe=vit``) with what PyTorch's side does not do turned off, so both
  sides do the same work: no layer-wise learning-rate decay, weight decay on
  every network parameter (not on matrices only), no stochastic depth, a
  constant learning rate. What stays: AdamW 5e-5, weight decay 0.05 on the
  network and none on the proxies, proxies 100 times faster, the class
  token into a 512-d embedding, softmax Proxy-NCA at scale 9.
* ``TorchEmbedder``: ResNet-50, BN-Inception or a timm-layout ViT
  (torch_networks.py) followed by our embedding head
  (``models.embedding_head``): global pooling (a ViT's final-normed class
  token is its feature vector), a LayerNorm without affine parameters when
  ``model.layer_norm``, the linear embedding layer, L2 normalisation.
* ``torch_optimizer``: torch's Adam or AdamW with the learning rates and
  weight decays of our three parameter groups (backbone, embedding layer,
  proxies). It refuses what it does not mirror.
* ``alternate``: each side's steps in turn, a chunk at a time, so both see
  the same machine load, each chunk's load measured
  (``cpu_timing.LoadMeter``); ``summarize`` its times. ``AlternationFlags``
  are the command-line flags of the alternation and of the two sides'
  threads, defined once for both train-step benchmarks.

pytorch-metric-learning's ``ProxyNCALoss(softmax_scale=s)`` is our
``proxy_nca_loss(form="softmax", scale=s)``: both normalise embeddings and
proxies (accelerator_benchmark_test checks the values agree).
"""

import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import ml_collections
import numpy as np
import torch
import torch.nn.functional as F
from absl import flags, logging
from torch import nn

from benchmarks import cpu_timing, torch_networks
from configs import cub200
from proxy_nca_jax.data import vit_recipe
from proxy_nca_jax.models import vit

# One train step on the side's next batch: (seconds, CPU seconds of this
# process, all threads, loss), both times of the step alone.
StepFn = Callable[[], tuple[float, float, float]]


def vit_config(
  name: str,
  batch: int,
  image_size: int,
  dtype: str = "float32",
  pretrained: str | None = None,
) -> ml_collections.ConfigDict:
  """The ViT recipe for ``name`` (a key of ``vit.SIZES``) at equal work.

  Position embeddings are a grid for ``image_size`` (no resizing in the
  step). ``pretrained``: a folder of ``pretrained.import_weights`` whose
  weights the network starts from (they then set ``model.vit`` and the
  colour convention, ``vit_recipe.from_weights``).
  """
  config = cub200.get_config("recipe=vit")
  with config.unlocked():
    config.input.batch_size = batch
    config.input.image_size = image_size
    config.model.name = name
    config.model.dtype = dtype
    config.model.vit.position_size = image_size
    config.model.vit.drop_path = 0.0
    config.optimizer.layer_decay = 1.0
    config.optimizer.decay_matrices_only = False
    config.schedule.decay = "constant"
    config.schedule.warmup_steps = 0
    config.model.pretrained = pretrained
  vit_recipe.from_weights(config)
  return config


def _check_timm_vit(model_config: ml_collections.ConfigDict) -> None:
  options = model_config.vit
  plain = (
    options.layout == "timm"
    and options.readout == "token"
    and options.registers == 0
    and options.prefix_positions
    and not options.layer_scale
    and not options.projection_dim
    and options.drop_path == 0
  )
  if not plain:
    raise ValueError(
      "TorchEmbedder mirrors a plain timm ViT (class token, no registers, "
      f"LayerScale, projection or drop path); got {options.to_dict()}."
    )


class TorchEmbedder(nn.Module):
  """The PyTorch backbone of ``config.model.name`` and our embedding head."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__()
    model = config.model
    if model.name == "resnet50":
      self.backbone, features = torch_networks.TorchResNet50(), 2048
    elif model.name == "bn_inception":
      self.backbone, features = torch_networks.TorchBNInception(), 1024
    elif model.name in vit.MODELS:
      _check_timm_vit(model)
      size = vit.SIZES[model.name]
      self.backbone = torch_networks.TorchTimmViT(
        width=size.width,
        depth=size.depth,
        num_heads=size.num_heads,
        patch_size=size.patch_size,
        img_size=model.vit.position_size,
      )
      self.backbone.head = nn.Identity()  # The embedding head replaces it.
      features = size.width
    else:
      raise ValueError(f"No PyTorch mirror of {model.name!r}.")
    self.max_pool = model.pooling == "max"
    self.norm = (
      nn.LayerNorm(features, eps=1e-6, elementwise_affine=False)
      if model.layer_norm
      else nn.Identity()
    )
    self.linear = nn.Linear(features, model.embedding_dim)

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images -> (B, D) float32 unit-norm embeddings."""
    x = self.backbone.features(images)
    if x.ndim == 4:  # A CNN's (B, C, H', W') map.
      x = x.amax(dim=(2, 3)) if self.max_pool else x.mean(dim=(2, 3))
    return F.normalize(self.linear(self.norm(x.float())), dim=1)


def torch_optimizer(
  config: ml_collections.ConfigDict,
  net: TorchEmbedder,
  proxies: Iterable[nn.Parameter],
) -> torch.optim.Optimizer:
  """torch Adam or AdamW mirroring ``config.optimizer``'s three groups.

  Adam's weight decay is coupled L2 in both frameworks, AdamW's decoupled
  (and scaled by the learning rate) in both.

  Raises:
    ValueError: an optimiser, schedule or option with no mirror here.
  """
  opt, schedule = config.optimizer, config.schedule
  unmirrored = {
    "optimizer.name": opt.name not in ("adam", "adamw"),
    "optimizer.layer_decay": opt.layer_decay != 1.0,
    "optimizer.decay_matrices_only": opt.decay_matrices_only,
    "schedule": schedule.decay != "constant" or schedule.warmup_steps,
    "model.frozen_bn": config.model.frozen_bn,
  }
  if any(unmirrored.values()):
    raise ValueError(
      "No PyTorch mirror of "
      f"{', '.join(k for k, v in unmirrored.items() if v)}."
    )
  lr = opt.learning_rate
  groups = [
    {"params": net.backbone.parameters(), "weight_decay": opt.weight_decay},
    {
      "params": net.linear.parameters(),
      "lr": lr * opt.head_lr_mult,
      "weight_decay": opt.weight_decay,
    },
    {
      "params": list(proxies),
      "lr": lr * opt.proxy_lr_mult,
      "weight_decay": opt.proxy_weight_decay,
    },
  ]
  kind = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
  return kind(groups, lr=lr, eps=opt.eps)


@dataclasses.dataclass(frozen=True)
class AlternationFlags:
  """The flags of `alternate` and of each side's threads (`define_flags`)."""

  warmup_steps: flags.FlagHolder[int]
  chunk_steps: flags.FlagHolder[int]
  quiet_threshold: flags.FlagHolder[float]
  cpu_devices: flags.FlagHolder[int]
  torch_threads: flags.FlagHolder[int]

  def use_cores(self) -> int:
    """Sets JAX's CPU devices and torch's threads (default: one per core);
    returns the number of cores."""
    cores = os.cpu_count() or 1
    jax.config.update("jax_num_cpu_devices", self.cpu_devices.value or cores)
    torch.set_num_threads(self.torch_threads.value or cores)
    return cores

  def alternation(self) -> dict[str, Any]:
    """`alternate`'s keyword arguments but the steps."""
    return {
      "chunk_steps": self.chunk_steps.value,
      "warmup_steps": self.warmup_steps.value,
      "quiet_threshold": self.quiet_threshold.value,
    }


def define_flags(*, warmup_steps: int, chunk_steps: int) -> AlternationFlags:
  """Defines the alternation's flags with a benchmark's defaults (once per
  process: absl flags are global)."""
  return AlternationFlags(
    warmup_steps=flags.DEFINE_integer(
      "warmup_steps",
      warmup_steps,
      "First steps of each side left out of timing.",
    ),
    chunk_steps=flags.DEFINE_integer(
      "chunk_steps", chunk_steps, "Steps per turn when the two sides alternate."
    ),
    quiet_threshold=flags.DEFINE_float(
      "quiet_threshold",
      0.1,
      "Cores other processes may use during a chunk for it to count as quiet.",
    ),
    cpu_devices=flags.DEFINE_integer(
      "cpu_devices",
      0,
      "JAX CPU devices the batch is sharded over (0: one per core).",
    ),
    torch_threads=flags.DEFINE_integer(
      "torch_threads", 0, "torch.set_num_threads (0: one per core)."
    ),
  )


def alternate(
  steps: dict[str, StepFn],
  *,
  num_steps: int,
  chunk_steps: int,
  warmup_steps: int,
  quiet_threshold: float,
) -> dict[str, dict[str, list]]:
  """Runs ``num_steps`` of each side, the sides taking turns.

  Args:
    steps: side name -> its step function, which times itself so that
      preparing its batch stays outside the clock.
    num_steps: steps of each side.
    chunk_steps: steps per turn.
    warmup_steps: each side's first steps, left out of the times.
    quiet_threshold: cores other processes may use during a chunk for its
      steps to count as quiet.

  Returns:
    Per side: ``losses`` of every step; ``times`` (seconds), ``cpu_times``
    (this process's CPU seconds), ``quiet`` (bool) and ``other_cores``
    (cores used by other processes during the step's chunk) of each step
    after the warm-up.
  """
  meter = cpu_timing.LoadMeter()
  runs = {
    name: {
      "times": [],
      "cpu_times": [],
      "quiet": [],
      "other_cores": [],
      "losses": [],
    }
    for name in steps
  }
  done = 0
  while done < num_steps:
    chunk = min(chunk_steps, num_steps - done)
    for name, step_fn in steps.items():
      run, times = runs[name], []
      meter.start()
      for _ in range(chunk):
        seconds, cpu_seconds, loss = step_fn()
        times.append((seconds, cpu_seconds))
        run["losses"].append(loss)
      other = meter.stop()
      logging.info(
        "%s: steps %d-%d, median %.3f s, other processes %.2f cores.",
        name,
        done + 1,
        done + chunk,
        np.median([t for t, _ in times]),
        other,
      )
      for i, (seconds, cpu_seconds) in enumerate(times):
        if done + i >= warmup_steps:
          run["times"].append(seconds)
          run["cpu_times"].append(cpu_seconds)
          run["quiet"].append(other < quiet_threshold)
          run["other_cores"].append(other)
    done += chunk
  return runs


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
  """(seconds, this process's CPU seconds, result) of ``fn()``, which must
  wait for its own result."""
  start, cpu_start = time.perf_counter(), time.process_time()
  result = fn()
  return (
    time.perf_counter() - start,
    time.process_time() - cpu_start,
    result,
  )


def summarize(run: dict[str, list]) -> dict[str, float]:
  """Median, p10, p90 of one side's times (ms), the median of its quiet
  ones and of its CPU times, and the median cores other processes used
  meanwhile."""
  times_ms = np.asarray(run["times"]) * 1e3
  quiet_ms = times_ms[np.asarray(run["quiet"], bool)]
  return {
    "median_ms": float(np.median(times_ms)),
    "p10_ms": float(np.percentile(times_ms, 10)),
    "p90_ms": float(np.percentile(times_ms, 90)),
    "timed_steps": len(times_ms),
    "quiet_median_ms": (
      float(np.median(quiet_ms)) if len(quiet_ms) else float("nan")
    ),
    "quiet_steps": len(quiet_ms),
    "cpu_median_ms": float(np.median(run["cpu_times"]) * 1e3),
    "other_cores_median": float(np.median(run["other_cores"])),
  }
