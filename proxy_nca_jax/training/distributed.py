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
"""Whether and how a run joins a multi-process JAX job.

`plan` decides, before JAX touches a device, with this rule:

1. ``--coordinator_address``, ``--num_processes`` and ``--process_id``, all
   three, call ``jax.distributed.initialize`` with them (multi-host GPUs,
   local multi-process tests). One or two of them alone is an error.
2. Otherwise, where JAX finds the layout by itself,
   ``jax.distributed.initialize()`` is called with no arguments:

   - a Cloud TPU VM, single host or pod slice (also under GKE): libtpu is
     installed and a TPU device node exists (``/dev/accel*`` up to v4,
     ``/dev/vfio/<n>`` from v5e). JAX then reads the worker list and this
     worker's number from the VM's metadata (or GKE's variables);
   - Slurm with more than one task (the ``SLURM_*`` variables JAX reads);
   - Open MPI's ``mpirun`` with more than one process.

   A one-task Slurm or MPI job is left alone: JAX would then restrict the
   process to one GPU of its node.
3. Otherwise the run is a single process and nothing is initialised.

The checks mirror those of JAX's cluster detection
(``jax._src.clusters``); tests/training/distributed_test.py pins them to it.
"""

import dataclasses
import glob
import importlib.util
import os
import re
from collections.abc import Mapping
from typing import Any

import jax

from proxy_nca_jax import errors

# Variables JAX's Slurm detection requires (jax._src.clusters.slurm_cluster).
SLURM_VARIABLES = (
  "SLURM_JOB_ID",
  "SLURM_STEP_NODELIST",
  "SLURM_NTASKS",
  "SLURM_PROCID",
  "SLURM_LOCALID",
)
# Set by Open MPI's launcher (jax._src.clusters.ompi_cluster).
OMPI_URI_VARIABLE = "OMPI_MCA_orte_hnp_uri"
OMPI_SIZE_VARIABLE = "OMPI_COMM_WORLD_SIZE"

_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d+)$")


@dataclasses.dataclass(frozen=True)
class Plan:
  """What to do about ``jax.distributed``.

  Attributes:
    initialize: whether to call ``jax.distributed.initialize``.
    kwargs: its arguments (empty: JAX detects them).
    reason: one line for the log saying what was decided and why.
  """

  initialize: bool
  kwargs: dict[str, Any]
  reason: str


def is_tpu_host(dev_dir: str = "/dev", has_libtpu: bool | None = None) -> bool:
  """Whether this machine is a Cloud TPU VM (libtpu and a TPU device node).

  Args:
    dev_dir: where device nodes live (a test passes a folder of its own).
    has_libtpu: whether libtpu is installed (None: look it up).
  """
  if has_libtpu is None:
    has_libtpu = importlib.util.find_spec("libtpu") is not None or bool(
      os.environ.get("TPU_LIBRARY_PATH")
    )
  nodes = glob.glob(os.path.join(dev_dir, "accel*")) + glob.glob(
    os.path.join(dev_dir, "vfio", "[0-9]*")
  )
  return has_libtpu and bool(nodes)


def _count(environ: Mapping[str, str], name: str) -> int:
  try:
    return int(environ.get(name, "0"))
  except ValueError:
    return 0


def plan(
  coordinator_address: str | None,
  num_processes: int | None,
  process_id: int | None,
  *,
  environ: Mapping[str, str] | None = None,
  tpu_host: bool | None = None,
) -> Plan:
  """Applies the module's rule to the flags and the environment.

  Args:
    coordinator_address: ``HOST:PORT`` of process 0, or None.
    num_processes: number of processes, or None.
    process_id: this process's index, or None.
    environ: the environment variables (default ``os.environ``).
    tpu_host: whether this is a Cloud TPU VM (None: `is_tpu_host()`).

  Returns:
    The plan; `initialize` runs it.

  Raises:
    ValueError: incomplete or inconsistent flags; the message says what to
      pass.
  """
  environ = os.environ if environ is None else environ
  given = {
    "--coordinator_address": coordinator_address,
    "--num_processes": num_processes,
    "--process_id": process_id,
  }
  if any(value is not None for value in given.values()):
    missing = [name for name, value in given.items() if value is None]
    if missing:
      raise errors.InvalidInputError(
        f"{', '.join(missing)} missing: --coordinator_address, "
        "--num_processes and --process_id go together (e.g. "
        "--coordinator_address=10.0.0.1:12345 --num_processes=2 "
        "--process_id=0 on the first host), or pass none of them to let "
        "JAX detect a Cloud TPU VM, Slurm or Open MPI job."
      )
    if not _ADDRESS.match(coordinator_address):
      raise errors.InvalidInputError(
        f"--coordinator_address={coordinator_address!r} is not HOST:PORT "
        "(e.g. 10.0.0.1:12345, the address of process 0 and a free port)."
      )
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise errors.InvalidInputError(
        f"--process_id={process_id} with --num_processes={num_processes}: "
        f"the processes are numbered 0 to num_processes - 1."
      )
    return Plan(
      True,
      {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
      },
      f"Process {process_id} of {num_processes}, coordinator "
      f"{coordinator_address} (from the flags).",
    )
  if is_tpu_host() if tpu_host is None else tpu_host:
    return Plan(True, {}, "Cloud TPU VM: JAX detects the workers.")
  if all(name in environ for name in SLURM_VARIABLES):
    if _count(environ, "SLURM_NTASKS") > 1:
      return Plan(True, {}, "Slurm job: JAX detects the tasks.")
  if OMPI_URI_VARIABLE in environ and _count(environ, OMPI_SIZE_VARIABLE) > 1:
    return Plan(True, {}, "Open MPI job: JAX detects the processes.")
  return Plan(False, {}, "Single process (no multi-process settings found).")


def initialize(the_plan: Plan) -> None:
  """Calls ``jax.distributed.initialize`` if the plan says so."""
  if the_plan.initialize:
    jax.distributed.initialize(**the_plan.kwargs)
