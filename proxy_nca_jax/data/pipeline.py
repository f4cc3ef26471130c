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
"""Class-disjoint (zero-shot) input pipeline over a prepared dataset.

All images of the dataset (sources.py: every tfds split, or every
split folder of an image folder) are pooled, then split by class (the
paper's protocol: test classes are never seen in training; class_splits.py):

* 'train': the train classes minus the validation classes; for training,
  labels are remapped to 0..C-1 in the order of the train classes (they
  index the proxies).
* 'val': the validation classes (held-out train classes, for model
  selection).
* 'test': the test classes.

Evaluation iterators keep the original class ids (0..9 for Fashion-MNIST).

Training (train_batches.py): shuffle (seeded, reshuffled each epoch) ->
repeat -> skip (resume) (random_batches.py) -> decode + augment + normalise
(network_inputs.py, rgb_preprocessing.py) -> batch (this process's share of
the global batch, `drop_remainder`) -> prefetch. Images stay encoded until
after the skip, so resuming at step s costs a pass over s batches of
strings, not decodes. An image that fails to decode stops the iterator with
an error naming the file(s) (bad_images.py).

Class-balanced training (balanced_batches.py; `samples_per_class` m > 0, for
the losses mined in the batch): every global batch holds batch_size / m
distinct classes with m images each, drawn without replacement within the
batch, from the classes with at least m images. Global batch s is a pure
function of (seed, s) (stateless random numbers): resuming at step s starts
there directly, and every process computes it and keeps its rows, as for
random batches. Each process holds the encoded training images in memory.

Evaluation: one pass, no shuffle, fixed per-process batches; the last batch
is padded (`mask` False, `label` -1) so every process runs the same number of
batches.

Call `prepare_dataset(config.input)` once (on process 0 when processes share
`data_dir`) before creating iterators. The tf.data work runs on the CPU.
"""

import math
from collections.abc import Iterator

import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from proxy_nca_jax import errors
from proxy_nca_jax.data import (
  bad_images,
  balanced_batches,
  catalog,
  class_splits,
  input_conventions,
  network_inputs,
  sources,
  train_batches,
)

DatasetError = sources.DatasetError
prepare_dataset = sources.prepare_dataset


def image_shape(input_config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """(H, W, C) of the images the iterators yield."""
  return catalog.traits(input_config.dataset).shape(input_config)


def classes_of(
  input_config: ml_collections.ConfigDict, split: str
) -> tuple[int, ...]:
  """The class ids of `split` ('train', 'val' or 'test'), config order."""
  if split not in class_splits.SPLITS:
    raise errors.InvalidInputError(
      f"split={split!r}; use one of {class_splits.SPLITS}."
    )
  num_labels = sources.num_labels(input_config)
  return class_splits.split_classes(input_config, num_labels)[split]


def num_classes(input_config: ml_collections.ConfigDict, split: str) -> int:
  """Returns the number of classes of `split` ('train', 'val' or 'test').

  'train' counts `train_classes` minus `val_classes`: the number of proxies.
  """
  return len(classes_of(input_config, split))


def _per_process_batch(
  global_batch: int, field: str, process_index: int, process_count: int
) -> int:
  if process_count < 1 or not 0 <= process_index < process_count:
    raise errors.InvalidInputError(
      f"process_index={process_index} is not in [0, process_count="
      f"{process_count})."
    )
  if global_batch < 1:
    raise errors.InvalidInputError(
      f"input.{field}={global_batch} must be positive."
    )
  if global_batch % process_count:
    suggestion = math.ceil(global_batch / process_count) * process_count
    raise errors.InvalidInputError(
      f"input.{field}={global_batch} is not divisible by the {process_count} "
      f"processes; set --config.input.{field} to a multiple of "
      f"{process_count} (e.g. {suggestion})."
    )
  return global_batch // process_count


def display_images(
  images: np.ndarray, input_config: ml_collections.ConfigDict
) -> np.ndarray:
  """Network inputs (N, H, W, C) -> pixel values in [0, 1], for figures.

  The inverse of the normalisation: grey levels for the pixel-statistics
  datasets, RGB (even for BN-Inception's BGR inputs) for the others.
  """
  traits = catalog.traits(input_config.dataset)
  if traits.grey:
    mean, std = traits.pixel_stats
    return np.clip(np.asarray(images) * std + mean, 0.0, 1.0)
  return input_conventions.displayable_rgb(images, input_config.color)


def proxy_rows(input_config: ml_collections.ConfigDict) -> np.ndarray:
  """Original class id -> proxy row (the training label), int32 (num_labels,).

  Rows follow `classes_of(input_config, 'train')`; -1 for the classes not
  trained on (test and validation classes).
  """
  classes = classes_of(input_config, "train")
  table = np.full(sources.num_labels(input_config), -1, np.int32)
  table[list(classes)] = np.arange(len(classes), dtype=np.int32)
  return table


def train_class_counts(input_config: ml_collections.ConfigDict) -> np.ndarray:
  """The training images of each training class, by proxy row, int64 (C,)
  (what dynamic margins are derived from)."""
  table = proxy_rows(input_config)
  rows = table[sources.source_labels(input_config)]
  return np.bincount(
    rows[rows >= 0], minlength=num_classes(input_config, "train")
  )


def _log_train_input(
  classes: tuple[int, ...],
  samples_per_class: int,
  *,
  batch: int,
  process_index: int,
  process_count: int,
  seed: int,
  start_step: int,
) -> None:
  """Logs what the train iterator yields: classes, batches, seed and step."""
  logging.info(
    "Train input: classes %s as labels 0..%d, batch %d on process %d/%d, "
    "seed %d, from step %d, %s",
    class_splits.describe(classes),
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
    seed: shuffle (and augmentation) seed.
    start_step: number of batches to skip (the step a run resumes from).
    process_index: this process, in [0, process_count).
    process_count: number of processes; must divide `batch_size`.

  Returns:
    An endless iterator of dicts of NumPy arrays, b = batch_size //
    process_count:
      'image': float32 (b, *image_shape(input_config)): Fashion-MNIST
        (x / 255 - 0.2860) / 0.3530; other datasets augmented and in the
        colour convention `input.color` (input_conventions.py).
      'label': int32 (b,), in [0, num_classes(input_config, 'train')), the
        position of the class in `train_classes` minus `val_classes`.

  Raises:
    ValueError: a bad class configuration, `batch_size` not divisible by
      `process_count`, `samples_per_class` not dividing `batch_size` or
      asking for more classes than have m images; bad preprocessing fields.
    DatasetError: the dataset is not prepared; (while iterating) images that
      cannot be decoded, named.
  """
  batch = _per_process_batch(
    input_config.batch_size, "batch_size", process_index, process_count
  )
  global_batch = batch * process_count
  first = process_index * batch  # This process's rows of a global batch.
  samples_per_class = balanced_batches.samples_per_class(
    input_config, global_batch
  )
  if start_step < 0:
    raise errors.InvalidInputError(f"start_step={start_step} must be >= 0.")
  dataset_builder = sources.prepared_builder(input_config)
  network_inputs.check_preprocessing(input_config)
  classes = classes_of(input_config, "train")
  table = proxy_rows(input_config)
  _log_train_input(
    classes,
    samples_per_class,
    batch=batch,
    process_index=process_index,
    process_count=process_count,
    seed=seed,
    start_step=start_step,
  )
  ds = train_batches.training_dataset(
    input_config,
    dataset_builder,
    table,
    samples_per_class=samples_per_class,
    global_batch=global_batch,
    seed=seed,
    start_step=start_step,
    first=first,
    batch=batch,
  )
  return bad_images.naming_bad_images(ds.as_numpy_iterator(), input_config)


def _eval_classes(
  input_config: ml_collections.ConfigDict, split: str
) -> tuple[int, ...]:
  classes = classes_of(input_config, split)
  if not classes:
    raise errors.InvalidInputError(
      f"input.val_classes is empty: there is no {split!r} split."
    )
  cap = input_config.max_eval_examples
  if cap is not None and cap < 1:
    raise errors.InvalidInputError(
      f"input.max_eval_examples={cap} must be positive (None: all)."
    )
  return classes


def num_examples(input_config: ml_collections.ConfigDict, split: str) -> int:
  """Returns the number of real (unpadded) examples of an eval `split`.

  That is the total over all processes of the `mask` of
  `create_eval_iterator(input_config, split, ...)`: the images of the split's
  classes, at most `max_eval_examples`.
  """
  classes = _eval_classes(input_config, split)
  labels = sources.source_labels(input_config)
  count = int(np.isin(labels, classes).sum())
  cap = input_config.max_eval_examples
  return count if cap is None else min(count, cap)


def split_names(input_config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The dataset's tfds splits: what an eval batch's 'source' indexes."""
  return sources.split_names(sources.prepared_builder(input_config))


def source_split_names(
  input_config: ml_collections.ConfigDict, examples: dict[str, np.ndarray]
) -> np.ndarray | None:
  """The tfds split name of each example of eval batches (None without
  their 'source')."""
  if "source" not in examples:
    return None
  return np.asarray(split_names(input_config))[examples["source"]]


def _padding_examples(
  input_config: ml_collections.ConfigDict, with_sources: bool
) -> tf.data.Dataset:
  """Endless padding examples: zero image, `label` (and `source`) -1,
  `mask` False."""
  example = {
    "image": tf.zeros(image_shape(input_config), tf.float32),
    "label": tf.constant(-1, tf.int32),
    "mask": tf.constant(False),
  }
  if with_sources:
    example["source"] = tf.constant(-1, tf.int32)
  return tf.data.Dataset.from_tensors(example).repeat()


def create_eval_iterator(
  input_config: ml_collections.ConfigDict,
  split: str,
  *,
  with_sources: bool = False,
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
    with_sources: add 'source' (costs a tfds id per example, about a third
      more time for Fashion-MNIST's small images).
    process_index: this process, in [0, process_count).
    process_count: number of processes; must divide `eval_batch_size`.

  Returns:
    An iterator of dicts of NumPy arrays, b = eval_batch_size //
    process_count:
      'image': float32 (b, *image_shape(input_config)): Fashion-MNIST
        normalised as in training; other datasets resized, centre-cropped
        and in the colour convention `input.color` (zeros for padding).
      'label': int32 (b,), the original class ids (-1 for padding).
      'source' (`with_sources`): int32 (b,), the tfds split each image was
        read from, an index into `split_names` (-1 for padding).
      'mask': bool (b,), False for padding.

  Raises:
    ValueError: a bad configuration or split, or `eval_batch_size` not
      divisible by `process_count`; bad preprocessing fields.
    DatasetError: the dataset is not prepared; (while iterating) images that
      cannot be decoded, named.
  """
  batch = _per_process_batch(
    input_config.eval_batch_size,
    "eval_batch_size",
    process_index,
    process_count,
  )
  dataset_builder = sources.prepared_builder(input_config)
  network_inputs.check_preprocessing(input_config)
  classes = _eval_classes(input_config, split)
  total = num_examples(input_config, split)
  num_batches = math.ceil(total / (batch * process_count))
  keep = np.zeros(sources.num_labels(input_config), bool)
  keep[list(classes)] = True
  logging.info(
    "Eval input %r: classes %s, %d examples, %d batches of %d on process %d/%d",
    split,
    class_splits.describe(classes),
    total,
    num_batches,
    batch,
    process_index,
    process_count,
  )

  ds = sources.read(input_config, dataset_builder, with_sources=with_sources)
  ds = ds.filter(lambda x: tf.gather(tf.constant(keep), x["label"]))
  ds = ds.take(total).shard(process_count, process_index)
  ds = ds.map(
    lambda x: {
      **x,
      "label": tf.cast(x["label"], tf.int32),
      "mask": tf.constant(True),
    }
  )
  ds = ds.map(
    network_inputs.decode_and_normalize(input_config, dataset_builder, None),
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  padding = _padding_examples(input_config, with_sources)
  ds = ds.concatenate(padding).take(num_batches * batch).batch(batch)
  if input_config.prefetch:
    ds = ds.prefetch(input_config.prefetch)
  return bad_images.naming_bad_images(ds.as_numpy_iterator(), input_config)
