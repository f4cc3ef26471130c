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
"""Tests of the `fashion_mnist_idx` tfds builder and of `prepare_dataset`."""

import gzip
import pathlib
import shutil
import tempfile
import time
from unittest import mock

import numpy as np
import pytest
import tensorflow_datasets as tfds
from absl import logging
from absl.testing import absltest, parameterized

from configs import fashion_mnist
from proxy_nca_jax.data import pipeline
from proxy_nca_jax.data.builders import fashion_mnist_idx

DEBIAN_DIR = pathlib.Path(fashion_mnist.DEBIAN_FASHION_MNIST_DIR)
NAMES = {
  "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SIZES = {"train": 30, "test": 20}


def write_idx(path: pathlib.Path, array: np.ndarray, type_code: int = 8):
  """Writes a gzip-compressed IDX file (big-endian dimensions)."""
  header = bytes([0, 0, type_code, array.ndim])
  header += np.asarray(array.shape, ">u4").tobytes()
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def tiny_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Split -> (images uint8 (n, 28, 28), labels uint8 (n,)), all distinct."""
  rng = np.random.default_rng(0)
  arrays = {}
  for split, n in SIZES.items():
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)  # Makes every image distinct.
    labels = (np.arange(n) * (3 if split == "test" else 1) % 10).astype(
      np.uint8
    )
    arrays[split] = (images, labels)
  return arrays


def write_tiny_files(folder: pathlib.Path, arrays) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  for split, (images_name, labels_name) in NAMES.items():
    images, labels = arrays[split]
    write_idx(folder / images_name, images)
    write_idx(folder / labels_name, labels)


def read_split(builder, split: str) -> dict[str, np.ndarray]:
  """All examples of `split`, sorted by `index`."""
  ds = builder.as_dataset(split=split, shuffle_files=False).batch(100_000)
  (batch,) = list(tfds.as_numpy(ds))
  order = np.argsort(batch["index"])
  return {k: v[order] for k, v in batch.items()}


def input_config(data_dir, manual_dir, download=False):
  config = fashion_mnist.get_config().input
  config.data_dir = str(data_dir)
  config.manual_dir = str(manual_dir)
  config.download = download
  return config


class FashionMnistIdxTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    self.tmp = pathlib.Path(self.enterContext(tempfile.TemporaryDirectory()))
    self.manual = self.tmp / "manual"
    self.arrays = tiny_arrays()
    write_tiny_files(self.manual, self.arrays)

  def test_builder_round_trips_images_labels_and_index(self):
    builder = tfds.builder("fashion_mnist_idx", data_dir=self.tmp / "data")
    self.assertIsInstance(builder, fashion_mnist_idx.FashionMnistIdx)
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=self.manual)
    )
    self.assertEqual(str(builder.version), "1.0.0")
    self.assertEqual(builder.info.features["label"].num_classes, 10)
    self.assertEqual(builder.info.features["label"].int2str(9), "Ankle boot")
    for split, (images, labels) in self.arrays.items():
      self.assertEqual(builder.info.splits[split].num_examples, SIZES[split])
      got = read_split(builder, split)
      np.testing.assert_array_equal(got["index"], np.arange(SIZES[split]))
      self.assertEqual(got["image"].dtype, np.uint8)
      np.testing.assert_array_equal(got["image"], images[..., None])
      np.testing.assert_array_equal(got["label"], labels)

  def _corrupt(self, kind: str) -> tuple[pathlib.Path, str]:
    """Damages one tiny file; returns it and a regex of the expected error."""
    images, labels = self.arrays["train"]
    if kind == "truncated_gzip":
      path = self.manual / "train-images-idx3-ubyte.gz"
      path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
      return path, "not a complete gzip file"
    if kind == "short_payload":
      path = self.manual / "train-images-idx3-ubyte.gz"
      data = gzip.decompress(path.read_bytes())
      path.write_bytes(gzip.compress(data[:-100]))
      return path, r"announces shape \(30, 28, 28\).*holds 23420 bytes"
    if kind == "bad_magic":
      path = self.manual / "t10k-images-idx3-ubyte.gz"
      write_idx(path, self.arrays["test"][0], type_code=9)
      return path, "bad IDX magic number 00000903"
    if kind == "label_out_of_range":
      path = self.manual / "t10k-labels-idx1-ubyte.gz"
      write_idx(path, np.full(SIZES["test"], 10, np.uint8))
      return path, r"label 10 out of range \[0, 10\)"
    path = self.manual / "train-labels-idx1-ubyte.gz"
    write_idx(path, labels[:-1])
    return path, "holds 29 labels but .* holds 30 images"

  @parameterized.parameters(
    "truncated_gzip",
    "short_payload",
    "bad_magic",
    "label_out_of_range",
    "count_mismatch",
  )
  def test_corrupt_file_names_the_file_and_leaves_no_junk(self, kind):
    path, pattern = self._corrupt(kind)
    data_dir = self.tmp / "data"
    with self.assertRaisesRegex(ValueError, pattern) as cm:
      pipeline.prepare_dataset(input_config(data_dir, self.manual))
    self.assertIn(str(path), str(cm.exception))
    self.assertFalse(data_dir.exists(), list(data_dir.rglob("*")))

  def test_failure_keeps_what_was_in_data_dir(self):
    data_dir = self.tmp / "data"
    (data_dir / "other").mkdir(parents=True)
    (data_dir / "other" / "keep.txt").write_text("x")
    write_idx(self.manual / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with self.assertRaises(ValueError):
      pipeline.prepare_dataset(input_config(data_dir, self.manual))
    self.assertEqual(
      sorted(p.relative_to(data_dir) for p in data_dir.rglob("*")),
      [pathlib.Path("other"), pathlib.Path("other/keep.txt")],
    )

  @parameterized.named_parameters(
    ("missing_folder", "nowhere", fashion_mnist_idx.ALL_FILENAMES),
    ("missing_one_file", "manual", ("t10k-labels-idx1-ubyte.gz",)),
  )
  def test_missing_files_give_dataset_error_with_instructions(
    self, folder, missing
  ):
    manual = self.tmp / folder
    if folder == "manual":
      for name in missing:
        (manual / name).unlink()
    data_dir = self.tmp / "data"
    with self.assertRaises(pipeline.DatasetError) as cm:
      pipeline.prepare_dataset(input_config(data_dir, manual))
    message = str(cm.exception)
    self.assertIn(f"looked in {manual} for", message)
    self.assertIn(f"missing: {', '.join(missing)}.", message)
    for name in fashion_mnist_idx.ALL_FILENAMES:
      self.assertIn(name, message)
    self.assertIn("apt-get install dataset-fashion-mnist", message)
    self.assertIn("--config.input.manual_dir=DIR", message)
    self.assertIn("--config.input.download=True", message)
    self.assertFalse(data_dir.exists())

  def test_builder_without_files_or_download_raises(self):
    builder = tfds.builder("fashion_mnist_idx", data_dir=self.tmp / "data")
    with self.assertRaisesRegex(
      fashion_mnist_idx.MissingFilesError, "download=True"
    ) as cm:
      builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
          manual_dir=self.tmp / "nowhere"
        )
      )
    self.assertIn(str(self.tmp / "nowhere"), str(cm.exception))
    self.assertIn("apt-get install dataset-fashion-mnist", str(cm.exception))

  @parameterized.named_parameters(
    ("no_folder", "nowhere", fashion_mnist_idx.ALL_FILENAMES),
    ("two_files", "manual", NAMES["train"]),
  )
  def test_download_fetches_only_missing_files(self, folder, expected):
    if folder == "manual":
      for name in NAMES["train"]:
        (self.manual / name).rename(self.tmp / name)
    else:
      for name in fashion_mnist_idx.ALL_FILENAMES:
        shutil.copy(self.manual / name, self.tmp / name)
    requested = []

    def fake_download(_, urls):
      requested.extend(urls.values())
      return {key: self.tmp / key for key in urls}

    with mock.patch.object(
      tfds.download.DownloadManager, "download", fake_download
    ):
      config = input_config(self.tmp / "data", self.tmp / folder, True)
      pipeline.prepare_dataset(config)
    self.assertCountEqual(
      requested,
      [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/" + n
        for n in expected
      ],
    )
    builder = tfds.builder("fashion_mnist_idx", data_dir=self.tmp / "data")
    np.testing.assert_array_equal(
      read_split(builder, "train")["label"], self.arrays["train"][1]
    )

  def test_prepare_dataset_is_idempotent(self):
    config = input_config(self.tmp / "data", self.manual)
    pipeline.prepare_dataset(config)
    records = sorted((self.tmp / "data").rglob("*.tfrecord*"))
    self.assertLen(records, 2)
    mtimes = [p.stat().st_mtime_ns for p in records]
    shutil.rmtree(self.manual)  # Not needed once prepared.
    start = time.perf_counter()
    pipeline.prepare_dataset(config)
    self.assertLess(time.perf_counter() - start, 1.0)
    self.assertEqual([p.stat().st_mtime_ns for p in records], mtimes)

  def test_incomplete_dataset_folder_raises(self):
    version_dir = self.tmp / "data" / "fashion_mnist_idx" / "1.0.0"
    version_dir.mkdir(parents=True)
    with self.assertRaisesRegex(
      pipeline.DatasetError, f"{version_dir} exists .* delete it"
    ):
      pipeline.prepare_dataset(input_config(self.tmp / "data", self.manual))

  @pytest.mark.slow
  def test_real_debian_files(self):
    missing = [
      n
      for n in fashion_mnist_idx.ALL_FILENAMES
      if not (DEBIAN_DIR / n).exists()
    ]
    self.assertEmpty(
      missing,
      f"{DEBIAN_DIR} lacks {missing}: apt-get install dataset-fashion-mnist "
      "(the project's test command does).",
    )
    data_dir = self.tmp / "data"
    start = time.perf_counter()
    pipeline.prepare_dataset(input_config(data_dir, DEBIAN_DIR))
    logging.info(
      "Prepared the real files in %.1f s", time.perf_counter() - start
    )
    builder = tfds.builder("fashion_mnist_idx", data_dir=data_dir)
    for split, per_class in (("train", 6000), ("test", 1000)):
      self.assertEqual(builder.info.splits[split].num_examples, 10 * per_class)
      got = read_split(builder, split)
      np.testing.assert_array_equal(got["index"], np.arange(10 * per_class))
      np.testing.assert_array_equal(
        np.bincount(got["label"], minlength=10), [per_class] * 10
      )
      # Independent IDX read: 16-byte header for images, 8 for labels.
      images_name, labels_name = NAMES[split]
      with gzip.open(DEBIAN_DIR / images_name) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16)
      with gzip.open(DEBIAN_DIR / labels_name) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
      np.testing.assert_array_equal(got["label"], labels)
      np.testing.assert_array_equal(
        got["image"], images.reshape(10 * per_class, 28, 28, 1)
      )


if __name__ == "__main__":
  absltest.main()
