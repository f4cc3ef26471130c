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
"""Our convnet-S train step on CPU under each speed option, and its anatomy.

Default mode: the jitted ``setup.assemble(config).train_step()``
(configs/fashion_mnist.py, batch 64, one fixed random batch) timed under each
option of ``OPTIONS``: model formulation (the stock Flax layers, the fast max
pooling, the fast pooling + fused BatchNorm-ReLU of models.py today), number
of CPU devices the batch is sharded over, XLA flags and glibc malloc tuning.
XLA flags and the device count are fixed when a process starts, so each option
runs in a fresh subprocess. Reported: median step time over quiet 5-step
blocks (other processes below 0.1 core; the machine is shared), and the minor
page faults and kernel time per step.

``--layers``: where one device's time goes. Each piece of the network is
jitted alone on one device's share of the batch (``--layer_batch``, 32 =
64 over 2 devices), single-threaded like a device of the 2-device run:
convolution forward, input gradient and weight gradient per layer, and the
BatchNorm-ReLU and pooling forward / backward in both formulations.

Run (2 CPU cores):

  python -m benchmarks.train_step_options              # ~15 min when quiet
  python -m benchmarks.train_step_options --options=current_2dev,stock_1dev
  python -m benchmarks.train_step_options --layers     # under a minute
"""

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from typing import Any, NamedTuple
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import cpu_timing
from configs import fashion_mnist
from proxy_nca_jax import models, parallel
from proxy_nca_jax.training import setup

_OPTIONS = flags.DEFINE_list(
  "options", None, "Keys of OPTIONS to run (default: all), in this order."
)
_LAYERS = flags.DEFINE_bool("layers", False, "Per-layer breakdown instead.")
_LAYER_BATCH = flags.DEFINE_integer(
  "layer_batch", 32, "Batch of the --layers timings (one device's share)."
)
_STEPS = flags.DEFINE_integer("steps", 30, "Quiet steps timed per option.")
_BUDGET = flags.DEFINE_float(
  "budget_s", 240.0, "Seconds per option to collect the quiet steps."
)
_CHILD = flags.DEFINE_string("child", None, "Internal: run one option.")

_SINGLE_THREAD = (
  "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)


class Option(NamedTuple):
  """One configuration of the train step."""

  model: str  # "stock", "pool" or "current".
  devices: int
  xla_flags: str = ""
  tune_malloc: bool = False


OPTIONS = {
  "stock_1dev": Option("stock", 1),
  "stock_2dev": Option("stock", 2),
  "stock_2dev_malloc": Option("stock", 2, tune_malloc=True),
  "pool_1dev": Option("pool", 1),
  "pool_2dev": Option("pool", 2),
  "current_1dev": Option("current", 1),
  "current_1dev_malloc": Option("current", 1, tune_malloc=True),
  "current_2dev": Option("current", 2),
  "current_2dev_malloc": Option("current", 2, tune_malloc=True),
  "current_4dev": Option("current", 4),
  "current_2dev_single_thread": Option("current", 2, _SINGLE_THREAD),
  "current_2dev_no_ynnpack": Option(
    "current", 2, "--xla_cpu_experimental_ynn_fusion_type="
  ),
  "current_2dev_fast_math": Option(
    "current", 2, "--xla_cpu_enable_fast_math=true"
  ),
  "current_2dev_xnnpack": Option("current", 2, "--xla_cpu_use_xnnpack=true"),
  "current_2dev_onednn": Option("current", 2, "--xla_cpu_use_onednn=true"),
  "current_2dev_no_thunks": Option(
    "current", 2, "--xla_cpu_use_thunk_runtime=false"
  ),
}


def _flax_max_pool(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (2, 2), strides=(2, 2))


class StockConvBNReLU(nn.Module):
  """The block as first written: nn.Conv, nn.BatchNorm, nn.relu."""

  features: int

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(
      x
    )
    return nn.relu(x)


def _patches(model: str) -> list[Any]:
  """mock.patch objects that turn models.py into the given formulation."""
  patches = []
  if model in ("stock", "pool"):
    patches.append(mock.patch.object(models, "ConvBNReLU", StockConvBNReLU))
  if model == "stock":
    patches.append(mock.patch.object(models, "max_pool_2x2", _flax_max_pool))
  return patches


def run_child(name: str) -> dict[str, Any]:
  """Times the train step under OPTIONS[name] (in this process)."""
  option = OPTIONS[name]
  if option.tune_malloc and not cpu_timing.tune_malloc():
    raise RuntimeError("glibc mallopt is not available.")
  jax.config.update("jax_num_cpu_devices", option.devices)
  patches = _patches(option.model)
  for patch in patches:
    patch.start()
  config = fashion_mnist.get_config()
  mesh = parallel.create_mesh()
  num_classes = len(fashion_mnist.TRAIN_CLASSES)
  parts = setup.assemble(config, mesh, num_classes)
  state, step_fn = parts.initial_state(), parts.train_step()
  rng = np.random.default_rng(0)
  batch_size = config.input.batch_size
  batch = parallel.global_batch(
    {
      "image": rng.normal(size=(batch_size, 28, 28, 1)).astype(np.float32),
      "label": rng.integers(0, num_classes, batch_size).astype(np.int32),
    },
    mesh,
  )
  holder = {"state": state}

  def one_step():
    holder["state"], metrics = step_fn(holder["state"], batch)
    jax.block_until_ready((holder["state"], metrics))

  for _ in range(5):
    one_step()
  before = resource.getrusage(resource.RUSAGE_SELF)
  timing = cpu_timing.time_quietly(
    one_step, wanted=_STEPS.value, budget_s=_BUDGET.value
  )
  after = resource.getrusage(resource.RUSAGE_SELF)
  calls = timing["all_calls"]
  for patch in patches:
    patch.stop()
  return {
    "option": name,
    **option._asdict(),
    **timing,
    "minor_faults_per_step": (after.ru_minflt - before.ru_minflt) / calls,
    "kernel_ms_per_step": (after.ru_stime - before.ru_stime) / calls * 1e3,
  }


def run_options(names: list[str]) -> list[dict[str, Any]]:
  """Runs each option in a fresh subprocess, one after the other."""
  rows = []
  for name in names:
    option = OPTIONS[name]
    env = dict(os.environ)
    env["XLA_FLAGS"] = option.xla_flags
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run(
      [
        sys.executable,
        "-m",
        "benchmarks.train_step_options",
        f"--child={name}",
        f"--steps={_STEPS.value}",
        f"--budget_s={_BUDGET.value}",
      ],
      env=env,
      capture_output=True,
      text=True,
      check=False,
    )
    lines = [
      line for line in proc.stdout.splitlines() if line.startswith("RESULT ")
    ]
    if proc.returncode or not lines:
      raise RuntimeError(f"Option {name} failed:\n{proc.stderr[-3000:]}")
    row = json.loads(lines[-1].removeprefix("RESULT "))
    rows.append(row)
    print(_format_row(row), flush=True)
  return rows


def _format_row(row: dict[str, Any]) -> str:
  return (
    f"{row['option']:<28} {row['model']:<8} {row['devices']:>3} "
    f"{row['quiet_median_ms']:>7.1f} {row['quiet_calls']:>5d} "
    f"{row['all_median_ms']:>7.1f} {row['minor_faults_per_step']:>8.0f} "
    f"{row['kernel_ms_per_step']:>7.1f}  {row['xla_flags'] or '-'}"
    f"{'  (malloc tuned)' if row['tune_malloc'] else ''}"
  )


def _timed(fn: Callable[..., Any], *args: Any) -> float:
  jitted = jax.jit(fn)
  return cpu_timing.time_quietly(
    lambda: jax.block_until_ready(jitted(*args)), wanted=20, budget_s=60
  )["quiet_median_ms"]


def _conv(x: jax.Array, w: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(
    x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def _stock_bn_relu(z, scale, bias):
  module = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  features = z.shape[-1]
  variables = {
    "params": {"scale": scale, "bias": bias},
    "batch_stats": {
      "mean": jnp.zeros((features,)),
      "var": jnp.ones((features,)),
    },
  }
  out, _ = module.apply(variables, z, mutable=["batch_stats"])
  return nn.relu(out)


def _fast_bn_relu(z, scale, bias):
  return models.batch_norm_relu(z, scale, bias, 1e-5)[0]


def _fwd_bwd(fn: Callable[..., jax.Array]) -> Callable[..., Any]:
  def run(*args):
    out, vjp = jax.vjp(fn, *args)
    return vjp(jnp.ones_like(out))

  return run


def run_layers() -> None:
  """Prints the per-layer forward / backward table (one device's share)."""
  jax.config.update("jax_num_cpu_devices", 1)
  batch = _LAYER_BATCH.value
  first, second, third = fashion_mnist.get_config().model.widths
  layers = [
    (28, 1, first, False),
    (28, first, first, True),
    (14, first, second, False),
    (14, second, second, True),
    (7, second, third, False),
  ]
  rng = np.random.default_rng(0)
  print(
    f"batch {batch}, one device, XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}; "
    "ms, median of quiet calls; bwd = (fwd+bwd) - fwd"
  )
  header = (
    f"{'layer':<16} {'conv fwd':>8} {'conv dx':>8} {'conv dw':>8} "
    f"{'BNReLU fwd':>10} {'bwd stock':>10} {'bwd fused':>10} "
    f"{'pool fwd':>8} {'bwd stock':>10} {'bwd fast':>9}"
  )
  print(header)
  print("-" * len(header))
  totals = np.zeros(9)
  for i, (size, cin, cout, pooled) in enumerate(layers):
    x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, cin, cout)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(batch, size, size, cout)), jnp.float32)
    scale, bias = jnp.ones((cout,)), jnp.zeros((cout,))
    conv_fwd = _timed(_conv, x, w)
    # The first layer's input gradient is never computed (input images).
    conv_dx = (
      _timed(lambda x, w, g: jax.vjp(lambda x: _conv(x, w), x)[1](g), x, w, g)
      if i
      else 0.0
    )
    conv_dw = _timed(
      lambda x, w, g: jax.vjp(lambda w: _conv(x, w), w)[1](g), x, w, g
    )
    bn_fwd = _timed(_fast_bn_relu, g, scale, bias)
    bn_bwd_stock = _timed(_fwd_bwd(_stock_bn_relu), g, scale, bias) - _timed(
      _stock_bn_relu, g, scale, bias
    )
    bn_bwd_fast = _timed(_fwd_bwd(_fast_bn_relu), g, scale, bias) - bn_fwd
    pool = [0.0, 0.0, 0.0]
    if pooled:
      pool_fwd = _timed(models.max_pool_2x2, g)
      pool = [
        pool_fwd,
        _timed(_fwd_bwd(_flax_max_pool), g) - _timed(_flax_max_pool, g),
        _timed(_fwd_bwd(models.max_pool_2x2), g) - pool_fwd,
      ]
    row = np.array(
      [conv_fwd, conv_dx, conv_dw, bn_fwd, bn_bwd_stock, bn_bwd_fast, *pool]
    )
    totals += row
    print(_format_layer(f"{size}x{size} {cin}->{cout}", row), flush=True)
  print(_format_layer("total", totals))


def _format_layer(name: str, row: np.ndarray) -> str:
  widths = (8, 8, 8, 10, 10, 10, 8, 10, 9)
  cells = " ".join(f"{v:>{w}.2f}" for v, w in zip(row, widths, strict=True))
  return f"{name:<16} {cells}"


def main(argv: list[str]) -> None:
  del argv
  if _CHILD.value:
    print("RESULT " + json.dumps(run_child(_CHILD.value)), flush=True)
    return
  if _LAYERS.value:
    os.environ.setdefault("XLA_FLAGS", _SINGLE_THREAD)
    run_layers()
    return
  names = _OPTIONS.value or list(OPTIONS)
  unknown = sorted(set(names) - set(OPTIONS))
  if unknown:
    raise app.UsageError(f"Unknown options {unknown}; see OPTIONS.")
  machine = cpu_timing.machine_description()
  print(
    f"convnet-S train step, batch 64; {machine['cpu']}; jax {jax.__version__}"
  )
  print(
    f"{'option':<28} {'model':<8} {'dev':>3} {'quiet':>7} {'n':>5} "
    f"{'all':>7} {'faults':>8} {'sys ms':>7}  XLA_FLAGS"
  )
  run_options(names)


if __name__ == "__main__":
  app.run(main)
