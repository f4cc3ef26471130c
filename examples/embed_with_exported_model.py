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
r"""Embeds images with an exported model, using only JAX and NumPy.

  python examples/embed_with_exported_model.py MODEL.npz IMAGES.npy OUT.npy

MODEL.npz comes from ``python -m proxy_nca_jax.export``; IMAGES.npy holds
uint8 images (B, H, W, C) of the model's input shape (printed), any B.
OUT.npy receives the float32 (B, D) unit-norm embeddings. Nothing of
proxy_nca_jax is imported: this is how a service uses the file.
"""

import hashlib
import json
import sys

import jax
import numpy as np


def load(path: str):
  """(exported function, spec dict) of a file written by the export, after
  checking it is the file the export wrote (its SHA-256)."""
  with np.load(path) as contents:
    serialized, spec = contents["exported"].tobytes(), str(contents["spec"])
    digest = str(contents["sha256"])
  if hashlib.sha256(serialized + b"\0" + spec.encode()).hexdigest() != digest:
    raise SystemExit(f"{path} was changed after it was exported.")
  return jax.export.deserialize(bytearray(serialized)), json.loads(spec)


def main(model: str, images: str, out: str) -> None:
  exported, spec = load(model)
  pixels = np.load(images)
  expected = (spec["input_dtype"], tuple(spec["input_shape"]))
  if (str(pixels.dtype), pixels.shape[1:]) != expected:
    raise SystemExit(
      f"{images} holds {pixels.dtype} {pixels.shape[1:]} images; the model "
      f"takes {expected[0]} {expected[1]}."
    )
  embeddings = np.asarray(exported.call(pixels))
  np.save(out, embeddings)
  print(
    f"{pixels.shape[0]} images -> {embeddings.shape} embeddings "
    f"(model {spec['config_signature']['model']}, step {spec['step']}, "
    f"exported with jax {spec['jax_version']}, running jax {jax.__version__})"
  )


if __name__ == "__main__":
  main(*sys.argv[1:])
