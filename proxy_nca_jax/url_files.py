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
"""Files at a local path or at a URL (``gs://...``), TensorFlow only for URLs.

A workdir and its figures may live on Cloud Storage: TensorFlow's
``tf.io.gfile`` reaches ``gs://`` and its other file systems (``ram://``,
what the tests use in its place). Local paths use Python's own files, so a
command that reads only local files (export, index, search) does not pay
TensorFlow's import, about 3 s of its start-up. `write_atomically` is the
one whole-or-nothing write of a workdir's records (config.json, model.json,
metrics.jsonl when a resume drops rows) and of an exported model; the rest
of the training side, which imports TensorFlow for its pipelines anyway,
uses ``tf.io.gfile`` directly.
"""

import builtins
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any


def is_url(path: str) -> bool:
  """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
  return "://" in str(path)


def _gfile() -> Any:
  # Imported for URLs only: TensorFlow's import is seconds long.
  import tensorflow as tf  # noqa: PLC0415

  return tf.io.gfile


def exists(path: str) -> bool:
  """Whether the file or folder ``path`` exists."""
  return _gfile().exists(path) if is_url(path) else os.path.exists(path)


def open(path: str, mode: str = "r") -> IO:  # noqa: A001  (as builtins.open)
  """Opens ``path`` (modes ``r``, ``w``, ``rb``, ``wb``) as a file object;
  text is UTF-8, as gfile's, whatever the locale."""
  if is_url(path):
    return _gfile().GFile(path, mode)
  encoding = None if "b" in mode else "utf-8"
  return builtins.open(path, mode, encoding=encoding)


def new_file_mode() -> int:
  """The permissions ``open`` gives a new file: 0666 less the umask."""
  umask = os.umask(0o022)
  os.umask(umask)
  return 0o666 & ~umask


def write_atomically(
  path: str, write: Callable[[IO], None], mode: str = "w"
) -> None:
  """Writes ``path`` whole or not at all: ``write(f)`` fills a temporary
  file beside it (opened with ``mode``, "w" or "wb"), which is then renamed
  over ``path``, so a kill mid-write leaves the old file.

  Locally the temporary file has a unique name (two writers never share
  one), reaches the disk before the rename, and gets the permissions of a
  file ``open`` creates (0666 less the umask). At a URL it is
  ``path.partial``, renamed by ``tf.io.gfile``.
  """
  if is_url(path):
    partial = f"{path}.partial"
    with _gfile().GFile(partial, mode) as f:
      write(f)
    _gfile().rename(partial, path, overwrite=True)
    return
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  handle, partial = tempfile.mkstemp(
    dir=folder, prefix=f"{os.path.basename(path)}.", suffix=".partial"
  )
  try:
    encoding = None if "b" in mode else "utf-8"
    with os.fdopen(handle, mode, encoding=encoding) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(partial, new_file_mode())
    os.replace(partial, path)
  except BaseException:
    os.unlink(partial)
    raise


def write_text(path: str, text: str) -> None:
  """`write_atomically` of ``text`` (UTF-8)."""
  write_atomically(path, lambda f: f.write(text))
