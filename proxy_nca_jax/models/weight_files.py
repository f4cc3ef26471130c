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
"""Reading the weight files users bring, safely: PyTorch and safetensors.

A ``.pth``/``.pt``/``.bin`` file is read with
``torch.load(weights_only=True)``: one that holds objects whose unpickling
could run code is refused. A ``.safetensors`` file holds tensors only and is
read with the ``safetensors`` package. Either way the result is a mapping of
names to NumPy arrays, floating ones as float32 (bfloat16 and float16 files
included). torch and safetensors are needed here only (the ``weights``
extra); training from the converted folder needs neither.
"""

import hashlib
import os
import pickle
from collections.abc import Mapping

import numpy as np

from proxy_nca_jax import errors


class WeightImportError(errors.InvalidInputError):
  """A weights file that cannot be imported (wrong format or architecture)."""


_INSTALL = "pip install -e '.[weights]'"
_SHOWN = 6  # Keys listed per kind of problem in an error message.


def listed(kind: str, items: list[str]) -> str:
  """'3 KIND (a, b, c)': the first few keys of one kind of problem."""
  shown = ", ".join(items[:_SHOWN])
  more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
  return f"{len(items)} {kind} ({shown}{more})"


def mismatches(
  *, missing: list[str], unexpected: list[str], wrong: list[str]
) -> str:
  """The problems of a state dict against the expected keys, '; '-joined
  ('' when there are none)."""
  problems = [
    listed(kind, items)
    for kind, items in (
      ("expected keys missing", missing),
      ("unexpected keys", unexpected),
      ("shapes differ", wrong),
    )
    if items
  ]
  return "; ".join(problems)


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a state dict from a PyTorch or safetensors file.

  Args:
    path: a file written by ``torch.save`` (any name but ``*.safetensors``)
      or by safetensors (``*.safetensors``).

  Returns:
    Names to NumPy arrays (floating tensors as float32).

  Raises:
    FileNotFoundError: no such file.
    WeightImportError: torch (or safetensors) is not installed, the file is
      not of its format, holds objects other than tensors (which unpickling
      would run), or is not a mapping of names to tensors.
  """
  try:
    import torch  # Optional: only importing weights needs it.
  except ImportError as error:
    raise WeightImportError(
      f"Reading PyTorch weights needs torch: {_INSTALL} (torch==2.13.0). "
      "Training from the converted folder does not."
    ) from error
  if not os.path.isfile(path):
    raise errors.MissingFileError(f"No weights file at {path}.")
  if path.endswith(".safetensors"):
    loaded = _read_safetensors(path)
  else:
    loaded = _read_torch(torch, path)
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


def _read_torch(torch, path: str):
  try:
    return torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as error:
    if "weights only" not in str(error).lower():
      raise _unreadable(path, "PyTorch", error) from error
    raise WeightImportError(
      f"{path} was refused by torch.load(weights_only=True): it holds "
      "objects other than tensors, and unpickling them could run code "
      f"({_unpickler_reason(error)}). Only plain state dicts are read; "
      "re-save one from a copy you trust with torch.save(model.state_dict(), "
      "PATH)."
    ) from error
  except Exception as error:  # Whatever a malformed file makes torch raise.
    raise _unreadable(path, "PyTorch", error) from error


def _read_safetensors(path: str):
  try:
    from safetensors import torch as safetensors_torch
  except ImportError as error:
    raise WeightImportError(
      f"Reading {path} needs safetensors: {_INSTALL}."
    ) from error
  try:
    return safetensors_torch.load_file(path)
  except Exception as error:  # SafetensorError, or OSError on some files.
    raise _unreadable(path, "safetensors", error) from error


def _unreadable(path: str, kind: str, error: Exception) -> WeightImportError:
  return WeightImportError(
    f"{path} is not a {kind} file that can be read "
    f"({type(error).__name__}: {error})."
  )


def _unpickler_reason(error: Exception) -> str:
  """The line of torch's weights_only message that names the culprit."""
  for line in str(error).splitlines():
    if "WeightsUnpickler error:" in line:
      return line.split("WeightsUnpickler error:")[1].split(". ")[0].strip()
  return "unsupported content"


def sha256(path: str) -> str:
  """The file's SHA-256, hex."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()
