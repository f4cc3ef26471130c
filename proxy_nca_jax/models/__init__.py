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
"""Embedding networks.

Backbones, each followed by the same embedding head: convnet-S (below),
ResNet-50 (resnet.py), BN-Inception (bn_inception.py) and the Vision
Transformers (vit.py: ``vit_ti16`` ... ``vit_b32``, sizes Ti/S/B with patches
14/16/32, and the two-block ``vit_test``), chosen by ``config.model.name``
(``create_model``); a ViT's options are ``config.model.vit``.

convnet-S (../shared/DESIGN.md, the FMNIST-ZS model): conv3x3(32)-BN-ReLU x2,
maxpool; conv3x3(64)-BN-ReLU x2, maxpool; conv3x3(128)-BN-ReLU; global average
pool; linear -> embedding_dim; L2-normalise. Images are NHWC.

The embedding head (``embedding_head``, shared by every backbone) takes the
last feature map to unit-norm embeddings: global average or global max
pooling, optionally a LayerNorm without learned affine parameters, then the
linear embedding layer and L2 normalisation. Max pooling and the LayerNorm
are ProxyNCA++'s head (Teh et al., ECCV 2020, Sec. 3.3-3.4).

Parameter layout: the embedding layer is the submodule named ``embedding``
(``HEAD_MODULE``); everything else is the backbone. The optimiser gives each
group its own learning rate (see optim.py). ResNet-50, BN-Inception and the
ViTs sit under ``BACKBONE_MODULE``, the subtree that pretrained weights
replace. A ViT has no batch statistics: its variables are ``params`` alone.

Speed (CPU): convnet-S is built from ``max_pool_2x2`` and ``BatchNormReLU``
(fast_layers.py), the stock Flax layers' function and gradient written by
hand for XLA CPU; they are importable from here.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from proxy_nca_jax import errors, geometry
from proxy_nca_jax.models import bn_inception, resnet, vit
from proxy_nca_jax.models.fast_layers import (
  BatchNormReLU,
  max_pool_2x2,
)
from proxy_nca_jax.models.fast_layers import (
  batch_norm_relu as batch_norm_relu,  # Public as models.batch_norm_relu.
)

HEAD_MODULE = "embedding"
BACKBONE_MODULE = "backbone"
MODELS = ("convnet_s", "resnet50", "bn_inception", *vit.MODELS)
POOLINGS = ("avg", "max")
DTYPES = ("float32", "bfloat16")


def embedding_head(
  features: jax.Array,
  *,
  embedding_dim: int,
  pooling: str = "avg",
  layer_norm: bool = False,
) -> jax.Array:
  """Pools a feature map and projects it to unit-norm embeddings.

  Call it inside a compact ``__call__``: the embedding layer becomes the
  calling module's submodule ``HEAD_MODULE``, so every backbone keeps the
  same parameter path for the head.

  Args:
    features: float array (B, H, W, C), the backbone's last feature map.
    embedding_dim: size D of the embedding.
    pooling: "avg" (global average pooling) or "max" (global max pooling,
      ProxyNCA++).
    layer_norm: normalise the pooled features to zero mean and unit
      variance over C, without learned scale or bias (ProxyNCA++).

  Returns:
    float32 array (B, D) of unit-norm embeddings.
  """
  if pooling == "avg":
    x = jnp.mean(features, axis=(1, 2))
  elif pooling == "max":
    x = jnp.max(features, axis=(1, 2))
  else:
    raise errors.InvalidInputError(
      f"Unknown pooling {pooling!r}; choose one of {POOLINGS}."
    )
  if layer_norm:
    x = nn.LayerNorm(use_scale=False, use_bias=False, name="head_norm")(x)
  x = nn.Dense(embedding_dim, name=HEAD_MODULE)(x)
  return geometry.l2_normalize(x)


# Makes convnet-S's convolution: (output features, module name) -> module.
ConvFactory = Callable[[int, str], nn.Module]


def conv3x3(features: int, name: str) -> nn.Module:
  """convnet-S's convolution: 3x3, stride 1, SAME padding, no bias (XLA's).
  Another `ConvFactory` must keep its parameter (``kernel``, HWIO) and
  function; native/convolution.py's (oneDNN) is one."""
  return nn.Conv(features, (3, 3), padding="SAME", use_bias=False, name=name)


class ConvBNReLU(nn.Module):
  """3x3 convolution (no bias), BatchNorm and ReLU.

  BatchNorm momentum 0.9 and epsilon 1e-5 match PyTorch's defaults
  (momentum 0.1 there counts the other way). Under sharded ``jit`` the batch
  statistics are computed over the global batch, across all devices.
  """

  features: int
  conv: ConvFactory = conv3x3

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = self.conv(self.features, "Conv_0")(x)
    return BatchNormReLU(
      use_running_average=not train,
      momentum=0.9,
      epsilon=1e-5,
      name="BatchNorm_0",
    )(x)


class ConvNetS(nn.Module):
  """convnet-S: a small VGG-style embedding network for 28x28 images.

  Attributes:
    embedding_dim: size of the output embedding.
    widths: channels of the three stages (two, two and one convolutions).
    pooling: global pooling of the head, "avg" or "max".
    layer_norm: LayerNorm on the pooled features (see ``embedding_head``).
    conv: makes each convolution (default: XLA's, `conv3x3`).
  """

  embedding_dim: int = 64
  widths: Sequence[int] = (32, 64, 128)
  pooling: str = "avg"
  layer_norm: bool = False
  conv: ConvFactory = conv3x3

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    """Embeds a batch of images.

    Args:
      images: float array (B, H, W, C), normalised pixels.
      train: use batch statistics (and update the running ones) if True.

    Returns:
      float32 array (B, embedding_dim) of unit-norm embeddings.
    """
    first, second, third = self.widths
    x = images
    for features in (first, first):
      x = ConvBNReLU(features, self.conv)(x, train=train)
    x = max_pool_2x2(x)
    for features in (second, second):
      x = ConvBNReLU(features, self.conv)(x, train=train)
    x = max_pool_2x2(x)
    x = ConvBNReLU(third, self.conv)(x, train=train)
    return embedding_head(
      x,
      embedding_dim=self.embedding_dim,
      pooling=self.pooling,
      layer_norm=self.layer_norm,
    )


class BackboneEmbedder(nn.Module):
  """A feature extractor (``BACKBONE_MODULE``) and the embedding head.

  Attributes:
    backbone: module mapping (images, train=...) to a (B, H, W, C) feature
      map, e.g. ``resnet.ResNet()``, ``bn_inception.BNInception()`` or
      ``vit.VisionTransformer()``; its variables are the subtree
      ``BACKBONE_MODULE``.
    embedding_dim: size of the output embedding.
    pooling: global pooling of the head, "avg" or "max".
    layer_norm: LayerNorm on the pooled features (see ``embedding_head``).
  """

  backbone: nn.Module
  embedding_dim: int = 64
  pooling: str = "avg"
  layer_norm: bool = False

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    """Embeds a batch of images.

    Args:
      images: float array (B, H, W, 3), normalised as the backbone expects.
      train: use batch statistics (and update the running ones) if True;
        a backbone with frozen BatchNorm uses its running statistics; a
        ViT applies stochastic depth (model.vit.drop_path).

    Returns:
      float32 array (B, embedding_dim) of unit-norm embeddings.
    """
    # A module attribute is a submodule named after the attribute.
    features = self.backbone(images, train=train)
    # The head runs in float32 whatever the backbone's compute dtype.
    return embedding_head(
      features.astype(jnp.float32),
      embedding_dim=self.embedding_dim,
      pooling=self.pooling,
      layer_norm=self.layer_norm,
    )


def create_backbone(model_config: ml_collections.ConfigDict) -> nn.Module:
  """The feature extractor of ``resnet50``, ``bn_inception`` or a ViT."""
  if model_config.dtype not in DTYPES:
    raise errors.InvalidInputError(
      f"Unknown model.dtype {model_config.dtype!r}; choose one of {DTYPES}."
    )
  dtype = jnp.dtype(model_config.dtype)
  if model_config.name == "resnet50":
    return resnet.ResNet(frozen_bn=model_config.frozen_bn, dtype=dtype)
  if model_config.name == "bn_inception":
    return bn_inception.BNInception(
      frozen_bn=model_config.frozen_bn, dtype=dtype
    )
  if model_config.name in vit.MODELS:
    return _create_vit(model_config, dtype)
  raise errors.InvalidInputError(
    f"{model_config.name!r} has no separate backbone; choose one of "
    f"{MODELS[1:]}."
  )


def _create_vit(
  model_config: ml_collections.ConfigDict, dtype: jnp.dtype
) -> vit.VisionTransformer:
  if model_config.frozen_bn:
    raise errors.InvalidInputError(
      f"{model_config.name} has no BatchNorm: model.frozen_bn applies to "
      "resnet50 and bn_inception; set it to False."
    )
  options = model_config.vit
  return vit.VisionTransformer(
    size=vit.SIZES[model_config.name],
    layout=options.layout,
    registers=options.registers,
    position_size=options.position_size,
    prefix_positions=options.prefix_positions,
    layer_scale=options.layer_scale,
    projection_dim=options.projection_dim,
    readout=options.readout,
    drop_path=options.drop_path,
    dtype=dtype,
  )


# Values of ``model.conv``: convnet-S's convolution in training.
CONVOLUTIONS = ("xla", "onednn")


def create_model(
  model_config: ml_collections.ConfigDict, conv: ConvFactory = conv3x3
) -> nn.Module:
  """Builds the model named by ``model_config.name``.

  Args:
    model_config: ``config.model``.
    conv: convnet-S's convolution (default XLA's). ``model.conv`` is only
      checked here: the trainer passes oneDNN's for ``"onednn"``
      (training/setup.py); a trained network is used with XLA's, the same
      weights and function.
  """
  if model_config.name not in MODELS:
    raise errors.InvalidInputError(
      f"Unknown model {model_config.name!r}; choose one of {MODELS}."
    )
  if model_config.pooling not in POOLINGS:
    raise errors.InvalidInputError(
      f"Unknown model.pooling {model_config.pooling!r}; choose one of "
      f"{POOLINGS}."
    )
  if model_config.conv not in CONVOLUTIONS:
    raise errors.InvalidInputError(
      f"Unknown model.conv {model_config.conv!r}; choose one of {CONVOLUTIONS}."
    )
  if model_config.conv != "xla" and model_config.name != "convnet_s":
    raise errors.InvalidInputError(
      f"model.conv={model_config.conv!r} is convnet_s's option; "
      f"{model_config.name} trains with XLA's convolutions "
      "(model.conv='xla')."
    )
  if model_config.name != "convnet_s":
    return BackboneEmbedder(
      backbone=create_backbone(model_config),
      embedding_dim=model_config.embedding_dim,
      pooling=model_config.pooling,
      layer_norm=model_config.layer_norm,
    )
  if len(model_config.widths) != 3:
    raise errors.InvalidInputError(
      f"convnet_s needs three stage widths, got {model_config.widths}."
    )
  if model_config.frozen_bn or model_config.dtype != "float32":
    raise errors.InvalidInputError(
      "model.frozen_bn and model.dtype apply to resnet50 and bn_inception "
      "(model.dtype to the ViTs too); convnet_s trains its BatchNorm in "
      "float32."
    )
  return ConvNetS(
    embedding_dim=model_config.embedding_dim,
    widths=tuple(model_config.widths),
    pooling=model_config.pooling,
    layer_norm=model_config.layer_norm,
    conv=conv,
  )
