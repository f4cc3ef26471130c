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
"""Image preprocessing in tf.data for the ImageNet-pretrained backbones.

Training (`input.image_size` S): a random resized crop, i.e. a window of
`input.crop_scale` of the image's area and `input.crop_ratio` width/height,
resized to S x S (bilinear, antialiased), then a horizontal flip with
probability 1/2 (`input.random_flip`). After 10 failed draws of a window
the whole image is used. Random numbers are stateless, drawn from (seed,
the example's position in the global training stream): a run is
reproducible and resumes exactly.

Evaluation: the shorter side resized to `input.eval_resize` R (the longer
one to round(long * R / short)), then the central S x S window (top-left
corner at ((H - S) // 2, (W - S) // 2)).

Colour convention (`input.color`): data/input_conventions.py, the rules
shared with the exported embedder.

A run from imported ViT weights takes the convention their import recorded
(data/vit_recipe.py).
"""

import numbers

import ml_collections
import tensorflow as tf

from proxy_nca_jax import errors
from proxy_nca_jax.data import input_conventions

_MAX_CROP_ATTEMPTS = 10


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_range(field: str, value, upper: float | None) -> None:
  low, high = (float(v) for v in value)
  if not (0 < low <= high and (upper is None or high <= upper)):
    bound = f" <= {upper}" if upper is not None else ""
    raise errors.InvalidInputError(
      f"input.{field}={tuple(value)} must be (low, high) with 0 < low <= "
      f"high{bound}."
    )


def check_config(input_config: ml_collections.ConfigDict) -> None:
  """Validates the preprocessing fields of `config.input`.

  Raises:
    ValueError: naming the field and what it accepts.
  """
  size, resize = input_config.image_size, input_config.eval_resize
  if not _is_int(size) or size < 1:
    raise errors.InvalidInputError(
      f"input.image_size={size!r} must be a positive integer."
    )
  if not _is_int(resize) or resize < size:
    raise errors.InvalidInputError(
      f"input.eval_resize={resize!r} must be an integer >= input.image_size="
      f"{size} (the evaluation crop is taken from the resized image)."
    )
  _check_range("crop_scale", input_config.crop_scale, 1.0)
  _check_range("crop_ratio", input_config.crop_ratio, None)
  if input_config.color not in input_conventions.COLOR_CONVENTIONS:
    raise errors.InvalidInputError(
      f"input.color={input_config.color!r}; use one of "
      f"{', '.join(input_conventions.COLOR_CONVENTIONS)} (the convention "
      "of the backbone's pretrained weights)."
    )


def decode_rgb(encoded: tf.Tensor) -> tf.Tensor:
  """JPEG/PNG/GIF/BMP bytes -> uint8 (H, W, 3); grey images are repeated."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def random_resized_crop(
  image: tf.Tensor,
  seed: tf.Tensor,
  *,
  size: int,
  scale: tuple[float, float],
  ratio: tuple[float, float],
) -> tf.Tensor:
  """A random window of `image` (H, W, C), resized to float32 (size, size, C).

  Args:
    image: any dtype, values kept (no normalisation).
    seed: int64 (2,), stateless seed.
    size: output side.
    scale: range of the window's area as a fraction of the image's.
    ratio: range of the window's width / height.
  """
  begin, window, _ = tf.image.stateless_sample_distorted_bounding_box(
    tf.shape(image),
    bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
    seed=seed,
    min_object_covered=0.0,
    aspect_ratio_range=ratio,
    area_range=scale,
    max_attempts=_MAX_CROP_ATTEMPTS,
    use_image_if_no_bounding_boxes=True,
  )
  crop = tf.slice(image, begin, window)
  return tf.image.resize(crop, (size, size), antialias=True)


def resize_shorter_side(image: tf.Tensor, side: int) -> tf.Tensor:
  """Resizes (H, W, C) so min(H, W) == side, keeping the aspect ratio
  (input_conventions.shorter_side_shape's rule, computed in the graph)."""
  shape = tf.cast(tf.shape(image)[:2], tf.float64)
  factor = side / tf.reduce_min(shape)
  new_shape = tf.cast(tf.round(shape * factor), tf.int32)
  # Exactly `side` on the shorter side, whatever the rounding.
  new_shape = tf.where(shape == tf.reduce_min(shape), side, new_shape)
  return tf.image.resize(image, new_shape, antialias=True)


def center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """The central (size, size) window of (H, W, C), H and W >= size."""
  shape = tf.shape(image)
  top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
  return image[top : top + size, left : left + size]


def train_rgb(
  image: tf.Tensor,
  seed: tf.Tensor,
  input_config: ml_collections.ConfigDict,
) -> tf.Tensor:
  """RGB values 0-255 (H, W, 3) -> float32 (S, S, 3) training input.

  Args:
    image: the decoded image, any dtype.
    seed: int64 (2,), stateless seed of this example.
    input_config: the `config.input` section.
  """
  crop_seed, flip_seed = tf.unstack(
    tf.random.experimental.stateless_split(seed, 2)
  )
  image = random_resized_crop(
    image,
    crop_seed,
    size=input_config.image_size,
    scale=tuple(input_config.crop_scale),
    ratio=tuple(input_config.crop_ratio),
  )
  if input_config.random_flip:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  return input_conventions.normalize_colors(image, input_config.color)


def train_image(
  encoded: tf.Tensor,
  seed: tf.Tensor,
  input_config: ml_collections.ConfigDict,
) -> tf.Tensor:
  """Encoded image -> float32 (S, S, 3) training input (`train_rgb`)."""
  return train_rgb(decode_rgb(encoded), seed, input_config)


def eval_rgb(
  image: tf.Tensor, input_config: ml_collections.ConfigDict
) -> tf.Tensor:
  """RGB values 0-255 (H, W, 3) -> float32 (S, S, 3) evaluation input."""
  image = resize_shorter_side(image, input_config.eval_resize)
  image = center_crop(image, input_config.image_size)
  return input_conventions.normalize_colors(image, input_config.color)


def eval_image(
  encoded: tf.Tensor, input_config: ml_collections.ConfigDict
) -> tf.Tensor:
  """Encoded image -> float32 (S, S, 3) evaluation input."""
  return eval_rgb(decode_rgb(encoded), input_config)
