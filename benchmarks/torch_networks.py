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

The Vision Transformers whose state dicts models/pretrained.py imports,
written from their sources (not imported: neither timm nor the hub code is a
dependency), with the same module names, so the same keys:

* ``TorchTimmViT``: timm's ``VisionTransformer`` (vit_*), with
  ``dynamic_img_size`` (position embeddings resampled by
  ``resample_abs_pos_embed``: bicubic, antialiased), register tokens,
  ``no_embed_class``, LayerScale and ``global_pool`` "token" or "avg"
  (``fc_norm``).
* ``TorchDinoV2``: facebookresearch/dinov2's ``DinoVisionTransformer`` as
  its hub builds it (LayerScale, ``block_chunks=0``; with registers,
  ``interpolate_antialias=True, interpolate_offset=0``, without,
  ``False, 0.1``), ``interpolate_pos_encoding`` of the current code.
* ``TorchCLIP``: OpenAI CLIP's model with its ``VisionTransformer`` as
  ``visual`` (``nn.MultiheadAttention``, QuickGELU, ``ln_pre``, ``proj``) and a
  one-block text tower whose keys an import must drop. OpenAI's code runs at
  its training size only; at another the position grid is resized as
  open_clip's ``resize_pos_embed`` does (bicubic, antialiased). Its LayerNorm
  casts to float32 (a float16 guard); here it is plain, so the reference can
  run in float64.

``randomize_transformer`` draws every parameter at a scale that keeps the
activations O(1).
"""

import collections
import math

import torch
import torch.nn.functional as F
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


class _PatchEmbed(nn.Module):
  """timm's and DINOv2's PatchEmbed: ``proj``, then (B, N, C) tokens."""

  def __init__(self, patch_size: int, width: int):
    super().__init__()
    self.proj = nn.Conv2d(3, width, patch_size, patch_size)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.proj(x).flatten(2).transpose(1, 2)


class _Attention(nn.Module):
  """timm's and DINOv2's Attention (fused qkv, then proj)."""

  def __init__(self, width: int, num_heads: int):
    super().__init__()
    self.num_heads = num_heads
    self.qkv = nn.Linear(width, 3 * width)
    self.proj = nn.Linear(width, width)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    x = F.scaled_dot_product_attention(q, k, v)
    return self.proj(x.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
  def __init__(self, width: int):
    super().__init__()
    self.fc1 = nn.Linear(width, 4 * width)
    self.act = nn.GELU()
    self.fc2 = nn.Linear(4 * width, width)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.fc2(self.act(self.fc1(x)))


class _LayerScale(nn.Module):
  def __init__(self, width: int):
    super().__init__()
    self.gamma = nn.Parameter(torch.ones(width))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x * self.gamma


class _Block(nn.Module):
  """timm's and DINOv2's pre-norm Block (LayerScale optional)."""

  def __init__(self, width: int, num_heads: int, layer_scale: bool):
    super().__init__()
    self.norm1 = nn.LayerNorm(width, eps=1e-6)
    self.attn = _Attention(width, num_heads)
    self.ls1 = _LayerScale(width) if layer_scale else nn.Identity()
    self.norm2 = nn.LayerNorm(width, eps=1e-6)
    self.mlp = _Mlp(width)
    self.ls2 = _LayerScale(width) if layer_scale else nn.Identity()

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = x + self.ls1(self.attn(self.norm1(x)))
    return x + self.ls2(self.mlp(self.norm2(x)))


class TorchTimmViT(nn.Module):
  """timm.models.vision_transformer.VisionTransformer, same names."""

  def __init__(
    self,
    *,
    width: int,
    depth: int,
    num_heads: int,
    patch_size: int,
    img_size: int,
    reg_tokens: int = 0,
    no_embed_class: bool = False,
    layer_scale: bool = False,
    global_pool: str = "token",
  ):
    super().__init__()
    self.patch_size, self.grid = patch_size, img_size // patch_size
    self.num_prefix_tokens = 1 + reg_tokens
    self.no_embed_class, self.global_pool = no_embed_class, global_pool
    self.patch_embed = _PatchEmbed(patch_size, width)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
    self.reg_token = (
      nn.Parameter(torch.zeros(1, reg_tokens, width)) if reg_tokens else None
    )
    embed_len = self.grid**2 + (0 if no_embed_class else 1 + reg_tokens)
    self.pos_embed = nn.Parameter(torch.zeros(1, embed_len, width))
    self.blocks = nn.Sequential(
      *(_Block(width, num_heads, layer_scale) for _ in range(depth))
    )
    fc_norm = global_pool == "avg"
    identity = nn.Identity()
    self.norm = identity if fc_norm else nn.LayerNorm(width, eps=1e-6)
    self.fc_norm = nn.LayerNorm(width, eps=1e-6) if fc_norm else identity
    self.head = nn.Linear(width, 10)

  def _pos_embed(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    prefix = [self.cls_token.expand(x.shape[0], -1, -1)]
    if self.reg_token is not None:
      prefix.append(self.reg_token.expand(x.shape[0], -1, -1))
    num_prefix = 0 if self.no_embed_class else self.num_prefix_tokens
    pos_embed = self.pos_embed
    # resample_abs_pos_embed(new_size=hw, old_size=(grid, grid)).
    if not (
      pos_embed.shape[1] == hw[0] * hw[1] + num_prefix and hw[0] == hw[1]
    ):
      grid = pos_embed[:, num_prefix:].reshape(1, self.grid, self.grid, -1)
      grid = F.interpolate(
        grid.permute(0, 3, 1, 2), size=hw, mode="bicubic", antialias=True
      )
      grid = grid.permute(0, 2, 3, 1).reshape(1, hw[0] * hw[1], -1)
      pos_embed = torch.cat([pos_embed[:, :num_prefix], grid], dim=1)
    if self.no_embed_class:
      return torch.cat([*prefix, x + pos_embed], dim=1)
    return torch.cat([*prefix, x], dim=1) + pos_embed

  def tokens(self, x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, prefix + N, C), after the blocks, before norm."""
    hw = (x.shape[2] // self.patch_size, x.shape[3] // self.patch_size)
    return self.blocks(self._pos_embed(self.patch_embed(x), hw))

  def features(self, x: torch.Tensor) -> torch.Tensor:
    """(B, C): forward_head(pre_logits=True)'s input to the classifier."""
    x = self.norm(self.tokens(x))
    if self.global_pool == "avg":
      return self.fc_norm(x[:, self.num_prefix_tokens :].mean(1))
    return x[:, 0]


class TorchDinoV2(nn.Module):
  """dinov2.models.vision_transformer.DinoVisionTransformer, same names."""

  def __init__(
    self,
    *,
    width: int,
    depth: int,
    num_heads: int,
    patch_size: int,
    img_size: int,
    num_register_tokens: int = 0,
  ):
    super().__init__()
    self.patch_size, self.num_register_tokens = patch_size, num_register_tokens
    # The hub's: registers came with antialiasing and without the offset.
    self.interpolate_antialias = bool(num_register_tokens)
    self.interpolate_offset = 0.0 if num_register_tokens else 0.1
    self.patch_embed = _PatchEmbed(patch_size, width)
    num_patches = (img_size // patch_size) ** 2
    self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
    self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, width))
    self.register_tokens = (
      nn.Parameter(torch.zeros(1, num_register_tokens, width))
      if num_register_tokens
      else None
    )
    self.blocks = nn.ModuleList(
      _Block(width, num_heads, layer_scale=True) for _ in range(depth)
    )
    self.norm = nn.LayerNorm(width, eps=1e-6)
    self.head = nn.Identity()
    self.mask_token = nn.Parameter(torch.zeros(1, width))

  def interpolate_pos_encoding(self, x, w, h):
    # The hub's code (w is the height, h the width: it unpacks B, C, w, h).
    npatch, n = x.shape[1] - 1, self.pos_embed.shape[1] - 1
    if npatch == n and w == h:
      return self.pos_embed
    class_pos_embed, patch_pos_embed = (
      self.pos_embed[:, 0],
      self.pos_embed[:, 1:],
    )
    dim = x.shape[-1]
    w0, h0 = w // self.patch_size, h // self.patch_size
    m = int(math.sqrt(n))
    kwargs = {}
    if self.interpolate_offset:
      sx = float(w0 + self.interpolate_offset) / m
      sy = float(h0 + self.interpolate_offset) / m
      kwargs["scale_factor"] = (sx, sy)
    else:
      kwargs["size"] = (w0, h0)
    patch_pos_embed = F.interpolate(
      patch_pos_embed.reshape(1, m, m, dim).permute(0, 3, 1, 2),
      mode="bicubic",
      antialias=self.interpolate_antialias,
      **kwargs,
    )
    assert (w0, h0) == patch_pos_embed.shape[-2:]
    patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)

  def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
    _, _, w, h = x.shape
    x = self.patch_embed(x)
    x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
    x = x + self.interpolate_pos_encoding(x, w, h)
    if self.register_tokens is not None:
      registers = self.register_tokens.expand(x.shape[0], -1, -1)
      x = torch.cat((x[:, :1], registers, x[:, 1:]), dim=1)
    for block in self.blocks:
      x = block(x)
    x_norm = self.norm(x)
    return {
      "x_norm_clstoken": x_norm[:, 0],
      "x_norm_patchtokens": x_norm[:, self.num_register_tokens + 1 :],
    }


class _QuickGELU(nn.Module):
  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


class _ResidualAttentionBlock(nn.Module):
  def __init__(self, width: int, num_heads: int):
    super().__init__()
    self.attn = nn.MultiheadAttention(width, num_heads)
    self.ln_1 = nn.LayerNorm(width)
    self.mlp = nn.Sequential(
      collections.OrderedDict(
        [
          ("c_fc", nn.Linear(width, 4 * width)),
          ("gelu", _QuickGELU()),
          ("c_proj", nn.Linear(4 * width, width)),
        ]
      )
    )
    self.ln_2 = nn.LayerNorm(width)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.ln_1(x)
    x = x + self.attn(y, y, y, need_weights=False)[0]
    return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
  def __init__(self, width: int, layers: int, num_heads: int):
    super().__init__()
    self.resblocks = nn.Sequential(
      *(_ResidualAttentionBlock(width, num_heads) for _ in range(layers))
    )

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.resblocks(x)


class _CLIPVisionTransformer(nn.Module):
  def __init__(self, width, layers, heads, patch_size, image_size, output_dim):
    super().__init__()
    self.patch_size, self.grid = patch_size, image_size // patch_size
    self.conv1 = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
    self.class_embedding = nn.Parameter(torch.zeros(width))
    self.positional_embedding = nn.Parameter(
      torch.zeros(self.grid**2 + 1, width)
    )
    self.ln_pre = nn.LayerNorm(width)
    self.transformer = _Transformer(width, layers, heads)
    self.ln_post = nn.LayerNorm(width)
    self.proj = nn.Parameter(torch.zeros(width, output_dim))

  def _positions(self, hw: tuple[int, int]) -> torch.Tensor:
    # open_clip's resize_pos_embed, where the grid differs.
    positions = self.positional_embedding
    if hw == (self.grid, self.grid):
      return positions
    grid = positions[1:].reshape(1, self.grid, self.grid, -1)
    grid = F.interpolate(
      grid.permute(0, 3, 1, 2),
      size=hw,
      mode="bicubic",
      antialias=True,
      align_corners=False,
    )
    grid = grid.permute(0, 2, 3, 1).reshape(hw[0] * hw[1], -1)
    return torch.cat([positions[:1], grid], dim=0)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.conv1(x)
    hw = tuple(x.shape[2:])
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = self.class_embedding + torch.zeros(
      x.shape[0], 1, x.shape[-1], dtype=x.dtype
    )
    x = torch.cat([cls, x], dim=1) + self._positions(hw)
    x = self.ln_pre(x)
    x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    return self.ln_post(x[:, 0, :]) @ self.proj


class TorchCLIP(nn.Module):
  """OpenAI clip.model.CLIP with a ViT visual tower, same names."""

  def __init__(
    self,
    *,
    width: int,
    depth: int,
    num_heads: int,
    patch_size: int,
    image_size: int,
    output_dim: int,
  ):
    super().__init__()
    self.visual = _CLIPVisionTransformer(
      width, depth, num_heads, patch_size, image_size, output_dim
    )
    text_width, context_length = 32, 8
    self.transformer = _Transformer(text_width, 1, 2)
    self.token_embedding = nn.Embedding(50, text_width)
    self.positional_embedding = nn.Parameter(
      torch.zeros(context_length, text_width)
    )
    self.ln_final = nn.LayerNorm(text_width)
    self.text_projection = nn.Parameter(torch.zeros(text_width, output_dim))
    self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

  def encode_image(self, x: torch.Tensor) -> torch.Tensor:
    return self.visual(x)


def randomize_transformer(model: nn.Module, seed: int) -> None:
  """Every parameter drawn at random, at a scale that keeps O(1) signals.

  Matrices (and convolutions) get variance 1 / fan-in; LayerNorm and
  LayerScale gains 1 +- 0.2 (so a swapped scale and bias shows); biases,
  tokens and position embeddings 0.1-0.5 standard deviations.
  """
  generator = torch.Generator().manual_seed(seed)

  def normal(shape, std):
    return std * torch.randn(shape, generator=generator)

  with torch.no_grad():
    for name, param in model.named_parameters():
      leaf = name.rsplit(".", 1)[-1]
      if leaf in ("proj", "text_projection"):  # Used as x @ proj.
        value = normal(param.shape, param.shape[0] ** -0.5)
      elif param.ndim >= 2 and leaf in ("weight", "in_proj_weight"):
        fan_in = math.prod(param.shape[1:])
        value = normal(param.shape, fan_in**-0.5)
      elif leaf in ("weight", "gamma"):  # LayerNorm, LayerScale.
        value = 1 + normal(param.shape, 0.2)
      elif leaf.endswith("bias"):
        value = normal(param.shape, 0.1)
      else:  # Tokens, position embeddings, logit scale.
        value = normal(param.shape, 0.5)
      param.copy_(value)
  model.eval()
