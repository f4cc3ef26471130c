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
"""Data parallelism as data: one device mesh and the shardings over it.

The train step is one ``jax.jit`` function whose inputs carry shardings: the
batch is split along the mesh's ``data`` axis, parameters and optimiser state
are replicated (proxies for millions of classes may instead be split by
rows, ``row_sharded``; see train_state.py). The same code runs on one CPU,
on 8 fake CPU devices, on a GPU or on a TPU pod; XLA inserts the
cross-device reductions (gradient all-reduce, global BatchNorm statistics).
"""

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from proxy_nca_jax import errors

DATA_AXIS = "data"


def create_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh, axis ``data``, over ``devices`` (default: all of them).

  Args:
    devices: the devices to use; default every device of every process.
  """
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh(
    (len(devices),),
    (DATA_AXIS,),
    axis_types=(jax.sharding.AxisType.Auto,),
    devices=devices,
  )


def cpu_device_count(batch_sizes: Sequence[int], cores: int) -> int:
  """How many CPU devices to split one process's CPU into.

  XLA CPU runs a one-device program almost single-threaded, so the batch is
  sharded over one device per core (benchmarks/README.md: 62 -> 34 ms per
  convnet-S step on 2 cores). Each batch must split evenly over them.

  Args:
    batch_sizes: the global batch sizes the run shards (train, eval).
    cores: the CPU cores this process may use.

  Returns:
    The largest count, at most ``cores``, that divides every batch size.
  """
  return max(
    count
    for count in range(1, max(cores, 1) + 1)
    if all(size % count == 0 for size in batch_sizes)
  )


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of an array held whole on every device."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Sharding that splits the leading (batch) axis over the devices."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def row_sharded(mesh: Mesh) -> NamedSharding:
  """Sharding that splits the rows of a matrix (sharded proxies)."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS, None))


def check_global_batch(batch_size: int, mesh: Mesh, what: str) -> None:
  """Raises a ValueError unless ``batch_size`` splits evenly over devices.

  Args:
    batch_size: the global batch size.
    mesh: the device mesh.
    what: the config field that holds the batch size, for the message.
  """
  devices = mesh.size
  if batch_size < devices or batch_size % devices:
    lower = max(devices, batch_size // devices * devices)
    raise errors.InvalidInputError(
      f"{what}={batch_size} does not divide over the {devices} devices "
      f"({jax.process_count()} process(es)); use a multiple of {devices}, "
      f"e.g. --config.{what}={lower} or {lower + devices}."
    )


def global_batch(
  local_batch: dict[str, np.ndarray], mesh: Mesh
) -> dict[str, jax.Array]:
  """Assembles this process's share of a batch into global arrays.

  Args:
    local_batch: dict of NumPy arrays with the process-local leading axis
      (global batch / process count).
    mesh: the device mesh.

  Returns:
    dict of jax.Arrays whose leading axis is the global batch, sharded over
    the ``data`` axis.
  """
  sharding = batch_sharded(mesh)
  return {
    key: jax.make_array_from_process_local_data(sharding, value)
    for key, value in local_batch.items()
  }
