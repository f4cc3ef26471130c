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
"""What a trained network expects of its input, in any array library.

The rules shared by the tf.data pipelines (training, evaluation) and the
exported embedder (JAX), written once for NumPy, TensorFlow and JAX arrays
alike, and importable without TensorFlow (export, index and search load
only this):

- grey-level datasets (Fashion-MNIST, GLYPHS-ZS): ``(x / 255 - mean) / std``
  with the dataset's pixel statistics (`normalize_pixels`);
- colour datasets: the colour convention ``input.color`` of the backbone's
  pretrained weights (`COLOR_CONVENTIONS`, `normalize_colors`):

  * "bn_inception": BGR channel order, values 0-255 minus the per-channel
    means (B, G, R) = (104, 117, 128) (Caffe's BN-Inception).
  * "imagenet": RGB, values / 255, minus (0.485, 0.456, 0.406), divided by
    (0.229, 0.224, 0.225) (torchvision's ResNet-50, DeiT, DINOv2).
  * "inception": RGB, values / 255, minus 0.5, divided by 0.5 (the original
    and AugReg ViTs in timm).
  * "clip": RGB, values / 255, minus (0.48145466, 0.4578275, 0.40821073),
    divided by (0.26862954, 0.26130258, 0.27577711) (OpenAI CLIP).

- the evaluation resize's output shape (`shorter_side_shape`).

The embeddings and proxies these inputs lead to live on the unit sphere
(Movshovitz-Attias et al. 2017, Sec. 3); nothing here depends on the loss.
"""

import dataclasses
from typing import Any

import numpy as np

from proxy_nca_jax import errors
from proxy_nca_jax.data import catalog
from proxy_nca_jax.models import inputs


@dataclasses.dataclass(frozen=True)
class ColorConvention:
  """x -> (x * scale - mean) / std per channel, after an optional RGB->BGR.

  `mean` and `std` are in the output channel order.
  """

  bgr: bool
  scale: float
  mean: tuple[float, float, float]
  std: tuple[float, float, float]


COLOR_CONVENTIONS = {
  "bn_inception": ColorConvention(
    bgr=True, scale=1.0, mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0)
  ),
  # RGB / 255, then the published mean and std of each family's weights
  # (models/inputs.py): "imagenet", "inception", "clip".
  **{
    name: ColorConvention(bgr=False, scale=1 / 255, mean=mean, std=std)
    for name, (mean, std) in inputs.NORMALIZATIONS.items()
  },
}


def normalize_pixels(images: Any, dataset: str) -> Any:
  """The network's input from float pixel values in [0, 255].

  The one normalisation of training, evaluation and the exported embedder:
  ``(x / 255 - mean) / std`` with the dataset's pixel statistics.

  Args:
    images: float array (NumPy, TensorFlow or JAX) of any shape, values
      0-255.
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


def normalize_colors(pixels: Any, color: str) -> Any:
  """float32 RGB values in [0, 255], (..., 3) -> `color`'s convention.

  The one colour normalisation of training, evaluation (TF tensors) and the
  exported embedder (JAX arrays); NumPy arrays work too.
  """
  convention = COLOR_CONVENTIONS[color]
  if convention.bgr:
    pixels = pixels[..., ::-1]
  mean = np.asarray(convention.mean, np.float32)
  std = np.asarray(convention.std, np.float32)
  return (pixels * convention.scale - mean) / std


def displayable_rgb(images: np.ndarray, color: str) -> np.ndarray:
  """Network inputs in `color`'s convention -> RGB in [0, 1], for figures.

  The inverse of `normalize_colors` (channel order back to RGB), clipped.
  """
  convention = COLOR_CONVENTIONS[color]
  rgb = np.asarray(images, np.float32) * np.asarray(convention.std)
  rgb = (rgb + np.asarray(convention.mean)) / convention.scale
  if convention.bgr:
    rgb = rgb[..., ::-1]
  return np.clip(rgb / 255.0, 0.0, 1.0)


def shorter_side_shape(height: int, width: int, side: int) -> tuple[int, int]:
  """(H, W) resized so min(H, W) == side, keeping the aspect ratio.

  The evaluation resize's rule for sizes known in Python (the exported
  embedder's static shapes; rgb_preprocessing.resize_shorter_side computes
  the same in the graph): the longer side rounded half to even, as
  ``tf.round``.
  """
  if height <= width:
    return side, round(width * side / height)
  return round(height * side / width), side
