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
"""ResNet-50 feature extractor in torchvision's layout (NHWC).

He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, as
torchvision builds it ("ResNet v1.5": the stride of a down-sampling
bottleneck is on its 3x3 convolution). ProxyNCA++ (Teh et al., ECCV 2020) and
most later metric-learning work fine-tune this network from ImageNet.

Module names mirror torchvision's state-dict keys with ``.`` written as
``_`` (``layer2_0/downsample_1`` is ``layer2.0.downsample.1``), so
models/pretrained.py maps a torchvision file onto these variables by name.

Inputs: RGB images scaled to [0, 1], then normalised with the ImageNet mean
(0.485, 0.456, 0.406) and standard deviation (0.229, 0.224, 0.225), as
torchvision's weights expect; the input pipeline does this.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# torchvision initialises convolutions with He-normal, fan-out.
_KERNEL_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
RESNET50_STAGE_SIZES = (3, 4, 6, 3)


def batch_norm(
  *, train: bool, frozen: bool, dtype: jnp.dtype, name: str
) -> nn.BatchNorm:
  """PyTorch's BatchNorm2d defaults (momentum 0.1, i.e. Flax 0.9; eps 1e-5).

  ``frozen`` normalises with the running statistics in training too and
  never updates them; the optimiser leaves its scale and bias alone
  (optim.py).
  """
  return nn.BatchNorm(
    use_running_average=frozen or not train,
    momentum=0.9,
    epsilon=1e-5,
    dtype=dtype,
    name=name,
  )


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (stride) -> 1x1 (x4 channels), with a projected shortcut.

  Attributes:
    planes: channels of the 1x1 and 3x3 convolutions; the block outputs
      ``4 * planes``.
    stride: stride of the 3x3 convolution and of the shortcut.
    frozen_bn: see ``batch_norm``.
    dtype: computation dtype (parameters stay float32).
  """

  planes: int
  stride: int = 1
  frozen_bn: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """(B, H, W, C) -> (B, H / stride, W / stride, 4 * planes)."""

    def conv(features, kernel, stride, name):
      pad = kernel // 2
      return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=_KERNEL_INIT,
        dtype=self.dtype,
        name=name,
      )

    def bn(name):
      return batch_norm(
        train=train, frozen=self.frozen_bn, dtype=self.dtype, name=name
      )

    out_features = 4 * self.planes
    y = nn.relu(bn("bn1")(conv(self.planes, 1, 1, "conv1")(x)))
    y = nn.relu(bn("bn2")(conv(self.planes, 3, self.stride, "conv2")(y)))
    y = bn("bn3")(conv(out_features, 1, 1, "conv3")(y))
    if self.stride != 1 or x.shape[-1] != out_features:
      x = conv(out_features, 1, self.stride, "downsample_0")(x)
      x = bn("downsample_1")(x)
    return nn.relu(y + x)


class ResNet(nn.Module):
  """ResNet with bottleneck blocks, without its classifier.

  Attributes:
    stage_sizes: bottleneck blocks per stage; (3, 4, 6, 3) is ResNet-50.
    width: channels of the stem; stage i has ``width * 2**i`` planes.
    frozen_bn: BatchNorm with fixed statistics and affine parameters, for
      fine-tuning with small batches (see ``batch_norm``).
    dtype: computation dtype, e.g. ``jnp.bfloat16`` on accelerators.
  """

  stage_sizes: Sequence[int] = RESNET50_STAGE_SIZES
  width: int = 64
  frozen_bn: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    """Feature map of a batch of images.

    Args:
      images: float array (B, H, W, 3), normalised as the module docstring
        says.
      train: batch statistics (updated running averages) if True, unless
        ``frozen_bn``.

    Returns:
      (B, ceil(H / 32), ceil(W / 32), 32 * width) features in ``dtype``
      (2048 channels for ResNet-50).
    """
    x = nn.Conv(
      self.width,
      (7, 7),
      strides=(2, 2),
      padding=((3, 3), (3, 3)),
      use_bias=False,
      kernel_init=_KERNEL_INIT,
      dtype=self.dtype,
      name="conv1",
    )(images)
    x = batch_norm(
      train=train, frozen=self.frozen_bn, dtype=self.dtype, name="bn1"
    )(x)
    x = nn.relu(x)
    # Padding with -inf, as PyTorch's MaxPool2d(3, 2, padding=1).
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        x = Bottleneck(
          planes=self.width * 2**stage,
          stride=2 if stage > 0 and block == 0 else 1,
          frozen_bn=self.frozen_bn,
          dtype=self.dtype,
          name=f"layer{stage + 1}_{block}",
        )(x, train=train)
    return x
