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
"""PyTorch versions of our backbones: the networks whose weight files users
have (the weight-import tests read their state dicts; the accelerator
benchmark trains them).

* ``TorchResNet50``: torchvision's ``resnet50`` (same module names, so the
  same state-dict keys; torchvision itself is not installable beside the CPU
  torch wheel, so it is written out here from its definition).
* ``TorchBNInception``: Cadene's pretrainedmodels ``bninception`` (the
  network of ``bn_inception-52deb4733.pth``): the same attribute names and
  layers, so the same keys. Its forward applies ReLU in place after every
  BatchNorm, so each BatchNorm output that later layers read is rectified;
  here the ReLU is written out.

``randomize`` gives every BatchNorm non-trivial statistics and affine
parameters, and ``to_file_layout`` rewrites a state dict the way the
original BN-Inception file stores it.
"""

import torch
from torch import nn


class Bottleneck(nn.Module):
  """torchvision's Bottleneck (stride on the 3x3 convolution)."""

  def __init__(self, inplanes: int, planes: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU()
    self.downsample = None
    if stride != 1 or inplanes != planes * 4:
      self.downsample = nn.Sequential(
        nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
        nn.BatchNorm2d(planes * 4),
      )

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu(out + identity)


class TorchResNet50(nn.Module):
  """torchvision.models.resnet50(weights=None), layer for layer."""

  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU()
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    inplanes = 64
    for index, (planes, blocks, stride) in enumerate(
      [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]
    ):
      layers = []
      for block in range(blocks):
        layers.append(Bottleneck(inplanes, planes, stride if block == 0 else 1))
        inplanes = planes * 4
      setattr(self, f"layer{index + 1}", nn.Sequential(*layers))
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(2048, 1000)

  def features(self, x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 2048, H', W'), before pooling and classifier."""
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    for index in range(1, 5):
      x = getattr(self, f"layer{index}")(x)
    return x


# Cadene's bninception: per block the input channels and the output channels
# of 1x1, 3x3_reduce, 3x3, double_3x3_reduce, double_3x3_1 (= _2) and
# pool_proj; the reduction blocks 3c and 4e have no 1x1 and no pool_proj.
_INCEPTION = [
  ("3a", 192, 64, 64, 64, 64, 96, 32),
  ("3b", 256, 64, 64, 96, 64, 96, 64),
  ("3c", 320, None, 128, 160, 64, 96, None),
  ("4a", 576, 224, 64, 96, 96, 128, 128),
  ("4b", 576, 192, 96, 128, 96, 128, 128),
  ("4c", 576, 160, 128, 160, 128, 160, 128),
  ("4d", 608, 96, 128, 192, 160, 192, 128),
  ("4e", 608, None, 128, 192, 192, 256, None),
  ("5a", 1056, 352, 192, 320, 160, 224, 128),
  ("5b", 1024, 352, 192, 320, 192, 224, 128),
]


class TorchBNInception(nn.Module):
  """pretrainedmodels.models.bninception.BNInception, same names."""

  def __init__(self):
    super().__init__()
    self._conv("conv1_7x7_s2", 3, 64, 7, 2)
    self.pool1_3x3_s2 = nn.MaxPool2d(3, 2, ceil_mode=True)
    self._conv("conv2_3x3_reduce", 64, 64, 1)
    self._conv("conv2_3x3", 64, 192, 3)
    self.pool2_3x3_s2 = nn.MaxPool2d(3, 2, ceil_mode=True)
    for name, cin, c1, c3r, c3, cdr, cd, cp in _INCEPTION:
      p = f"inception_{name}_"
      stride = 2 if c1 is None else 1
      if c1 is not None:
        self._conv(p + "1x1", cin, c1, 1)
      self._conv(p + "3x3_reduce", cin, c3r, 1)
      self._conv(p + "3x3", c3r, c3, 3, stride)
      self._conv(p + "double_3x3_reduce", cin, cdr, 1)
      self._conv(p + "double_3x3_1", cdr, cd, 3)
      self._conv(p + "double_3x3_2", cd, cd, 3, stride)
      if c1 is None:
        pool = nn.MaxPool2d(3, 2, ceil_mode=True)
      elif name == "5b":
        pool = nn.MaxPool2d(3, 1, 1, ceil_mode=True)
      else:
        pool = nn.AvgPool2d(3, 1, 1, ceil_mode=True, count_include_pad=True)
      setattr(self, p + "pool", pool)
      if cp is not None:
        self._conv(p + "pool_proj", cin, cp, 1)
    self.global_pool = nn.AvgPool2d(7, 1, 0, ceil_mode=True)
    self.last_linear = nn.Linear(1024, 1000)

  def _conv(self, name, cin, cout, kernel, stride=1):
    setattr(self, name, nn.Conv2d(cin, cout, kernel, stride, kernel // 2))
    setattr(self, name + "_bn", nn.BatchNorm2d(cout, eps=1e-5, momentum=0.9))

  def _unit(self, name: str, x: torch.Tensor) -> torch.Tensor:
    bn = getattr(self, name + "_bn")
    return torch.relu(bn(getattr(self, name)(x)))

  def features(self, x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) BGR -> (B, 1024, H', W'), before global pooling."""
    x = self.pool1_3x3_s2(self._unit("conv1_7x7_s2", x))
    x = self._unit("conv2_3x3", self._unit("conv2_3x3_reduce", x))
    x = self.pool2_3x3_s2(x)
    for name, _, c1, *_ in _INCEPTION:
      p = f"inception_{name}_"
      branches = []
      if c1 is not None:
        branches.append(self._unit(p + "1x1", x))
      branches.append(self._unit(p + "3x3", self._unit(p + "3x3_reduce", x)))
      double = self._unit(p + "double_3x3_reduce", x)
      double = self._unit(p + "double_3x3_1", double)
      branches.append(self._unit(p + "double_3x3_2", double))
      pooled = getattr(self, p + "pool")(x)
      if c1 is not None:
        pooled = self._unit(p + "pool_proj", pooled)
      branches.append(pooled)
      x = torch.cat(branches, 1)
    return x


def randomize(model: nn.Module, images: torch.Tensor, seed: int) -> None:
  """Random weights with BatchNorm statistics that keep activations O(1).

  Convolution biases are drawn at random, the running statistics set to
  those of ``images`` (one pass in training mode, cumulative average), then
  every BatchNorm's statistics and affine parameters perturbed at random, so
  an importer that swapped mean and variance, or scale and bias, would not
  match.
  """
  torch.manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.BatchNorm2d):
        module.momentum = None
        module.reset_running_stats()
      elif isinstance(module, nn.Conv2d) and module.bias is not None:
        module.bias.copy_(0.1 * torch.randn_like(module.bias))
    model.train()
    model.features(images)
    # Perturbations with mean gain near 1, so that 50 layers in series
    # neither explode nor vanish.
    for module in model.modules():
      if isinstance(module, nn.BatchNorm2d):
        c = module.num_features
        module.running_mean += 0.05 * module.running_var.sqrt() * torch.randn(c)
        module.running_var *= torch.empty(c).uniform_(0.9, 1.1)
        module.weight.copy_(torch.empty(c).uniform_(0.8, 1.0))
        module.bias.copy_(0.05 * torch.randn(c))
  model.eval()


def to_file_layout(state_dict: dict) -> dict:
  """The layout of bn_inception-52deb4733.pth (saved by PyTorch 0.2).

  BatchNorm vectors are stored as (1, C) and there is no
  ``num_batches_tracked``.
  """
  out = {}
  for key, value in state_dict.items():
    if key.endswith("num_batches_tracked"):
      continue
    if value.ndim == 1 and not key.startswith("last_linear"):
      is_conv_bias = not key.split(".")[0].endswith("_bn")
      value = value if is_conv_bias else value.reshape(1, -1)
    out[key] = value.clone()
  return out
