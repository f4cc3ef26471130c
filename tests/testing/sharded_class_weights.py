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
"""The sharded class-weight losses on a given mesh, in one process or in
each process of a multi-process job.

``values_and_grads(mesh)`` computes ArcFace and, with sampled negative
classes, SubCenter-ArcFace and SoftTriple (``LOSSES``), sharded over
``mesh``: values and gradients. Run as a module, it joins a job of two
local processes of 4 CPU devices each and process 0 writes the results
(tests/training/multiprocess_test.py):

  python -m tests.testing.sharded_class_weights --port=P --process_id=I \
    --out=results.npz
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from proxy_nca_jax import parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.training import loss_binding
from tests.testing import class_weight_references

# 203 classes over 8 devices: 208 classes' room, 26 a device, 5 of device
# 7's padding. A sample keeps 13 of a device's 26 classes (fraction 0.5).
NUM_CLASSES = 203
# (label, case name, loss.negative_fraction): ArcFace, and SubCenter-ArcFace
# (K = 3) and SoftTriple (K = 2, its regulariser's psums) on sampled
# classes (the other cases take the same paths: sharded_losses_test.py).
LOSSES = (
  ("arcface", "arcface", 1.0),
  ("subcenter_arcface sampled", "subcenter_arcface", 0.5),
  ("soft_triple sampled", "soft_triple", 0.5),
)
SEED, STEP = 3, 17


def problem() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """Embeddings (12, 6), labels (12,) and each case's weights (C K, 6)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(12, 6)).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, size=12).astype(np.int32)
  weights = {
    name: rng.normal(
      size=(NUM_CLASSES * class_weight_references.centers(name), 6)
    ).astype(np.float32)
    for name in sorted({name for _, name, _ in LOSSES})
  }
  return x, labels, weights


def values_and_grads(mesh: jax.sharding.Mesh) -> dict[str, np.ndarray]:
  """{'<label> value' / 'grad_x' / 'grad_p': NumPy} of each of ``LOSSES``,
  sharded over ``mesh`` (every process of it), on this host."""
  x, labels, weights = problem()

  def global_array(value, sharding):
    return jax.make_array_from_callback(
      value.shape, sharding, lambda index: value[index]
    )

  replicated = parallel.replicated(mesh)
  padded = {}
  for name, rows in weights.items():
    k = class_weight_references.centers(name)
    padded[name] = global_array(
      np.asarray(proxies_lib.pad_proxies(jnp.asarray(rows), mesh.size, k)),
      parallel.row_sharded(mesh),
    )
  fns = {
    label: loss_binding.create_sharded_loss_fn(
      class_weight_references.loss_config(name, negative_fraction=fraction),
      mesh,
      len(weights[name]),
      seed=SEED,
    )
    for label, name, fraction in LOSSES
  }

  def all_losses(x, labels, padded):
    return {
      label: jax.value_and_grad(
        lambda e, p, fn=fns[label]: fn(e, labels, p, jnp.int32(STEP)),
        argnums=(0, 1),
      )(x, padded[name])
      for label, name, _ in LOSSES
    }

  results = jax.jit(all_losses)(
    global_array(x, replicated), global_array(labels, replicated), padded
  )
  out = {}
  for label, (value, (grad_x, grad_p)) in results.items():
    # Value and grad_x are replicated: this process's first copy.
    out[f"{label} value"] = np.asarray(value.addressable_data(0))
    out[f"{label} grad_x"] = np.asarray(grad_x.addressable_data(0))
    out[f"{label} grad_p"] = _gather_rows(grad_p)
  return out


def _gather_rows(array: jax.Array) -> np.ndarray:
  """The whole of a row-sharded array, on every process."""
  if array.is_fully_addressable:
    return np.asarray(array)
  return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--port", type=int, required=True)
  parser.add_argument("--process_id", type=int, required=True)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  jax.config.update("jax_num_cpu_devices", 4)
  jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{args.port}",
    num_processes=2,
    process_id=args.process_id,
  )
  mesh = parallel.create_mesh()
  assert mesh.size == 8 and jax.process_count() == 2
  results = values_and_grads(mesh)
  if args.process_id == 0:
    np.savez(args.out, **results)


if __name__ == "__main__":
  main()
