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
"""Fashion-MNIST built from its four IDX files (tfds name `fashion_mnist_idx`).

The stock tfds `fashion_mnist` builder checks the SHA-256 of the downloaded
archives, so it rejects the copies of the Debian package
`dataset-fashion-mnist`, which are re-compressed (same content, different
bytes). This builder reads the IDX files from `dl_manager.manual_dir` instead
and validates their content (magic numbers, sizes, label range). When the
builder is constructed with `download=True`, files missing from the manual
folder are fetched from Zalando's site; the prepared data is the same either
way, so this is a constructor argument, not a `BuilderConfig`.

Example:

  builder = tfds.builder('fashion_mnist_idx', data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          manual_dir='/usr/share/datasets/fashion-mnist'))
"""

import gzip
import zlib
from collections.abc import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from proxy_nca_jax import errors
from proxy_nca_jax.data.builders import grey_png

URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# Split name -> (images file, labels file), as named by Zalando and Debian.
FILENAMES: Mapping[str, tuple[str, str]] = {
  "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
ALL_FILENAMES: tuple[str, ...] = tuple(
  name for pair in FILENAMES.values() for name in pair
)
CLASS_NAMES: tuple[str, ...] = (
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
)
IMAGE_SHAPE = (28, 28, 1)
# IDX header: two zero bytes, a type code (0x08: unsigned byte), the number
# of dimensions, then one big-endian uint32 per dimension.
_IDX_UBYTE = 0x08

_CITATION = """\
@article{xiao2017fashion,
  author  = {Han Xiao and Kashif Rasul and Roland Vollgraf},
  title   = {Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
             Learning Algorithms},
  journal = {CoRR},
  volume  = {abs/1708.07747},
  year    = {2017},
}
"""


class MissingFilesError(errors.MissingFileError):
  """The IDX files are not in the manual folder and downloading is off."""


def missing_files(manual_dir: epath.PathLike | None) -> tuple[str, ...]:
  """Returns the names of the IDX files that `manual_dir` lacks.

  Args:
    manual_dir: folder expected to hold the four `*-ubyte.gz` files; `None`
      means no folder, so all files are missing.

  Returns:
    The missing file names, in the order of `ALL_FILENAMES` (empty if none).
  """
  if manual_dir is None:
    return ALL_FILENAMES
  folder = epath.Path(manual_dir)
  return tuple(name for name in ALL_FILENAMES if not (folder / name).exists())


def read_idx(path: epath.PathLike, *, ndim: int) -> np.ndarray:
  """Reads a gzip-compressed IDX file of unsigned bytes.

  Args:
    path: the `.gz` file.
    ndim: the number of dimensions the file must have (3 for images, 1 for
      labels).

  Returns:
    uint8 array with the shape stored in the header, e.g. (n, 28, 28).

  Raises:
    ValueError: naming the file, if it is not gzip, is truncated or corrupt,
      or its header does not match its content.
  """
  path = epath.Path(path)
  try:
    with path.open("rb") as f, gzip.GzipFile(fileobj=f) as gz:
      data = gz.read()
  except (EOFError, gzip.BadGzipFile, zlib.error) as e:
    raise errors.InvalidInputError(
      f"{path}: not a complete gzip file ({e}); the file is truncated or "
      "corrupt, replace it."
    ) from e
  header_size = 4 + 4 * ndim
  if len(data) < header_size:
    raise errors.InvalidInputError(
      f"{path}: {len(data)} bytes after decompression, too short for an IDX "
      f"header of {header_size} bytes; the file is truncated or corrupt."
    )
  magic = (data[0], data[1], data[2], data[3])
  if magic != (0, 0, _IDX_UBYTE, ndim):
    raise errors.InvalidInputError(
      f"{path}: bad IDX magic number {data[:4].hex()} (expected "
      f"0000{_IDX_UBYTE:02x}{ndim:02x}: unsigned bytes, {ndim} dimensions)."
    )
  shape = tuple(
    int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4)
  )
  expected = int(np.prod(shape))
  if len(data) - header_size != expected:
    raise errors.InvalidInputError(
      f"{path}: the header announces shape {shape} ({expected} bytes) but "
      f"the file holds {len(data) - header_size} bytes of data; the file is "
      "truncated or corrupt."
    )
  return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def read_split(
  images_path: epath.PathLike, labels_path: epath.PathLike
) -> tuple[np.ndarray, np.ndarray]:
  """Reads and cross-checks one split's image and label files.

  Args:
    images_path: `*-images-idx3-ubyte.gz`.
    labels_path: `*-labels-idx1-ubyte.gz`.

  Returns:
    `(images, labels)`: uint8 arrays of shapes (n, 28, 28) and (n,).

  Raises:
    ValueError: naming the file at fault, for corrupt files, images that are
      not 28x28, labels out of range, or different example counts.
  """
  images = read_idx(images_path, ndim=3)
  labels = read_idx(labels_path, ndim=1)
  if images.shape[1:] != IMAGE_SHAPE[:2]:
    raise errors.InvalidInputError(
      f"{images_path}: images of shape {images.shape[1:]}, expected "
      f"{IMAGE_SHAPE[:2]}."
    )
  if len(labels) != len(images):
    raise errors.InvalidInputError(
      f"{labels_path} holds {len(labels)} labels but {images_path} holds "
      f"{len(images)} images."
    )
  if len(labels) and labels.max() >= len(CLASS_NAMES):
    raise errors.InvalidInputError(
      f"{labels_path}: label {labels.max()} out of range "
      f"[0, {len(CLASS_NAMES)})."
    )
  return images, labels


class FashionMnistIdx(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST from the original IDX files, with each example's index."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
  Put the four Fashion-MNIST IDX files ({", ".join(ALL_FILENAMES)}) in the
  manual folder, either with `apt-get install dataset-fashion-mnist` (they
  land in /usr/share/datasets/fashion-mnist, pass that folder as
  `manual_dir`) or by copying them there from {URL}. Alternatively construct
  the builder with `download=True` to fetch missing files from that site.
  """

  def __init__(self, *, download: bool = False, **kwargs):
    """Constructs the builder.

    Args:
      download: fetch the IDX files the manual folder lacks from Zalando's
        site instead of failing.
      **kwargs: passed to `tfds.core.GeneratorBasedBuilder`.
    """
    super().__init__(**kwargs)
    self._download = download
    # tfds re-creates unpickled builders from `_original_state`.
    self._original_state = dict(self._original_state, download=download)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        "Fashion-MNIST (Zalando article images, 28x28 grey levels, 10 "
        "classes) read from the original IDX files; `index` is the "
        "example's position in its file."
      ),
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=IMAGE_SHAPE),
          "label": tfds.features.ClassLabel(names=CLASS_NAMES),
          "index": tfds.features.Scalar(dtype=np.int64),
        }
      ),
      supervised_keys=("image", "label"),
      homepage="https://github.com/zalandoresearch/fashion-mnist",
      citation=_CITATION,
    )

  def _split_generators(
    self, dl_manager: tfds.download.DownloadManager
  ) -> dict[str, Iterator[tuple[int, dict[str, object]]]]:
    try:
      manual_dir = dl_manager.manual_dir
    except AssertionError as e:  # tfds: folder absent or empty.
      if not self._download:
        raise MissingFilesError(
          f"{e}\nOr construct the builder with download=True."
        ) from None
      manual_dir = None
    missing = missing_files(manual_dir)
    if missing and not self._download:
      raise MissingFilesError(
        f"{manual_dir} lacks {', '.join(missing)}.\n"
        f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
      )
    paths = {
      name: manual_dir / name for name in ALL_FILENAMES if name not in missing
    }
    if missing:
      logging.info("Downloading %s from %s", ", ".join(missing), URL)
      paths.update(dl_manager.download({name: URL + name for name in missing}))
    return {
      split: self._generate_examples(paths[images], paths[labels])
      for split, (images, labels) in FILENAMES.items()
    }

  def _generate_examples(
    self, images_path: epath.Path, labels_path: epath.Path
  ) -> Iterator[tuple[int, dict[str, object]]]:
    images, labels = read_split(images_path, labels_path)
    logging.info("Read %d examples from %s", len(images), images_path)
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
      png = grey_png.encode(image, IMAGE_SHAPE)
      yield index, {"image": png, "label": label, "index": index}
