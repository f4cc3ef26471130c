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
"""Users' own images, one folder per class (`tfds.folder_dataset.ImageFolder`).

Layouts: `ROOT/SPLIT/CLASS/IMAGE.{jpg,jpeg,png}` (tfds's), any split names
(e.g. a single `ROOT/all/`), or the flat `ROOT/CLASS/IMAGE` (every
sub-folder of ROOT holds images and no folder), read as one split `all`
through a folder holding a link `all -> ROOT` (`layout_root`). The pipeline
pools every split and splits by class, so SPLIT only groups files. Class ids
are the positions of the class folder names in sorted order, over all
splits.

`check_folder` validates the layout and every image file before anything
reads them: a class folder without images, images put directly in a split
folder, empty or unreadable files, images the size policy refuses (too
small or too large, data/image_files.py) are each one error that names the
folders or files at fault. Images are opened and verified with PIL (header
and structure; PNG checksums); damage that only a full decode finds (a
truncated JPEG) is reported, by file name, when the pipeline decodes it.

The builder reads the files' bytes; `decode_rgb` decodes them in the
pipeline with `image_files.decode_image`, the decoder of `index` and
`search`: EXIF orientation, 16-bit scaling and transparency are the same
for training, evaluation and search.
"""

import dataclasses
import hashlib
import os
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from proxy_nca_jax.data import catalog, image_files

# The one split of a flat ROOT/CLASS/IMAGE folder.
FLAT_SPLIT = "all"
# What tfds's ImageFolder reads; other files are ignored (and reported).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Files listed in an error message before "... and N more".
_MAX_LISTED = 10


@dataclasses.dataclass(frozen=True)
class FolderContents:
  """What `check_folder` found.

  Attributes:
    class_names: sorted class folder names (class id = position).
    num_images: number of images per class, in class id order.
  """

  class_names: tuple[str, ...]
  num_images: tuple[int, ...]


def _listing(paths: list[str]) -> str:
  shown = "\n  ".join(paths[:_MAX_LISTED])
  more = len(paths) - _MAX_LISTED
  return f"  {shown}" + (f"\n  ... and {more} more" if more > 0 else "")


def _is_image(path: epath.Path) -> bool:
  return path.suffix.lower() in IMAGE_SUFFIXES


def _unreadable_reason(path: epath.Path) -> str | None:
  """Why PIL cannot read `path` as an image or the size policy refuses it,
  or None."""
  try:
    if path.stat().length == 0:
      return "empty file"
    with path.open("rb") as f, image_files.open_image(f) as image:
      image_files.check_image_size(image.size)
      image.verify()
  except Exception as e:  # PIL raises many kinds.
    return f"{type(e).__name__}: {e}"
  return None


def _visible_dirs(folder: epath.Path) -> list[epath.Path]:
  return sorted(
    p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
  )


def is_flat(root: str) -> bool:
  """Whether ``root`` is laid out ROOT/CLASS/IMAGE: no visible sub-folder
  holds a folder, and one at least holds images."""
  classes = _visible_dirs(epath.Path(root))
  return (
    bool(classes)
    and not any(_visible_dirs(c) for c in classes)
    and any(_is_image(p) for c in classes for p in c.iterdir())
  )


def layout_root(root: str) -> str:
  """The ROOT/SPLIT/CLASS/IMAGE folder to read for ``root``: itself, or for
  a flat ``root`` a folder (under the temporary folder, one per ``root``)
  whose one split `FLAT_SPLIT` links to it."""
  if not root or not epath.Path(root).is_dir() or not is_flat(root):
    return root
  target = os.path.abspath(root)
  key = hashlib.sha256(target.encode()).hexdigest()[:16]
  view = os.path.join(tempfile.gettempdir(), "proxy_nca_jax_folders", key)
  link = os.path.join(view, FLAT_SPLIT)
  if os.path.realpath(link) != os.path.realpath(target):
    os.makedirs(view, exist_ok=True)
    partial = f"{link}.{os.getpid()}"
    os.symlink(target, partial)
    os.replace(partial, link)  # Atomic: concurrent processes agree.
  return view


def _split_folders(root: str | None) -> list[epath.Path]:
  """The split folders of `root`, after checking the top of the layout.

  Raises:
    DatasetError: no folder given or found, images directly in `root`, or
      no sub-folders.
  """
  if not root:
    raise catalog.DatasetError(
      "input.dataset='image_folder' reads images from input.image_folder, "
      "which is empty; pass --config.input.image_folder=ROOT with images "
      "in ROOT/SPLIT/CLASS/IMAGE.jpg (e.g. ROOT/all/cat/1.jpg)."
    )
  folder = epath.Path(root)
  if not folder.is_dir():
    raise catalog.DatasetError(
      f"input.image_folder={root} is not a folder; it must hold images in "
      "ROOT/SPLIT/CLASS/IMAGE.jpg (e.g. ROOT/all/cat/1.jpg)."
    )
  split_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
  if stray := sorted(str(p) for p in folder.iterdir() if _is_image(p)):
    raise catalog.DatasetError(
      f"{root} holds images directly:\n{_listing(stray)}\nThe layout is "
      "ROOT/SPLIT/CLASS/IMAGE: put each class's images in "
      "ROOT/all/CLASS/."
    )
  if not split_dirs:
    raise catalog.DatasetError(
      f"{root} has no sub-folders; the layout is ROOT/SPLIT/CLASS/IMAGE "
      "(e.g. ROOT/all/cat/1.jpg)."
    )
  return split_dirs


@dataclasses.dataclass(frozen=True)
class _FolderScan:
  """Every file under the split folders, sorted into what `check_folder` needs.

  Attributes:
    counts: class folder name -> images, summed over the splits.
    empty: class folders without images.
    flat: images directly in a split folder.
    ignored: files that are not images (by suffix).
    unreadable: images PIL cannot read or the size policy refuses, each
      with the reason.
  """

  counts: dict[str, int]
  empty: list[str]
  flat: list[str]
  ignored: list[str]
  unreadable: list[str]


def _scan_splits(split_dirs: list[epath.Path]) -> _FolderScan:
  """Lists and verifies (with PIL) every image of every class folder."""
  counts: dict[str, int] = {}
  empty, flat, ignored, unreadable = [], [], [], []
  for split_dir in split_dirs:
    flat += [str(p) for p in split_dir.iterdir() if _is_image(p)]
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
      files = sorted(p for p in class_dir.iterdir() if p.is_file())
      images = [p for p in files if _is_image(p)]
      ignored += [str(p) for p in files if not _is_image(p)]
      counts[class_dir.name] = counts.get(class_dir.name, 0) + len(images)
      if not images:
        empty.append(str(class_dir))
      for path in images:
        if reason := _unreadable_reason(path):
          unreadable.append(f"{path} ({reason})")
  return _FolderScan(counts, empty, flat, ignored, unreadable)


def check_folder(root: str | None) -> FolderContents:
  """Validates an image folder and returns its classes.

  Args:
    root: the folder `ROOT` of `ROOT/SPLIT/CLASS/IMAGE` or
      `ROOT/CLASS/IMAGE`.

  Returns:
    The class names (sorted) and image counts.

  Raises:
    DatasetError: no folder given or found, a wrong layout, a class folder
      without images, or files that are not readable images or have a size
      the decoding policy refuses; the message names them.
  """
  if root and epath.Path(root).is_dir() and is_flat(root):
    split_dirs = [epath.Path(root)]  # ROOT/CLASS/IMAGE: one split.
  else:
    split_dirs = _split_folders(root)
  scan = _scan_splits(split_dirs)
  if scan.flat:
    raise catalog.DatasetError(
      f"Images directly in a split folder of {root}, beside class folders "
      "(the layout is ROOT/CLASS/IMAGE or ROOT/SPLIT/CLASS/IMAGE, one or the "
      f"other; move these into class folders):\n{_listing(scan.flat)}"
    )
  if not scan.counts:
    raise catalog.DatasetError(
      f"{root} has no class folders; the layout is ROOT/SPLIT/CLASS/IMAGE "
      "(e.g. ROOT/all/cat/1.jpg)."
    )
  if scan.empty:
    raise catalog.DatasetError(
      f"Class folders without images ({', '.join(IMAGE_SUFFIXES)}) in "
      f"{root}:\n{_listing(scan.empty)}\nAdd images or remove the folders."
    )
  if scan.unreadable:
    raise catalog.DatasetError(
      f"{len(scan.unreadable)} file(s) in {root} are not readable images "
      "or have a refused size:\n"
      f"{_listing(scan.unreadable)}\nReplace or remove them."
    )
  if scan.ignored:
    logging.warning(
      "Ignoring %d file(s) of %s that are not %s, e.g. %s",
      len(scan.ignored),
      root,
      "/".join(IMAGE_SUFFIXES),
      scan.ignored[0],
    )
  names = tuple(sorted(scan.counts))
  return FolderContents(
    class_names=names,
    num_images=tuple(scan.counts[n] for n in names),
  )


def builder(root: str) -> tfds.folder_dataset.ImageFolder:
  """tfds's reader of `root` (call `check_folder` first); a flat `root` is
  read as the one split `FLAT_SPLIT`."""
  return tfds.folder_dataset.ImageFolder(layout_root(root))


def _decoded_rgb(encoded: bytes | np.ndarray) -> np.ndarray:
  if isinstance(encoded, np.ndarray):  # Run eagerly: a 0-d object array.
    encoded = encoded.item()
  try:
    return image_files.decode_image(encoded, channels=3)
  except image_files.DECODE_ERRORS as error:
    # A ValueError, which tf.data raises as the InvalidArgumentError that
    # bad_images.py turns into a message naming the file.
    raise image_files.BadImagesError(
      image_files.decode_error_reason(error)
    ) from error


def decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
  """An image file's bytes (string) -> uint8 (H, W, 3), in a tf.data map.

  `image_files.decode_image`, the one decoder of image files (its policy:
  EXIF orientation, 16-bit scaling, transparency on white, size limits).

  Raises:
    tf.errors.InvalidArgumentError: (when run) the file cannot be decoded
      or is refused.
  """
  image = tf.numpy_function(_decoded_rgb, [encoded], tf.uint8, stateful=False)
  image.set_shape([None, None, 3])
  return image
