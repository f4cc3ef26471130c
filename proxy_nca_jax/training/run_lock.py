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
"""One training run per workdir: process 0 holds the workdir's lock.

Two runs writing one workdir mix their checkpoints and metrics. While a run
trains, process 0 holds ``WORKDIR/.lock`` (workdir_lock.py: its pid, host
and start time; a lock left by a killed run is taken over), and every
process refuses a second run. Local workdirs only: object stores (gs://)
have no exclusive create, and their runs are not locked.
"""

import contextlib
import os
from collections.abc import Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

from proxy_nca_jax import errors, workdir_lock


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds the workdir's lock for the run; every process calls it.

  Raises:
    ValueError: another live run holds the lock (every process raises).
  """
  if "://" in workdir:
    yield
    return
  created = not os.path.exists(workdir)
  refused = (
    workdir_lock.try_lock(workdir, "is training in", "--workdir")
    if jax.process_index() == 0
    else None
  )
  if multihost_utils.broadcast_one_to_all(np.asarray(refused is not None)):
    if created and not os.listdir(workdir):
      os.rmdir(workdir)
    raise errors.InvalidInputError(
      refused or "Process 0 could not lock the workdir."
    )
  try:
    yield
  finally:
    if jax.process_index() == 0:
      workdir_lock.release(workdir, created)
