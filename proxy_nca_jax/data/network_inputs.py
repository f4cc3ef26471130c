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
"""How encoded images become the network's inputs.

The grey-level datasets (Fashion-MNIST, GLYPHS-ZS) are normalised by their
pixel statistics, the colour datasets follow the colour convention
``input.color`` (rgb_preprocessing.py); both rules are those of
input_conventions.py, shared with the exported embedder.
`decode_and_normalize` is the map of the iterators (pipeline.py) that turns
an encoded example into a float32 input, augmented for training.
"""

from collections.abc import Callable

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from proxy_nca_jax.data import catalog, input_conventions, rgb_preprocessing
from proxy_nca_jax.data.builders import image_folder


def check_preprocessing(input_config: ml_collections.ConfigDict) -> None:
  """Validates the colour preprocessing fields, where the dataset uses them."""
  if not catalog.traits(input_config.dataset).grey:
    rgb_preprocessing.check_config(input_config)


def decode_and_normalize(
  input_config: ml_collections.ConfigDict,
  dataset_builder: tfds.core.DatasetBuilder,
  seed: int | None,
) -> Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]:
  """Returns a map function: encoded image -> float32 model input.

  Fashion-MNIST and GLYPHS-ZS: grayscale, (x / 255 - mean) / std with the
  dataset's pixel statistics (input_conventions.normalize_pixels). Other
  datasets: (S, S, 3) in the colour convention `input.color`; with a
  `seed`, the training augmentation, drawn from (seed, example['index']),
  else the evaluation resize and centre crop (rgb_preprocessing.py).
  'index' is dropped.
  An image folder's files are decoded as `index` and `search` decode them
  (`image_folder.decode_rgb`), other colour datasets by TensorFlow.
  """
  decode = (
    image_folder.decode_rgb
    if input_config.dataset == catalog.IMAGE_FOLDER
    else rgb_preprocessing.decode_rgb
  )
  if catalog.traits(input_config.dataset).grey:
    image_feature = dataset_builder.info.features["image"]

    def preprocess(example):
      image = tf.cast(
        image_feature.decode_example(example["image"]), tf.float32
      )
      return input_conventions.normalize_pixels(image, input_config.dataset)

  elif seed is None:

    def preprocess(example):
      return rgb_preprocessing.eval_rgb(decode(example["image"]), input_config)

  else:

    def preprocess(example):
      example_seed = tf.stack(
        [tf.constant(seed, tf.int64), tf.cast(example["index"], tf.int64)]
      )
      return rgb_preprocessing.train_rgb(
        decode(example["image"]), example_seed, input_config
      )

  def fn(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    rest = {k: v for k, v in example.items() if k not in ("image", "index")}
    return {**rest, "image": preprocess(example)}

  return fn
