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
"""Tests of the class-disjoint input pipeline on a tiny Fashion-MNIST."""

import gzip
import itertools
import math
import pathlib
import shutil
import tempfile
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import absltest, parameterized

from configs import fashion_mnist
from proxy_nca_jax.data import network_inputs, pipeline

# Tiny dataset: 120 train + 80 test images, 20 per class. Pixel (0, 0) holds
# the example's id (train: its index, test: 120 + its index), so a batch can
# be traced back to the source arrays.
NUM_TRAIN, NUM_TEST = 120, 80
MEAN, STD = 0.2860, 0.3530


def write_idx(path: pathlib.Path, array: np.ndarray) -> None:
  """Writes a gzip-compressed IDX file of unsigned bytes."""
  header = bytes([0, 0, 8, array.ndim])
  header += np.asarray(array.shape, ">u4").tobytes()
  with gzip.open(path, "wb") as f:
    f.write(header + array.tobytes())


def make_source() -> tuple[np.ndarray, np.ndarray]:
  """Returns all images uint8 (200, 28, 28) and labels (200,), by id."""
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, size=(NUM_TRAIN + NUM_TEST, 28, 28))
  images = images.astype(np.uint8)
  images[:, 0, 0] = np.arange(NUM_TRAIN + NUM_TEST)
  labels = np.concatenate(
    [np.arange(NUM_TRAIN) % 10, np.arange(NUM_TEST) * 3 % 10]
  ).astype(np.uint8)
  return images, labels


def ids_of(images: np.ndarray) -> np.ndarray:
  """Recovers example ids from normalised images (b, 28, 28, 1)."""
  return np.rint((images[:, 0, 0, 0] * STD + MEAN) * 255).astype(int)


def take(iterator, n: int) -> list[dict[str, np.ndarray]]:
  return list(itertools.islice(iterator, n))


def flat(batches, key: str) -> np.ndarray:
  return np.concatenate([b[key] for b in batches])


class InputPipelineTest(parameterized.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = pathlib.Path(tempfile.mkdtemp())
    cls.images, cls.labels = make_source()
    manual = cls.tmp / "manual"
    manual.mkdir()
    for prefix, part in (
      ("train", slice(0, NUM_TRAIN)),
      ("t10k", slice(NUM_TRAIN, None)),
    ):
      write_idx(manual / f"{prefix}-images-idx3-ubyte.gz", cls.images[part])
      write_idx(manual / f"{prefix}-labels-idx1-ubyte.gz", cls.labels[part])
    pipeline.prepare_dataset(cls.config())

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp)
    super().tearDownClass()

  @classmethod
  def config(cls, **overrides):
    config = fashion_mnist.get_config().input
    config.data_dir = str(cls.tmp / "data")
    config.manual_dir = str(cls.tmp / "manual")
    config.batch_size = 4
    config.eval_batch_size = 8
    config.shuffle_buffer = 1000  # Whole epochs: each is a permutation.
    config.prefetch = 1
    for key, value in overrides.items():
      config[key] = value
    return config

  def ids_with_labels(self, classes) -> np.ndarray:
    return np.flatnonzero(np.isin(self.labels, classes))

  def test_train_batches_shapes_labels_and_values(self):
    config = self.config(
      train_classes=(4, 0, 2, 1, 3), val_classes=(2,), batch_size=8
    )
    batches = take(pipeline.create_train_iterator(config, seed=0), 30)
    for batch in batches:
      self.assertEqual(set(batch), {"image", "label"})
      self.assertEqual(batch["image"].shape, (8, 28, 28, 1))
      self.assertEqual(batch["image"].dtype, np.float32)
      self.assertEqual(batch["label"].shape, (8,))
      self.assertEqual(batch["label"].dtype, np.int32)
    ids = ids_of(flat(batches, "image"))
    # Classes 4, 0, 1, 3 (2 is held out) -> proxies 0, 1, 2, 3.
    remap = {4: 0, 0: 1, 1: 2, 3: 3}
    np.testing.assert_array_equal(
      flat(batches, "label"), [remap[c] for c in self.labels[ids]]
    )
    expected = (
      self.images[ids][..., None].astype(np.float64) / 255 - MEAN
    ) / STD
    np.testing.assert_allclose(flat(batches, "image"), expected, atol=1e-6)
    # 30 batches of 8 = 3 epochs of the 80 examples, each a permutation.
    train_ids = self.ids_with_labels((4, 0, 1, 3))
    self.assertLen(train_ids, 80)
    epochs = ids.reshape(3, 80)
    for epoch in epochs:
      self.assertCountEqual(epoch, train_ids)
    self.assertFalse(np.array_equal(epochs[0], epochs[1]))  # Reshuffled.

  def test_same_seed_same_batches_other_seed_differs(self):
    config = self.config()

    def labels_and_ids(seed):
      batches = take(pipeline.create_train_iterator(config, seed=seed), 40)
      return flat(batches, "label"), ids_of(flat(batches, "image"))

    first, again, other = (
      labels_and_ids(7),
      labels_and_ids(7),
      labels_and_ids(8),
    )
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_array_equal(first[0], again[0])
    self.assertFalse(np.array_equal(first[1], other[1]))
    self.assertCountEqual(first[1][:100], other[1][:100])  # Same epoch.

  @parameterized.parameters(1, 7, 24, 26, 61)
  def test_resume_yields_the_continuation(self, start_step):
    # 100 train examples, batch 4: 25 steps an epoch; 24 and 26 straddle it.
    config = self.config()
    full = take(pipeline.create_train_iterator(config, seed=3), start_step + 5)
    resumed = take(
      pipeline.create_train_iterator(config, seed=3, start_step=start_step),
      5,
    )
    for want, got in zip(full[start_step:], resumed, strict=True):
      np.testing.assert_array_equal(got["image"], want["image"])
      np.testing.assert_array_equal(got["label"], want["label"])

  def test_resume_does_not_decode_skipped_examples(self):
    decoded = tf.Variable(0, dtype=tf.int64)
    decode = network_inputs.decode_and_normalize

    def counting_decode(*args):
      fn = decode(*args)

      def counted(example):
        decoded.assign_add(1)
        return fn(example)

      return counted

    with mock.patch.object(
      network_inputs, "decode_and_normalize", counting_decode
    ):
      iterator = pipeline.create_train_iterator(
        self.config(), seed=0, start_step=100
      )
      take(iterator, 1)
    # 400 examples were skipped; only the batch and read-ahead are decoded.
    self.assertBetween(int(decoded.numpy()), 4, 100)

  @parameterized.parameters(2, 4)
  def test_process_shares_make_the_single_process_global_batches(
    self, process_count
  ):
    config = self.config(batch_size=4 * process_count)
    single = take(pipeline.create_train_iterator(config, seed=0), 30)
    shares = [
      take(
        pipeline.create_train_iterator(
          config, seed=0, process_index=index, process_count=process_count
        ),
        30,
      )
      for index in range(process_count)
    ]
    for step, whole in enumerate(single):
      parts = [share[step] for share in shares]
      self.assertEqual(parts[0]["image"].shape[0], 4)
      for key in ("image", "label"):
        np.testing.assert_array_equal(
          np.concatenate([part[key] for part in parts]), whole[key]
        )
    # Across 30 global batches of 4 * P images, every training image is read.
    ids = ids_of(flat(single, "image"))
    self.assertCountEqual(np.unique(ids), self.ids_with_labels(range(5)))

  @parameterized.product(
    split=("test", "val", "train"),
    process_count=(1, 2, 4),
    cap=(None, 13),
  )
  def test_eval_pads_every_process_to_the_same_batches(
    self, split, process_count, cap
  ):
    config = self.config(val_classes=(1, 3), max_eval_examples=cap)
    classes = {"test": (5, 6, 7, 8, 9), "val": (1, 3), "train": (0, 2, 4)}
    want_ids = self.ids_with_labels(classes[split])
    expected = len(want_ids) if cap is None else min(cap, len(want_ids))
    self.assertEqual(pipeline.num_examples(config, split), expected)
    per_process = []
    for index in range(process_count):
      per_process.append(
        list(
          pipeline.create_eval_iterator(
            config, split, process_index=index, process_count=process_count
          )
        )
      )
    self.assertEqual(
      [len(b) for b in per_process],
      [math.ceil(expected / 8)] * process_count,
    )
    ids = []
    for batches in per_process:
      for batch in batches:
        self.assertEqual(batch["image"].shape, (8 // process_count, 28, 28, 1))
        mask = batch["mask"]
        self.assertEqual(mask.dtype, bool)
        np.testing.assert_array_equal(batch["label"][~mask], -1)
        np.testing.assert_array_equal(batch["image"][~mask], 0)
        batch_ids = ids_of(batch["image"][mask])
        np.testing.assert_array_equal(
          batch["label"][mask], self.labels[batch_ids]
        )
        ids.extend(batch_ids)
    self.assertLen(ids, expected)
    self.assertLen(set(ids), expected)
    self.assertContainsSubset(ids, want_ids)
    if cap is not None:  # The same subset whatever the number of processes.
      single = pipeline.create_eval_iterator(config, split)
      single_ids = [i for b in single for i in ids_of(b["image"][b["mask"]])]
      self.assertCountEqual(single_ids, ids)

  def test_eval_sources_name_each_images_tfds_split(self):
    # tfds interleaves the pooled train and test files; ids say which file.
    config = self.config(eval_batch_size=16)
    names = pipeline.split_names(config)
    self.assertEqual(names, ("train", "test"))
    batches = list(
      pipeline.create_eval_iterator(config, "test", with_sources=True)
    )
    mask = flat(batches, "mask")
    sources = flat(batches, "source")
    np.testing.assert_array_equal(sources[~mask], -1)
    ids = ids_of(flat(batches, "image")[mask])
    want = np.where(ids >= NUM_TRAIN, names.index("test"), names.index("train"))
    np.testing.assert_array_equal(sources[mask], want)
    self.assertEqual(set(want), {0, 1})
    # The interleaving is real: the first train and test images alternate.
    self.assertFalse(np.all(np.diff(want) >= 0))
    plain = list(pipeline.create_eval_iterator(config, "test"))
    self.assertNotIn("source", plain[0])
    np.testing.assert_array_equal(flat(plain, "image"), flat(batches, "image"))

  def test_eval_values_are_normalised_like_training(self):
    (batch,) = list(
      pipeline.create_eval_iterator(self.config(eval_batch_size=128), "test")
    )
    self.assertEqual(batch["image"].dtype, np.float32)
    images = batch["image"][batch["mask"]]
    ids = ids_of(images)
    expected = (self.images[ids][..., None] / 255.0 - MEAN) / STD
    np.testing.assert_allclose(images, expected, atol=1e-6)
    self.assertLen(ids, 100)

  def test_num_classes(self):
    config = self.config(train_classes=(0, 1, 2, 3), val_classes=(1,))
    self.assertEqual(pipeline.num_classes(config, "train"), 3)
    self.assertEqual(pipeline.num_classes(config, "val"), 1)
    self.assertEqual(pipeline.num_classes(config, "test"), 5)

  @parameterized.named_parameters(
    (
      "overlap",
      dict(train_classes=(0, 1, 5)),
      r"share classes \[5\].*disjoint",
    ),
    ("val_not_in_train", dict(val_classes=(6,)), r"val_classes holds \[6\]"),
    ("val_is_all_train", dict(val_classes=(0, 1, 2, 3, 4)), "leave some"),
    ("out_of_range", dict(test_classes=(5, 10)), r"\[10\].*\[0, 10\)"),
    ("negative", dict(train_classes=(-1, 0)), r"\[-1\]"),
    ("empty_test", dict(test_classes=()), "must not be empty"),
    ("repeated", dict(train_classes=(0, 0, 1)), "repeats a class"),
    ("dataset", dict(dataset="mnist"), "'mnist' is not supported"),
  )
  def test_bad_class_config_raises(self, overrides, pattern):
    config = self.config(**overrides)
    with self.assertRaisesRegex(ValueError, pattern):
      pipeline.num_classes(config, "train")
    with self.assertRaisesRegex(ValueError, pattern):
      pipeline.create_train_iterator(config, seed=0)
    with self.assertRaisesRegex(ValueError, pattern):
      pipeline.create_eval_iterator(config, "test")

  def test_batch_not_divisible_by_processes_raises(self):
    config = self.config(batch_size=6, eval_batch_size=10)
    with self.assertRaisesRegex(
      ValueError,
      r"input.batch_size=6 is not divisible by the 4 processes; set "
      r"--config.input.batch_size to a multiple of 4 \(e.g. 8\)",
    ):
      pipeline.create_train_iterator(
        config, seed=0, process_index=1, process_count=4
      )
    with self.assertRaisesRegex(ValueError, "input.eval_batch_size=10"):
      pipeline.create_eval_iterator(
        config, "test", process_index=1, process_count=4
      )
    with self.assertRaisesRegex(ValueError, r"process_index=2 is not in"):
      pipeline.create_train_iterator(
        config, seed=0, process_index=2, process_count=2
      )

  def test_empty_val_split_raises(self):
    with self.assertRaisesRegex(ValueError, "val_classes is empty"):
      pipeline.create_eval_iterator(self.config(), "val")
    with self.assertRaisesRegex(ValueError, "split='valid'"):
      pipeline.num_examples(self.config(), "valid")

  def test_unprepared_dataset_raises_dataset_error(self):
    config = self.config()
    config.data_dir = str(self.tmp / "empty")
    with self.assertRaisesRegex(
      pipeline.DatasetError, "not prepared.*prepare_dataset"
    ):
      pipeline.create_train_iterator(config, seed=0)

  def check_balanced(self, batch, classes_per_batch, m, train_classes):
    """Asserts the batch holds m images of each of classes_per_batch classes.

    Returns the batch's example ids.
    """
    ids = ids_of(batch["image"])
    labels = batch["label"]
    self.assertLen(ids, classes_per_batch * m)
    self.assertLen(set(ids), len(ids))  # No image twice in a batch.
    np.testing.assert_array_equal(
      labels, [train_classes.index(c) for c in self.labels[ids]]
    )
    # Blocks of m consecutive images of one class, classes all distinct.
    blocks = labels.reshape(classes_per_batch, m)
    np.testing.assert_array_equal(blocks, blocks[:, :1].repeat(m, axis=1))
    self.assertLen(set(blocks[:, 0]), classes_per_batch)
    return ids

  @parameterized.parameters((8, 2), (8, 4), (6, 3), (4, 1))
  def test_balanced_batches_hold_m_images_of_batch_over_m_classes(
    self, batch_size, m
  ):
    train_classes = (4, 0, 2, 1, 3)
    config = self.config(
      train_classes=train_classes,
      val_classes=(2,),
      batch_size=batch_size,
      samples_per_class=m,
    )
    trained = [c for c in train_classes if c != 2]
    batches = take(pipeline.create_train_iterator(config, seed=0), 60)
    for batch in batches:
      self.assertEqual(batch["image"].dtype, np.float32)
      self.assertEqual(batch["label"].dtype, np.int32)
      self.check_balanced(batch, batch_size // m, m, trained)
    # Pixel values are those of the source images.
    ids = ids_of(flat(batches, "image"))
    expected = (
      self.images[ids][..., None].astype(np.float64) / 255 - MEAN
    ) / STD
    np.testing.assert_allclose(flat(batches, "image"), expected, atol=1e-6)
    # Every class and most images of the training classes get drawn.
    self.assertCountEqual(np.unique(flat(batches, "label")), range(4))
    train_ids = self.ids_with_labels(trained)
    self.assertContainsSubset(ids, train_ids)
    self.assertGreater(len(np.unique(ids)), 0.7 * len(train_ids))

  def test_balanced_batches_depend_on_the_seed_only(self):
    config = self.config(batch_size=8, samples_per_class=2)

    def ids(seed):
      batches = take(pipeline.create_train_iterator(config, seed=seed), 20)
      return ids_of(flat(batches, "image"))

    np.testing.assert_array_equal(ids(5), ids(5))
    self.assertFalse(np.array_equal(ids(5), ids(6)))

  @parameterized.parameters(1, 7, 30)
  def test_balanced_resume_yields_the_continuation(self, start_step):
    config = self.config(batch_size=8, samples_per_class=4)
    full = take(pipeline.create_train_iterator(config, seed=3), start_step + 4)
    resumed = take(
      pipeline.create_train_iterator(config, seed=3, start_step=start_step),
      4,
    )
    for want, got in zip(full[start_step:], resumed, strict=True):
      np.testing.assert_array_equal(got["image"], want["image"])
      np.testing.assert_array_equal(got["label"], want["label"])

  @parameterized.parameters((4, 3), (2, 4), (3, 6))
  def test_balanced_process_rows_make_the_single_process_batches(
    self, process_count, m
  ):
    # (2, 4) and (3, 6): a process's rows cut a class's block of m.
    config = self.config(batch_size=12, samples_per_class=m)
    single = take(pipeline.create_train_iterator(config, seed=1), 20)
    shares = [
      take(
        pipeline.create_train_iterator(
          config, seed=1, process_index=index, process_count=process_count
        ),
        20,
      )
      for index in range(process_count)
    ]
    for step, whole in enumerate(single):
      self.check_balanced(whole, 12 // m, m, list(range(5)))
      for key in ("image", "label"):
        np.testing.assert_array_equal(
          np.concatenate([share[step][key] for share in shares]), whole[key]
        )

  @parameterized.named_parameters(
    (
      "not_a_divisor",
      dict(batch_size=8, samples_per_class=3),
      "does not divide input.batch_size=8",
    ),
    ("negative", dict(samples_per_class=-1), "integer >= 0"),
    (
      "too_many_classes",
      dict(batch_size=12, samples_per_class=2),
      r"asks for 6 classes.*only 5 train classes",
    ),
    (
      "class_smaller_than_m",
      dict(batch_size=21, samples_per_class=21),
      r"asks for 1 classes.*only 0 train classes have 21",
    ),
  )
  def test_bad_samples_per_class_raises(self, overrides, pattern):
    config = self.config(**overrides)
    with self.assertRaisesRegex(ValueError, pattern):
      take(pipeline.create_train_iterator(config, seed=0), 1)

  def test_samples_per_class_defaults_to_plain_batches(self):
    self.assertEqual(fashion_mnist.get_config().input.samples_per_class, 0)


if __name__ == "__main__":
  absltest.main()
