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
"""ViT state dicts of timm, DINOv2 and OpenAI CLIP to Flax variables.

Three layouts of the same network (vit.py), told apart by their keys when
``--layout`` is not given: CLIP's have ``class_embedding`` (under
``visual.`` in a whole CLIP model's state dict), DINOv2's hub files
``mask_token``; any other is read as timm's.

* timm (``vit_*``): ``cls_token``, ``reg_token`` (registers),
  ``pos_embed``, ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv,
  attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}``, ``norm`` or
  ``fc_norm`` (``global_pool='avg'``); the classifier ``head`` is dropped.
* DINOv2 (facebookresearch/dinov2 hub): the same names, registers as
  ``register_tokens``; ``mask_token`` (masked-image training) is dropped.
* CLIP (OpenAI): ``visual.{conv1 (no bias), class_embedding,
  positional_embedding, ln_pre, transformer.resblocks.N.{ln_1,
  attn.in_proj_weight/bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj},
  ln_post, proj}``; the text tower is dropped. A state dict of the visual
  tower alone (no ``visual.`` prefix) is read too. open_clip's own models
  share these keys but use GELU, not QuickGELU: no file tells them apart.

What the file fixes beyond the size (``--arch``) becomes the ``model.vit``
options it needs (``file_options``): registers, LayerScale, the position
grid (hence ``position_size``), whether prefix tokens have positions, CLIP's
projection, and the readout it was trained with ("gap" for timm's
``fc_norm``). Conversion: linear weights (out, in) -> kernels (in, out);
convolutions OIHW -> HWIO; LayerNorm ``weight`` -> ``scale``; CLIP's
``proj`` is already (in, out).
"""

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from proxy_nca_jax.models import vit, weight_files
from proxy_nca_jax.models.weight_files import WeightImportError

# A whole CLIP model's keys that are not the visual tower's.
_CLIP_TEXT = re.compile(
  r"(transformer\..*|token_embedding\.weight|positional_embedding|"
  r"ln_final\.(weight|bias)|text_projection|logit_scale|input_resolution|"
  r"context_length|vocab_size)"
)
_BLOCK = re.compile(r"^blocks_(\d+)$")


def infer_layout(state: Mapping[str, Any]) -> str:
  """ "clip", "dinov2" or "timm", from the state dict's keys."""
  if any(key.removeprefix("visual.") == "class_embedding" for key in state):
    return "clip"
  if "mask_token" in state:
    return "dinov2"
  return "timm"


def _clip_prefix(state: Mapping[str, Any]) -> str:
  return "visual." if any(k.startswith("visual.") for k in state) else ""


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
  return tuple(np.shape(state[key])) if key in state else None


def file_options(
  arch: str, layout: str, state: Mapping[str, Any]
) -> dict[str, Any]:
  """The ``model.vit`` options (but ``drop_path``) the file was trained with.

  Args:
    arch: a name in ``vit.SIZES`` (gives the patch size).
    layout: "timm", "dinov2" or "clip".
    state: the state dict.

  Returns:
    ``layout``, ``registers``, ``position_size``, ``layer_scale``,
    ``prefix_positions``, ``projection_dim`` and ``readout``. Keys the file
    lacks leave their defaults; the conversion then names them missing.

  Raises:
    WeightImportError: the position embeddings fit no square grid.
  """
  patch = vit.SIZES[arch].patch_size
  registers, projection_dim, readout = 0, None, "token"
  if layout == "clip":
    prefix = _clip_prefix(state)
    positions = _shape(state, prefix + "positional_embedding")
    length = positions[0] if positions else None
    projection = _shape(state, prefix + "proj")
    projection_dim = projection[-1] if projection else None
    layer_scale = False
  else:
    tokens = _shape(
      state, "reg_token" if layout == "timm" else "register_tokens"
    )
    registers = tokens[1] if tokens and len(tokens) == 3 else 0
    positions = _shape(state, "pos_embed")
    length = positions[1] if positions and len(positions) == 3 else None
    layer_scale = layout == "dinov2" or "blocks.0.ls1.gamma" in state
    if layout == "timm" and "fc_norm.weight" in state:
      readout = "gap"
  # How many prefix tokens the file gives a position: the rest is a grid.
  if layout == "timm":
    candidates = {True: 1 + registers, False: 0}
  else:
    candidates = {True: 1}
  fits = {
    positioned: math.isqrt(length - count)
    for positioned, count in candidates.items()
    if length is not None
    and length > count
    and math.isqrt(length - count) ** 2 == length - count
  }
  if length is not None and len(fits) != 1:
    raise WeightImportError(
      f"The position embeddings ({length} vectors, {registers} registers) "
      f"fit {'no' if not fits else 'more than one'} square grid of patches "
      f"in the {layout} layout; this importer reads square grids only."
    )
  prefix_positions, grid = next(iter(fits.items()), (True, 224 // patch))
  return {
    "layout": layout,
    "registers": registers,
    "position_size": grid * patch,
    "layer_scale": layer_scale,
    "prefix_positions": prefix_positions,
    "projection_dim": projection_dim,
    "readout": readout,
  }


def backbone(arch: str, options: Mapping[str, Any]) -> vit.VisionTransformer:
  """The Flax ViT of ``arch`` with ``options`` (``file_options``)."""
  return vit.VisionTransformer(size=vit.SIZES[arch], **options)


def expected_shapes(
  arch: str, options: Mapping[str, Any]
) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Shapes of the ViT's parameters, keyed ('params', *path, leaf)."""
  module = backbone(arch, options)
  side = options["position_size"]
  variables = jax.eval_shape(
    lambda: module.init(
      jax.random.key(0), jnp.zeros((1, side, side, 3)), train=False
    )
  )
  flat = traverse_util.flatten_dict({"params": variables["params"]})
  # In the network's order (error messages list keys by it).
  return {key: flat[key].shape for key in sorted(flat, key=_network_order)}


_TOP_ORDER = ("patch_embed", "cls_token", "reg_token", "pos_embed", "norm_pre")


def _network_order(flat_key: tuple[str, ...]) -> tuple:
  name = flat_key[1]
  block = _BLOCK.match(name)
  if block:
    return (len(_TOP_ORDER), int(block[1]), flat_key[2:])
  if name in _TOP_ORDER:
    return (_TOP_ORDER.index(name), 0, flat_key[2:])
  return (len(_TOP_ORDER) + 1, 0, flat_key[1:])  # norm, proj.


_Convert = Callable[[np.ndarray], np.ndarray]


def _class_embedding(value: np.ndarray) -> np.ndarray:
  return value[None, None]  # CLIP's (C,) is the (1, 1, C) token.


def _positional_embedding(value: np.ndarray) -> np.ndarray:
  return value[None]  # CLIP's (L, C) lacks the batch axis.


def _weight(value: np.ndarray) -> np.ndarray:
  if value.ndim == 4:  # Convolution OIHW -> HWIO.
    return value.transpose(2, 3, 1, 0)
  return value.T if value.ndim == 2 else value  # Linear (out, in).


def torch_key(
  layout: str, flat_key: tuple[str, ...], *, readout: str = "token"
) -> tuple[str, _Convert]:
  """The state-dict key of one Flax parameter and the conversion to it.

  Args:
    layout: "timm", "dinov2" or "clip".
    flat_key: ('params', *path, leaf).
    readout: the file's readout; "gap" reads the final norm from timm's
      ``fc_norm``.

  Returns:
    (key, function from the file's array to the Flax array, up to a
    reshape to the parameter's shape).
  """
  _, *path, leaf = flat_key
  if layout == "clip" and leaf == "cls_token":
    return "class_embedding", _class_embedding
  if layout == "clip" and leaf == "pos_embed":
    return "positional_embedding", _positional_embedding
  if layout == "dinov2" and leaf == "reg_token":
    return "register_tokens", np.asarray
  if leaf in ("cls_token", "reg_token", "pos_embed"):
    return leaf, np.asarray
  if leaf in ("ls1", "ls2"):
    return ".".join([*_torch_path(layout, path), leaf, "gamma"]), np.asarray
  if layout == "clip" and path == ["proj"]:
    return "proj", np.asarray  # Stored (in, out), used as x @ proj.
  module = _torch_path(layout, path)
  if layout == "timm" and readout == "gap" and module == ["norm"]:
    module = ["fc_norm"]
  suffix = {
    ("clip", "qkv", "kernel"): "in_proj_weight",
    ("clip", "qkv", "bias"): "in_proj_bias",
  }.get((layout, path[-1], leaf))
  if suffix:
    return ".".join([*module[:-1], suffix]), _weight
  return ".".join([*module, "bias" if leaf == "bias" else "weight"]), _weight


_CLIP_MODULES = {
  "patch_embed": "conv1",
  "norm_pre": "ln_pre",
  "norm": "ln_post",
  "norm1": "ln_1",
  "norm2": "ln_2",
  "proj": "out_proj",  # Inside attn; the top-level proj is handled apart.
  "fc1": "c_fc",
  "fc2": "c_proj",
}


def _torch_path(layout: str, path: list[str]) -> list[str]:
  out = []
  for name in path:
    block = _BLOCK.match(name)
    if block:
      out += (
        ["transformer", "resblocks", block[1]]
        if layout == "clip"
        else ["blocks", block[1]]
      )
    elif layout == "clip":
      out.append(_CLIP_MODULES.get(name, name))
    else:
      out += ["patch_embed", "proj"] if name == "patch_embed" else [name]
  return out


def _torch_shape(convert: _Convert, shape: tuple[int, ...]) -> tuple:
  if convert is _class_embedding:
    return shape[2:]
  if convert is _positional_embedding:
    return shape[1:]
  if convert is _weight and len(shape) == 4:
    h, w, i, o = shape
    return (o, i, h, w)
  if convert is _weight and len(shape) == 2:
    return shape[::-1]
  return shape


def _dropped(layout: str, key: str, prefix: str) -> bool:
  """The keys an import leaves out: classifier, mask token, text tower."""
  if layout == "timm":
    return key in ("head.weight", "head.bias")
  if layout == "dinov2":
    return key == "mask_token"
  return (
    bool(prefix)
    and not key.startswith(prefix)
    and bool(_CLIP_TEXT.fullmatch(key))
  )


def convert_state_dict(
  arch: str,
  layout: str,
  state_dict: Mapping[str, np.ndarray],
  source: str = "the file",
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Converts a ViT state dict of ``layout`` to the Flax ViT's variables.

  Args:
    arch: a name in ``vit.SIZES``.
    layout: "timm", "dinov2" or "clip".
    state_dict: names to arrays (PyTorch layouts).
    source: the file's name, for error messages.

  Returns:
    (``{'params': ...}`` of float32 NumPy arrays, the options of
    ``file_options``).

  Raises:
    WeightImportError: keys missing, unexpected keys, or shapes that differ,
      all in one message, with the size the file holds if another.
  """
  state = dict(state_dict)
  options = file_options(arch, layout, state)
  prefix = _clip_prefix(state) if layout == "clip" else ""
  converted, missing, wrong = {}, [], []
  for flat_key, shape in expected_shapes(arch, options).items():
    key, convert = torch_key(layout, flat_key, readout=options["readout"])
    key = prefix + key
    if key not in state:
      missing.append(key)
      continue
    file_value = np.asarray(state.pop(key), np.float32)
    value = convert(file_value)
    if value.shape != shape:
      wrong.append(
        f"{key}: {file_value.shape}, expected {_torch_shape(convert, shape)}"
      )
    converted[flat_key] = value
  dropped = [key for key in state if _dropped(layout, key, prefix)]
  unexpected = [key for key in state if key not in dropped]
  if missing or unexpected or wrong:
    problems = weight_files.mismatches(
      missing=missing, unexpected=unexpected, wrong=wrong
    )
    raise WeightImportError(
      f"{source} is not a {arch} state dict in the {layout} layout: "
      f"{problems}.{_size_hint(arch, layout, state_dict)} Check "
      f"--arch (one of {vit.MODELS}) and --layout (one of {vit.LAYOUTS}), "
      "and that the file holds the model's state_dict()."
    )
  return traverse_util.unflatten_dict(converted), options


def _size_hint(arch: str, layout: str, state: Mapping[str, Any]) -> str:
  """' The file holds ...' where its size is recognisably another."""
  prefix = _clip_prefix(state) if layout == "clip" else ""
  conv = "conv1.weight" if layout == "clip" else "patch_embed.proj.weight"
  shape = _shape(state, prefix + conv)
  pattern = re.compile(
    r"transformer\.resblocks\.(\d+)\."
    if layout == "clip"
    else r"blocks\.(\d+)\."
  )
  depth = len(
    {m[1] for key in state if (m := pattern.match(key.removeprefix(prefix)))}
  )
  if shape is None or len(shape) != 4 or not depth:
    return ""
  width, patch = shape[0], shape[-1]
  names = [
    name
    for name, size in vit.SIZES.items()
    if (size.width, size.depth, size.patch_size) == (width, depth, patch)
  ]
  if names == [arch]:
    return ""
  fits = f": --arch={names[0]}" if names else ", which no model here has"
  return (
    f" The file holds a ViT of width {width}, {depth} blocks and patch "
    f"{patch}{fits}."
  )
