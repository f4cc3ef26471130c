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
"""Class-balanced training batches, for the losses mined in the batch.

Every global batch holds batch_size / m distinct classes with m images each
(`input.samples_per_class` m > 0), drawn without replacement within the
batch, from the classes with at least m images. Global batch s is a pure
function of (seed, s) (stateless random numbers): resuming at step s starts
there directly, and every process computes it and keeps its rows. Each
process holds the encoded training images in memory.
"""

import numbers

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from proxy_nca_jax import errors
from proxy_nca_jax.data import sources


def samples_per_class(
  input_config: ml_collections.ConfigDict, global_batch: int
) -> int:
  """Validates `input.samples_per_class` against the global batch."""
  m = input_config.samples_per_class
  if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 0:
    raise errors.InvalidInputError(
      f"input.samples_per_class={m!r} must be an integer >= 0 (0: plain "
      "random batches)."
    )
  if m and global_batch % m:
    raise errors.InvalidInputError(
      f"input.samples_per_class={m} does not divide input.batch_size="
      f"{global_batch}; use a divisor of it."
    )
  return int(m)


def balanced_examples(
  input_config: ml_collections.ConfigDict,
  dataset_builder: tfds.core.DatasetBuilder,
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
  computes the same global batch and keeps its rows. 'index' is the
  example's position in the global stream (step * global_batch + row).
  """
  m = samples_per_class
  num_slots = global_batch // m
  source = sources.read(input_config, dataset_builder, batch_size=8192)
  parts = list(source.as_numpy_iterator())
  images = np.concatenate([p["image"] for p in parts])
  labels = table[np.concatenate([p["label"] for p in parts])]
  counts = np.bincount(labels[labels >= 0], minlength=table.max() + 1)
  eligible = np.flatnonzero(counts >= m)
  if len(eligible) < num_slots:
    raise errors.InvalidInputError(
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
    position = step * global_batch + first + tf.range(batch, dtype=tf.int64)
    return {
      "image": tf.gather(images, index),
      "label": tf.gather(labels, index),
      "index": position,
    }

  ds = tf.data.Dataset.counter(start_step).map(examples_of_step)
  return ds.unbatch()
