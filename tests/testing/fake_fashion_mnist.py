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
"""Tiny generated Fashion-MNIST stand-ins, written as gzip'd IDX files.

Each image is a class-specific stripe pattern plus noise, so a network can
learn to tell classes apart in a few steps, and every image is distinct.
"""

import gzip
import pathlib

import numpy as np

IDX_FILES = {
  "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def write_idx(path: pathlib.Path, array: np.ndarray) -> None:
  """Writes a gzip'd IDX file of unsigned bytes (big-endian dimensions)."""
  header = bytes([0, 0, 0x08, array.ndim])
  header += np.asarray(array.shape, ">u4").tobytes()
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def class_images(labels: np.ndarray, seed: int) -> np.ndarray:
  """uint8 images (n, 28, 28): class c lights rows c, c + 10 and c + 20."""
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 96, size=(len(labels), 28, 28))
  for i, label in enumerate(labels):
    images[i, label::10, :] += 128
  images[:, 0, 0] = np.arange(len(labels)) % 256  # Every image distinct.
  return images.astype(np.uint8)


def write_fake_fashion_mnist(
  folder: pathlib.Path, *, per_class: dict[str, int], seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Writes the four IDX files with ``per_class[split]`` images per class.

  Returns:
    split -> (images uint8 (n, 28, 28), labels uint8 (n,)) as written.
  """
  folder.mkdir(parents=True, exist_ok=True)
  arrays = {}
  for offset, (split, (images_name, labels_name)) in enumerate(
    IDX_FILES.items()
  ):
    labels = np.tile(np.arange(10), per_class[split]).astype(np.uint8)
    images = class_images(labels, seed + offset)
    write_idx(folder / images_name, images)
    write_idx(folder / labels_name, labels)
    arrays[split] = (images, labels)
  return arrays
