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
"""The files of a gallery folder: written atomically, checked when read.

A gallery is a folder G (gallery.py says what it means):

- ``G/embeddings-<hash>.npy``: float32 (N, D), named by the start of its
  SHA-256;
- ``G/gallery.json``: ``format``, ``embeddings`` (that file's name,
  ``rows`` N, ``dim`` D, ``bytes`` and ``sha256``), one entry per row in
  ``files``, ``stats`` and ``labels`` (or null), other fields, and
  ``sha256``: the hash of all the other fields (`record_digest`);
- ``G/progress/part-NNNNNN.npz`` while indexing: one part's rows and, as
  JSON, its record (files, their sizes and times, the model's weights).

`read_record` and `open_embeddings` check all of it (counts, both hashes,
the array's shape) and refuse a gallery that disagrees with one line naming
the file and the command that rebuilds it (`DamagedGalleryError`).

Every file is written under a temporary name, flushed to disk, then renamed
(`write_atomically`). `publish` writes the new embeddings file first, then
switches to it with one rename of ``gallery.json``, and only then removes
the old file and the parts: a process killed at any instant leaves the old
gallery or the new one, never a mix. `KILL_AFTER_WRITES_ENV` is the tests'
hook for killing it at each step.
"""

import hashlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from absl import logging

from proxy_nca_jax import errors, url_files

EMBEDDINGS_PREFIX = "embeddings"
RECORD = "gallery.json"
PROGRESS = "progress"
FORMAT_VERSION = 2
# Test hook (tests/deployment/gallery_integrity_test.py): with this variable
# set to N, the process SIGKILLs itself after its N-th step of writing (a
# temporary file written, renamed, or an old file removed).
KILL_AFTER_WRITES_ENV = "PROXY_NCA_JAX_TEST_KILL_AFTER_WRITES"
_TEMP_PREFIX = ".partial-"
_PART_PREFIX = "part-"
_writes = itertools.count(1)


class DamagedGalleryError(errors.InvalidInputError):
  """A gallery whose files disagree with each other or with its record.

  Attributes:
    problem: what disagrees, naming the file.
  """

  def __init__(self, path: str, problem: str, rebuild: str):
    super().__init__(f"The gallery {path} is damaged: {problem}. {rebuild}")
    self.problem = problem


def _wrote() -> None:
  """Counts one step of writing; `KILL_AFTER_WRITES_ENV` kills at one."""
  limit = os.environ.get(KILL_AFTER_WRITES_ENV)
  if limit and next(_writes) == int(limit):
    os.kill(os.getpid(), signal.SIGKILL)


def _write_temporary(
  folder: str, suffix: str, write: Callable[[str], None]
) -> str:
  """``write(a new temporary path in folder)``, flushed to disk, with the
  permissions ``open`` gives a new file (mkstemp's are 0600: a gallery
  built by one account must be readable by a server's); the path."""
  fd, temporary = tempfile.mkstemp(
    dir=folder, prefix=_TEMP_PREFIX, suffix=suffix
  )
  os.close(fd)
  write(temporary)
  with open(temporary, "rb+") as f:
    os.fsync(f.fileno())
  os.chmod(temporary, url_files.new_file_mode())
  _wrote()
  return temporary


def write_atomically(path: str, write: Callable[[str], None]) -> None:
  """``write(a temporary path)``, flushed to disk, renamed to ``path``."""
  folder, name = os.path.split(path)
  os.replace(_write_temporary(folder, os.path.splitext(name)[1], write), path)
  _wrote()


def remove_temporaries(path: str) -> None:
  """Removes what killed writers left in ``path`` and its progress."""
  for folder in (path, os.path.join(path, PROGRESS)):
    if os.path.isdir(folder):
      for name in os.listdir(folder):
        if name.startswith(_TEMP_PREFIX):
          os.remove(os.path.join(folder, name))


def _file_digest(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def record_digest(record: dict[str, Any]) -> str:
  """SHA-256 of every field of a gallery record but ``sha256`` itself."""
  fields = {key: value for key, value in record.items() if key != "sha256"}
  text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()


def _damaged(path: str, what: str, record: Any = None) -> DamagedGalleryError:
  """The refusal of a damaged gallery, with the command that rebuilds it."""
  record = record if isinstance(record, dict) else {}
  source = record.get("source")
  model = next(
    (f"--{k}={v}" for k, v in (source or {}).items() if v is not None),
    "--model=FILE.npz (or --workdir=W)",
  )
  images = record.get("images", "DIR")
  return DamagedGalleryError(
    path,
    what,
    f"Rebuild it: run python -m proxy_nca_jax.index {model} "
    f"--images={images} --out={path} again (or delete {path} and index "
    "anew).",
  )


def read_record(path: str) -> dict[str, Any]:
  """``path``'s gallery.json, checked against itself.

  Raises:
    errors.MissingFileError: there is none.
    DamagedGalleryError: it is unreadable, of an older format, edited or
      inconsistent.
  """
  record_path = os.path.join(path, RECORD)
  if not os.path.isfile(record_path):
    progress = os.path.isdir(os.path.join(path, PROGRESS))
    raise errors.MissingFileError(
      f"--gallery={path} holds no finished gallery ({RECORD} missing)"
      + (
        "; its indexing was interrupted: run the same index command again "
        "to finish it."
        if progress
        else "; make one with python -m proxy_nca_jax.index."
      )
    )
  try:
    with open(record_path) as f:
      record = json.load(f)
  except (OSError, ValueError) as error:
    raise _damaged(path, f"{record_path} cannot be read ({error})") from None
  if not isinstance(record, dict) or record.get("format") != FORMAT_VERSION:
    raise _damaged(
      path,
      f"{record_path} is not of format {FORMAT_VERSION} (an older index "
      "wrote it, without checksums)",
      record,
    )
  rows = record["embeddings"]["rows"]
  for field in ("files", "stats", "labels"):
    if record[field] is not None and len(record[field]) != rows:
      raise _damaged(
        path,
        f"{record_path} lists {len(record[field])} {field} for the {rows} "
        f"rows of {record['embeddings']['file']}",
        record,
      )
  if record_digest(record) != record["sha256"]:
    raise _damaged(
      path, f"{record_path} does not match its sha256 (edited?)", record
    )
  return record


def open_embeddings(path: str, record: dict[str, Any]) -> np.ndarray:
  """The embeddings ``record`` names, checked, memory-mapped.

  Raises:
    DamagedGalleryError: missing, or not the file ``record`` describes.
  """
  info = record["embeddings"]
  file = os.path.join(path, info["file"])
  if not os.path.isfile(file):
    raise _damaged(path, f"{file} is missing", record)
  size = os.path.getsize(file)
  if size != info["bytes"]:
    raise _damaged(
      path,
      f"{file} holds {size} bytes, {RECORD} records {info['bytes']} "
      "(truncated or replaced)",
      record,
    )
  if _file_digest(file) != info["sha256"]:
    raise _damaged(
      path, f"{file} does not match its sha256 in {RECORD}", record
    )
  embeddings = np.load(file, mmap_mode="r")
  if embeddings.shape != (info["rows"], info["dim"]):
    raise _damaged(
      path,
      f"{file} holds an array of shape {embeddings.shape}, {RECORD} "
      f"records ({info['rows']}, {info['dim']})",
      record,
    )
  return embeddings


def publish(
  path: str,
  rows: Sequence[np.ndarray],
  dim: int,
  record: dict[str, Any],
) -> None:
  """Replaces the gallery in ``path`` by ``rows`` and ``record``, atomically.

  Args:
    path: the gallery folder.
    rows: (dim,) float32 embeddings, one per file of ``record``.
    dim: D.
    record: the other fields of gallery.json (files, stats, labels, ...).
  """

  def write(temporary: str) -> None:
    array = np.lib.format.open_memmap(
      temporary, mode="w+", dtype=np.float32, shape=(len(rows), dim)
    )
    for i, row in enumerate(rows):
      array[i] = row
    array.flush()

  temporary = _write_temporary(path, ".npy", write)
  digest = _file_digest(temporary)
  name = f"{EMBEDDINGS_PREFIX}-{digest[:16]}.npy"
  # A new name: the record still names (and needs) the old file.
  os.replace(temporary, os.path.join(path, name))
  _wrote()
  record = {
    "format": FORMAT_VERSION,
    "embeddings": {
      "file": name,
      "rows": len(rows),
      "dim": dim,
      "bytes": os.path.getsize(os.path.join(path, name)),
      "sha256": digest,
    },
    **record,
  }
  record["sha256"] = record_digest(record)

  def write_record(temporary: str) -> None:
    with open(temporary, "w") as f:
      json.dump(record, f)

  write_atomically(os.path.join(path, RECORD), write_record)
  fd = os.open(path, os.O_RDONLY)  # The renames, durable too.
  os.fsync(fd)
  os.close(fd)
  for old in sorted(os.listdir(path)):
    if old.startswith(EMBEDDINGS_PREFIX) and old != name:
      os.remove(os.path.join(path, old))
      _wrote()
  if os.path.isdir(os.path.join(path, PROGRESS)):
    shutil.rmtree(os.path.join(path, PROGRESS))
    _wrote()


def write_part(path: str, rows: np.ndarray, record: dict[str, Any]) -> None:
  """Adds a part (rows, and their files in ``record``) to the progress."""
  progress = os.path.join(path, PROGRESS)
  os.makedirs(progress, exist_ok=True)
  numbers = [
    int(name[len(_PART_PREFIX) : -len(".npz")])
    for name in _part_names(progress)
  ]
  number = max(numbers, default=-1) + 1

  def write(temporary: str) -> None:
    np.savez(temporary, rows=rows, record=json.dumps(record))

  write_atomically(
    os.path.join(progress, f"{_PART_PREFIX}{number:06d}.npz"), write
  )


def _part_names(progress: str) -> list[str]:
  return sorted(
    name
    for name in os.listdir(progress)
    if name.startswith(_PART_PREFIX) and name.endswith(".npz")
  )


def read_parts(path: str) -> list[tuple[dict[str, Any], np.ndarray]]:
  """The parts in ``path``'s progress, oldest first, as (record, rows); a
  part that cannot be read is left out (its files are embedded again)."""
  progress = os.path.join(path, PROGRESS)
  if not os.path.isdir(progress):
    return []
  parts = []
  for name in _part_names(progress):
    try:
      with np.load(os.path.join(progress, name)) as part:
        record, rows = json.loads(str(part["record"])), part["rows"]
      if len(rows) != len(record["files"]):
        raise ValueError(f"{len(rows)} rows for {len(record['files'])} files")
    except (
      OSError,
      ValueError,
      KeyError,
      EOFError,
      zipfile.BadZipFile,
    ) as error:
      logging.warning("Embedding again the files of %s: %s", name, error)
      continue
    parts.append((record, rows))
  return parts
