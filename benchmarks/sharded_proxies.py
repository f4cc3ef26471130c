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
"""Memory and step time of sharded vs replicated proxies, up to 1M classes.

The step: Proxy-NCA (softmax form, scale 16) of a batch of embeddings
against C proxies of 128 dimensions, its gradients with respect to the
embeddings and the proxies, and Adam's update of the proxies (the part of
the train step that grows with C), jitted over a mesh of 8 fake CPU devices,
the sums over the proxies taken --block_size proxies at a time (per device
when sharded; losses/proxy_blocks.py; --block_size=1000000 for the plain
formulation):

* replicated: ``losses.proxy_nca_loss``, proxies and Adam's moments held
  whole on every device, the batch split over the devices (the train
  step's layout with ``proxies.sharding='replicated'``);
* sharded: ``sharded.sharded_proxy_nca_loss``, proxies and moments
  split by rows (``proxies.sharding='sharded'``).

Per case, in a fresh process (so that the peak resident set is the case's
own): XLA's compiled memory analysis per device (arguments, outputs,
temporaries, aliased = donated), the shapes of one device's shards, then,
if the whole process is estimated to fit under ``--max_total_gb`` (8 x the
per-device need), the step itself: median wall time over ``--steps`` steps
after one warm-up, the cores other processes used meanwhile, and the peak
resident set of the process. On fake CPU devices all 8 devices share the
host's memory, so the host needs 8 x the per-device figure.

Run (2 CPU cores, ~10 minutes):

  nice -n 10 python -m benchmarks.sharded_proxies
  python -m benchmarks.sharded_proxies --classes=10000 --modes=sharded
  python -m benchmarks.sharded_proxies --classes=1000000 --modes=sharded \
      --negative_fraction=0.1
"""

import functools
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from benchmarks import cpu_timing
from proxy_nca_jax import losses, parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.losses import sharded

_CLASSES = flags.DEFINE_list(
  "classes", ["10000", "100000", "1000000"], "Numbers of proxies C."
)
_MODES = flags.DEFINE_list(
  "modes", ["sharded", "replicated"], "Proxy layouts to measure."
)
_DIM = flags.DEFINE_integer("dim", 128, "Embedding dimension D.")
_BATCH = flags.DEFINE_integer("batch", 256, "Embeddings per step.")
_DEVICES = flags.DEFINE_integer("devices", 8, "Fake CPU devices.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed steps per case.")
_MAX_TOTAL_GB = flags.DEFINE_float(
  "max_total_gb",
  12.0,
  "Run a case only if devices x its per-device need is below this.",
)
_BLOCK_SIZE = flags.DEFINE_integer(
  "block_size",
  None,
  "Proxy-NCA's block of proxies (per device when sharded); default: the "
  "loss's automatic choice.",
)
_NEGATIVE_FRACTION = flags.DEFINE_float(
  "negative_fraction",
  1.0,
  "Sharded mode: each device samples its positives and this fraction of "
  "its other proxies (losses/sampled_proxies.py), in blocks of "
  "--block_size sampled rows. "
  "Replicated sampling is measured by benchmarks.proxy_step_floor.",
)
_JSON_OUT = flags.DEFINE_string("json_out", None, "Also write rows here.")
_CHILD = flags.DEFINE_string("child", None, "Internal: 'MODE:C', one case.")

_GIB = 1024**3


def _rss_gib() -> float:
  """Peak resident set of this process so far (Linux: ru_maxrss in KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_child(mode: str, num_proxies: int) -> dict[str, Any]:
  """Compiles (and, if it fits, times) one case in this fresh process."""
  # Before JAX initialises its backend (on first use of a device).
  jax.config.update("jax_num_cpu_devices", _DEVICES.value)
  mesh = parallel.create_mesh()
  rss_start = _rss_gib()
  dim, batch = _DIM.value, _BATCH.value
  options = {"form": "softmax", "scale": 16.0, "block_size": _BLOCK_SIZE.value}
  fraction = _NEGATIVE_FRACTION.value
  if fraction < 1:
    # Which proxies a step draws does not change its cost: one fixed key.
    options.update(negative_fraction=fraction, key=jax.random.key(0))
  if mode == "sharded":
    rows = proxies_lib.padded_num_proxies(num_proxies, mesh.size)
    proxy_sharding = parallel.row_sharded(mesh)
    loss_fn = functools.partial(
      sharded.sharded_proxy_nca_loss,
      mesh=mesh,
      num_proxies=num_proxies,
      **options,
    )
  else:
    rows = num_proxies
    proxy_sharding = parallel.replicated(mesh)
    loss_fn = functools.partial(losses.proxy_nca_loss, **options)
  tx = optax.adam(1e-2)

  def step(proxies, opt_state, embeddings, labels):
    loss, (embedding_grads, grads) = jax.value_and_grad(
      lambda e, p: loss_fn(e, labels, p), argnums=(0, 1)
    )(embeddings, proxies)
    updates, opt_state = tx.update(grads, opt_state, proxies)
    # The embeddings' gradient is returned: a train step passes it on to
    # the network.
    new_proxies = optax.apply_updates(proxies, updates)
    return new_proxies, opt_state, loss, embedding_grads

  abstract_proxies = jax.ShapeDtypeStruct(
    (rows, dim), jnp.float32, sharding=proxy_sharding
  )
  opt_shardings = jax.tree.map(
    lambda leaf: (
      proxy_sharding if leaf.ndim == 2 else parallel.replicated(mesh)
    ),
    jax.eval_shape(tx.init, abstract_proxies),
  )
  batch_sharding = parallel.batch_sharded(mesh)
  jitted = jax.jit(
    step,
    in_shardings=(
      proxy_sharding,
      opt_shardings,
      batch_sharding,
      batch_sharding,
    ),
    out_shardings=(
      proxy_sharding,
      opt_shardings,
      parallel.replicated(mesh),
      batch_sharding,
    ),
    donate_argnums=(0, 1),
  )
  start = time.perf_counter()
  compiled = jitted.lower(
    abstract_proxies,
    jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
      jax.eval_shape(tx.init, abstract_proxies),
      opt_shardings,
    ),
    jax.ShapeDtypeStruct((batch, dim), jnp.float32, sharding=batch_sharding),
    jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=batch_sharding),
  ).compile()
  compile_s = time.perf_counter() - start
  stats = compiled.memory_analysis()
  per_device = {
    "argument": stats.argument_size_in_bytes,
    "output": stats.output_size_in_bytes,
    "temp": stats.temp_size_in_bytes,
    "alias": stats.alias_size_in_bytes,
  }
  need = (
    per_device["argument"]
    + per_device["output"]
    + per_device["temp"]
    - per_device["alias"]
  )
  row = {
    "mode": mode,
    "classes": num_proxies,
    "block_size": _BLOCK_SIZE.value,
    "negative_fraction": fraction,
    "rows": rows,
    "devices": mesh.size,
    "compile_s": compile_s,
    **{f"{k}_gib": v / _GIB for k, v in per_device.items()},
    "need_per_device_gib": need / _GIB,
    "ran": False,
  }
  if mesh.size * need / _GIB > _MAX_TOTAL_GB.value:
    row["why_not_run"] = (
      f"{mesh.size} x {need / _GIB:.2f} GiB > {_MAX_TOTAL_GB.value} GiB"
    )
    return row

  def init(key):
    proxies = jax.random.normal(key, (num_proxies, dim), jnp.float32)
    return jnp.pad(proxies, ((0, rows - num_proxies), (0, 0)))

  proxies = jax.jit(init, out_shardings=proxy_sharding)(jax.random.key(0))
  opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(proxies)
  rng = np.random.default_rng(0)
  embeddings = jax.device_put(
    rng.normal(size=(batch, dim)).astype(np.float32), batch_sharding
  )
  labels = jax.device_put(
    rng.integers(0, num_proxies, size=batch).astype(np.int32), batch_sharding
  )
  mu = opt_state[0].mu
  row["proxy_shard_shape"] = list(proxies.addressable_shards[0].data.shape)
  row["adam_mu_shard_shape"] = list(mu.addressable_shards[0].data.shape)
  row["adam_mu_sharding"] = str(mu.sharding.spec)

  proxies, opt_state, loss, _ = compiled(proxies, opt_state, embeddings, labels)
  loss.block_until_ready()  # Warm-up.
  meter = cpu_timing.LoadMeter()
  times = []
  for _ in range(_STEPS.value):
    start = time.perf_counter()
    proxies, opt_state, loss, embedding_grads = compiled(
      proxies, opt_state, embeddings, labels
    )
    jax.block_until_ready((loss, embedding_grads))
    times.append(time.perf_counter() - start)
  row.update(
    ran=True,
    step_median_s=float(np.median(times)),
    step_min_s=float(np.min(times)),
    other_cores=meter.stop(),
    loss=float(loss),
    rss_start_gib=rss_start,
    peak_rss_gib=_rss_gib(),
  )
  return row


def _run_case(mode: str, num_proxies: int) -> dict[str, Any]:
  """Runs one case in a fresh subprocess; returns its row."""
  argv = [
    sys.executable,
    "-m",
    "benchmarks.sharded_proxies",
    f"--child={mode}:{num_proxies}",
    f"--dim={_DIM.value}",
    f"--batch={_BATCH.value}",
    f"--devices={_DEVICES.value}",
    f"--steps={_STEPS.value}",
    f"--max_total_gb={_MAX_TOTAL_GB.value}",
  ]
  if _BLOCK_SIZE.value is not None:
    argv.append(f"--block_size={_BLOCK_SIZE.value}")
  argv.append(f"--negative_fraction={_NEGATIVE_FRACTION.value}")
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  proc = subprocess.run(argv, env=env, capture_output=True, text=True)
  lines = [
    line for line in proc.stdout.splitlines() if line.startswith("RESULT ")
  ]
  if lines:
    return json.loads(lines[-1].removeprefix("RESULT "))
  # Killed (e.g. out of memory) or failed: report it as such.
  return {
    "mode": mode,
    "classes": num_proxies,
    "ran": False,
    "why_not_run": f"exit {proc.returncode}: {proc.stderr[-500:]}",
  }


def _format(row: dict[str, Any]) -> str:
  memory = (
    f"{row['argument_gib']:.3f} {row['output_gib']:.3f} "
    f"{row['temp_gib']:.3f} {row['alias_gib']:.3f} "
    f"{row['need_per_device_gib']:.3f}"
    if "argument_gib" in row
    else "-"
  )
  if row["ran"]:
    run = (
      f"{row['step_median_s'] * 1e3:.0f} ms (min {row['step_min_s'] * 1e3:.0f})"
      f", peak RSS {row['peak_rss_gib']:.2f} GiB, other cores "
      f"{row['other_cores']:.1f}, shard {row['proxy_shard_shape']}, "
      f"mu shard {row['adam_mu_shard_shape']} {row['adam_mu_sharding']}"
    )
  else:
    run = f"not run: {row['why_not_run']}"
  return f"{row['mode']:<10} C={row['classes']:>9,}  GiB {memory}  {run}"


def main(argv: list[str]) -> None:
  del argv
  if _CHILD.value:
    mode, classes = _CHILD.value.split(":")
    print("RESULT " + json.dumps(run_child(mode, int(classes))), flush=True)
    return
  if _NEGATIVE_FRACTION.value < 1 and _MODES.value != ["sharded"]:
    raise app.UsageError(
      "--negative_fraction applies to --modes=sharded; replicated sampling "
      "is measured by benchmarks.proxy_step_floor --negative_fractions."
    )
  print(json.dumps(cpu_timing.machine_description()))
  print(f"load average before: {os.getloadavg()}")
  print("per device, GiB: argument output temp alias need(=arg+out+temp-alias)")
  rows = []
  for classes in _CLASSES.value:
    for mode in _MODES.value:
      row = _run_case(mode, int(classes))
      row["loadavg_after"] = os.getloadavg()
      rows.append(row)
      print(_format(row), f"load {row['loadavg_after'][0]:.1f}", flush=True)
  print(f"load average after: {os.getloadavg()}")
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main)
