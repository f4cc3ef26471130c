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
"""One writer per folder: a lock file holding the writer's pid and host.

Two runs writing one folder (a training workdir, a gallery) mix their
files. While one writes, ``FOLDER/.lock`` holds its pid, host and start
time (created with O_EXCL, so two starts cannot both take it); a second is
refused with the first one's. A lock left by a killed run (same host, pid
no longer alive) is taken over, so ``kill -9`` and resuming still work.
Local folders only: object stores (gs://) have no exclusive create.
training/run_lock.py holds it from process 0 of a multi-host run.
"""

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator

from absl import logging

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


def try_lock(folder: str, activity: str, flag: str) -> str | None:
  """Takes ``folder``'s lock (creating the folder); None, or why not.

  Args:
    folder: the folder to lock.
    activity: what a holder does there, e.g. "is training in".
    flag: the command's flag naming the folder, e.g. "--workdir".

  Returns:
    None once held, else a message naming the holder and the way out.
  """
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, LOCK_FILE)
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
        f"started {held.get('started')}) {activity} {folder}. Wait for it "
        f"to finish or use another {flag}; if no such run is alive, delete "
        f"{path}."
      )
    with os.fdopen(fd, "w") as f:
      json.dump(record, f)
    return None
  return f"Could not take the lock {path}."


def release(folder: str, created: bool) -> None:
  """Drops the lock, and ``folder`` itself if ``created`` and now empty."""
  os.remove(os.path.join(folder, LOCK_FILE))
  if created and not os.listdir(folder):
    os.rmdir(folder)  # A run refused before writing anything.


@contextlib.contextmanager
def hold(folder: str, activity: str, flag: str) -> Iterator[None]:
  """Holds ``folder``'s lock in this (single) process (`try_lock`).

  Raises:
    errors.InvalidInputError: another live run holds it.
  """
  created = not os.path.exists(folder)
  refused = try_lock(folder, activity, flag)
  if refused:
    if created and not os.listdir(folder):
      os.rmdir(folder)
    raise errors.InvalidInputError(refused)
  try:
    yield
  finally:
    release(folder, created)
