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
"""What each supported dataset is made of, and what preparing it needs.

`traits(dataset)` says how the pipeline treats any supported dataset's
examples, as data rather than branches: the feature holding the class id,
whether its images are grey levels normalised by pixel statistics (and
augmented by grey_augmentation.py) or colour images prepared by the
``input.color`` convention (rgb_preprocessing.py), and the image shape.

One `DatasetSpec` per paper dataset: the feature holding the class id, the
source files tfds reads (file names, URLs, sizes as registered in tfds 4.9), the
Python modules its builder needs, and the paper's class split with the image
counts it gives. tfds splits CUB-200-2011 and Cars196 by image; the
pipeline pools every split and splits by class, so the counts below are the
images of the first `paper_num_train_classes` class ids and of the others.

tfds takes a source file from `manual_dir` (under its registered name)
before trying its URL, so the files below, placed in `input.manual_dir`,
prepare a dataset offline. tfds checks their SHA-256 against the registered
checksums: they must be the original archives.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

from proxy_nca_jax import errors

FASHION_MNIST = "fashion_mnist_idx"
IMAGE_FOLDER = "image_folder"
GLYPHS = "glyphs"  # GLYPHS-ZS, rendered from local fonts (glyphs.py).


class DatasetError(errors.InvalidInputError):
  """The dataset is not prepared, its files are missing or unreadable."""


@dataclasses.dataclass(frozen=True)
class SourceFile:
  """A file a tfds builder reads, as tfds registers it."""

  filename: str
  url: str
  size: str  # Human-readable, for messages.


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A tfds dataset of the paper's benchmarks.

  Attributes:
    name: the tfds name.
    title: the dataset's usual name, for messages.
    label_key: the feature holding the class id.
    filename_key: a feature naming the example's source file (for errors
      about an image), or None.
    files: what `manual_dir` must hold to prepare it offline.
    modules: Python modules the tfds builder imports while preparing, with
      the pip package that provides each.
    note: extra advice shown when the files are missing.
    paper_num_train_classes: the paper's split: class ids below this train,
      the others test.
    paper_num_examples: (images of the train classes, of the test classes)
      under the paper's split.
  """

  name: str
  title: str
  label_key: str
  filename_key: str | None
  files: tuple[SourceFile, ...]
  modules: tuple[tuple[str, str], ...]
  note: str
  paper_num_train_classes: int
  paper_num_examples: tuple[int, int]


SPECS: dict[str, DatasetSpec] = {
  "caltech_birds2011": DatasetSpec(
    name="caltech_birds2011",
    title="CUB-200-2011",
    label_key="label",
    filename_key="image/filename",
    files=(
      SourceFile(
        "CUB_200_2011.tgz",
        "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
        "1.1 GB",
      ),
      SourceFile(
        "segmentations.tgz",
        "https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz",
        "39 MB",
      ),
    ),
    modules=(("cv2", "opencv-python-headless"),),
    note="",
    paper_num_train_classes=100,
    paper_num_examples=(5_864, 5_924),
  ),
  "cars196": DatasetSpec(
    name="cars196",
    title="Cars196 (Stanford Cars)",
    label_key="label",
    filename_key="id",
    files=(
      SourceFile(
        "cars_train.tgz",
        "http://ai.stanford.edu/~jkrause/car196/cars_train.tgz",
        "979 MB",
      ),
      SourceFile(
        "cars_test.tgz",
        "http://ai.stanford.edu/~jkrause/car196/cars_test.tgz",
        "977 MB",
      ),
      SourceFile(
        "cars_test_annos_withlabels.mat",
        "http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat",
        "186 kB",
      ),
      SourceFile(
        "car_devkit.tgz",
        "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
        "331 kB",
      ),
    ),
    modules=(("scipy", "scipy"),),
    note=(
      "The Stanford URLs have answered 404 since 2023 (tensorflow/datasets "
      "issues 4932 and 5053): download=True cannot fetch them; get the "
      "original files from a mirror."
    ),
    paper_num_train_classes=98,
    paper_num_examples=(8_054, 8_131),
  ),
  "stanford_online_products": DatasetSpec(
    name="stanford_online_products",
    title="Stanford Online Products",
    label_key="class_id",
    filename_key=None,
    files=(
      SourceFile(
        "Stanford_Online_Products.zip",
        "ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip",
        "3.1 GB",
      ),
    ),
    modules=(),
    note=(
      "tfds's 'train' and 'test' splits (Ebay_train.txt, Ebay_test.txt) "
      "are already class-disjoint: class ids 0-11317 and 11318-22633."
    ),
    paper_num_train_classes=11_318,
    paper_num_examples=(59_551, 60_502),
  ),
}

SUPPORTED = (FASHION_MNIST, GLYPHS, *SPECS, IMAGE_FOLDER)


@dataclasses.dataclass(frozen=True)
class ImageTraits:
  """How the pipeline reads and prepares one dataset's examples.

  Attributes:
    label_key: the feature holding the class id.
    pixel_stats: (mean, std) of the pixels scaled to [0, 1], for grey-level
      datasets, whose network input is ``(x / 255 - mean) / std``; None for
      colour datasets (``input.color``, rgb_preprocessing.py).
    image_shape: (H, W, C) when the dataset fixes it, else None: square
      images whose side is the ``input`` config field `size_field`.
    size_field: the dotted ``input`` field holding the side.
  """

  label_key: str = "label"
  pixel_stats: tuple[float, float] | None = None
  image_shape: tuple[int, int, int] | None = None
  size_field: str = "image_size"

  @property
  def grey(self) -> bool:
    """Grey levels normalised by pixel statistics (else colour)."""
    return self.pixel_stats is not None

  def shape(self, input_config: Mapping[str, Any]) -> tuple[int, int, int]:
    """(H, W, C) of the network's input images under ``input_config``."""
    if self.image_shape is not None:
      return self.image_shape
    section = input_config
    *parents, field = self.size_field.split(".")
    for parent in parents:
      section = section[parent]
    side = section[field]
    return (side, side, 1 if self.grey else 3)


_TRAITS: dict[str, ImageTraits] = {
  # Fashion-MNIST's training images: mean and std of x / 255.
  FASHION_MNIST: ImageTraits(
    pixel_stats=(0.2860, 0.3530), image_shape=(28, 28, 1)
  ),
  # The default GLYPHS-ZS build's 'train' split (docs/datasets.md).
  GLYPHS: ImageTraits(
    pixel_stats=(0.2438, 0.3837), size_field="glyphs.image_size"
  ),
  IMAGE_FOLDER: ImageTraits(),
  **{
    name: ImageTraits(label_key=spec.label_key) for name, spec in SPECS.items()
  },
}


def traits(dataset: str) -> ImageTraits:
  """The `ImageTraits` of a supported ``input.dataset``.

  Raises:
    ValueError: an unsupported dataset.
  """
  if dataset not in _TRAITS:
    raise errors.InvalidInputError(
      f"input.dataset={dataset!r} is not supported; use one of: "
      f"{', '.join(sorted(SUPPORTED))}."
    )
  return _TRAITS[dataset]
