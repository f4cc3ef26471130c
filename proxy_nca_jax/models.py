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

convnet-S (../shared/DESIGN.md, the FMNIST-ZS model): conv3x3(32)-BN-ReLU x2,
maxpool; conv3x3(64)-BN-ReLU x2, maxpool; conv3x3(128)-BN-ReLU; global average
pool; linear -> embedding_dim; L2-normalise. Images are NHWC.

Parameter layout: the embedding layer is the submodule named ``embedding``
(``HEAD_MODULE``); everything else is the backbone. The optimiser gives each
group its own learning rate (see optim.py).

Speed (CPU): max pooling is ``max_pool_2x2``, the same function and gradient
as ``flax.linen.max_pool(x, (2, 2), strides=(2, 2))`` but with a backward
pass written as element-wise selects: XLA CPU lowers the stock gradient
(select-and-scatter) to a scatter that took a third of the train step on
2 cores (benchmarks/README.md has the measurements).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from proxy_nca_jax import losses

HEAD_MODULE = "embedding"
MODELS = ("convnet_s",)


@jax.custom_vjp
def _max_pool_2x2_even(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _max_pool_2x2_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  return _max_pool_2x2_even(x), x


def _max_pool_2x2_bwd(x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
  b, h, w, c = x.shape
  window = x.reshape(b, h // 2, 2, w // 2, 2, c)
  # The four members of each window in row-major order, (B, H/2, W/2, C).
  members = [window[:, :, i, :, j] for i in (0, 1) for j in (0, 1)]
  y = jnp.maximum(
    jnp.maximum(members[0], members[1]), jnp.maximum(members[2], members[3])
  )
  # Like XLA's select-and-scatter (the stock gradient), the whole gradient
  # goes to the first maximum of a window; later ties get none.
  taken = jnp.zeros(y.shape, bool)
  grads = []
  for member in members:
    hit = (member == y) & ~taken
    taken |= hit
    grads.append(jnp.where(hit, g, jnp.zeros_like(g)))
  top = jnp.stack(grads[:2], axis=3)
  bottom = jnp.stack(grads[2:], axis=3)
  return (jnp.stack([top, bottom], axis=2).reshape(x.shape),)


_max_pool_2x2_even.defvjp(_max_pool_2x2_fwd, _max_pool_2x2_bwd)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max pooling with stride 2 and VALID padding, NHWC.

  The same values and gradient as ``flax.linen.max_pool(x, (2, 2),
  strides=(2, 2))``, including ties (the first maximum of a window in
  row-major order gets the gradient), but several times faster to
  differentiate on CPU.

  Args:
    x: float array (B, H, W, C); an odd last row or column is dropped.

  Returns:
    Array (B, H // 2, W // 2, C) of the same dtype.
  """
  _, h, w, _ = x.shape
  return _max_pool_2x2_even(x[:, : h - h % 2, : w - w % 2])


class ConvBNReLU(nn.Module):
  """3x3 convolution (no bias), BatchNorm and ReLU.

  BatchNorm momentum 0.9 and epsilon 1e-5 match PyTorch's defaults
  (momentum 0.1 there counts the other way). Under sharded ``jit`` the batch
  statistics are computed over the global batch, across all devices.
  """

  features: int

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(
      x
    )
    return nn.relu(x)


class ConvNetS(nn.Module):
  """convnet-S: a small VGG-style embedding network for 28x28 images.

  Attributes:
    embedding_dim: size of the output embedding.
    widths: channels of the three stages (two, two and one convolutions).
  """

  embedding_dim: int = 64
  widths: Sequence[int] = (32, 64, 128)

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
      x = ConvBNReLU(features)(x, train=train)
    x = max_pool_2x2(x)
    for features in (second, second):
      x = ConvBNReLU(features)(x, train=train)
    x = max_pool_2x2(x)
    x = ConvBNReLU(third)(x, train=train)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.embedding_dim, name=HEAD_MODULE)(x)
    return losses.l2_normalize(x)


def create_model(model_config: ml_collections.ConfigDict) -> nn.Module:
  """Builds the model named by ``model_config.name``."""
  if model_config.name not in MODELS:
    raise ValueError(
      f"Unknown model {model_config.name!r}; choose one of {MODELS}."
    )
  if len(model_config.widths) != 3:
    raise ValueError(
      f"convnet_s needs three stage widths, got {model_config.widths}."
    )
  return ConvNetS(
    embedding_dim=model_config.embedding_dim,
    widths=tuple(model_config.widths),
  )
