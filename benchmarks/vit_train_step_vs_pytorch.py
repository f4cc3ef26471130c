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
"""Side by side on the CPU: our ViT-S/16 train step and PyTorch's.

One process, the same network from the same weights on both sides: a
PyTorch ``TorchTimmViT`` (benchmarks/torch_networks.py; width 384, depth
12, 6 heads, patch 16, 224 px) gets random weights
(``torch_networks.randomize_transformer``), its state dict is saved and
imported as a user's file would be (``pretrained.import_weights(...,
normalization='imagenet')``), and our run starts from it
(``model.pretrained``); our embedding layer and proxies are copied into
PyTorch's. Before training, both must compute the same embeddings of the
first batch (to ``--tolerance``).

Same work on both sides (side_by_side.py): the ViT recipe without layer
decay, decay mask, stochastic depth or schedule, i.e. AdamW 5e-5 with
weight decay 0.05 on the network, proxies at 5e-3 without decay;
softmax Proxy-NCA at scale 9 (ours; pytorch-metric-learning's
``ProxyNCALoss`` on PyTorch's side); float32. Batches: ``--batch`` random
images (standard normal, already normalised) with labels over ``--classes``
classes; ``--distinct_batches`` of them, the same sequence on both sides.

Reported: the median warm step time of each side (the batch is a framework
array before the clock starts; ours blocks until the new state is ready),
their ratio, the process's CPU time per step, the loss of each side's
steps, the load average before and after and the cores other processes
used during each chunk. The sides alternate in chunks of
``--chunk_steps`` steps so both see the same load.

Run (2 CPU cores; 24 steps of several seconds each and the compilation:
9 to 22 minutes on the busy machine of benchmarks/README.md):

  python -m benchmarks.vit_train_step_vs_pytorch \\
      --json_out=benchmarks/results/vit_s16_train_step_vs_pytorch.json
  # One thread a side (a busy machine's fairer comparison):
  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false \\
      intra_op_parallelism_threads=1" python -m \\
      benchmarks.vit_train_step_vs_pytorch --cpu_devices=1 --torch_threads=1
  python -m benchmarks.vit_train_step_vs_pytorch --model=vit_test \\
      --image_size=32 --batch=8 --steps=4   # tiny, under a minute
"""

import itertools
import json
import os
import pathlib
import tempfile
from typing import Any

import flax
import jax
import numpy as np
import optax
import pytorch_metric_learning
import torch
from absl import app, flags
from pytorch_metric_learning import losses as pml_losses

from benchmarks import cpu_timing, side_by_side, torch_networks
from proxy_nca_jax import models, parallel, quiet_logs
from proxy_nca_jax.models import pretrained, vit
from proxy_nca_jax.training import setup, train_state

_MODEL = flags.DEFINE_enum(
  "model", "vit_s16", list(vit.MODELS), "The ViT of both sides."
)
_BATCH = flags.DEFINE_integer("batch", 32, "Images per train step.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "Image side, pixels.")
_CLASSES = flags.DEFINE_integer("classes", 100, "Proxies (label range).")
_STEPS = flags.DEFINE_integer(
  "steps", 12, "Train steps of each side, warm-up included."
)
_ALTERNATION = side_by_side.define_flags(warmup_steps=2, chunk_steps=3)
_DISTINCT = flags.DEFINE_integer(
  "distinct_batches", 4, "Random batches, cycled through by both sides."
)
_SEED = flags.DEFINE_integer("seed", 0, "Weights, proxies and batches.")
_TOLERANCE = flags.DEFINE_float(
  "tolerance", 1e-4, "Largest |difference| of the untrained embeddings."
)
_JSON_OUT = flags.DEFINE_string(
  "json_out", None, "Also write the results as JSON to this file."
)


def _tensor(array: Any) -> torch.Tensor:
  return torch.from_numpy(np.array(array, np.float32))  # A writable copy.


def import_torch_weights(
  net: side_by_side.TorchEmbedder, arch: str, directory: str
) -> str:
  """Saves ``net``'s ViT as a state dict and imports it into ``directory``.

  Returns:
    The imported folder, for ``model.pretrained``.
  """
  path = os.path.join(directory, f"{arch}.pth")
  torch.save(net.backbone.state_dict(), path)
  out = os.path.join(directory, arch)
  pretrained.import_weights(arch, path, out, normalization="imagenet")
  return out


def copy_head_and_proxies(
  net: side_by_side.TorchEmbedder,
  proxy_loss: pml_losses.ProxyNCALoss,
  params: dict[str, Any],
) -> None:
  """Our embedding layer and proxies into PyTorch's."""
  head = params["model"][models.HEAD_MODULE]
  with torch.no_grad():
    net.linear.weight.copy_(_tensor(head["kernel"]).T)
    net.linear.bias.copy_(_tensor(head["bias"]))
    proxy_loss.proxies.copy_(_tensor(params["proxies"]))


def random_batches(
  count: int, batch: int, image_size: int, classes: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
  """(images float32 (B, H, W, 3), labels int32 (B,)) pairs."""
  rng = np.random.default_rng(seed)
  shape = (batch, image_size, image_size, 3)
  return [
    (
      rng.standard_normal(shape, np.float32),
      rng.integers(0, classes, batch).astype(np.int32),
    )
    for _ in range(count)
  ]


def cpu_record() -> dict[str, str]:
  """lscpu's model name, family and model of this CPU (/proc/cpuinfo)."""
  wanted = {
    "model name": "model_name",
    "cpu family": "family",
    "model": "model",
  }
  record = {}
  with open("/proc/cpuinfo") as f:
    for line in f:
      key, _, value = line.partition(":")
      name = wanted.get(key.strip())
      if name and name not in record:
        record[name] = value.strip()
  return record


def main(argv: list[str]) -> None:
  del argv
  quiet_logs.quiet_libraries()
  if _STEPS.value <= _ALTERNATION.warmup_steps.value:
    raise app.UsageError("--steps must exceed --warmup_steps.")
  load_before = os.getloadavg()
  cores = _ALTERNATION.use_cores()
  torch.manual_seed(_SEED.value)
  arch, batch, size = _MODEL.value, _BATCH.value, _IMAGE_SIZE.value
  batches = random_batches(
    _DISTINCT.value, batch, size, _CLASSES.value, _SEED.value
  )

  # PyTorch's network, random; ours imports its weights.
  net = side_by_side.TorchEmbedder(side_by_side.vit_config(arch, batch, size))
  torch_networks.randomize_transformer(net.backbone, _SEED.value)
  net.train()  # No dropout or BatchNorm: the same function either way.
  mesh = parallel.create_mesh()
  with tempfile.TemporaryDirectory() as directory:
    config = side_by_side.vit_config(
      arch,
      batch,
      size,
      pretrained=import_torch_weights(net, arch, directory),
    )
    with config.unlocked():
      config.seed = _SEED.value
    config.lock()
    parts = setup.assemble(config, mesh, _CLASSES.value)
    state, step_fn = parts.initial_state(), parts.train_step()

  proxy_loss = pml_losses.ProxyNCALoss(
    num_classes=_CLASSES.value,
    embedding_size=config.model.embedding_dim,
    softmax_scale=config.loss.scale,
  )
  copy_head_and_proxies(net, proxy_loss, jax.device_get(state.params))
  optimizer = side_by_side.torch_optimizer(config, net, proxy_loss.parameters())

  images = batches[0][0]
  embed = jax.jit(lambda v, x: parts.model.apply(v, x, train=False))
  ours = np.asarray(embed(train_state.inference_variables(state), images))
  with torch.no_grad():
    theirs = net(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
  difference = float(np.abs(ours - theirs).max())
  if difference > _TOLERANCE.value:
    raise RuntimeError(
      f"The untrained embeddings differ by {difference:.2e} > "
      f"--tolerance={_TOLERANCE.value}: the two sides are not one network."
    )

  torch_feed = itertools.cycle(
    [
      (
        torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(y).long(),
      )
      for x, y in batches
    ]
  )
  our_feed = itertools.cycle(
    [parallel.global_batch({"image": x, "label": y}, mesh) for x, y in batches]
  )

  def torch_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    loss = proxy_loss(net(x), y)
    loss.backward()
    optimizer.step()
    return loss

  def torch_side() -> tuple[float, float, float]:
    x, y = next(torch_feed)
    seconds, cpu_seconds, loss = side_by_side.timed(lambda: torch_step(x, y))
    return seconds, cpu_seconds, float(loss.detach())

  def our_side() -> tuple[float, float, float]:
    nonlocal state
    data = next(our_feed)
    seconds, cpu_seconds, (state, metrics) = side_by_side.timed(
      lambda: jax.block_until_ready(step_fn(state, data))
    )
    return seconds, cpu_seconds, float(metrics["loss"])

  runs = side_by_side.alternate(
    {"PyTorch": torch_side, "ours": our_side},
    num_steps=_STEPS.value,
    **_ALTERNATION.alternation(),
  )
  results: dict[str, Any] = {
    "model": arch,
    "batch": batch,
    "image_size": size,
    "classes": _CLASSES.value,
    "steps": _STEPS.value,
    "warmup_steps": _ALTERNATION.warmup_steps.value,
    "chunk_steps": _ALTERNATION.chunk_steps.value,
    "optimizer": {
      "name": config.optimizer.name,
      "learning_rate": config.optimizer.learning_rate,
      "proxy_learning_rate": config.optimizer.learning_rate
      * config.optimizer.proxy_lr_mult,
      "weight_decay": config.optimizer.weight_decay,
      "proxy_weight_decay": config.optimizer.proxy_weight_decay,
      "layer_decay": config.optimizer.layer_decay,
      "decay_matrices_only": config.optimizer.decay_matrices_only,
    },
    "drop_path": config.model.vit.drop_path,
    "softmax_scale": config.loss.scale,
    "untrained_max_abs_embedding_diff": difference,
    "machine": {
      **cpu_timing.machine_description(),
      **cpu_record(),
      "cores": cores,
      "jax": jax.__version__,
      "flax": flax.__version__,
      "optax": optax.__version__,
      "torch": torch.__version__,
      "pytorch_metric_learning": pytorch_metric_learning.__version__,
    },
    "jax_devices": len(jax.devices()),
    "torch_threads": torch.get_num_threads(),
    "load_average_before": load_before,
    "load_average_after": os.getloadavg(),
  }
  for name, run in runs.items():
    results[name] = {**side_by_side.summarize(run), "losses": run["losses"]}
  results["time_ours_over_pytorch"] = (
    results["ours"]["median_ms"] / results["PyTorch"]["median_ms"]
  )
  print(report(results))
  if _JSON_OUT.value:
    path = pathlib.Path(_JSON_OUT.value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def report(results: dict[str, Any]) -> str:
  """The run as a few lines of text: setup, machine, the two sides."""
  machine, opt = results["machine"], results["optimizer"]
  lines = [
    f"{results['model']}, {results['image_size']} px, batch "
    f"{results['batch']}, {results['classes']} proxies, AdamW "
    f"{opt['learning_rate']:g} (proxies {opt['proxy_learning_rate']:g}), "
    f"softmax Proxy-NCA scale {results['softmax_scale']:g}; untrained "
    f"embeddings max |diff| {results['untrained_max_abs_embedding_diff']:.1e}",
    f"{machine['cpu']} (family {machine.get('family')}, model "
    f"{machine.get('model')}); jax {machine['jax']} "
    f"({results['jax_devices']} CPU devices), torch {machine['torch']} "
    f"({results['torch_threads']} threads); load average before "
    f"{results['load_average_before'][0]:.2f}, after "
    f"{results['load_average_after'][0]:.2f}",
    "",
  ]
  for name in ("PyTorch", "ours"):
    r = results[name]
    lines.append(
      f"{name:<8} median {r['median_ms'] / 1e3:.2f} s (p10 "
      f"{r['p10_ms'] / 1e3:.2f}, p90 {r['p90_ms'] / 1e3:.2f}), CPU "
      f"{r['cpu_median_ms'] / 1e3:.2f} s, {r['timed_steps']} steps, "
      f"{r['quiet_steps']} quiet, other processes "
      f"{r['other_cores_median']:.2f} cores; loss first "
      f"{r['losses'][0]:.5f}, last {r['losses'][-1]:.5f}"
    )
  lines.append(f"time ours / PyTorch: {results['time_ours_over_pytorch']:.2f}")
  return "\n".join(lines)


if __name__ == "__main__":
  app.run(main)
