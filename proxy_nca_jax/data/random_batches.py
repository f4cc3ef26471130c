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
"""Random training batches: a shuffled stream of the training images.

Every process runs the same shuffled stream of encoded examples and keeps
its rows of each global batch: the global batches do not depend on the
number of processes (1 x 8 devices == 2 x 4, bit for bit). Each process
reads every encoded example but decodes only its own (pipeline.py decodes
after this stream). The class-balanced alternative is balanced_batches.py.
"""

import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from proxy_nca_jax.data import sources


def _lookup(table: np.ndarray, labels: tf.Tensor) -> tf.Tensor:
  """Returns `table[labels]`: maps class ids through a per-class table."""
  return tf.gather(tf.constant(table), labels)


def random_examples(
  input_config: ml_collections.ConfigDict,
  dataset_builder: tfds.core.DatasetBuilder,
  table: np.ndarray,
  *,
  global_batch: int,
  seed: int,
  start_step: int,
  first: int,
  batch: int,
) -> tf.data.Dataset:
  """Encoded examples of rows [first, first + batch) of random batches.

  The examples of the classes with a proxy row in `table` (>= 0), labelled
  by that row, cached, shuffled with `seed` (reshuffled each epoch) and
  repeated; the first `start_step` global batches are skipped, still
  encoded. 'index' is the example's position in the global stream, which
  seeds augmentation.
  """
  ds = sources.read(input_config, dataset_builder)
  ds = ds.filter(lambda x: _lookup(table, x["label"]) >= 0)
  ds = ds.map(
    lambda x: {"image": x["image"], "label": _lookup(table, x["label"])}
  )
  # Encoded images: ~10 MB for 35,000 Fashion-MNIST images, ~0.3 GB for
  # CUB's train classes.
  ds = ds.cache()
  ds = ds.shuffle(
    input_config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True
  )
  # 'index': the position in the global stream, which seeds augmentation.
  ds = ds.repeat().enumerate()
  ds = ds.map(lambda i, x: {**x, "index": i})
  ds = ds.skip(start_step * global_batch)
  ds = ds.batch(global_batch, drop_remainder=True)
  ds = ds.map(lambda x: {k: v[first : first + batch] for k, v in x.items()})
  return ds.unbatch()
