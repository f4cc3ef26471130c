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
"""A gallery: every image of a folder embedded once, for searching.

A gallery is a folder G:

- ``G/embeddings.npy``: float32 (N, D) unit-norm embeddings, row i of
  ``files[i]``;
- ``G/gallery.json``: ``files`` (paths relative to ``images``), ``labels``
  and ``classes`` (class-per-folder names, or null), the model's ``spec``
  (embedder.py) and ``source`` (its workdir or exported file), ``skipped``
  files that cannot be decoded, and each file's size and modification time.

Files are listed and decoded as data/image_files.py says (`raw_pixels`: the
model's input size). A file's class is the name of the folder holding it,
when every file is in a subfolder (``ROOT/CLASS/IMAGE``, also
``ROOT/SPLIT/CLASS/IMAGE``); otherwise the gallery has no labels.

Indexing is resumable and incremental. Embeddings are written in parts of
`PART_SIZE` files under ``G/progress/`` (a part counts once its listing is
written, after its array); a killed index continues after its last part.
A rebuild of a finished gallery with the same model embeds only files that
are new or whose size or modification time changed, and drops files that
are gone.
"""

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from proxy_nca_jax import durations, errors
from proxy_nca_jax.data import image_files
from proxy_nca_jax.deployment import embedder

EMBEDDINGS = "embeddings.npy"
RECORD = "gallery.json"
PROGRESS = "progress"
FORMAT_VERSION = 1
# Files per resumable part, and images per call of the embedder.
PART_SIZE = 4096
BATCH_SIZE = 64
# Seconds between progress lines.
_REPORT_EVERY_S = 10.0


class ModelMismatchError(errors.InvalidInputError):
  """A gallery made by another model than the one given."""


@dataclasses.dataclass
class Gallery:
  """A finished gallery: embeddings (memory-mapped) and their record."""

  path: str
  embeddings: np.ndarray
  record: dict[str, Any]

  @property
  def spec(self) -> embedder.EmbedderSpec:
    return embedder.EmbedderSpec(**_spec_fields(self.record["spec"]))

  @property
  def files(self) -> list[str]:
    return self.record["files"]

  @property
  def labels(self) -> np.ndarray | None:
    labels = self.record["labels"]
    return None if labels is None else np.asarray(labels, np.int64)

  @property
  def classes(self) -> list[str] | None:
    return self.record["classes"]

  def check_model(self, spec: embedder.EmbedderSpec) -> None:
    """Refuses a model other than the gallery's (by weights fingerprint).

    Raises:
      ModelMismatchError: naming both.
    """
    if spec.weights != self.spec.weights:
      raise ModelMismatchError(
        f"The gallery {self.path} was made by another model: gallery "
        f"{self.spec.describe()}; given {spec.describe()}. Search with the "
        "gallery's model, or index the images again with this one."
      )


def _spec_fields(record: dict[str, Any]) -> dict[str, Any]:
  return {**record, "input_shape": tuple(record["input_shape"])}


def load(path: str) -> Gallery:
  """Opens a finished gallery (embeddings memory-mapped, not read).

  Raises:
    FileNotFoundError: ``path`` holds no finished gallery.
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
  with open(record_path) as f:
    record = json.load(f)
  embeddings = np.load(os.path.join(path, EMBEDDINGS), mmap_mode="r")
  return Gallery(path=path, embeddings=embeddings, record=record)


def class_labels(
  files: Sequence[str],
) -> tuple[list[int] | None, list[str] | None]:
  """(labels, class names) from each file's folder, or (None, None)."""
  if not files or any("/" not in name for name in files):
    return None, None
  names = [name.rsplit("/", 2)[-2] for name in files]
  classes = sorted(set(names))
  index = {name: i for i, name in enumerate(classes)}
  return [index[name] for name in names], classes


def _file_stat(path: str) -> list[int]:
  stat = os.stat(path)
  return [stat.st_size, stat.st_mtime_ns]


def _write_json(path: str, record: dict[str, Any]) -> None:
  partial = path + ".partial"
  with open(partial, "w") as f:
    json.dump(record, f)
  os.replace(partial, path)


def _write_npy(path: str, array: np.ndarray) -> None:
  partial = path + ".partial.npy"
  np.save(partial, array)
  os.replace(partial, path)


class _Progress:
  """Logs images done, images/s and the time left, every few seconds."""

  def __init__(self, total: int, log: Callable[[str], None]):
    self.total, self.done, self.log = total, 0, log
    self.start = self.last = time.monotonic()

  def add(self, count: int) -> None:
    self.done += count
    now = time.monotonic()
    if now - self.last < _REPORT_EVERY_S and self.done < self.total:
      return
    self.last = now
    rate = self.done / max(now - self.start, 1e-9)
    left = (self.total - self.done) / rate if rate > 0 else float("inf")
    self.log(
      f"embedded {self.done}/{self.total} images, {rate:.1f} images/s, "
      f"about {durations.format_duration(left)} left"
    )


def embed_files(
  embed: Callable[[np.ndarray], Any],
  spec: embedder.EmbedderSpec,
  folder: str,
  names: Sequence[str],
  batch_size: int = BATCH_SIZE,
  on_batch: Callable[[int], None] = lambda count: None,
) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
  """Embeds image files in uint8 batches of ``batch_size`` (padded).

  Args:
    embed: uint8 (batch_size, *spec.input_shape) -> (batch_size, D).
    spec: the embedder's spec (input shape, embedding size).
    folder: where ``names`` are.
    names: the files, relative to ``folder``.
    batch_size: images per call of ``embed``.
    on_batch: told how many files each batch covered (progress).

  Returns:
    (float32 embeddings of the decodable files, those files in order, the
    (file, reason) pairs of the others).
  """
  rows, kept, bad = [], [], []
  for start in range(0, len(names), batch_size):
    batch = np.zeros((batch_size, *spec.input_shape), np.uint8)
    used = []
    for name in names[start : start + batch_size]:
      try:
        pixels = image_files.raw_pixels(
          os.path.join(folder, name), spec.input_shape
        )
      except image_files.DECODE_ERRORS as error:
        bad.append((name, image_files.decode_error_reason(error)))
        continue
      batch[len(used)] = pixels
      used.append(name)
    if used:
      rows.append(np.asarray(embed(batch))[: len(used)])
      kept.extend(used)
    on_batch(min(batch_size, len(names) - start))
  embeddings = (
    np.concatenate(rows).astype(np.float32)
    if rows
    else np.zeros((0, spec.embedding_dim), np.float32)
  )
  return embeddings, kept, bad


def _reusable(
  out: str, spec: embedder.EmbedderSpec
) -> dict[str, tuple[list[int], np.ndarray | None, str | None]]:
  """Embeddings already made by this model in ``out``: name -> (stat,
  embedding or None, reason it could not be decoded or None).

  Raises:
    ModelMismatchError: ``out`` holds a gallery or parts of another model.
  """
  found: dict[str, tuple[list[int], np.ndarray | None, str | None]] = {}
  if os.path.isfile(os.path.join(out, RECORD)):
    old = load(out)
    old.check_model(spec)
    for name, stat, row in zip(
      old.files, old.record["stats"], old.embeddings, strict=True
    ):
      found[name] = (stat, row, None)
    for item in old.record["skipped"]:
      found[item["file"]] = (item["stat"], None, item["reason"])
  progress = os.path.join(out, PROGRESS)
  if not os.path.isdir(progress):
    return found
  for name in sorted(os.listdir(progress)):
    if not name.endswith(".json"):
      continue
    with open(os.path.join(progress, name)) as f:
      part = json.load(f)
    if part["weights"] != spec.weights:
      raise ModelMismatchError(
        f"{out} holds an unfinished index by another model (weights "
        f"{part['weights']}, given {spec.weights}): finish it with that "
        "model, or choose a new --out."
      )
    rows = np.load(os.path.join(progress, name[: -len(".json")] + ".npy"))
    for file, stat, row in zip(part["files"], part["stats"], rows, strict=True):
      found[file] = (stat, row, None)
    for item in part["skipped"]:
      found[item["file"]] = (item["stat"], None, item["reason"])
  return found


def build(
  embed: Callable[[np.ndarray], Any],
  spec: embedder.EmbedderSpec,
  source: dict[str, str],
  folder: str,
  out: str,
  *,
  skip_bad_files: bool = False,
  part_size: int = PART_SIZE,
  batch_size: int = BATCH_SIZE,
  log: Callable[[str], None] = logging.info,
) -> Gallery:
  """Embeds every image under ``folder`` into the gallery ``out``.

  Args:
    embed: uint8 (batch_size, *spec.input_shape) -> (batch_size, D).
    spec: the embedder's spec.
    source: where the model came from, e.g. {"workdir": ...}, recorded.
    folder: the images.
    out: the gallery folder (created; resumed or updated if it exists).
    skip_bad_files: leave undecodable files out instead of failing.
    part_size: files per resumable part.
    batch_size: images per call of ``embed``.
    log: where progress lines go.

  Returns:
    The finished gallery.

  Raises:
    FileNotFoundError, ValueError: no folder, or no image in it.
    image_files.BadImagesError: undecodable files and not
      ``skip_bad_files`` (what was embedded is kept for the next try).
    ModelMismatchError: ``out`` was made by another model.
  """
  if jax.process_count() > 1:
    raise errors.InvalidInputError(
      "python -m proxy_nca_jax.index runs in one process."
    )
  files = image_files.list_images(folder)
  stats = {name: _file_stat(os.path.join(folder, name)) for name in files}
  os.makedirs(os.path.join(out, PROGRESS), exist_ok=True)
  known = _reusable(out, spec)
  todo = [name for name in files if known.get(name, (None,))[0] != stats[name]]
  log(
    f"{len(files)} image files under {folder}: {len(files) - len(todo)} "
    f"already embedded, {len(todo)} to embed."
  )
  progress = _Progress(len(todo), log)
  # Parts count once their listing exists; a lone array is overwritten.
  existing = sum(
    name.endswith(".json") for name in os.listdir(os.path.join(out, PROGRESS))
  )
  for number, start in enumerate(range(0, len(todo), part_size)):
    names = todo[start : start + part_size]
    rows, kept, bad = embed_files(
      embed, spec, folder, names, batch_size, progress.add
    )
    stem = os.path.join(out, PROGRESS, f"part-{existing + number:06d}")
    _write_npy(stem + ".npy", rows)
    _write_json(
      stem + ".json",
      {
        "weights": spec.weights,
        "files": kept,
        "stats": [stats[name] for name in kept],
        "skipped": [
          {"file": name, "reason": why, "stat": stats[name]}
          for name, why in bad
        ],
      },
    )
    for name, row in zip(kept, rows, strict=True):
      known[name] = (stats[name], row, None)
    for name, why in bad:
      known[name] = (stats[name], None, why)
  bad = [(name, known[name][2]) for name in files if known[name][1] is None]
  if bad and (not skip_bad_files or len(bad) == len(files)):
    raise image_files.BadImagesError(
      image_files.bad_files_message(folder, bad, len(files))
    )
  kept = [name for name in files if known[name][1] is not None]
  labels, classes = class_labels(kept)
  embeddings = np.lib.format.open_memmap(
    os.path.join(out, EMBEDDINGS + ".partial.npy"),
    mode="w+",
    dtype=np.float32,
    shape=(len(kept), spec.embedding_dim),
  )
  for i, name in enumerate(kept):
    embeddings[i] = known[name][1]
  embeddings.flush()
  del embeddings
  os.replace(
    os.path.join(out, EMBEDDINGS + ".partial.npy"),
    os.path.join(out, EMBEDDINGS),
  )
  _write_json(
    os.path.join(out, RECORD),
    {
      "format": FORMAT_VERSION,
      "images": os.path.abspath(folder),
      "files": kept,
      "labels": labels,
      "classes": classes,
      "stats": [stats[name] for name in kept],
      "skipped": [
        {"file": name, "reason": why, "stat": stats[name]} for name, why in bad
      ],
      "spec": dataclasses.asdict(spec),
      "source": source,
    },
  )
  shutil.rmtree(os.path.join(out, PROGRESS))
  return load(out)
