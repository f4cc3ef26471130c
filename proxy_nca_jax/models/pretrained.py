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
"""Pretrained backbones: PyTorch state dicts to Flax variables, and back in.

The files users have are state dicts: torchvision's ResNet-50
(``resnet50-0676ba61.pth``, ``resnet50-19c8e357.pth``, ...), the
BN-Inception port used by metric-learning code (``bn_inception-52deb4733.pth``)
and Vision Transformers in the layouts of timm, DINOv2 and OpenAI CLIP
(vit_weights.py), as ``.pth`` or ``.safetensors``. ``import_weights`` reads
one safely (weight_files.py: ``torch.load(weights_only=True)``), checks every
key and shape against the Flax backbone, converts it and saves it as an
orbax checkpoint, so training needs no torch: ``config.model.pretrained``
names that folder and ``load_pretrained`` puts it in place of the backbone's
initial variables.

Beside the variables, JSON metadata: ``arch``, ``source`` (file name),
``sha256``, ``num_params``, and ``preprocessing``, the input the weights
expect (inputs.py), which ``preprocessing`` reads back. A ViT's also holds
``layout``, ``normalization`` and ``vit``, the ``model.vit`` options the
weights need (``vit_options``); ``load_pretrained`` refuses a network built
with other ones.

Conversion (CNNs): convolution weights OIHW -> HWIO; BatchNorm
``weight``/``bias`` -> params ``scale``/``bias``,
``running_mean``/``running_var`` -> batch_stats ``mean``/``var``;
``num_batches_tracked`` and the ImageNet classifier (``fc``,
``last_linear``) are dropped. The BN-Inception file stores BatchNorm vectors
as (1, C); they are accepted and flattened. ViTs: vit_weights.py.
"""

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import traverse_util

from proxy_nca_jax import checkpointing, errors
from proxy_nca_jax.models import (
  bn_inception,
  inputs,
  resnet,
  vit,
  vit_weights,
  weight_files,
)
from proxy_nca_jax.models.inputs import Preprocessing
from proxy_nca_jax.models.weight_files import WeightImportError

CNN_ARCHS = ("resnet50", "bn_inception")
ARCHS = (*CNN_ARCHS, *vit.MODELS)
# The ImageNet classifier of each file; the embedding head replaces it.
CLASSIFIER_KEYS = {
  "resnet50": ("fc.weight", "fc.bias"),
  "bn_inception": ("last_linear.weight", "last_linear.bias"),
}
# (collection, Flax leaf) -> PyTorch parameter or buffer name.
_TORCH_LEAF = {
  ("params", "kernel"): "weight",
  ("params", "bias"): "bias",
  ("params", "scale"): "weight",
  ("batch_stats", "mean"): "running_mean",
  ("batch_stats", "var"): "running_var",
}


# The model.vit options that fix the network the weights fit.
VIT_WEIGHT_OPTIONS = vit.WEIGHT_OPTIONS


def backbone(arch: str) -> nn.Module:
  """The Flax feature extractor that a CNN ``arch``'s files fit (a ViT's
  depends on the file: vit_weights.backbone)."""
  if arch == "resnet50":
    return resnet.ResNet()
  if arch == "bn_inception":
    return bn_inception.BNInception()
  raise WeightImportError(f"Unknown arch {arch!r}; choose one of {CNN_ARCHS}.")


def expected_shapes(arch: str) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Shapes of the backbone's variables, keyed (collection, *path, leaf)."""
  module = backbone(arch)
  variables = jax.eval_shape(
    lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False
    )
  )
  # Parameters first: error messages then start with the weights' names.
  flat = traverse_util.flatten_dict(
    {name: variables[name] for name in ("params", "batch_stats")}
  )
  return {key: value.shape for key, value in flat.items()}


def torch_key(arch: str, flat_key: tuple[str, ...]) -> str:
  """The state-dict key of one Flax variable (collection, *path, leaf)."""
  collection, *path, leaf = flat_key
  module = ".".join(path)
  if arch == "resnet50":
    # layer2_0/downsample_1 is torchvision's layer2.0.downsample.1.
    module = module.replace("_", ".")
  return f"{module}.{_TORCH_LEAF[collection, leaf]}"


def _torch_shape(flat_key: tuple[str, ...], shape: tuple[int, ...]) -> tuple:
  if flat_key[-1] == "kernel":
    h, w, i, o = shape
    return (o, i, h, w)
  return shape


def convert_state_dict(
  arch: str, state_dict: Mapping[str, np.ndarray], source: str = "the file"
) -> dict[str, Any]:
  """Converts a PyTorch state dict to the backbone's Flax variables.

  Args:
    arch: "resnet50" (torchvision layout) or "bn_inception".
    state_dict: parameter and buffer names to arrays (PyTorch layouts); a
      ``module.`` prefix on every key (DataParallel) is removed.
    source: the file's name, for error messages.

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` of float32 NumPy arrays, the
    variables of ``backbone(arch)``.

  Raises:
    WeightImportError: keys missing, unexpected keys, or shapes that differ;
      one message lists them all.
  """
  state = dict(state_dict)
  if state and all(key.startswith("module.") for key in state):
    state = {key.removeprefix("module."): value for key, value in state.items()}
  converted, missing, wrong = {}, [], []
  for flat_key, shape in expected_shapes(arch).items():
    key = torch_key(arch, flat_key)
    if key not in state:
      missing.append(key)
      continue
    value = np.asarray(state.pop(key), np.float32)
    file_shape = value.shape
    if flat_key[-1] == "kernel" and value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)
    elif value.shape == (1, *shape):
      value = value.reshape(shape)
    if value.shape != shape:
      wrong.append(
        f"{key}: {file_shape}, expected {_torch_shape(flat_key, shape)}"
      )
    converted[flat_key] = value
  dropped = [key for key in state if key in CLASSIFIER_KEYS[arch]]
  unexpected = [
    key
    for key in state
    if key not in dropped and not key.endswith("num_batches_tracked")
  ]
  if missing or unexpected or wrong:
    problems = weight_files.mismatches(
      missing=missing, unexpected=unexpected, wrong=wrong
    )
    raise WeightImportError(
      f"{source} is not a {arch} state dict: {problems}. Check "
      f"--arch (one of {ARCHS}) and that the file holds the backbone's "
      "state_dict()."
    )
  logging.info("Dropped the ImageNet classifier: %s.", dropped)
  return traverse_util.unflatten_dict(converted)


def import_weights(
  arch: str,
  torch_weights: str,
  out: str,
  *,
  layout: str | None = None,
  normalization: str | None = None,
) -> dict[str, Any]:
  """Converts a PyTorch or safetensors weights file into an orbax folder.

  Everything is read and checked before anything is written.

  Args:
    arch: one of ``ARCHS``.
    torch_weights: path of the state dict (``.pth``, ``.safetensors``).
    out: folder to create (must not exist).
    layout: a ViT's layout, "timm", "dinov2" or "clip" (None: told by the
      keys, vit_weights.infer_layout).
    normalization: a ViT's input normalisation, a key of
      ``inputs.NORMALIZATIONS`` (None: the layout's; timm's must be given).

  Returns:
    The metadata saved beside the variables (see the module docstring).

  Raises:
    FileExistsError: ``out`` exists.
    FileNotFoundError, WeightImportError: see weight_files.read_state_dict,
      ``convert_state_dict`` and vit_weights.convert_state_dict.
  """
  if arch not in ARCHS:  # Say so before reading anything.
    raise WeightImportError(f"Unknown arch {arch!r}; choose one of {ARCHS}.")
  if arch in CNN_ARCHS and (layout or normalization):
    raise WeightImportError(
      f"--layout and --normalization apply to the ViTs, not to {arch}; "
      "leave them out."
    )
  if layout is not None and layout not in vit.LAYOUTS:
    raise WeightImportError(
      f"Unknown layout {layout!r}; choose one of {vit.LAYOUTS}."
    )
  if normalization is not None and normalization not in inputs.NORMALIZATIONS:
    raise WeightImportError(
      f"Unknown normalization {normalization!r}; choose one of "
      f"{tuple(inputs.NORMALIZATIONS)}."
    )
  out = os.path.abspath(out)
  if os.path.exists(out):
    raise errors.AlreadyExistsError(
      f"{out} already exists; choose a new --out (or remove it)."
    )
  state = weight_files.read_state_dict(torch_weights)
  if arch in CNN_ARCHS:
    variables = convert_state_dict(arch, state, source=torch_weights)
    extra, preprocessing_ = {}, inputs.CNN_PREPROCESSING[arch]
  else:
    layout = layout or vit_weights.infer_layout(state)
    variables, options = vit_weights.convert_state_dict(
      arch, layout, state, source=torch_weights
    )
    normalization = normalization or inputs.LAYOUT_NORMALIZATION.get(layout)
    if normalization is None:
      raise WeightImportError(
        "timm's ViTs were trained with different input normalisations: "
        "pass --normalization=inception for the original and AugReg ViTs "
        "(mean = std = 0.5), =imagenet for DeiT, DeiT III and timm's DINOv2 "
        "ports; the model's pretrained_cfg (mean, std) says which."
      )
    extra = {"layout": layout, "normalization": normalization, "vit": options}
    # DINOv2's position grid is 518 px; it evaluates at 224.
    side = 224 if layout == "dinov2" else options["position_size"]
    preprocessing_ = Preprocessing(side, *inputs.NORMALIZATIONS[normalization])
  metadata = {
    "arch": arch,
    "source": os.path.basename(torch_weights),
    "sha256": weight_files.sha256(torch_weights),
    "num_params": int(
      sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
    ),
    **extra,
    "preprocessing": dataclasses.asdict(preprocessing_),
  }
  checkpointing.save_pretrained(out, variables, metadata)
  return metadata


def _metadata(directory: str) -> dict[str, Any]:
  if not os.path.isdir(directory):
    raise errors.MissingFileError(
      f"model.pretrained={directory} does not exist; create it with python "
      "-m proxy_nca_jax.import_weights --arch=... --torch_weights=... "
      f"--out={directory}"
    )
  return checkpointing.restore_pretrained_metadata(directory)


def preprocessing(directory: str) -> Preprocessing:
  """The input the weights in ``directory`` (``import_weights``) expect.

  Folders written before the metadata held it get their architecture's.

  Raises:
    FileNotFoundError: no such folder.
  """
  return preprocessing_of(_metadata(os.path.abspath(directory)))


def preprocessing_of(metadata: dict[str, Any]) -> Preprocessing:
  """`preprocessing` from the import metadata already read (``checkpointing
  .restore_pretrained_metadata``)."""
  recorded = metadata.get("preprocessing")
  if recorded is None:
    return inputs.CNN_PREPROCESSING[metadata["arch"]]
  return Preprocessing(
    **{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()}
  )


def vit_options(directory: str) -> dict[str, Any]:
  """The ``model.vit`` options of the ViT weights in ``directory``.

  ``VIT_WEIGHT_OPTIONS`` must be set to these; ``readout`` is the one the
  weights were trained with (the config may choose another).

  Raises:
    FileNotFoundError: no such folder.
    WeightImportError: the folder holds a CNN's weights.
  """
  directory = os.path.abspath(directory)
  metadata = _metadata(directory)
  if "vit" not in metadata:
    raise WeightImportError(
      f"{directory} holds {metadata.get('arch')} weights, not a ViT's."
    )
  return dict(metadata["vit"])


def load_pretrained(
  directory: str,
  arch: str,
  target: dict[str, Any],
  *,
  model_config: ml_collections.ConfigDict | None = None,
) -> dict[str, Any]:
  """Reads a folder written by ``import_weights``.

  Args:
    directory: the ``--out`` folder of ``python -m
      proxy_nca_jax.import_weights``.
    arch: the model being trained (``config.model.name``).
    target: the backbone's initial variables, ``{'params', 'batch_stats'}``
      (a ViT's: ``{'params'}``; any other collection is left out), arrays
      or jax.ShapeDtypeStruct; gives shapes, dtypes and shardings.
    model_config: ``config.model``; a ViT's ``VIT_WEIGHT_OPTIONS`` are then
      checked against the weights' (without it, only what changes shapes).

  Returns:
    The pretrained variables, placed like ``target``.

  Raises:
    FileNotFoundError: no such folder.
    WeightImportError: the folder holds another architecture, or a ViT
      built with other options (the message names the fields to set).
  """
  directory = os.path.abspath(directory)
  metadata = _metadata(directory)
  if metadata.get("arch") != arch:
    raise WeightImportError(
      f"model.pretrained={directory} holds {metadata.get('arch')} weights, "
      f"but model.name is {arch}."
    )
  logging.info(
    "Pretrained %s backbone from %s (sha256 %s).",
    arch,
    metadata.get("source"),
    metadata.get("sha256"),
  )
  if arch in CNN_ARCHS:
    return checkpointing.restore_pretrained(directory, target)
  _check_vit_options(directory, metadata, target, model_config)
  return checkpointing.restore_pretrained(
    directory, {"params": target["params"]}
  )


def _check_vit_options(
  directory: str,
  metadata: dict[str, Any],
  target: dict[str, Any],
  model_config: ml_collections.ConfigDict | None,
) -> None:
  stored = metadata["vit"]
  if model_config is not None:
    differ = [f for f in VIT_WEIGHT_OPTIONS if model_config.vit[f] != stored[f]]
  else:
    expected = vit_weights.expected_shapes(metadata["arch"], stored)
    got = traverse_util.flatten_dict({"params": target["params"]})
    same = set(got) == set(expected) and all(
      tuple(got[k].shape) == expected[k] for k in expected
    )
    # Which fields differ is unknown: every one the weights set.
    differ = (
      [] if same else [f for f in VIT_WEIGHT_OPTIONS if stored[f] is not None]
    )
  if differ:
    flags = " ".join(
      f"--config.model.vit.{field}={stored[field]}" for field in differ
    )
    raise WeightImportError(
      f"model.pretrained={directory} holds {metadata['arch']} weights in "
      f"the {stored['layout']} layout that need other model.vit options "
      f"than the config's: set {flags}."
    )
