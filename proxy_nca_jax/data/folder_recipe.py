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
"""A first run on your own images that learns: the recipe chosen from them.

``configs/image_folder.py`` leaves ``model.name = "auto"`` unless a recipe
is asked for; at start-up `resolve` looks at the folder and the config:

- ``model.pretrained`` holding imported ViT weights: the ViT fine-tuning
  recipe (vit_recipe.py: the weights' architecture, AdamW with layer-wise
  decay, 224 px in the colours the weights expect);
- other ``model.pretrained`` given: the paper recipe (BN-Inception, 64-d,
  RMSprop, 227 px), made for ImageNet-pretrained weights;
- no weights and small images (median shorter side <= `SMALL_SIDE` px, on a
  sample of `_SAMPLED` files): the FMNIST-ZS recipe (convnet-S, 64-d, Adam
  1e-3, the softmax form at scale 16) at the images' own size, with a
  gentle crop (`SMALL_CROP_SCALE`) and no flip;
- no weights and large images: the paper recipe from random weights, with
  the start-up warning that it needs pretrained weights to do well.

The choice and its reason are logged; the resolved config is what the
workdir records, so a resume resolves nothing again.
"""

import statistics

import ml_collections
from absl import logging
from etils import epath
from PIL import Image

from proxy_nca_jax.data import vit_recipe
from proxy_nca_jax.data.builders import image_folder

AUTO = "auto"
SMALL_SIDE = 64
SMALL_CROP_SCALE = (0.6, 1.0)
_SAMPLED = 256


def _shorter_sides(root: str) -> list[int]:
  """Shorter sides of up to `_SAMPLED` image files spread over ``root``."""
  folder = epath.Path(root)
  # ROOT/CLASS/IMAGE or ROOT/SPLIT/CLASS/IMAGE.
  candidates = [*folder.glob("*/*"), *folder.glob("*/*/*")]
  files = sorted(
    p for p in candidates if p.suffix.lower() in image_folder.IMAGE_SUFFIXES
  )
  if not files:
    return []
  step = max(1, len(files) // _SAMPLED)
  sides = []
  for path in files[::step][:_SAMPLED]:
    try:
      with Image.open(path) as image:
        sides.append(min(image.size))
    except (OSError, ValueError):
      continue  # check_folder names unreadable files.
  return sides


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` with ``model.name = "auto"`` replaced by a recipe (in place).

  Any other config is returned unchanged.
  """
  if config.model.name != AUTO:
    return config
  if vit_recipe.holds_vit(config.model.pretrained):
    with config.unlocked():
      vit_recipe.apply(config)
    logging.info(
      "Recipe for your images: ViT fine-tuning (AdamW %g, layer decay %g, "
      "%d px): ViT weights given in %s.",
      config.optimizer.learning_rate,
      config.optimizer.layer_decay,
      config.input.image_size,
      config.model.pretrained,
    )
    return config
  sides = _shorter_sides(config.input.image_folder or "")
  side = int(statistics.median(sides)) if sides else None
  with config.unlocked():
    if config.model.pretrained or side is None or side > SMALL_SIDE:
      config.model.name = "bn_inception"
      reason = (
        "pretrained weights given"
        if config.model.pretrained
        else f"images are large (median shorter side {side} px)"
      )
      logging.info(
        "Recipe for your images: the paper's (BN-Inception at %d px, "
        "RMSprop): %s.",
        config.input.image_size,
        reason,
      )
      return config
    size = max(16, side // 4 * 4)
    config.model.name = "convnet_s"
    config.model.widths = (32, 64, 128)
    config.model.embedding_dim = 64
    config.model.pooling = "avg"
    config.model.layer_norm = False
    config.input.image_size = size
    config.input.eval_resize = size
    config.input.crop_scale = SMALL_CROP_SCALE
    config.input.random_flip = False
    config.input.color = "imagenet"
    config.loss.form = "softmax"
    config.loss.scale = 16.0
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.proxy_lr_mult = 10.0
    config.optimizer.eps = 1e-8
  logging.info(
    "Recipe for your images: convnet-S at %d px (Adam 1e-3, softmax form "
    "at scale 16): no pretrained weights and small images (median shorter "
    "side %d px of %d sampled); an ImageNet backbone would start from "
    "random weights. Give --config.model.pretrained=DIR for the paper's.",
    size,
    side,
    len(sides),
  )
  return config
