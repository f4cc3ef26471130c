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
"""Generated stand-ins for image datasets: encoded images and mocked tfds.

`encode` writes a uint8 array as PNG or JPEG bytes with PIL.
`id_image` is a constant-colour image whose red and green values hold an
example id (red = id % 256, green = id // 256, blue = 7): constant images
stay constant through resizing and cropping, so the id can be read back
from a preprocessed image. `mocked_dataset` serves given examples as a
prepared tfds dataset of the real name and features, through
`tfds.testing.mock_data`: nothing is downloaded or built.
"""

import contextlib
import io
import pathlib
from collections.abc import Iterator
from unittest import mock

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.testing import test_utils

BLUE = 7


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
  """uint8 (H, W, 3) -> encoded bytes ('PNG' or 'JPEG')."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, fmt)
  return buffer.getvalue()


def id_image(example_id: int, shape: tuple[int, int] = (6, 8)) -> np.ndarray:
  """uint8 (H, W, 3), constant colour (id % 256, id // 256, BLUE)."""
  color = (example_id % 256, example_id // 256, BLUE)
  return np.broadcast_to(np.array(color, np.uint8), (*shape, 3)).copy()


def ids_from_bn_inception(images: np.ndarray) -> np.ndarray:
  """Reads ids back from (b, H, W, 3) images in the BN-Inception convention.

  BGR minus (104, 117, 128): red = channel 2 + 128, green = channel 1 + 117.
  """
  red = np.rint(images[:, :, :, 2].mean(axis=(1, 2)) + 128).astype(int)
  green = np.rint(images[:, :, :, 1].mean(axis=(1, 2)) + 117).astype(int)
  return red + 256 * green


@contextlib.contextmanager
def mocked_dataset(
  name: str,
  data_dir: pathlib.Path,
  splits: dict[str, dict[str, list]],
) -> Iterator[None]:
  """Serves `splits` as the prepared tfds dataset `name` in `data_dir`.

  Writes the real builder's metadata (features from tfds's code, split
  sizes from `splits`) where tfds looks for a prepared dataset, then mocks
  reading: `as_dataset` yields the given examples, split by split in the
  order of a 'train+test' request.

  Args:
    name: a tfds dataset name, e.g. 'cars196'.
    data_dir: the tfds data folder.
    splits: tfds split name -> {feature name: one value per example};
      'image' holds encoded bytes.
  """
  builder = tfds.builder(name, data_dir=data_dir)
  builder.info.set_splits(
    tfds.core.SplitDict(
      [
        tfds.core.SplitInfo(
          name=split, shard_lengths=[len(columns["image"])], num_bytes=0
        )
        for split, columns in splits.items()
      ]
    )
  )
  builder.data_path.mkdir(parents=True, exist_ok=True)
  builder.info.write_to_directory(builder.data_path)

  def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
    del self, decoders, read_config, kwargs  # The examples are served as is.
    parts = [splits[part] for part in str(split).split("+")]
    columns = {
      key: [value for part in parts for value in part[key]] for key in parts[0]
    }
    return tf.data.Dataset.from_tensor_slices(columns)

  # mock_data also swaps in a mock filesystem (every absolute path moved
  # under /tmp/mocked_file_system) while `as_dataset` builds a dataset; that
  # is process-wide, so files written meanwhile by another thread (orbax's
  # asynchronous checkpoint save) would land there. The metadata is really
  # on disk here, so the real filesystem is kept.
  with (
    tfds.testing.mock_data(
      policy=tfds.testing.MockPolicy.USE_FILES,
      data_dir=str(data_dir),
      as_dataset_fn=as_dataset,
    ),
    mock.patch.object(test_utils, "MockFs", _RealFs),
  ):
    yield


class _RealFs:
  """Stands in for tfds's MockFs: the real filesystem, no-op `add_file`."""

  def __enter__(self) -> "_RealFs":
    return self

  def __exit__(self, *exc_info) -> None:
    del exc_info

  def add_file(self, path: str) -> None:
    del path
