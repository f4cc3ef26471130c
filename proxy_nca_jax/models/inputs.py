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
"""The input each family of pretrained weights expects.

A ``Preprocessing`` says how images must look to the network: their side
(the centre crop the family evaluates at), the channel order, and the mean
and standard deviation of the pixels scaled to [0, 1] (the network sees
(pixel - mean) / std), and the family's resize filter. models/pretrained.py
records the one of each imported folder in its metadata and reads it back
(``pretrained.preprocessing``) for training, export and indexing.

Sources: torchvision's ResNet-50 and pretrainedmodels' ``bninception``
(BGR in 0-255 minus (104, 117, 128), written here on [0, 1] pixels as mean
(104, 117, 128) / 255 and std 1 / 255); timm's ``pretrained_cfg`` (ImageNet's
mean/std, or 0.5 for the original and AugReg ViTs: "inception"); DINOv2's
``make_classification_eval_transform`` (ImageNet's, bicubic, crop 224);
OpenAI CLIP's ``_transform`` (its own mean/std, bicubic).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """The input pretrained weights expect.

  Attributes:
    image_size: the side the weights' family evaluates at (centre crop).
    mean: per channel, of pixels scaled to [0, 1] in ``channel_order``.
    std: per channel; the network sees (pixel - mean) / std.
    channel_order: "rgb" or "bgr".
    interpolation: the family's resize, "bicubic" or "bilinear".
  """

  image_size: int
  mean: tuple[float, float, float]
  std: tuple[float, float, float]
  channel_order: str = "rgb"
  interpolation: str = "bicubic"


# The mean and standard deviation of pixels in [0, 1] the families use:
# ImageNet's (torchvision, DeiT, DINOv2), 0.5 ("inception": the original and
# AugReg ViTs in timm), OpenAI CLIP's.
NORMALIZATIONS = {
  "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
  "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
  "clip": (
    (0.48145466, 0.4578275, 0.40821073),
    (0.26862954, 0.26130258, 0.27577711),
  ),
}
# A ViT layout's normalisation; timm's ViTs differ from checkpoint to
# checkpoint: none.
LAYOUT_NORMALIZATION = {"dinov2": "imagenet", "clip": "clip"}
CNN_PREPROCESSING = {
  "resnet50": Preprocessing(
    224, *NORMALIZATIONS["imagenet"], interpolation="bilinear"
  ),
  # pretrainedmodels' bninception: BGR in 0-255 minus (104, 117, 128).
  "bn_inception": Preprocessing(
    224,
    mean=(104 / 255, 117 / 255, 128 / 255),
    std=(1 / 255, 1 / 255, 1 / 255),
    channel_order="bgr",
    interpolation="bilinear",
  ),
}
