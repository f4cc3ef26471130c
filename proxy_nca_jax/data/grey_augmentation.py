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
"""Training-time image augmentation, selected by `input.augmentation`.

* "none": images pass unchanged (the default when the field is absent).
* "glyphs": for rendered characters (GLYPHS-ZS). A small random affine map
  about the image centre (rotation, isotropic scale, horizontal shear,
  translation; bilinear, the background fills the borders) and a stroke-width
  jitter: the image moves a random fraction of the way towards its 3x3
  grey-level dilation (thicker strokes) or erosion (thinner). No flips: a
  mirrored character is another character, or none. The affine maps have a
  positive determinant for the allowed ranges (|angles| < 45 degrees).

Randomness is stateless: example e of the training stream (e = step *
global_batch + row) draws from (seed, e), so a resumed run and any number of
processes see the same augmented images.
"""

import math

import ml_collections
import tensorflow as tf

from proxy_nca_jax import errors

AUGMENTATIONS = ("none", "glyphs")


def _check(augment: ml_collections.ConfigDict) -> None:
  limits = {
    "rotation_deg": (0.0, 45.0),
    "shear_deg": (0.0, 45.0),
    "scale": (0.0, 0.5),
    "translation": (0.0, 0.5),
    "stroke": (0.0, 1.0),
  }
  for field, (low, high) in limits.items():
    value = augment[field]
    if not low <= value < high:
      raise errors.InvalidInputError(
        f"input.augment.{field}={value} must be in [{low}, {high})."
      )


def glyph_augment(
  image: tf.Tensor,
  seed: tf.Tensor,
  augment: ml_collections.ConfigDict,
  background: float,
) -> tf.Tensor:
  """Augments one glyph image.

  Args:
    image: float32 (H, W, 1), ink brighter than the background.
    seed: int64 (2,), the stateless seed of this example.
    augment: `input.augment`: `rotation_deg`, `shear_deg` (largest angles),
      `scale` (scale drawn from [1 - scale, 1 + scale]), `translation`
      (largest shift, a fraction of the side) and `stroke` (largest
      fraction of the way to the dilation or erosion).
    background: the value of background pixels (fills uncovered borders).

  Returns:
    float32 (H, W, 1), with values within [min(image, background),
    max(image, background)] (convex combinations of input pixels).
  """
  u = tf.random.stateless_uniform([6], seed, -1.0, 1.0, alg="philox")
  rotation = u[0] * math.radians(augment.rotation_deg)
  shear = u[1] * math.radians(augment.shear_deg)
  scale = 1.0 + u[2] * augment.scale
  height, width = image.shape[0], image.shape[1]
  shift = (
    u[3:5] * augment.translation * tf.constant([width, height], tf.float32)
  )
  # The transform maps output pixel (x, y) to the input point it samples:
  # input = M (output - c - shift) + c, M = rotation x shear / scale.
  cos, sin = tf.cos(rotation), tf.sin(rotation)
  tan = tf.tan(shear)
  m00, m01 = cos / scale, (cos * tan - sin) / scale
  m10, m11 = sin / scale, (sin * tan + cos) / scale
  cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
  ox, oy = cx + shift[0], cy + shift[1]
  transform = tf.stack(
    [
      m00,
      m01,
      cx - m00 * ox - m01 * oy,
      m10,
      m11,
      cy - m10 * ox - m11 * oy,
      0.0,
      0.0,
    ]
  )
  moved = tf.raw_ops.ImageProjectiveTransformV3(
    images=image[None],
    transforms=transform[None],
    output_shape=tf.constant([height, width], tf.int32),
    fill_value=tf.constant(background, tf.float32),
    interpolation="BILINEAR",
    fill_mode="CONSTANT",
  )
  dilated = tf.nn.max_pool2d(moved, 3, 1, "SAME")
  eroded = -tf.nn.max_pool2d(-moved, 3, 1, "SAME")
  amount = u[5] * augment.stroke
  target = tf.where(amount > 0, dilated, eroded)
  return (moved + tf.abs(amount) * (target - moved))[0]


def augment_training_images(
  ds: tf.data.Dataset,
  input_config: ml_collections.ConfigDict,
  *,
  background: float,
  seed: int,
  first_example: int,
  rows: tuple[int, int],
) -> tf.data.Dataset:
  """Applies `input_config.augmentation` to a process's training examples.

  Args:
    ds: this process's examples, dicts with 'image' float32 (H, W, C),
      `rows[0]` per global batch, in order.
    input_config: the `config.input` section; reads `augmentation` ("none"
      when absent) and `augment`.
    background: normalised value of a background pixel.
    seed: the run's seed.
    first_example: stream position of the first example of `ds`
      (start_step * global_batch + this process's first row).
    rows: (examples of this process per batch, global batch).

  Returns:
    The dataset with augmented images (or `ds` itself for "none").

  Raises:
    ValueError: an unknown augmentation or an out-of-range parameter.
  """
  name = input_config.augmentation
  if name not in AUGMENTATIONS:
    raise errors.InvalidInputError(
      f"input.augmentation={name!r}; use one of {AUGMENTATIONS}."
    )
  if name == "none":
    return ds
  augment = input_config.augment
  _check(augment)
  batch, global_batch = rows

  def fn(k: tf.Tensor, example: dict[str, tf.Tensor]) -> dict:
    # k-th example of this process: row k % batch of batch k // batch.
    example_id = first_example + (k // batch) * global_batch + k % batch
    image_seed = tf.stack([tf.constant(seed, tf.int64), example_id])
    image = glyph_augment(example["image"], image_seed, augment, background)
    return {**example, "image": image}

  return ds.enumerate().map(fn, num_parallel_calls=tf.data.AUTOTUNE)
