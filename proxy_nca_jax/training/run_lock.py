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
"""One training run per workdir: a lock file that process 0 holds.

Two runs writing one workdir mix their checkpoints and metrics. While a run
trains, ``WORKDIR/.lock`` holds the pid and host of its process 0 (created
with O_EXCL, so two starts cannot both take it). A second run is refused with
the first one's pid, host and start time. A lock left by a killed run (same
host, pid no longer alive) is taken over, so ``kill -9`` and resuming still
work. Local workdirs only: object stores (gs://) have no exclusive create,
and their runs are not locked.
"""

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from proxy_nca_jax import errors

LOCK_FILE = ".lock"


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Another user's live process.
  return True


def _try_lock(workdir: str) -> str | None:
  """Takes the lock; None, or why it is held (process 0 only)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  host = socket.gethostname()
  record = {"pid": os.getpid(), "host": host, "started": time.ctime()}
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      try:
        with open(path) as f:
          held = json.load(f)
      except (OSError, ValueError):
        held = {}
      if held.get("host") == host and not _alive(int(held.get("pid", 0))):
        logging.info("Taking over the lock of a finished run: %s", held)
        os.remove(path)
        continue
      return (
        f"Another run (pid {held.get('pid')} on host {held.get('host')}, "
        f"started {held.get('started')}) is training in {workdir}. Wait for "
        "it to finish or use another --workdir; if no such run is alive, "
        f"delete {path}."
      )
    with os.fdopen(fd, "w") as f:
      json.dump(record, f)
    return None
  return f"Could not take the lock {path}."


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
  refused = _try_lock(workdir) if jax.process_index() == 0 else None
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
      os.remove(os.path.join(workdir, LOCK_FILE))
      if created and not os.listdir(workdir):
        os.rmdir(workdir)  # A run refused before writing anything.
