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
"""BN-Inception feature extractor (NHWC), the Proxy-NCA paper's backbone.

Inception with Batch Normalization (Ioffe & Szegedy, ICML 2015), exactly as
the PyTorch port that metric-learning code fine-tunes (Cadene's
pretrainedmodels ``bninception``, weights ``bn_inception-52deb4733.pth``;
used by ProxyNCA++ and Proxy-Anchor): every convolution has a bias and is
followed by BatchNorm (eps 1e-5) and ReLU; the stem's and the reduction
blocks' max pools round their output size up (PyTorch's ``ceil_mode``); the
branch pools of inception 3a-5a are 3x3 average pools counting the zero
padding, 5b's is a 3x3 max pool.

Module names are the PyTorch attribute names (``conv1_7x7_s2``,
``conv1_7x7_s2_bn``, ``inception_3a_1x1``, ...), so models.pretrained maps the
file onto these variables by name.

Inputs: **BGR** images in the **0-255** range minus the per-channel mean
(104, 117, 128) (B, G, R), without division by a standard deviation: the
Caffe convention the weights were trained with; the input pipeline does
this. The smallest input is 32x32 (the reduction blocks 3c and 4e need an
even size); 224 and the paper's 227 give a 7x7 feature map.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from proxy_nca_jax import errors
from proxy_nca_jax.models import resnet

# Channels of the blocks that keep the resolution: (1x1, 3x3 reduce, 3x3,
# double 3x3 reduce, double 3x3, pool, pool projection).
_BLOCKS = {
  "3a": (64, 64, 64, 64, 96, "avg", 32),
  "3b": (64, 64, 96, 64, 96, "avg", 64),
  "4a": (224, 64, 96, 96, 128, "avg", 128),
  "4b": (192, 96, 128, 96, 128, "avg", 128),
  "4c": (160, 128, 160, 128, 160, "avg", 128),
  "4d": (96, 128, 192, 160, 192, "avg", 128),
  "5a": (352, 192, 320, 160, 224, "avg", 128),
  "5b": (352, 192, 320, 192, 224, "max", 128),
}
# Blocks that halve it, stride-2 convolutions beside a max pool: (3x3
# reduce, 3x3, double 3x3 reduce, double 3x3).
_REDUCTIONS = {"3c": (128, 160, 64, 96), "4e": (128, 192, 192, 256)}
LAYOUT = ("3a", "3b", "3c", "4a", "4b", "4c", "4d", "4e", "5a", "5b")


def max_pool_ceil(x: jax.Array) -> jax.Array:
  """3x3 max pool, stride 2, no padding, output size rounded up.

  PyTorch's ``MaxPool2d(3, stride=2, ceil_mode=True)``: a last, partial
  window is kept when it starts inside the input; what it lacks counts as
  -inf.

  Args:
    x: (B, H, W, C).

  Returns:
    (B, ceil((H - 3) / 2) + 1, ceil((W - 3) / 2) + 1, C).
  """
  pads = []
  for size in x.shape[1:3]:
    out = math.ceil((size - 3) / 2) + 1
    if (out - 1) * 2 >= size:  # PyTorch drops a window starting outside.
      out -= 1
    pads.append((0, max(0, (out - 1) * 2 + 3 - size)))
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=pads)


class BNInception(nn.Module):
  """BN-Inception without its classifier.

  Attributes:
    frozen_bn: BatchNorm with fixed statistics and affine parameters, for
      fine-tuning with small batches (see ``resnet.batch_norm``).
    dtype: computation dtype, e.g. ``jnp.bfloat16`` on accelerators.
  """

  frozen_bn: bool = False
  dtype: jnp.dtype = jnp.float32

  def _unit(
    self,
    x: jax.Array,
    name: str,
    features: int,
    kernel: int,
    stride: int = 1,
    *,
    train: bool,
  ) -> jax.Array:
    """Convolution ``name`` (with bias), BatchNorm ``name_bn``, ReLU."""
    pad = (kernel - 1) // 2
    x = nn.Conv(
      features,
      (kernel, kernel),
      strides=(stride, stride),
      padding=((pad, pad), (pad, pad)),
      dtype=self.dtype,
      name=name,
    )(x)
    x = resnet.batch_norm(
      train=train, frozen=self.frozen_bn, dtype=self.dtype, name=f"{name}_bn"
    )(x)
    return nn.relu(x)

  def _block(self, x: jax.Array, name: str, *, train: bool) -> jax.Array:
    n1x1, n3r, n3, nd3r, nd3, pool, nproj = _BLOCKS[name]
    p = f"inception_{name}_"
    branch_1x1 = self._unit(x, p + "1x1", n1x1, 1, train=train)
    branch_3x3 = self._unit(x, p + "3x3_reduce", n3r, 1, train=train)
    branch_3x3 = self._unit(branch_3x3, p + "3x3", n3, 3, train=train)
    double = self._unit(x, p + "double_3x3_reduce", nd3r, 1, train=train)
    double = self._unit(double, p + "double_3x3_1", nd3, 3, train=train)
    double = self._unit(double, p + "double_3x3_2", nd3, 3, train=train)
    window = dict(window_shape=(3, 3), strides=(1, 1), padding=((1, 1),) * 2)
    if pool == "avg":
      # PyTorch's AvgPool2d default count_include_pad=True: always / 9.
      pooled = nn.avg_pool(x, **window, count_include_pad=True)
    else:
      pooled = nn.max_pool(x, **window)
    pooled = self._unit(pooled, p + "pool_proj", nproj, 1, train=train)
    return jnp.concatenate([branch_1x1, branch_3x3, double, pooled], axis=-1)

  def _reduction(self, x: jax.Array, name: str, *, train: bool) -> jax.Array:
    n3r, n3, nd3r, nd3 = _REDUCTIONS[name]
    p = f"inception_{name}_"
    branch_3x3 = self._unit(x, p + "3x3_reduce", n3r, 1, train=train)
    branch_3x3 = self._unit(branch_3x3, p + "3x3", n3, 3, 2, train=train)
    double = self._unit(x, p + "double_3x3_reduce", nd3r, 1, train=train)
    double = self._unit(double, p + "double_3x3_1", nd3, 3, train=train)
    double = self._unit(double, p + "double_3x3_2", nd3, 3, 2, train=train)
    return jnp.concatenate([branch_3x3, double, max_pool_ceil(x)], axis=-1)

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    """Feature map of a batch of images.

    Args:
      images: float array (B, H, W, 3), BGR 0-255 minus the mean (module
        docstring); H and W at least 32.
      train: batch statistics (updated running averages) if True, unless
        ``frozen_bn``.

    Returns:
      (B, H', W', 1024) features in ``dtype``; H' = W' = 7 at 224 or 227.

    Raises:
      ValueError: if the image is too small or its size gives an odd
        feature map before a reduction block.
    """
    x = self._unit(images, "conv1_7x7_s2", 64, 7, 2, train=train)
    x = max_pool_ceil(x)
    x = self._unit(x, "conv2_3x3_reduce", 64, 1, train=train)
    x = self._unit(x, "conv2_3x3", 192, 3, train=train)
    x = max_pool_ceil(x)
    for name in LAYOUT:
      if name in _BLOCKS:
        x = self._block(x, name, train=train)
        continue
      if x.shape[1] % 2 or x.shape[2] % 2 or min(x.shape[1:3]) < 2:
        raise errors.InvalidInputError(
          f"BN-Inception cannot take {images.shape[1]}x{images.shape[2]} "
          f"images: block {name} would get a {x.shape[1]}x{x.shape[2]} map "
          "and needs an even size of at least 2 (use e.g. 224 or 227; 32 is "
          "the smallest)."
        )
      x = self._reduction(x, name, train=train)
    return x
