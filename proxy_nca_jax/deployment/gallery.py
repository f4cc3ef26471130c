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

A gallery is a folder G (its files: gallery_files.py): the float32 (N, D)
unit-norm embeddings, row i of ``files[i]``, memory-mapped when opened,
and ``G/gallery.json``: ``files`` (paths relative to ``images``),
``labels`` and ``classes`` (class-per-folder names, or null), the model's
``spec`` (embedder.py) and ``source`` (its workdir or exported file),
``skipped`` files that cannot be read or decoded, each file's size and
modification time, and the counts and hashes that `load` checks. A gallery
is replaced atomically: a killed index leaves the old one or the new one.

Files are listed and decoded as data/image_files.py says (`raw_pixels`: the
model's input size). A file's class is the name of the folder holding it,
when every file is in a subfolder (``ROOT/CLASS/IMAGE``, also
``ROOT/SPLIT/CLASS/IMAGE``); otherwise the gallery has no labels.

Indexing holds the folder's lock (workdir_lock.py) and is resumable and
incremental. Embeddings are kept in parts under ``G/progress/``, one every
`PART_SIZE` files (whole batches) or `PART_SECONDS` seconds, whichever
comes first; a killed index continues after its last part. A rebuild of a
finished gallery with the same model embeds only files that are new or
whose size or modification time changed, and drops files that are gone; a
damaged gallery is rebuilt from scratch.
"""

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from proxy_nca_jax import durations, errors, workdir_lock
from proxy_nca_jax.data import image_files
from proxy_nca_jax.deployment import embedder, gallery_files

# A part every PART_SIZE files or PART_SECONDS seconds, whichever first.
PART_SIZE = 4096
PART_SECONDS = 30.0
# Images per call of the embedder.
BATCH_SIZE = 64
# Seconds between progress lines.
_REPORT_EVERY_S = 10.0
# What is known of a file: ([size, mtime_ns] or None, its embedding or
# None, why it could not be embedded or None).
_Known = tuple[list[int] | None, np.ndarray | None, str | None]


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
  """Opens a finished gallery, checked (embeddings memory-mapped).

  The embeddings file is read once to check its hash (search reads all of
  it anyway).

  Raises:
    errors.MissingFileError: ``path`` holds no finished gallery.
    gallery_files.DamagedGalleryError: its files disagree, named.
  """
  record = gallery_files.read_record(path)
  embeddings = gallery_files.open_embeddings(path, record)
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


def _file_stat(folder: str, name: str) -> tuple[list[int] | None, str]:
  """([size, mtime_ns], "") of a file, or (None, why it cannot be read)."""
  path = os.path.join(folder, name)
  try:
    stat = os.stat(path)
  except OSError as error:
    if isinstance(error, FileNotFoundError) and os.path.islink(path):
      return None, f"dangling symbolic link to {os.readlink(path)}"
    return None, image_files.decode_error_reason(error)
  return [stat.st_size, stat.st_mtime_ns], ""


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
  max_image_pixels: int = image_files.MAX_IMAGE_PIXELS,
) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
  """Embeds image files in uint8 batches of ``batch_size`` (padded).

  Args:
    embed: uint8 (batch_size, *spec.input_shape) -> (batch_size, D).
    spec: the embedder's spec (input shape, embedding size).
    folder: where ``names`` are.
    names: the files, relative to ``folder``.
    batch_size: images per call of ``embed``.
    on_batch: told how many files each batch covered (progress).
    max_image_pixels: larger images are refused (``image_files``).

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
          os.path.join(folder, name), spec.input_shape, max_image_pixels
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


def _reusable(out: str, spec: embedder.EmbedderSpec) -> dict[str, _Known]:
  """What ``out`` already holds of this model's embeddings, by file: its
  gallery (unless damaged: then nothing of it; its skipped files are not
  kept), then its parts (an unfinished run's, skipped files included).

  Raises:
    ModelMismatchError: ``out`` holds a gallery or parts of another model.
  """
  found: dict[str, _Known] = {}
  if os.path.isfile(os.path.join(out, gallery_files.RECORD)):
    try:
      old = load(out)
    except gallery_files.DamagedGalleryError as error:
      logging.warning(
        "The gallery %s is damaged (%s): embedding every file again.",
        out,
        error.problem,
      )
    else:
      old.check_model(spec)
      for name, stat, row in zip(
        old.files, old.record["stats"], old.embeddings, strict=True
      ):
        found[name] = (stat, row, None)
      # Its skipped files are tried again: a new run may be given a larger
      # --max_image_pixels, or the file may have been mended in place.
  for part, rows in gallery_files.read_parts(out):
    if part["weights"] != spec.weights:
      raise ModelMismatchError(
        f"{out} holds an unfinished index by another model (weights "
        f"{part['weights']}, given {spec.weights}): finish it with that "
        "model, or choose a new --out."
      )
    for file, stat, row in zip(part["files"], part["stats"], rows, strict=True):
      found[file] = (stat, row, None)
    for item in part["skipped"]:
      found[item["file"]] = (item["stat"], None, item["reason"])
  return found


def _skipped(names: Sequence[str], known: dict[str, _Known]) -> list[Any]:
  return [
    {"file": name, "reason": known[name][2], "stat": known[name][0]}
    for name in names
  ]


def _write_part(
  out: str,
  spec: embedder.EmbedderSpec,
  names: list[str],
  known: dict[str, _Known],
) -> None:
  """Keeps what is known of ``names`` as a part of the progress."""
  kept = [name for name in names if known[name][1] is not None]
  rows = np.zeros((len(kept), spec.embedding_dim), np.float32)
  for i, name in enumerate(kept):
    rows[i] = known[name][1]
  gallery_files.write_part(
    out,
    rows,
    {
      "weights": spec.weights,
      "files": kept,
      "stats": [known[name][0] for name in kept],
      "skipped": _skipped([n for n in names if n not in kept], known),
    },
  )


def build(
  embed: Callable[[np.ndarray], Any],
  spec: embedder.EmbedderSpec,
  source: dict[str, str],
  folder: str,
  out: str,
  *,
  skip_bad_files: bool = False,
  part_size: int = PART_SIZE,
  part_seconds: float = PART_SECONDS,
  batch_size: int = BATCH_SIZE,
  max_image_pixels: int = image_files.MAX_IMAGE_PIXELS,
  log: Callable[[str], None] = logging.info,
) -> Gallery:
  """Embeds every image under ``folder`` into the gallery ``out``.

  Args:
    embed: uint8 (batch_size, *spec.input_shape) -> (batch_size, D).
    spec: the embedder's spec.
    source: where the model came from, e.g. {"workdir": ...}, recorded.
    folder: the images.
    out: the gallery folder (created; resumed or updated if it exists).
    skip_bad_files: leave files that cannot be read or decoded out instead
      of failing.
    part_size: files per resumable part (rounded up to whole batches).
    part_seconds: seconds of embedding after which a part is kept sooner.
    batch_size: images per call of ``embed``.
    max_image_pixels: larger images are refused (``image_files``).
    log: where progress lines go.

  Returns:
    The finished gallery.

  Raises:
    FileNotFoundError, ValueError: no folder, or no image in it.
    errors.InvalidInputError: another index is writing ``out``.
    image_files.BadImagesError: files that cannot be read or decoded and
      not ``skip_bad_files`` (what was embedded is kept for the next try).
    ModelMismatchError: ``out`` was made by another model.
  """
  if jax.process_count() > 1:
    raise errors.InvalidInputError(
      "python -m proxy_nca_jax.index runs in one process."
    )
  files = image_files.list_images(folder)
  with workdir_lock.hold(out, "is indexing into", "--out"):
    gallery_files.remove_temporaries(out)
    known = _reusable(out, spec)
    for name in files:
      stat, why = _file_stat(folder, name)
      if stat is None:
        known[name] = (None, None, why)
      elif known.get(name, (None,))[0] != stat:
        known[name] = (stat, None, None)  # To embed.
    todo = [
      name
      for name in files
      if known[name][0] is not None
      and known[name][1] is None
      and known[name][2] is None
    ]
    log(
      f"{len(files)} image files under {folder}: {len(files) - len(todo)} "
      f"already embedded or skipped, {len(todo)} to embed."
    )
    progress, part, kept_at = _Progress(len(todo), log), [], time.monotonic()
    for start in range(0, len(todo), batch_size):
      names = todo[start : start + batch_size]
      rows, kept, bad = embed_files(
        embed,
        spec,
        folder,
        names,
        batch_size,
        progress.add,
        max_image_pixels,
      )
      for name, row in zip(kept, rows, strict=True):
        known[name] = (known[name][0], row, None)
      for name, why in bad:
        known[name] = (known[name][0], None, why)
      part.extend(names)
      if (
        len(part) >= part_size
        or start + batch_size >= len(todo)
        or time.monotonic() - kept_at >= part_seconds
      ):
        _write_part(out, spec, part, known)
        part, kept_at = [], time.monotonic()
    bad = [name for name in files if known[name][1] is None]
    if bad and (not skip_bad_files or len(bad) == len(files)):
      raise image_files.BadImagesError(
        image_files.bad_files_message(
          folder, [(name, known[name][2]) for name in bad], len(files)
        )
      )
    kept = [name for name in files if known[name][1] is not None]
    labels, classes = class_labels(kept)
    gallery_files.publish(
      out,
      [known[name][1] for name in kept],
      spec.embedding_dim,
      {
        "images": os.path.abspath(folder),
        "files": kept,
        "labels": labels,
        "classes": classes,
        "stats": [known[name][0] for name in kept],
        "skipped": _skipped(bad, known),
        "spec": dataclasses.asdict(spec),
        "source": source,
      },
    )
  return load(out)
