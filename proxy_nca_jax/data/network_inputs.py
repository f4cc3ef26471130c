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
pixel statistics (`normalize_pixels`), the one normalisation of training,
evaluation and the exported embedder; the colour datasets follow the
colour convention ``input.color`` (rgb_preprocessing.py).
`decode_and_normalize` is the map of the iterators (pipeline.py) that turns
an encoded example into a float32 input, augmented for training.
"""

from collections.abc import Callable
from typing import Any

import ml_collections
import tensorflow as tf
import tensorflow_datasets as tfds

from proxy_nca_jax import errors
from proxy_nca_jax.data import catalog, rgb_preprocessing
from proxy_nca_jax.data.builders import image_folder


def normalize_pixels(images: Any, dataset: str) -> Any:
  """The network's input from float pixel values in [0, 255].

  The one normalisation of training, evaluation and the exported embedder:
  ``(x / 255 - mean) / std`` with the dataset's pixel statistics.

  Args:
    images: float array (NumPy or TensorFlow) of any shape, values 0-255.
    dataset: the ``input.dataset`` the network was trained on (a supported
      one).

  Returns:
    The normalised images, same shape and type as ``images``.
  """
  traits = catalog.traits(dataset)
  if not traits.grey:
    raise errors.InvalidInputError(
      f"Images of {dataset!r} are prepared by the colour convention of "
      f"input.color (rgb_preprocessing.py), not by pixel statistics."
    )
  mean, std = traits.pixel_stats
  return (images / 255.0 - mean) / std


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
  dataset's pixel statistics (`normalize_pixels`). Other datasets:
  (S, S, 3) in the colour convention `input.color`; with a `seed`, the
  training augmentation, drawn from (seed, example['index']), else the
  evaluation resize and centre crop (rgb_preprocessing.py). 'index' is dropped.
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
      return normalize_pixels(image, input_config.dataset)

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
