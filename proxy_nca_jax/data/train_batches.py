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
"""The tf.data stages of the training batches, after the class split.

This process's rows of each global batch, as encoded examples
(balanced_batches.py with `input.samples_per_class` m > 0, else
random_batches.py), then decoded and normalised (network_inputs.py), then,
for the grey-level datasets, augmented (grey_augmentation.py), batched and
prefetched. pipeline.py validates the arguments and makes the iterator.
"""

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from proxy_nca_jax.data import (
  balanced_batches,
  catalog,
  grey_augmentation,
  network_inputs,
  random_batches,
)


def training_dataset(
  input_config: ml_collections.ConfigDict,
  dataset_builder: tfds.core.DatasetBuilder,
  table: np.ndarray,
  *,
  samples_per_class: int,
  global_batch: int,
  seed: int,
  start_step: int,
  first: int,
  batch: int,
) -> tf.data.Dataset:
  """Batches of rows [first, first + batch) of global batches start_step, ...

  Args:
    input_config: the `config.input` section.
    dataset_builder: from `sources.prepared_builder(input_config)`.
    table: original class id -> proxy row, -1 for the classes not trained
      on (`pipeline.proxy_rows`).
    samples_per_class: m > 0: class-balanced batches of m images per class;
      0: random batches.
    global_batch: examples per global batch, over all processes.
    seed: shuffle (and augmentation) seed.
    start_step: the first global batch.
    first: this process's first row of a global batch.
    batch: this process's rows of a global batch.

  Returns:
    A dataset of {'image': float32 (batch, H, W, C), 'label': int32
    (batch,)}.
  """
  if samples_per_class:
    ds = balanced_batches.balanced_examples(
      input_config,
      dataset_builder,
      table,
      global_batch=global_batch,
      samples_per_class=samples_per_class,
      seed=seed,
      start_step=start_step,
      first=first,
      batch=batch,
    )
  else:
    ds = random_batches.random_examples(
      input_config,
      dataset_builder,
      table,
      global_batch=global_batch,
      seed=seed,
      start_step=start_step,
      first=first,
      batch=batch,
    )
  ds = ds.map(
    network_inputs.decode_and_normalize(input_config, dataset_builder, seed),
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  traits = catalog.traits(input_config.dataset)
  if traits.grey:
    mean, std = traits.pixel_stats
    ds = grey_augmentation.augment_training_images(
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
  return ds
