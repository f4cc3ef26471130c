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
"""Class-disjoint (zero-shot) input pipeline over a prepared tfds dataset.

All images of the builder's 'train' and 'test' splits are pooled, then split
by class (the paper's protocol: test classes are never seen in training):

* 'train': `train_classes` minus `val_classes`; for training, labels are
  remapped to 0..C-1 in the order of `train_classes` (they index the proxies).
* 'val': `val_classes` (held-out train classes, for model selection).
* 'test': `test_classes`.

Evaluation iterators keep the original class ids (0..9 for Fashion-MNIST).

Training: shuffle (seeded, reshuffled each epoch) -> repeat -> skip (resume)
-> decode + normalise -> batch (this process's share of the global batch,
`drop_remainder`) -> prefetch. Images stay PNG-encoded until after the skip,
so resuming at step s costs a pass over s batches of strings, not decodes.

Class-balanced training (`samples_per_class` m > 0, for the losses mined in
the batch): every global batch holds batch_size / m distinct classes with m
images each, drawn without replacement within the batch, from the classes
with at least m images. Global batch s is a pure function of (seed, s)
(stateless random numbers): resuming at step s starts there directly, and
every process computes it and keeps its rows, as for random batches. Each
process holds the encoded training images in memory.

Evaluation: one pass, no shuffle, fixed per-process batches; the last batch
is padded (`mask` False, `label` -1) so every process runs the same number of
batches.

Call `prepare_dataset(config.input)` once (on process 0 when processes share
`data_dir`) before creating iterators. The tf.data work runs on the CPU.
"""

import functools
import math
import numbers
from collections.abc import Callable, Iterator, Sequence

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from proxy_nca_jax import augmentations
from proxy_nca_jax.datasets import (
  fashion_mnist_idx,  # Registers it.
  glyphs,  # Registers it.
)

# The builder splits pooled before splitting by class.
_SOURCE_SPLIT = "train+test"
# Per dataset: mean and standard deviation of the pixels (scaled to [0, 1])
# of the training images; `(x / 255 - mean) / std`.
_PIXEL_STATS = {
  "fashion_mnist_idx": (0.2860, 0.3530),
  "glyphs": (glyphs.PIXEL_MEAN, glyphs.PIXEL_STD),
}
_SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
  """The dataset is not prepared, or the files to prepare it are missing."""


def _builder(
  input_config: ml_collections.ConfigDict,
) -> tfds.core.DatasetBuilder:
  """Returns the (maybe unprepared) builder named by `input_config`."""
  if input_config.dataset not in _PIXEL_STATS:
    raise ValueError(
      f"input.dataset={input_config.dataset!r} is not supported; use one "
      f"of: {', '.join(sorted(_PIXEL_STATS))}."
    )
  if input_config.dataset == "glyphs":
    kwargs = {"config": glyphs.builder_config(input_config.glyphs)}
  else:
    kwargs = {"download": input_config.download}
  return tfds.builder(
    input_config.dataset, data_dir=input_config.data_dir, **kwargs
  )


def _is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
  # `is_prepared` alone logs a warning when the folder does not exist yet.
  return builder.data_path.exists() and builder.is_prepared()


def _prepared_builder(
  input_config: ml_collections.ConfigDict,
) -> tfds.core.DatasetBuilder:
  builder = _builder(input_config)
  if not _is_prepared(builder):
    raise DatasetError(
      f"Dataset {builder.name} is not prepared in {builder.data_dir_root}; "
      "call input_pipeline.prepare_dataset(config.input) first."
    )
  return builder


def _missing_files_message(
  input_config: ml_collections.ConfigDict, missing: Sequence[str]
) -> str:
  folder = input_config.manual_dir or "(input.manual_dir is empty)"
  return (
    f"Fashion-MNIST IDX files not found: looked in {folder} for "
    f"{', '.join(fashion_mnist_idx.ALL_FILENAMES)}; missing: "
    f"{', '.join(missing)}. Do one of:\n"
    "  * apt-get install dataset-fashion-mnist (installs them in "
    "/usr/share/datasets/fashion-mnist);\n"
    "  * copy the four files into a folder DIR and pass "
    "--config.input.manual_dir=DIR;\n"
    "  * pass --config.input.download=True to fetch them from "
    f"{fashion_mnist_idx.URL}."
  )


def prepare_dataset(input_config: ml_collections.ConfigDict) -> None:
  """Builds the tfds dataset into `input_config.data_dir` unless it is there.

  Idempotent: returns at once when the dataset is already prepared (the
  source files are then not needed). On failure, the folders this call
  created (`data_dir` itself, the dataset's folder, tfds's `downloads`) are
  removed, so a retry starts clean.

  Args:
    input_config: the `config.input` section; reads `dataset`, `data_dir`,
      `manual_dir` and `download`.

  Raises:
    DatasetError: the IDX files are not in `manual_dir` and `download` is
      False; the message says where it looked and what to do.
    ValueError: an unsupported dataset, or corrupt source files (the message
      names the file).
  """
  builder = _builder(input_config)
  if _is_prepared(builder):
    logging.info("Reusing %s in %s", builder.name, builder.data_dir)
    return
  if builder.data_path.exists():
    raise DatasetError(
      f"{builder.data_path} exists but holds no complete dataset (no "
      "dataset_info.json), maybe from an interrupted run; delete it and retry."
    )
  manual_dir = input_config.manual_dir or None
  missing = ()
  if input_config.dataset == "fashion_mnist_idx":
    missing = fashion_mnist_idx.missing_files(manual_dir)
  if missing and not input_config.download:
    raise DatasetError(_missing_files_message(input_config, missing))
  root = epath.Path(builder.data_dir_root)
  maybe_created = (root, root / builder.name, root / "downloads")
  created = [path for path in maybe_created if not path.exists()]
  logging.info(
    "Preparing %s in %s from %s%s",
    builder.name,
    builder.data_dir,
    manual_dir,
    " (downloading missing files)" if missing else "",
  )
  try:
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
  except BaseException as e:
    for path in created:
      if path.exists():
        logging.info("Removing %s after the failure to prepare", path)
        path.rmtree()
    if isinstance(e, fashion_mnist_idx.MissingFilesError):
      raise DatasetError(_missing_files_message(input_config, missing)) from e
    raise


def _split_classes(
  input_config: ml_collections.ConfigDict, num_labels: int
) -> dict[str, tuple[int, ...]]:
  """Validates the class lists and returns the classes of each split."""
  lists = {}
  for field in ("train_classes", "test_classes", "val_classes"):
    classes = tuple(input_config[field])
    bad = [
      c
      for c in classes
      if isinstance(c, bool)
      or not isinstance(c, numbers.Integral)
      or not 0 <= c < num_labels
    ]
    if bad:
      raise ValueError(
        f"input.{field} holds {bad}, not class ids of {input_config.dataset} "
        f"(integers in [0, {num_labels}))."
      )
    if len(set(classes)) != len(classes):
      raise ValueError(f"input.{field}={classes} repeats a class.")
    lists[field] = tuple(int(c) for c in classes)
  train, test, val = (
    lists["train_classes"],
    lists["test_classes"],
    lists["val_classes"],
  )
  if not train or not test:
    raise ValueError(
      "input.train_classes and input.test_classes must not be empty "
      f"(got {train} and {test})."
    )
  if overlap := sorted(set(train) & set(test)):
    raise ValueError(
      f"input.train_classes and input.test_classes share classes {overlap}; "
      "the protocol is zero-shot, so they must be disjoint."
    )
  if outside := sorted(set(val) - set(train)):
    raise ValueError(
      f"input.val_classes holds {outside}, not in input.train_classes="
      f"{train}; validation classes are held-out train classes."
    )
  train_only = tuple(c for c in train if c not in val)
  if not train_only:
    raise ValueError(
      f"input.val_classes={val} holds all of input.train_classes; leave some "
      "classes to train on."
    )
  return {"train": train_only, "val": val, "test": test}


def _classes_of(
  input_config: ml_collections.ConfigDict,
  builder: tfds.core.DatasetBuilder,
  split: str,
) -> tuple[int, ...]:
  if split not in _SPLITS:
    raise ValueError(f"split={split!r}; use one of {_SPLITS}.")
  num_labels = builder.info.features["label"].num_classes
  return _split_classes(input_config, num_labels)[split]


def num_classes(input_config: ml_collections.ConfigDict, split: str) -> int:
  """Returns the number of classes of `split` ('train', 'val' or 'test').

  'train' counts `train_classes` minus `val_classes`: the number of proxies.
  """
  return len(_classes_of(input_config, _builder(input_config), split))


def _per_process_batch(
  global_batch: int, field: str, process_index: int, process_count: int
) -> int:
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(
      f"process_index={process_index} is not in [0, process_count="
      f"{process_count})."
    )
  if global_batch < 1:
    raise ValueError(f"input.{field}={global_batch} must be positive.")
  if global_batch % process_count:
    suggestion = math.ceil(global_batch / process_count) * process_count
    raise ValueError(
      f"input.{field}={global_batch} is not divisible by the {process_count} "
      f"processes; set --config.input.{field} to a multiple of "
      f"{process_count} (e.g. {suggestion})."
    )
  return global_batch // process_count


def _read(builder: tfds.core.DatasetBuilder, split: str) -> tf.data.Dataset:
  """Reads `split` in a fixed order, images left PNG-encoded."""
  options = tf.data.Options()
  options.deterministic = True
  return builder.as_dataset(
    split=split,
    shuffle_files=False,
    decoders={"image": tfds.decode.SkipDecoding()},
    read_config=tfds.ReadConfig(
      try_autocache=False, skip_prefetch=True, options=options
    ),
  )


def _decode_and_normalize(
  builder: tfds.core.DatasetBuilder, dataset: str
) -> Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]:
  """Returns a map function: PNG bytes -> float32 (28, 28, 1) normalised."""
  image_feature = builder.info.features["image"]
  mean, std = _PIXEL_STATS[dataset]

  def fn(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    image = tf.cast(image_feature.decode_example(example["image"]), tf.float32)
    return {**example, "image": (image / 255.0 - mean) / std}

  return fn


def image_shape(input_config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """(height, width, channels) of the images of `input_config.dataset`."""
  return tuple(_builder(input_config).info.features["image"].shape)


def _lookup(table: np.ndarray, labels: tf.Tensor) -> tf.Tensor:
  """Returns `table[labels]`: maps class ids through a per-class table."""
  return tf.gather(tf.constant(table), labels)


def _samples_per_class(
  input_config: ml_collections.ConfigDict, global_batch: int
) -> int:
  """Validates `input.samples_per_class` against the global batch."""
  m = input_config.samples_per_class
  if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 0:
    raise ValueError(
      f"input.samples_per_class={m!r} must be an integer >= 0 (0: plain "
      "random batches)."
    )
  if m and global_batch % m:
    raise ValueError(
      f"input.samples_per_class={m} does not divide input.batch_size="
      f"{global_batch}; use a divisor of it."
    )
  return int(m)


def _balanced_examples(
  builder: tfds.core.DatasetBuilder,
  table: np.ndarray,
  *,
  global_batch: int,
  samples_per_class: int,
  seed: int,
  start_step: int,
  first: int,
  batch: int,
) -> tf.data.Dataset:
  """Encoded examples of rows [first, first + batch) of balanced batches.

  Global batch s, for s = start_step, ...: global_batch / m distinct classes
  (among those with m or more images) in an order drawn from (seed, s), and
  m distinct images of each, drawn from (seed, s) as well. Every process
  computes the same global batch and keeps its rows.
  """
  m = samples_per_class
  num_slots = global_batch // m
  parts = list(_read(builder, _SOURCE_SPLIT).batch(8192).as_numpy_iterator())
  images = np.concatenate([p["image"] for p in parts])
  labels = table[np.concatenate([p["label"] for p in parts])]
  counts = np.bincount(labels[labels >= 0], minlength=table.max() + 1)
  eligible = np.flatnonzero(counts >= m)
  if len(eligible) < num_slots:
    raise ValueError(
      f"input.samples_per_class={m} asks for {num_slots} classes per batch "
      f"(input.batch_size / {m}), but only {len(eligible)} train classes "
      f"have {m} or more images; lower batch_size or raise samples_per_class."
    )
  members = [np.flatnonzero(labels == c) for c in eligible]
  sizes = np.array([len(rows) for rows in members])
  rows = np.zeros((len(eligible), sizes.max()), np.int64)
  for i, class_rows in enumerate(members):
    rows[i, : len(class_rows)] = class_rows
  images, labels = tf.constant(images), tf.constant(labels, tf.int32)
  rows, sizes = tf.constant(rows), tf.constant(sizes, tf.int64)

  def examples_of_step(step: tf.Tensor) -> dict[str, tf.Tensor]:
    step_seed = tf.stack([tf.constant(seed, tf.int64), step])
    fold = tf.random.experimental.stateless_fold_in
    class_scores = tf.random.stateless_uniform(
      [len(eligible)], seed=fold(step_seed, 0, alg="philox"), alg="philox"
    )
    chosen = tf.argsort(class_scores, stable=True)[:num_slots]
    # m distinct images per class: the m lowest random scores of its rows.
    image_scores = tf.random.stateless_uniform(
      [num_slots, rows.shape[1]],
      seed=fold(step_seed, 1, alg="philox"),
      alg="philox",
    )
    in_class = (
      tf.range(rows.shape[1], dtype=tf.int64)[None, :]
      < tf.gather(sizes, chosen)[:, None]
    )
    image_scores = tf.where(in_class, image_scores, 2.0)
    picks = tf.argsort(image_scores, axis=1, stable=True)[:, :m]
    index = tf.gather(tf.gather(rows, chosen), picks, batch_dims=1)
    index = tf.reshape(index, [-1])[first : first + batch]
    return {
      "image": tf.gather(images, index),
      "label": tf.gather(labels, index),
    }

  ds = tf.data.Dataset.counter(start_step).map(examples_of_step)
  return ds.unbatch()


def create_train_iterator(
  input_config: ml_collections.ConfigDict,
  *,
  seed: int,
  start_step: int = 0,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """Returns an endless iterator over this process's training batches.

  Random batches: every process runs the same shuffled stream of the pooled
  images of the training classes and keeps its rows of each global batch, so
  the global batches are the same for any number of processes. The same
  seed gives the same batches, and `start_step=s` yields exactly batches s,
  s+1, ... of the run started at 0. With `samples_per_class` m > 0 the
  global batches are class-balanced: batch_size / m distinct classes, m
  images each, in blocks of m consecutive images (a process's rows may cut
  a block when m does not divide its share of the batch).

  Args:
    input_config: the `config.input` section.
    seed: shuffle seed.
    start_step: number of batches to skip (the step a run resumes from).
    process_index: this process, in [0, process_count).
    process_count: number of processes; must divide `batch_size`.

  Returns:
    An endless iterator of dicts of NumPy arrays, b = batch_size //
    process_count:
      'image': float32 (b, H, W, 1), (x / 255 - mean) / std (0.2860 and
        0.3530 for Fashion-MNIST), augmented by `input.augmentation`.
      'label': int32 (b,), in [0, num_classes(input_config, 'train')), the
        position of the class in `train_classes` minus `val_classes`.

  Raises:
    ValueError: a bad class configuration, `batch_size` not divisible by
      `process_count`, `samples_per_class` not dividing `batch_size` or
      asking for more classes than have m images.
    DatasetError: the dataset is not prepared.
  """
  batch = _per_process_batch(
    input_config.batch_size, "batch_size", process_index, process_count
  )
  global_batch = batch * process_count
  first = process_index * batch  # This process's rows of a global batch.
  samples_per_class = _samples_per_class(input_config, global_batch)
  if start_step < 0:
    raise ValueError(f"start_step={start_step} must be >= 0.")
  builder = _prepared_builder(input_config)
  num_labels = builder.info.features["label"].num_classes
  classes = _classes_of(input_config, builder, "train")
  # Original class id -> proxy index, -1 for classes not trained on.
  table = np.full(num_labels, -1, np.int32)
  table[list(classes)] = np.arange(len(classes), dtype=np.int32)
  logging.info(
    "Train input: classes %s as labels 0..%d, batch %d on process %d/%d, "
    "seed %d, from step %d, %s",
    classes,
    len(classes) - 1,
    batch,
    process_index,
    process_count,
    seed,
    start_step,
    f"{samples_per_class} images per class"
    if samples_per_class
    else "random batches",
  )

  if samples_per_class:
    ds = _balanced_examples(
      builder,
      table,
      global_batch=global_batch,
      samples_per_class=samples_per_class,
      seed=seed,
      start_step=start_step,
      first=first,
      batch=batch,
    )
  else:
    # Every process runs the same shuffled stream of encoded examples and
    # keeps its rows of each global batch: the global batches do not depend
    # on the number of processes (1 x 8 devices == 2 x 4, bit for bit). Each
    # process reads every encoded example but decodes only its own.
    ds = _read(builder, _SOURCE_SPLIT)
    ds = ds.filter(lambda x: _lookup(table, x["label"]) >= 0)
    ds = ds.map(
      lambda x: {"image": x["image"], "label": _lookup(table, x["label"])}
    )
    ds = ds.cache()  # PNG strings: ~10 MB for 35,000 Fashion-MNIST images.
    ds = ds.shuffle(
      input_config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True
    )
    ds = ds.repeat()
    ds = ds.skip(start_step * global_batch)
    ds = ds.batch(global_batch, drop_remainder=True)
    ds = ds.map(lambda x: {k: v[first : first + batch] for k, v in x.items()})
    ds = ds.unbatch()
  ds = ds.map(
    _decode_and_normalize(builder, input_config.dataset),
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  mean, std = _PIXEL_STATS[input_config.dataset]
  ds = augmentations.augment_training_images(
    ds,
    input_config,
    background=-mean / std,
    seed=seed,
    first_example=start_step * global_batch + first,
    rows=(batch, global_batch),
  )
  ds = ds.batch(batch, drop_remainder=True)
  if input_config.prefetch:
    ds = ds.prefetch(input_config.prefetch)
  return ds.as_numpy_iterator()


@functools.cache
def _source_labels(data_path: str) -> np.ndarray:
  """Returns the labels of `_SOURCE_SPLIT` in `_read` order, int64 (n,).

  A prepared dataset never changes, so this reads them once per process.
  """
  builder = tfds.builder_from_directory(data_path)
  ds = _read(builder, _SOURCE_SPLIT).map(lambda x: x["label"])
  batches = list(ds.batch(8192).as_numpy_iterator())
  return np.concatenate(batches) if batches else np.zeros(0, np.int64)


def _eval_classes(
  input_config: ml_collections.ConfigDict,
  builder: tfds.core.DatasetBuilder,
  split: str,
) -> tuple[int, ...]:
  classes = _classes_of(input_config, builder, split)
  if not classes:
    raise ValueError(
      f"input.val_classes is empty: there is no {split!r} split."
    )
  cap = input_config.max_eval_examples
  if cap is not None and cap < 1:
    raise ValueError(
      f"input.max_eval_examples={cap} must be positive (None: all)."
    )
  return classes


def num_examples(input_config: ml_collections.ConfigDict, split: str) -> int:
  """Returns the number of real (unpadded) examples of an eval `split`.

  That is the total over all processes of the `mask` of
  `create_eval_iterator(input_config, split, ...)`: the images of the split's
  classes, at most `max_eval_examples`.
  """
  builder = _prepared_builder(input_config)
  classes = _eval_classes(input_config, builder, split)
  count = int(np.isin(_source_labels(str(builder.data_path)), classes).sum())
  cap = input_config.max_eval_examples
  return count if cap is None else min(count, cap)


def create_eval_iterator(
  input_config: ml_collections.ConfigDict,
  split: str,
  *,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """Returns one pass over this process's share of an evaluation split.

  The split's examples (in the fixed tfds order, the first
  `max_eval_examples` if set) are dealt round-robin to the processes. Every
  process yields ceil(num_examples / eval_batch_size) batches; padding
  examples fill the last ones.

  Args:
    input_config: the `config.input` section.
    split: 'test' (`test_classes`), 'val' (`val_classes`) or 'train'
      (`train_classes` minus `val_classes`).
    process_index: this process, in [0, process_count).
    process_count: number of processes; must divide `eval_batch_size`.

  Returns:
    An iterator of dicts of NumPy arrays, b = eval_batch_size //
    process_count:
      'image': float32 (b, 28, 28, 1), normalised as in training (zeros for
        padding).
      'label': int32 (b,), the original class ids (-1 for padding).
      'mask': bool (b,), False for padding.

  Raises:
    ValueError: a bad configuration or split, or `eval_batch_size` not
      divisible by `process_count`.
    DatasetError: the dataset is not prepared.
  """
  batch = _per_process_batch(
    input_config.eval_batch_size,
    "eval_batch_size",
    process_index,
    process_count,
  )
  builder = _prepared_builder(input_config)
  classes = _eval_classes(input_config, builder, split)
  total = num_examples(input_config, split)
  num_batches = math.ceil(total / (batch * process_count))
  num_labels = builder.info.features["label"].num_classes
  keep = np.zeros(num_labels, bool)
  keep[list(classes)] = True
  logging.info(
    "Eval input %r: classes %s, %d examples, %d batches of %d on process %d/%d",
    split,
    classes,
    total,
    num_batches,
    batch,
    process_index,
    process_count,
  )

  ds = _read(builder, _SOURCE_SPLIT)
  ds = ds.filter(lambda x: _lookup(keep, x["label"]))
  ds = ds.take(total).shard(process_count, process_index)
  ds = ds.map(
    lambda x: {
      "image": x["image"],
      "label": tf.cast(x["label"], tf.int32),
      "mask": tf.constant(True),
    }
  )
  ds = ds.map(
    _decode_and_normalize(builder, input_config.dataset),
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  padding = tf.data.Dataset.from_tensors(
    {
      "image": tf.zeros(builder.info.features["image"].shape, tf.float32),
      "label": tf.constant(-1, tf.int32),
      "mask": tf.constant(False),
    }
  ).repeat()
  ds = ds.concatenate(padding).take(num_batches * batch).batch(batch)
  if input_config.prefetch:
    ds = ds.prefetch(input_config.prefetch)
  return ds.as_numpy_iterator()
