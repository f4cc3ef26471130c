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
"""The floor of the million-proxy step on this machine, and where time goes.

The step of benchmarks/sharded_proxies.py (Proxy-NCA, softmax form, scale
16, batch B = 256, D = 128, C = 1,000,000 proxies, the gradient with
respect to the proxies, Adam) cannot be faster than

* its matrix products: the logits B x C x D multiply-adds forward, and as
  many for each of the two products of the backward pass (the embeddings'
  and the proxies' gradients), 3 x 2 B C D flops at the machine's measured
  peak matmul rate (a jitted float32 2048^3 product; the rate of a product
  of the step's own shapes is reported beside it);
* its unavoidable memory traffic: the proxies and Adam's two moments read
  and written once, 6 x C x D x 4 bytes at the measured streaming rate (a
  jitted, donated 2 x + 1 over a C x D array: one read, one write).

floor = max(flop time, byte time) (they can overlap); the report also gives
their sum. Then, on one device (this process), the step and its parts, each
jitted alone and timed as the median of --repeats calls after a warm-up:
the forward logits product, the loss, the loss and its gradients (with
respect to the embeddings and the proxies, as in training), Adam's update,
the whole step; each as a multiple of its own floor. The loss, its
gradients and the step are timed for the plain formulation (every logit at
once) and for each of --block_sizes (losses/proxy_blocks.py). The 8-device
step is benchmarks/sharded_proxies.py's (run it with --devices=1 and 8).

Then the class-weight losses of --margin_losses (losses/margin_softmax.py)
at the same C, their loss, loss + gradients and whole step (Adam on their
weights), plain, in blocks (ArcFace) and with sampled negative classes at
--negative_fractions (all centres of each sampled class):

* ArcFace (scale 64, margin 0.5): one row a class, so Proxy-NCA's floor,
  3 x 2 B C D flops and 6 x C x D x 4 bytes; the plain formulation, each
  of --block_sizes (as CosFace and ArcFace take their sums in blocks above
  65,536 classes), and the sampled classes in the automatic blocks;
* SoftTriple (Qian et al. 2019: la 20, gamma 0.1, margin 0.01, tau 0.2), K =
  --soft_triple_centers centres a class, C K rows: 3 x 2 B (C K) D flops
  and 6 x C K x D x 4 bytes. K is 2 by default, not the paper's 10: at a
  million classes the weights are then 2,000,000 x 128 x 4 B = 1 GB, 3 GB
  with Adam's moments (10 centres would be 5 GB and 15 GB), and the plain
  formulation holds a few (B, C K) float32 arrays of 2 GB each. SoftTriple
  pools each class's K cosines, so it has no blocked form.

  python -m benchmarks.proxy_step_floor               # Proxy-NCA: ~5 minutes
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python -m benchmarks.proxy_step_floor
  python -m benchmarks.proxy_step_floor --classes=100000
  python -m benchmarks.proxy_step_floor --margin_losses=  # Proxy-NCA only
"""

import functools
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from benchmarks import cpu_timing
from proxy_nca_jax import losses
from proxy_nca_jax.losses import sampled_proxies

# The command's flags exist only when this file runs as the command:
# summary.py imports the functions below beside other benchmarks' whose
# flags have the same names (absl refuses a name defined twice).
if __name__ == "__main__":
  _CLASSES = flags.DEFINE_integer("classes", 1_000_000, "Proxies C.")
  _DIM = flags.DEFINE_integer("dim", 128, "Embedding dimension D.")
  _BATCH = flags.DEFINE_integer("batch", 256, "Embeddings per step B.")
  _REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls (median).")
  _JSON_OUT = flags.DEFINE_string("json_out", None, "Also write results here.")
  _PLAIN = flags.DEFINE_bool(
    "plain", True, "Also time the plain formulation (every logit at once)."
  )
  _NEGATIVE_FRACTIONS = flags.DEFINE_list(
    "negative_fractions",
    ["0.3", "0.1"],
    "Sampled negative proxies (loss.negative_fraction) timed after the "
    "block sizes.",
  )
  _BLOCK_SIZES = flags.DEFINE_list(
    "block_sizes",
    ["65536", "16384", "4096"],
    "Proxy-NCA's blocks of proxies (losses/proxy_blocks.py) timed after the "
    "plain formulation.",
  )

  _MARGIN_LOSSES = flags.DEFINE_list(
    "margin_losses",
    ["arcface", "soft_triple"],
    "Class-weight losses timed after Proxy-NCA: arcface, soft_triple.",
  )
  _SOFT_TRIPLE_CENTERS = flags.DEFINE_integer(
    "soft_triple_centers",
    2,
    "SoftTriple's centres K a class (C K weight rows; module docstring).",
  )

SCALE = 16.0
MARGIN_LOSSES = ("arcface", "soft_triple")


def _proxy_nca(e, p, *, labels, block_size):
  return losses.proxy_nca_loss(
    e, labels, p, form="softmax", scale=SCALE, block_size=block_size
  )


def _sampled_proxy_nca(e, p, *, labels, num_sampled):
  """Proxy-NCA on the positives and a uniform sample of the others
  (losses/sampled_proxies.py), blocks chosen automatically."""
  rows, sampled_labels = sampled_proxies.sample_proxies(
    sampled_proxies.sample_key(0, 0), labels, p.shape[0], num_sampled
  )
  return losses.proxy_nca_loss(
    e, sampled_labels, p[rows], form="softmax", scale=SCALE
  )


def _arcface(e, p, labels, *, block_size=None):
  """ArcFace at pytorch-metric-learning's scale and margin (radians)."""
  return losses.arcface_loss(
    e, labels, p, margin=0.5, scale=64.0, block_size=block_size
  )


def _soft_triple(e, p, labels, *, centers):
  """SoftTriple, ``centers`` centres a class, the paper's other options."""
  return losses.soft_triple_loss(e, labels, p, centers_per_class=centers)


def _sampled_classes(e, p, *, labels, loss_fn, centers, num_sampled):
  """``loss_fn`` on the positive classes and a uniform sample of the others
  (losses/sampled_proxies.py), all ``centers`` rows of each, as
  training/loss_binding.py samples them."""
  classes, sampled_labels = sampled_proxies.sample_proxies(
    sampled_proxies.sample_key(0, 0),
    labels,
    p.shape[0] // centers,
    num_sampled,
  )
  rows = sampled_proxies.class_rows(classes, centers)
  return loss_fn(e, p[rows], sampled_labels)


def margin_variants(
  name: str, c: int, b: int, labels: jax.Array, block_sizes: list[int]
) -> list[tuple[str, Callable[..., jax.Array], float, int]]:
  """(label, loss of (embeddings, weights), share of the classes, weight
  rows) of each timed formulation of class-weight loss ``name``."""
  if name == "arcface":
    centers, loss_fn, label = 1, _arcface, "arcface"
    # Block size C: the plain formulation.
    formulations = [
      (
        f"{label} {'plain' if size >= c else f'blocks of {size}'}",
        functools.partial(_arcface, labels=labels, block_size=size),
      )
      for size in [c] * _PLAIN.value + block_sizes
    ]
  else:
    centers = _SOFT_TRIPLE_CENTERS.value
    loss_fn = functools.partial(_soft_triple, centers=centers)
    label = f"soft_triple K={centers}"
    formulations = [
      (f"{label} plain", functools.partial(loss_fn, labels=labels))
    ] * _PLAIN.value
  variants = [(v_label, fn, 1.0, c * centers) for v_label, fn in formulations]
  for fraction in map(float, _NEGATIVE_FRACTIONS.value):
    k = sampled_proxies.num_sampled(fraction, c, b)
    sampled = functools.partial(
      _sampled_classes,
      labels=labels,
      loss_fn=loss_fn,
      centers=centers,
      num_sampled=k,
    )
    variants.append(
      (f"{label} sampled negatives {fraction}", sampled, k / c, c * centers)
    )
  return variants


def step_work(rows: int, b: int, d: int) -> tuple[int, int]:
  """(flops, bytes) the step cannot avoid (module docstring): 3 products
  of 2 B rows D flops; the weights and Adam's two moments read and written
  once, 6 rows D float32."""
  return 3 * 2 * b * rows * d, 6 * rows * d * 4


def floor_of(
  rows: int, b: int, d: int, rates: dict[str, float]
) -> dict[str, float]:
  """The step's floor (module docstring) for ``rows`` weight rows."""
  flops, bytes_moved = step_work(rows, b, d)
  flop_s = flops / (rates["peak_gflops (2048^3)"] * 1e9)
  byte_s = bytes_moved / (rates["stream_gbs (C x D)"] * 1e9)
  return {
    "rows": rows,
    "flops": flops,
    "bytes": bytes_moved,
    "flop_s_at_peak": flop_s,
    "flop_s_at_logits_rate": flops
    / (rates["logits_gflops (B x D @ D x C)"] * 1e9),
    "byte_s": byte_s,
    "floor_s (max)": max(flop_s, byte_s),
    "floor_s (sum)": flop_s + byte_s,
  }


def compiled_step(
  loss_fn: Callable[[jax.Array, jax.Array], jax.Array],
  tx: optax.GradientTransformation,
  embeddings: jax.Array,
  proxies: jax.Array,
) -> tuple[Callable[[], tuple[jax.Array, jax.Array]], float]:
  """The whole train step on a copy of ``proxies``, compiled.

  Loss and both gradients, then ``tx``'s update of the proxies; the
  proxies and the optimiser state are donated, updated in place, as in
  the train step.

  Returns:
    (a call that runs one step and returns (loss, embeddings' gradient),
    the step's scratch memory in GiB).
  """

  @functools.partial(jax.jit, donate_argnums=(1, 2))
  def step(e, p, state):
    loss, (e_grad, p_grad) = jax.value_and_grad(loss_fn, argnums=(0, 1))(e, p)
    updates, state = tx.update(p_grad, state, p)
    return optax.apply_updates(p, updates), state, loss, e_grad

  trained = {"proxies": jnp.copy(proxies), "state": tx.init(proxies)}
  # Compiled once: for its memory analysis and for the timed calls.
  compiled = step.lower(embeddings, proxies, trained["state"]).compile()

  def train_step() -> tuple[jax.Array, jax.Array]:
    trained["proxies"], trained["state"], loss, e_grad = compiled(
      embeddings, trained["proxies"], trained["state"]
    )
    return loss, e_grad

  return train_step, compiled.memory_analysis().temp_size_in_bytes / 1024**3


def median_s(fn: Callable[[], Any], repeats: int) -> float:
  """Median wall time of ``repeats`` calls of ``fn``, each waited for,
  after a warm-up."""
  timing = cpu_timing.median_after_warmup(
    lambda: jax.block_until_ready(fn()), repeats
  )
  return timing["median_s"]


def matmul_gflops(m: int, k: int, n: int, repeats: int) -> float:
  """Measured float32 GFLOP/s of a jitted (m, k) @ (k, n) product."""
  a = jnp.ones((m, k), jnp.float32)
  b = jnp.ones((k, n), jnp.float32)
  product = jax.jit(lambda x, y: jnp.dot(x, y, precision="highest"))
  return 2 * m * k * n / median_s(lambda: product(a, b), repeats) / 1e9


def stream_gbs(num: int, repeats: int) -> float:
  """Measured GB/s of a jitted 2 x + 1 over ``num`` float32 (read + write),
  in place (donated, as the step's proxies and moments): no new pages."""
  axpb = jax.jit(lambda v: 2.0 * v + 1.0, donate_argnums=0)
  holder = [jnp.ones((num,), jnp.float32)]

  def call() -> jax.Array:
    holder[0] = axpb(holder[0])
    return holder[0]

  return 2 * 4 * num / median_s(call, repeats) / 1e9


def main(argv: list[str]) -> None:
  del argv
  c, d, b, repeats = _CLASSES.value, _DIM.value, _BATCH.value, _REPEATS.value
  unknown = set(_MARGIN_LOSSES.value) - set(MARGIN_LOSSES)
  if unknown:
    raise app.UsageError(
      f"--margin_losses: {sorted(unknown)} not among {MARGIN_LOSSES}."
    )
  report: dict[str, Any] = {
    "machine": cpu_timing.machine_description(),
    "jax": jax.__version__,
    "devices": jax.device_count(),
    "shape": {"batch": b, "dim": d, "classes": c},
    "load_1min_start": os.getloadavg()[0],
    # glibc.malloc.hugetlb=1: malloc asks for transparent huge pages, so
    # XLA's fresh multi-GB temporaries take 512x fewer page faults.
    "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", ""),
  }
  rates = {
    "peak_gflops (2048^3)": matmul_gflops(2048, 2048, 2048, repeats),
    "logits_gflops (B x D @ D x C)": matmul_gflops(b, d, c, repeats),
    "stream_gbs (C x D)": stream_gbs(c * d, repeats),
  }
  report["rates"] = rates
  # Proxy-NCA and ArcFace: C rows.
  report["floor"] = floor_of(c, b, d, rates)
  flop_s = report["floor"]["flop_s_at_peak"]
  byte_s = report["floor"]["byte_s"]
  floor = report["floor"]["floor_s (max)"]
  if "soft_triple" in _MARGIN_LOSSES.value:
    rows = c * _SOFT_TRIPLE_CENTERS.value
    report["floor soft_triple (C K rows)"] = floor_of(rows, b, d, rates)

  rng = np.random.default_rng(0)
  embeddings = jnp.asarray(rng.normal(size=(b, d)).astype(np.float32))
  labels = jnp.asarray(rng.integers(0, c, b).astype(np.int32))
  proxies = jnp.asarray(rng.normal(size=(c, d)).astype(np.float32))
  tx = optax.adam(1e-2)
  opt_state = tx.init(proxies)
  logits = jax.jit(lambda p: embeddings @ p.T)
  report["parts"] = {}
  # (label, loss of (embeddings, proxies), the share of C it compares with,
  # rows of the proxy matrix)
  variants = []
  block_sizes = [int(size) for size in _BLOCK_SIZES.value]
  # Block size C: the plain formulation, every logit at once.
  for block_size in [c] * _PLAIN.value + block_sizes:
    label = "plain" if block_size >= c else f"blocks of {block_size}"
    variants.append(
      (
        label,
        functools.partial(_proxy_nca, labels=labels, block_size=block_size),
        1.0,
        c,
      )
    )
  for fraction in map(float, _NEGATIVE_FRACTIONS.value):
    k = sampled_proxies.num_sampled(fraction, c, b)
    variants.append(
      (
        f"sampled negatives {fraction}",
        functools.partial(_sampled_proxy_nca, labels=labels, num_sampled=k),
        k / c,
        c,
      )
    )
  for name in _MARGIN_LOSSES.value:
    variants.extend(margin_variants(name, c, b, labels, block_sizes))

  # The weights of the current row count and their Adam state: SoftTriple's
  # C K rows replace the C rows (one set held at a time).
  held = {"rows": c, "proxies": proxies, "opt_state": opt_state}
  del proxies, opt_state

  for label, loss_fn, share, rows in variants:
    if rows != held["rows"]:
      held.clear()
      weights = jax.random.normal(jax.random.key(1), (rows, d), jnp.float32)
      held.update(rows=rows, proxies=weights, opt_state=tx.init(weights))
      del weights
    proxies, opt_state = held["proxies"], held["opt_state"]
    own = report["floor"] if rows == c else floor_of(rows, b, d, rates)
    flop_s, byte_s = own["flop_s_at_peak"], own["byte_s"]
    floor = own["floor_s (max)"]
    # Both gradients, as in training: the embeddings' one is the third of
    # the floor's products.
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))

    train_step, report["parts"][f"{label}: step scratch GiB"] = compiled_step(
      loss_fn, tx, embeddings, proxies
    )

    own_floor = max(share * flop_s, byte_s)
    parts = {
      "loss": (
        lambda f=loss_fn, p=proxies: jax.jit(f)(embeddings, p),
        flop_s / 3,
      ),
      "loss + gradients": (
        lambda g=grad_fn, p=proxies: g(embeddings, p),
        flop_s,
      ),
      "whole step": (train_step, floor),
    }
    if label == "plain":
      grads = grad_fn(embeddings, proxies)[1][1]

      @jax.jit
      def adam(p, state, g):
        updates, state = tx.update(g, state, p)
        return optax.apply_updates(p, updates), state

      parts = {
        "forward logits product": (
          lambda p=proxies: logits(p),
          flop_s / 3,
        ),
        **parts,
        "Adam update": (
          lambda g=grads, p=proxies, s=opt_state: adam(p, s, g),
          byte_s,
        ),
      }
    for name, (fn, part_floor) in parts.items():
      seconds = median_s(fn, repeats)
      report["parts"][f"{label}: {name}"] = {
        "median_s": seconds,
        "floor_s": part_floor,
        "times_floor": seconds / part_floor,
        "own_floor_s": own_floor if name == "whole step" else None,
      }
      print(f"{label}: {name}: {seconds:.3f} s", flush=True)
    print(
      f"{label}: step scratch "
      f"{report['parts'][f'{label}: step scratch GiB']:.3f} GiB",
      flush=True,
    )
  report["load_1min_end"] = os.getloadavg()[0]
  print(json.dumps(report, indent=2))
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  app.run(main)
