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
"""Vision Transformer feature extractor (NHWC) in three weight layouts.

Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021: a
convolution with stride = kernel = patch size cuts the image into patch
tokens; a class token and learned absolute position embeddings are added;
pre-norm transformer blocks (LayerNorm -> multi-head self-attention ->
residual, LayerNorm -> MLP (4x) -> residual) and a final LayerNorm follow.
Options, as the checkpoints users bring have them:

* register tokens (Darcet et al., "Vision Transformers Need Registers",
  ICLR 2024): extra learned tokens after the class token, not read out;
* LayerScale (Touvron et al., "Going deeper with Image Transformers",
  ICCV 2021): a learned per-channel gain on each residual branch;
* stochastic depth (Huang et al., ECCV 2016) in training: each sample
  skips a residual branch with a probability growing linearly from 0 at the
  first block to ``drop_path`` at the last, as timm and DINOv2 do; it draws
  from the ``'dropout'`` rng stream;
* a LayerNorm before the blocks and a final linear projection (CLIP).

``layout`` is the convention of the family whose weights the network takes
(models/pretrained.py imports them):

| layout | LayerNorm eps | MLP activation | patch bias | norm_pre |
|---|---|---|---|---|
| "timm" (timm's ``vit_*``) | 1e-6 | GELU (erf) | yes | no |
| "dinov2" (Oquab et al., TMLR 2024) | 1e-6 | GELU (erf) | yes | no |
| "clip" (Radford et al., ICML 2021) | 1e-5 | QuickGELU | no | yes |

DINOv2 is facebookresearch/dinov2's hub code, CLIP OpenAI's visual tower.

Position embeddings: one per patch of the ``position_size`` image and, with
``prefix_positions``, one per prefix token: all prefix tokens in timm's
layout, the class token alone in DINOv2's and CLIP's; without it (timm's
``no_embed_class``) none. At another input size the patch grid is resized
as the family does it in PyTorch (interpolation.py, exact): bicubic with
antialiasing to the new grid (timm's ``resample_abs_pos_embed``, open_clip's
``resize_pos_embed``, DINOv2's hub models with registers), or bicubic
without antialiasing at the scale factor (n + 0.1) / grid for DINOv2's hub
models without registers (``interpolate_offset=0.1`` of the current
facebookresearch/dinov2 ``interpolate_pos_encoding``).

The feature map the shared embedding head pools (``readout``): "token",
(B, 1, 1, C), the final-normed class token; "patches", (B, H // p, W // p,
C), the final-normed patch tokens, pooled by ``model.pooling``; "gap",
(B, 1, 1, C), the final norm of the patch tokens' mean (timm's ``fc_norm``).
CLIP's ``proj`` (``projection_dim``) then projects every vector. Image sides
that are no multiple of p lose their last pixels, as in timm.

Parameter names mirror timm's keys, ``_`` between a module and its index
(``blocks_3/attn/qkv``), ``ls1``/``ls2`` for LayerScale's ``gamma``.
Computation runs in ``dtype`` (bfloat16 on accelerators), parameters stay
float32; softmax and LayerNorm statistics are float32.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from proxy_nca_jax import errors
from proxy_nca_jax.models import interpolation

LAYOUTS = ("timm", "dinov2", "clip")
# The options (config.model.vit) that fix which weights fit the network...
WEIGHT_OPTIONS = (
  "layout",
  "registers",
  "position_size",
  "layer_scale",
  "prefix_positions",
  "projection_dim",
)
# ... and with the readout, which function a set of weights computes.
NETWORK_OPTIONS = (*WEIGHT_OPTIONS, "readout")
READOUTS = ("token", "patches", "gap")
PATCH_SIZES = (14, 16, 32)
# Gain of LayerScale at initialisation (DINOv2's training recipe).
LAYER_SCALE_INIT = 1e-5


@dataclasses.dataclass(frozen=True)
class Size:
  """Width C, depth (blocks), attention heads and patch side p."""

  width: int
  depth: int
  num_heads: int
  patch_size: int


# Ti/S/B: Touvron et al. (DeiT, ICML 2021) and Dosovitskiy et al.
_WIDTHS = {"ti": (192, 3), "s": (384, 6), "b": (768, 12)}
TEST_MODEL = "vit_test"  # Two blocks of width 64, patch 8: for tests.
SIZES = {
  **{
    f"vit_{name}{patch}": Size(width, 12, heads, patch)
    for name, (width, heads) in _WIDTHS.items()
    for patch in PATCH_SIZES
  },
  TEST_MODEL: Size(64, 2, 2, 8),
}
MODELS = tuple(SIZES)


@dataclasses.dataclass(frozen=True)
class _Convention:
  norm_eps: float
  quick_gelu: bool
  patch_bias: bool
  pre_norm: bool


_CONVENTIONS = {
  "timm": _Convention(1e-6, quick_gelu=False, patch_bias=True, pre_norm=False),
  "dinov2": _Convention(
    1e-6, quick_gelu=False, patch_bias=True, pre_norm=False
  ),
  "clip": _Convention(1e-5, quick_gelu=True, patch_bias=False, pre_norm=True),
}


def quick_gelu(x: jax.Array) -> jax.Array:
  """OpenAI CLIP's GELU approximation x * sigmoid(1.702 x)."""
  return x * jax.nn.sigmoid(1.702 * x)


def _layer_norm(eps: float, dtype: jnp.dtype, name: str) -> nn.LayerNorm:
  # Two-pass variance, as PyTorch: E[x^2] - E[x]^2 loses digits on the
  # residual stream's large-mean channels.
  return nn.LayerNorm(
    epsilon=eps, dtype=dtype, use_fast_variance=False, name=name
  )


_DENSE_INIT = nn.initializers.truncated_normal(0.02)  # timm's.


class Attention(nn.Module):
  """Multi-head self-attention with one fused ``qkv`` projection."""

  num_heads: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(B, N, C) -> (B, N, C)."""
    batch, tokens, width = x.shape
    head_dim = width // self.num_heads
    qkv = nn.Dense(
      3 * width, dtype=self.dtype, kernel_init=_DENSE_INIT, name="qkv"
    )(x)
    # The output features are (q | k | v), each (head, head_dim): timm's
    # and torch.nn.MultiheadAttention's in_proj order.
    q, k, v = jnp.moveaxis(
      qkv.reshape(batch, tokens, 3, self.num_heads, head_dim), 2, 0
    )
    logits = jnp.einsum("bqhd,bkhd->bhqk", q * head_dim**-0.5, k)
    weights = jax.nn.softmax(logits.astype(jnp.float32)).astype(self.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    return nn.Dense(
      width, dtype=self.dtype, kernel_init=_DENSE_INIT, name="proj"
    )(out.reshape(batch, tokens, width))


class Mlp(nn.Module):
  """fc1 (4x wider), GELU (exact) or QuickGELU, fc2."""

  quick_gelu: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(B, N, C) -> (B, N, C)."""
    width = x.shape[-1]
    x = nn.Dense(
      4 * width, dtype=self.dtype, kernel_init=_DENSE_INIT, name="fc1"
    )(x)
    x = quick_gelu(x) if self.quick_gelu else nn.gelu(x, approximate=False)
    return nn.Dense(
      width, dtype=self.dtype, kernel_init=_DENSE_INIT, name="fc2"
    )(x)


class Block(nn.Module):
  """Pre-norm transformer block, with optional LayerScale and drop path.

  Attributes:
    num_heads: attention heads.
    norm_eps: LayerNorm epsilon.
    quick_gelu: QuickGELU (CLIP) instead of the exact GELU.
    layer_scale: per-channel gains ``ls1``, ``ls2`` on the two branches.
    drop_path: probability that a sample skips each branch in training.
    dtype: computation dtype.
  """

  num_heads: int
  norm_eps: float
  quick_gelu: bool = False
  layer_scale: bool = False
  drop_path: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """(B, N, C) -> (B, N, C)."""
    width = x.shape[-1]
    # The mask is one number per sample: stochastic depth.
    drop = nn.Dropout(
      self.drop_path, broadcast_dims=(1, 2), deterministic=not train
    )

    def scaled(y: jax.Array, name: str) -> jax.Array:
      if not self.layer_scale:
        return y
      gamma = self.param(
        name, nn.initializers.constant(LAYER_SCALE_INIT), (width,)
      )
      return y * gamma.astype(self.dtype)

    y = _layer_norm(self.norm_eps, self.dtype, "norm1")(x)
    y = Attention(self.num_heads, dtype=self.dtype, name="attn")(y)
    x = x + drop(scaled(y, "ls1"))
    y = _layer_norm(self.norm_eps, self.dtype, "norm2")(x)
    y = Mlp(quick_gelu=self.quick_gelu, dtype=self.dtype, name="mlp")(y)
    return x + drop(scaled(y, "ls2"))


class VisionTransformer(nn.Module):
  """ViT without its classifier; see the module docstring.

  Attributes:
    size: width, depth, heads and patch size (``SIZES``).
    layout: "timm", "dinov2" or "clip": the weights' conventions.
    registers: register tokens (0: none).
    position_size: side in pixels of the (square) image the position
      embeddings are a grid for: a multiple of the patch size.
    prefix_positions: the prefix tokens get position embeddings (see the
      module docstring); False is timm's ``no_embed_class``.
    layer_scale: LayerScale on every residual branch.
    projection_dim: size of CLIP's final projection (None: none).
    readout: "token", "patches" or "gap" (the module docstring).
    drop_path: stochastic depth rate of the last block (0: none).
    dtype: computation dtype, e.g. ``jnp.bfloat16`` on accelerators.
  """

  size: Size = SIZES["vit_s16"]
  layout: str = "timm"
  registers: int = 0
  position_size: int = 224
  prefix_positions: bool = True
  layer_scale: bool = False
  projection_dim: int | None = None
  readout: str = "token"
  drop_path: float = 0.0
  dtype: jnp.dtype = jnp.float32

  def __post_init__(self):
    check_options(
      layout=self.layout,
      registers=self.registers,
      position_size=self.position_size,
      patch_size=self.size.patch_size,
      prefix_positions=self.prefix_positions,
      projection_dim=self.projection_dim,
      readout=self.readout,
      drop_path=self.drop_path,
    )
    super().__post_init__()

  @property
  def position_grid(self) -> int:
    """Side of the grid of patch position embeddings."""
    return self.position_size // self.size.patch_size

  @property
  def positioned_prefix(self) -> int:
    """How many leading prefix tokens have a position embedding."""
    if not self.prefix_positions:
      return 0
    return 1 + self.registers if self.layout == "timm" else 1

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
    """Feature map of a batch of images.

    Args:
      images: float array (B, H, W, 3), normalised as the weights' family
        expects (pretrained.preprocessing); H and W at least the patch size.
      train: apply stochastic depth (needs the ``'dropout'`` rng when
        ``drop_path`` > 0).

    Returns:
      Array in ``dtype``: (B, 1, 1, C') for the "token" and "gap" readouts,
      (B, H // p, W // p, C') for "patches"; C' is the width, or
      ``projection_dim``.
    """
    size, convention = self.size, _CONVENTIONS[self.layout]
    if min(images.shape[1:3]) < size.patch_size:
      raise errors.InvalidInputError(
        f"Images of {images.shape[1]}x{images.shape[2]} are smaller than one "
        f"{size.patch_size}x{size.patch_size} patch; feed larger images "
        "(input.image_size)."
      )
    if train and self.drop_path > 0 and not self.has_rng("dropout"):
      raise errors.InvalidInputError(
        "model.vit.drop_path > 0 draws from the 'dropout' rng in training: "
        "call model.apply(..., rngs={'dropout': key}), or set drop_path=0."
      )
    x = nn.Conv(
      size.width,
      (size.patch_size, size.patch_size),
      strides=(size.patch_size, size.patch_size),
      padding="VALID",
      use_bias=convention.patch_bias,
      dtype=self.dtype,
      name="patch_embed",
    )(images)
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height * width, channels)
    prefix = [
      self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, channels))
    ]
    if self.registers:
      prefix.append(
        self.param(
          "reg_token",
          nn.initializers.normal(1e-6),
          (1, self.registers, channels),
        )
      )
    prefix = jnp.concatenate(prefix, axis=1).astype(self.dtype)
    grid = self.position_grid
    positioned = self.positioned_prefix
    pos_embed = self.param(
      "pos_embed",
      nn.initializers.truncated_normal(0.02),
      (1, positioned + grid * grid, channels),
    )[0]
    patch_pos = pos_embed[positioned:].reshape(grid, grid, channels)
    if (height, width) != (grid, grid):
      patch_pos = self._resize(patch_pos, (height, width))
    # Prefix tokens without a position embedding get a zero one.
    positions = jnp.concatenate(
      [
        pos_embed[:positioned],
        jnp.zeros((1 + self.registers - positioned, channels)),
        patch_pos.reshape(height * width, channels),
      ]
    ).astype(self.dtype)
    x = jnp.concatenate(
      [jnp.broadcast_to(prefix, (batch, *prefix.shape[1:])), x], axis=1
    )
    x = x + positions
    if convention.pre_norm:
      x = _layer_norm(convention.norm_eps, self.dtype, "norm_pre")(x)
    for index in range(size.depth):
      x = Block(
        num_heads=size.num_heads,
        norm_eps=convention.norm_eps,
        quick_gelu=convention.quick_gelu,
        layer_scale=self.layer_scale,
        drop_path=self.drop_path * index / max(size.depth - 1, 1),
        dtype=self.dtype,
        name=f"blocks_{index}",
      )(x, train=train)
    num_prefix = 1 + self.registers
    if self.readout == "token":
      x = x[:, :1, None]
    elif self.readout == "gap":
      x = jnp.mean(x[:, num_prefix:], axis=1, keepdims=True)[:, None]
    else:
      x = x[:, num_prefix:].reshape(batch, height, width, channels)
    x = _layer_norm(convention.norm_eps, self.dtype, "norm")(x)
    if self.projection_dim:
      x = nn.Dense(
        self.projection_dim,
        use_bias=False,
        dtype=self.dtype,
        kernel_init=nn.initializers.normal(channels**-0.5),
        name="proj",
      )(x)
    return x

  def _resize(self, patch_pos: jax.Array, size: tuple[int, int]) -> jax.Array:
    """The position grid resized to ``size`` as the layout's family does."""
    if self.layout == "dinov2" and not self.registers:
      grid = self.position_grid
      return interpolation.resize_bicubic(
        patch_pos,
        size,
        antialias=False,
        scale_factor=tuple((side + 0.1) / grid for side in size),
      )
    return interpolation.resize_bicubic(patch_pos, size, antialias=True)


def check_options(
  *,
  layout: str,
  registers: int,
  position_size: int,
  patch_size: int,
  prefix_positions: bool,
  projection_dim: int | None,
  readout: str,
  drop_path: float,
) -> None:
  """Refuses a combination of options no checkpoint family has.

  Raises:
    errors.InvalidInputError: naming the ``model.vit`` field to change.
  """
  problems = []
  if layout not in LAYOUTS:
    problems.append(f"layout {layout!r} is none of {LAYOUTS}")
  if readout not in READOUTS:
    problems.append(f"readout {readout!r} is none of {READOUTS}")
  if registers < 0:
    problems.append(f"registers={registers} is negative")
  if position_size <= 0 or position_size % patch_size:
    problems.append(
      f"position_size={position_size} is no multiple of the patch size "
      f"{patch_size}"
    )
  if layout in ("dinov2", "clip") and not prefix_positions:
    problems.append(
      f"the {layout} layout gives the class token a position: "
      "prefix_positions must be True"
    )
  if layout == "clip" and registers:
    problems.append("the clip layout has no registers")
  if projection_dim is not None and projection_dim <= 0:
    problems.append(f"projection_dim={projection_dim} is not positive")
  if not 0 <= drop_path < 1:
    problems.append(f"drop_path={drop_path} is outside [0, 1)")
  if problems:
    raise errors.InvalidInputError(
      f"Invalid ViT options: {'; '.join(problems)}. Change model.vit "
      "(docs/backbones.md)."
    )
