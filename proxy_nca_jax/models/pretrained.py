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

The files users have are PyTorch state dicts: torchvision's ResNet-50
(``resnet50-0676ba61.pth``, ``resnet50-19c8e357.pth``, ...) and the
BN-Inception port used by metric-learning code (``bn_inception-52deb4733.pth``).
``import_weights`` reads one with ``torch.load(weights_only=True)`` (a file
that would run code when unpickled is refused), checks every key and shape
against the Flax backbone, converts it and saves it as an orbax checkpoint,
so training needs no torch: ``config.model.pretrained`` names that folder and
``load_pretrained`` puts it in place of the backbone's initial variables.

Conversion: convolution weights OIHW -> HWIO; BatchNorm ``weight``/``bias``
-> params ``scale``/``bias``, ``running_mean``/``running_var`` ->
batch_stats ``mean``/``var``; ``num_batches_tracked`` and the ImageNet
classifier (``fc``, ``last_linear``) are dropped. The BN-Inception file
stores BatchNorm vectors as (1, C); they are accepted and flattened.
"""

import hashlib
import os
import pickle
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util

from proxy_nca_jax import checkpointing, errors
from proxy_nca_jax.models import bn_inception, resnet

ARCHS = ("resnet50", "bn_inception")
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
_SHOWN = 6  # Keys listed per kind of problem in an error message.


class WeightImportError(errors.InvalidInputError):
  """A weights file that cannot be imported (wrong format or architecture)."""


def backbone(arch: str) -> nn.Module:
  """The Flax feature extractor that ``arch``'s files fit."""
  if arch == "resnet50":
    return resnet.ResNet()
  if arch == "bn_inception":
    return bn_inception.BNInception()
  raise WeightImportError(f"Unknown arch {arch!r}; choose one of {ARCHS}.")


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


def _listed(kind: str, items: list[str]) -> str:
  shown = ", ".join(items[:_SHOWN])
  more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
  return f"{len(items)} {kind} ({shown}{more})"


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
    problems = [
      _listed(kind, items)
      for kind, items in (
        ("expected keys missing", missing),
        ("unexpected keys", unexpected),
        ("shapes differ", wrong),
      )
      if items
    ]
    raise WeightImportError(
      f"{source} is not a {arch} state dict: {'; '.join(problems)}. Check "
      f"--arch (one of {ARCHS}) and that the file holds the backbone's "
      "state_dict()."
    )
  logging.info("Dropped the ImageNet classifier: %s.", dropped)
  return traverse_util.unflatten_dict(converted)


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a PyTorch state dict safely (``torch.load(weights_only=True)``).

  Args:
    path: a ``.pth``/``.pt`` file written by ``torch.save``.

  Returns:
    Names to NumPy arrays (floating tensors as float32).

  Raises:
    FileNotFoundError: no such file.
    WeightImportError: torch is not installed, the file is not a PyTorch
      file, holds objects other than tensors (which unpickling would run),
      or is not a mapping of names to tensors.
  """
  try:
    import torch  # Optional: only importing weights needs it.
  except ImportError as error:
    raise WeightImportError(
      "Reading PyTorch weights needs torch: pip install -e '.[weights]' "
      "(torch==2.13.0). Training from the converted folder does not."
    ) from error
  if not os.path.isfile(path):
    raise errors.MissingFileError(f"No weights file at {path}.")
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as error:
    if "weights only" not in str(error).lower():
      raise _unreadable(path, error) from error
    raise WeightImportError(
      f"{path} was refused by torch.load(weights_only=True): it holds "
      "objects other than tensors, and unpickling them could run code "
      f"({_unpickler_reason(error)}). Only plain state dicts are read; "
      "re-save one from a copy you trust with torch.save(model.state_dict(), "
      "PATH)."
    ) from error
  except Exception as error:  # Whatever a malformed file makes torch raise.
    raise _unreadable(path, error) from error
  if isinstance(loaded, Mapping) and isinstance(
    loaded.get("state_dict"), Mapping
  ):
    loaded = loaded["state_dict"]  # A training checkpoint around it.
  if not isinstance(loaded, Mapping) or not all(
    isinstance(value, torch.Tensor) for value in loaded.values()
  ):
    raise WeightImportError(
      f"{path} holds a {type(loaded).__name__}, not a state dict (names to "
      "tensors); save model.state_dict()."
    )
  return {
    name: (
      value.detach().to(torch.float32).numpy()
      if value.is_floating_point()
      else value.numpy()
    )
    for name, value in loaded.items()
  }


def _unreadable(path: str, error: Exception) -> WeightImportError:
  return WeightImportError(
    f"{path} is not a PyTorch file torch.load can read "
    f"({type(error).__name__}: {error})."
  )


def _unpickler_reason(error: Exception) -> str:
  """The line of torch's weights_only message that names the culprit."""
  for line in str(error).splitlines():
    if "WeightsUnpickler error:" in line:
      return line.split("WeightsUnpickler error:")[1].split(". ")[0].strip()
  return "unsupported content"


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def import_weights(arch: str, torch_weights: str, out: str) -> dict[str, Any]:
  """Converts a PyTorch weights file into an orbax folder for training.

  Everything is read and checked before anything is written.

  Args:
    arch: "resnet50" or "bn_inception".
    torch_weights: path of the PyTorch state dict.
    out: folder to create (must not exist).

  Returns:
    The metadata saved beside the variables (arch, source, sha256, counts).

  Raises:
    FileExistsError: ``out`` exists.
    FileNotFoundError, WeightImportError: see ``read_state_dict`` and
      ``convert_state_dict``.
  """
  backbone(arch)  # Unknown arch: say so before reading anything.
  out = os.path.abspath(out)
  if os.path.exists(out):
    raise errors.AlreadyExistsError(
      f"{out} already exists; choose a new --out (or remove it)."
    )
  variables = convert_state_dict(
    arch, read_state_dict(torch_weights), source=torch_weights
  )
  metadata = {
    "arch": arch,
    "source": os.path.basename(torch_weights),
    "sha256": _sha256(torch_weights),
    "num_params": int(
      sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))
    ),
  }
  checkpointing.save_pretrained(out, variables, metadata)
  return metadata


def load_pretrained(
  directory: str, arch: str, target: dict[str, Any]
) -> dict[str, Any]:
  """Reads a folder written by ``import_weights``.

  Args:
    directory: the ``--out`` folder of ``python -m
      proxy_nca_jax.import_weights``.
    arch: the model being trained (``config.model.name``).
    target: the backbone's initial ``{'params', 'batch_stats'}`` (arrays
      or jax.ShapeDtypeStruct); gives shapes, dtypes and shardings.

  Returns:
    The pretrained variables, placed like ``target``.

  Raises:
    FileNotFoundError: no such folder.
    WeightImportError: the folder holds another architecture.
  """
  directory = os.path.abspath(directory)
  if not os.path.isdir(directory):
    raise errors.MissingFileError(
      f"model.pretrained={directory} does not exist; create it with python "
      "-m proxy_nca_jax.import_weights --arch=... --torch_weights=... "
      f"--out={directory}"
    )
  metadata = checkpointing.restore_pretrained_metadata(directory)
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
  return checkpointing.restore_pretrained(directory, target)
