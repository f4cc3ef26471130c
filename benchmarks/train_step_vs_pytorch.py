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
"""Side by side: our train step and PyTorch's, speed and accuracy.

Trains convnet-S twice in one process, on the same NumPy batches: once with
proxy_nca_jax (``setup.assemble(config).train_step()``) and once with PyTorch +
pytorch-metric-learning's ``ProxyNCALoss`` (the same network,
channels_last). The data is exported from our tfds builder as arrays
(``--config``: FMNIST-ZS by default, or ``configs/glyphs.py`` for
GLYPHS-ZS): the train classes (minus the validation classes) and the test
classes, normalised as our evaluation does, without augmentation for either
framework. Same hyper-parameters, from the config: batch size, Adam learning
rates of the network and of the proxies, softmax form with the same scale.
By default the PyTorch network and proxies start from our initial values, so
both runs start from the same function (checked: the untrained embeddings
of both must agree to float32 precision).

Reported: the median wall time of a train step (warm, data loading
excluded: the batch is already a framework array when the clock starts),
and Recall@1 / MAP@R / NMI on the never-seen test classes before and
after training, both computed by ``evaluation.evaluate_embeddings``.

The two trainings alternate in chunks of ``--chunk_steps`` steps so both
see the same machine load. On a shared machine the script also reports the
median over the chunks during which other processes used less than
``--quiet_threshold`` of a core ("quiet" chunks).

Run (2 CPU cores; about 4 minutes, ``--quick`` under 1):

  python -m benchmarks.train_step_vs_pytorch --softmax_scale=8
  python -m benchmarks.train_step_vs_pytorch --softmax_scale=8 --quick
  python -m benchmarks.train_step_vs_pytorch --steps=1000 --seed=1
  python -m benchmarks.train_step_vs_pytorch --config=configs/glyphs.py \
      --steps=1000 --eval_examples=10000

Needs ``pip install torch==2.13.0 pytorch-metric-learning`` (``make
benchmark`` installs them) and the config's dataset (prepared on first use:
the Fashion-MNIST IDX files of Debian's dataset-fashion-mnist, or the fonts
of ``make glyphs-fonts``).
"""

import copy
import json
from collections.abc import Iterator
from typing import Any

import flax
import jax
import ml_collections
import numpy as np
import optax
import pytorch_metric_learning
import torch
import torch.nn.functional as F
from absl import app, flags
from ml_collections import config_flags
from pytorch_metric_learning import losses as pml_losses
from torch import nn

from benchmarks import cpu_timing, side_by_side
from proxy_nca_jax import evaluation, models, native, parallel, quiet_logs
from proxy_nca_jax.data import class_splits, pipeline, sources
from proxy_nca_jax.inference import embedding, split_evaluation
from proxy_nca_jax.training import setup, train_state

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  "configs/fashion_mnist.py",
  "Dataset, model and hyper-parameters (convnet-S, Proxy-NCA softmax form).",
  lock_config=False,
)
_STEPS = flags.DEFINE_integer("steps", 600, "Train steps of each framework.")
_QUICK = flags.DEFINE_bool(
  "quick",
  False,
  "Smoke run: 60 steps and 5,000 test images (numbers not comparable).",
)
_SEED = flags.DEFINE_integer("seed", 0, "Initialisation seed (both models).")
_DATA_SEED = flags.DEFINE_integer("data_seed", 0, "Seed of the batch order.")
_SAME_INIT = flags.DEFINE_bool(
  "same_init",
  True,
  "Start PyTorch from our initial network and proxies (else each "
  "framework's own initialisation).",
)
_SCALE = flags.DEFINE_float(
  "softmax_scale",
  None,
  "Proxy-NCA scale for both (PML softmax_scale, our loss.scale; default: "
  "the config's).",
)
_ALTERNATION = side_by_side.define_flags(warmup_steps=10, chunk_steps=20)
_EVAL_EXAMPLES = flags.DEFINE_integer(
  "eval_examples",
  None,
  "Test images evaluated, a fixed random subset (default: all).",
)
_ONEDNN_CONV = flags.DEFINE_bool(
  "onednn_conv",
  False,
  "Our convolutions through oneDNN (model.conv='onednn', "
  "proxy_nca_jax/native/convolution.py; needs g++ and libdnnl-dev).",
)
_TUNE_MALLOC = flags.DEFINE_bool(
  "tune_malloc",
  False,
  "Keep freed memory mapped (cpu_timing.tune_malloc; process-wide, so it "
  "applies to both frameworks).",
)
_JSON_OUT = flags.DEFINE_string(
  "json_out", None, "Also write the results as JSON to this file."
)

_EVAL_BATCH = 1000


def export_arrays(
  config: ml_collections.ConfigDict, split: str
) -> tuple[np.ndarray, np.ndarray]:
  """Every image of ``split`` from our builder, as our evaluation sees it.

  Args:
    config: the run's config (``config.input`` names the dataset).
    split: 'train' (train classes minus validation classes) or 'test'.

  Returns:
    (images float32 (N, H, W, C) normalised, labels int32 (N,)): for
    'train' the proxy row of each label (0..C-1), for 'test' the original
    class ids.
  """
  input_config = copy.deepcopy(config.input)
  with input_config.unlocked():
    input_config.max_eval_examples = None
  images, labels = [], []
  for batch in pipeline.create_eval_iterator(input_config, split):
    images.append(batch["image"][batch["mask"]])
    labels.append(batch["label"][batch["mask"]])
  labels = np.concatenate(labels).astype(np.int32)
  if split == "train":
    labels = pipeline.proxy_rows(input_config)[labels]
  return np.concatenate(images), labels


def train_batches(
  images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Endless shuffled batches (a new permutation each epoch, no remainder)."""
  rng = np.random.default_rng(seed)
  while True:
    order = rng.permutation(len(images))
    for start in range(0, len(order) - batch_size + 1, batch_size):
      idx = np.sort(order[start : start + batch_size])
      yield images[idx], labels[idx]


class TorchConvNetS(nn.Module):
  """convnet-S in PyTorch, layer for layer the same as models.ConvNetS."""

  def __init__(
    self, in_channels: int, embedding_dim: int, widths: tuple[int, ...]
  ):
    super().__init__()
    first, second, third = widths
    layers = []
    channels = in_channels
    for stage in ((first, first), (second, second), (third,)):
      for features in stage:
        layers += [
          nn.Conv2d(channels, features, 3, padding=1, bias=False),
          nn.BatchNorm2d(features, eps=1e-5, momentum=0.1),
          nn.ReLU(inplace=True),
        ]
        channels = features
      if len(stage) == 2:
        layers.append(nn.MaxPool2d(2))
    self.features = nn.Sequential(*layers)
    self.embedding = nn.Linear(channels, embedding_dim)

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images -> (B, embedding_dim) unit-norm embeddings."""
    x = self.features(images).mean(dim=(2, 3))
    return F.normalize(self.embedding(x), dim=1)


def _tensor(array: Any) -> torch.Tensor:
  return torch.from_numpy(np.array(array, np.float32))  # A writable copy.


def copy_flax_init(
  net: TorchConvNetS,
  proxy_loss: nn.Module,
  params: dict[str, Any],
  batch_stats: dict[str, Any],
) -> None:
  """Loads our initial parameters into the PyTorch network and proxies."""
  model_params = params["model"]
  convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
  norms = [m for m in net.features if isinstance(m, nn.BatchNorm2d)]
  with torch.no_grad():
    for i, (conv, norm) in enumerate(zip(convs, norms, strict=True)):
      block = model_params[f"ConvBNReLU_{i}"]
      stats = batch_stats[f"ConvBNReLU_{i}"]["BatchNorm_0"]
      # (3, 3, Cin, Cout) -> (Cout, Cin, 3, 3).
      conv.weight.copy_(_tensor(block["Conv_0"]["kernel"]).permute(3, 2, 0, 1))
      norm.weight.copy_(_tensor(block["BatchNorm_0"]["scale"]))
      norm.bias.copy_(_tensor(block["BatchNorm_0"]["bias"]))
      norm.running_mean.copy_(_tensor(stats["mean"]))
      norm.running_var.copy_(_tensor(stats["var"]))
    head = model_params[models.HEAD_MODULE]
    net.embedding.weight.copy_(_tensor(head["kernel"]).T)
    net.embedding.bias.copy_(_tensor(head["bias"]))
    proxy_loss.proxies.copy_(_tensor(params["proxies"]))


def to_torch_images(images: np.ndarray) -> torch.Tensor:
  """NHWC float32 NumPy -> NCHW tensor in channels_last memory, no copy."""
  return torch.from_numpy(images).permute(0, 3, 1, 2)


def embed_torch(net: TorchConvNetS, images: np.ndarray) -> np.ndarray:
  """Inference embeddings (running BatchNorm statistics)."""
  net.eval()
  out = []
  with torch.no_grad():
    for start in range(0, len(images), _EVAL_BATCH):
      chunk = to_torch_images(images[start : start + _EVAL_BATCH])
      out.append(net(chunk).numpy())
  net.train()
  return np.concatenate(out)


def embed_jax(
  embed_fn, variables: dict[str, Any], images: np.ndarray, mesh
) -> np.ndarray:
  """Inference embeddings through ``embedding.embed_batches`` (padded)."""

  def batches():
    for start in range(0, len(images), _EVAL_BATCH):
      chunk = images[start : start + _EVAL_BATCH]
      pad = _EVAL_BATCH - len(chunk)
      yield {
        "image": np.pad(chunk, ((0, pad), (0, 0), (0, 0), (0, 0))),
        "label": np.zeros(_EVAL_BATCH, np.int32),
        "mask": np.arange(_EVAL_BATCH) < len(chunk),
      }

  embeddings, _ = embedding.embed_batches(embed_fn, variables, batches(), mesh)
  return embeddings


def main(argv: list[str]) -> None:
  del argv
  quiet_logs.quiet_libraries()
  steps = 60 if _QUICK.value else _STEPS.value
  eval_examples = 5000 if _QUICK.value else _EVAL_EXAMPLES.value
  if steps <= _ALTERNATION.warmup_steps.value:
    raise app.UsageError(
      f"--steps={steps} leaves nothing to time after --warmup_steps="
      f"{_ALTERNATION.warmup_steps.value}."
    )
  malloc_tuned = _TUNE_MALLOC.value and cpu_timing.tune_malloc()
  if _TUNE_MALLOC.value and not malloc_tuned:
    raise app.UsageError("--tune_malloc needs glibc (mallopt).")
  _ALTERNATION.use_cores()
  torch.manual_seed(_SEED.value)

  config = _CONFIG.value
  config.seed = _SEED.value
  if _SCALE.value is not None:
    config.loss.scale = _SCALE.value
  config.lock()
  if (config.loss.name, config.loss.form) != ("proxy_nca", "softmax"):
    raise ValueError("The PyTorch side implements softmax Proxy-NCA only.")
  batch_size = config.input.batch_size
  lr = config.optimizer.learning_rate
  proxy_lr = lr * config.optimizer.proxy_lr_mult

  sources.prepare_dataset(config.input)
  train_x, train_y = export_arrays(config, "train")
  test_x, test_y = export_arrays(config, "test")
  if eval_examples is not None:
    keep = np.random.default_rng(0).permutation(len(test_x))[:eval_examples]
    keep.sort()
    test_x, test_y = test_x[keep], test_y[keep]
  num_classes = pipeline.num_classes(config.input, "train")

  # Ours.
  mesh = parallel.create_mesh()
  if _ONEDNN_CONV.value:
    if not native.available("onednn_conv"):
      raise SystemExit(
        "--onednn_conv: oneDNN's kernels did not build (the warning above "
        "says why); apt-get install g++ libdnnl-dev."
      )
    config.model.conv = "onednn"
  parts = setup.assemble(config, mesh, num_classes)
  model, state, step_fn = parts.model, parts.initial_state(), parts.train_step()
  embed_fn = embedding.make_embed_fn(model, mesh)
  init_params = jax.device_get(state.params)
  init_stats = jax.device_get(state.batch_stats)

  # PyTorch.
  net = TorchConvNetS(
    train_x.shape[-1], config.model.embedding_dim, config.model.widths
  )
  proxy_loss = pml_losses.ProxyNCALoss(
    num_classes=num_classes,
    embedding_size=config.model.embedding_dim,
    softmax_scale=config.loss.scale,
  )
  if _SAME_INIT.value:
    copy_flax_init(net, proxy_loss, init_params, init_stats)
  net = net.to(memory_format=torch.channels_last)
  net_opt = torch.optim.Adam(net.parameters(), lr=lr)
  proxy_opt = torch.optim.Adam(proxy_loss.parameters(), lr=proxy_lr)

  results: dict[str, Any] = {
    "steps": steps,
    "machine": {
      **cpu_timing.machine_description(),
      "jax": jax.__version__,
      "flax": flax.__version__,
      "optax": optax.__version__,
      "torch": torch.__version__,
      "pytorch_metric_learning": pytorch_metric_learning.__version__,
    },
    "malloc_tuned": malloc_tuned,
    "onednn_conv": _ONEDNN_CONV.value,
    "jax_devices": len(jax.devices()),
    "torch_threads": torch.get_num_threads(),
    "same_init": _SAME_INIT.value,
    "softmax_scale": config.loss.scale,
    "dataset": config.input.dataset,
    "batch_size": batch_size,
    "learning_rate": lr,
    "proxy_learning_rate": proxy_lr,
    "train_classes": num_classes,
    "train_images": len(train_x),
    "test_classes": class_splits.describe(
      pipeline.classes_of(config.input, "test")
    ),
    "test_images": len(test_x),
  }
  metrics = {}
  emb_jax = embed_jax(
    embed_fn, train_state.inference_variables(state), test_x, mesh
  )
  emb_torch = embed_torch(net, test_x)
  results["untrained_max_abs_embedding_diff"] = float(
    np.abs(emb_jax - emb_torch).max()
  )
  metrics["PyTorch, untrained"] = split_evaluation.evaluate_with_config(
    emb_torch, test_y, config
  )
  metrics["ours, untrained"] = split_evaluation.evaluate_with_config(
    emb_jax, test_y, config
  )

  def torch_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    net_opt.zero_grad(set_to_none=True)
    proxy_opt.zero_grad(set_to_none=True)
    loss = proxy_loss(net(x), y)
    loss.backward()
    net_opt.step()
    proxy_opt.step()
    return loss

  feeds = {
    name: train_batches(train_x, train_y, batch_size, _DATA_SEED.value)
    for name in ("PyTorch", "ours")
  }

  def torch_side() -> tuple[float, float, float]:
    images, labels = next(feeds["PyTorch"])
    x, y = to_torch_images(images), torch.from_numpy(labels).long()
    seconds, cpu_seconds, loss = side_by_side.timed(lambda: torch_step(x, y))
    return seconds, cpu_seconds, float(loss.detach())

  def our_side() -> tuple[float, float, float]:
    nonlocal state
    images, labels = next(feeds["ours"])
    batch = parallel.global_batch({"image": images, "label": labels}, mesh)
    seconds, cpu_seconds, (state, step_metrics) = side_by_side.timed(
      lambda: jax.block_until_ready(step_fn(state, batch))
    )
    return seconds, cpu_seconds, float(step_metrics["loss"])

  runs = side_by_side.alternate(
    {"PyTorch": torch_side, "ours": our_side},
    num_steps=steps,
    **_ALTERNATION.alternation(),
  )

  metrics[f"PyTorch, {steps} steps"] = split_evaluation.evaluate_with_config(
    embed_torch(net, test_x), test_y, config
  )
  metrics[f"ours, {steps} steps"] = split_evaluation.evaluate_with_config(
    embed_jax(embed_fn, train_state.inference_variables(state), test_x, mesh),
    test_y,
    config,
  )
  for name, run in runs.items():
    results[name] = side_by_side.summarize(run)
    results[name]["final_loss_mean_last_50"] = float(
      np.mean(run["losses"][-50:])
    )
  results["speedup_median"] = (
    results["PyTorch"]["median_ms"] / results["ours"]["median_ms"]
  )
  results["speedup_quiet_median"] = (
    results["PyTorch"]["quiet_median_ms"] / results["ours"]["quiet_median_ms"]
  )
  results["metrics"] = metrics
  print_report(results)
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump(results, f, indent=2)


def print_report(results: dict[str, Any]) -> None:
  """Prints the speed table and the metrics table."""
  machine = results["machine"]
  print(
    f"\n{results['dataset']}, convnet-S, batch {results['batch_size']}, "
    f"{results['steps']} steps, Adam {results['learning_rate']:g} (proxies "
    f"{results['proxy_learning_rate']:g}), {results['train_classes']} "
    f"proxies, {results['train_images']} train images, Proxy-NCA softmax "
    f"scale {results['softmax_scale']:g}, "
    f"same init: {results['same_init']}, malloc tuned: "
    f"{results['malloc_tuned']}, oneDNN convolutions: "
    f"{results.get('onednn_conv', False)}"
  )
  print(
    f"{machine['cpu']}; jax {machine['jax']} ({results['jax_devices']} CPU "
    f"devices), torch {machine['torch']} ({results['torch_threads']} "
    f"threads), pytorch-metric-learning "
    f"{machine['pytorch_metric_learning']}; XLA_FLAGS="
    f"{machine['XLA_FLAGS']!r}"
  )
  header = (
    f"{'train step':<10} {'median':>9} {'p10':>9} {'p90':>9} {'steps':>6}"
    f" {'quiet median':>13} {'quiet steps':>12} {'loss (last 50)':>15}"
  )
  print("\n" + header)
  print("-" * len(header))
  for name in ("PyTorch", "ours"):
    r = results[name]
    print(
      f"{name:<10} {r['median_ms']:>6.1f} ms {r['p10_ms']:>6.1f} ms "
      f"{r['p90_ms']:>6.1f} ms {r['timed_steps']:>6d} "
      f"{r['quiet_median_ms']:>10.1f} ms {r['quiet_steps']:>12d} "
      f"{r['final_loss_mean_last_50']:>15.4f}"
    )
  print(
    f"PyTorch / ours: {results['speedup_median']:.2f}x (median), "
    f"{results['speedup_quiet_median']:.2f}x (quiet median)"
  )
  print(
    f"\nTest classes {results['test_classes']}, {results['test_images']} "
    "images (max |embedding "
    "difference| of the untrained models: "
    f"{results['untrained_max_abs_embedding_diff']:.1e})"
  )
  print(
    evaluation.format_results_table(
      results["metrics"], ["recall@1", "map@r", "r_precision", "nmi"]
    )
  )


if __name__ == "__main__":
  app.run(main)
