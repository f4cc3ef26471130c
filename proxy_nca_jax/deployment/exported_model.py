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
"""The exported embedder file: `jax.export` with a symbolic batch size.

One ``.npz`` file (NumPy's zip of arrays) with two entries:

- ``exported``: uint8 bytes of ``jax.export.Exported.serialize()``, the
  embedder (embedder.py) lowered to StableHLO for CPU, CUDA and TPU, its
  weights inside as constants, its batch dimension symbolic ("b");
- ``spec``: the `EmbedderSpec` as a JSON string (input shape and dtype,
  embedding size, config signature, weights fingerprint, step, workdir,
  JAX version).

Loading needs only NumPy and JAX, not this package::

  import json, jax, numpy as np
  with np.load("model.npz") as f:
    spec = json.loads(str(f["spec"]))
    embed = jax.export.deserialize(bytearray(f["exported"].tobytes()))
  embeddings = embed.call(images)  # uint8 (B, *spec["input_shape"])

`jax.export` keeps a file loadable by a jaxlib built up to 6 months after
the exporting one (backward compatibility) and up to 3 weeks before it
(forward); re-export from the workdir with a newer JAX when that runs out.

``save_saved_model`` writes a TensorFlow SavedModel of the same function
(``jax2tf``, native serialisation) for TF Serving: signature
``serving_default``, input ``images`` uint8 (None, H, W, C), output
``embeddings`` float32 (None, D).
"""

import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from proxy_nca_jax import errors
from proxy_nca_jax.deployment import embedder

# Lowered for each, so that one file serves CPU, GPU and TPU hosts.
PLATFORMS = ("cpu", "cuda", "tpu")


def export(
  embed: embedder.EmbedFn, spec: embedder.EmbedderSpec
) -> jax.export.Exported:
  """``embed`` lowered for `PLATFORMS` with a symbolic batch dimension."""
  (batch,) = jax.export.symbolic_shape("b")
  images = jax.ShapeDtypeStruct((batch, *spec.input_shape), jnp.uint8)
  return jax.export.export(jax.jit(embed), platforms=PLATFORMS)(images)


def _write_atomically(path: str, write) -> None:
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  handle, partial = tempfile.mkstemp(dir=parent, suffix=".partial")
  try:
    with os.fdopen(handle, "wb") as f:
      write(f)
    os.replace(partial, path)
  except BaseException:
    os.unlink(partial)
    raise


def save(
  embed: embedder.EmbedFn, spec: embedder.EmbedderSpec, path: str
) -> None:
  """Writes the exported embedder and its spec to ``path`` (.npz)."""
  serialized = export(embed, spec).serialize()
  _write_atomically(
    path,
    lambda f: np.savez(
      f,
      exported=np.frombuffer(bytes(serialized), np.uint8),
      spec=np.array(spec.to_json()),
    ),
  )


def load(path: str) -> tuple[embedder.EmbedFn, embedder.EmbedderSpec]:
  """(embed function, spec) of an exported file.

  Raises:
    FileNotFoundError: no such file.
    ValueError: not a file written by `save`.
  """
  if not os.path.isfile(path):
    raise errors.MissingFileError(f"--model={path}: no such file.")
  try:
    with np.load(path) as contents:
      spec = embedder.EmbedderSpec.from_json(str(contents["spec"]))
      exported = jax.export.deserialize(
        bytearray(contents["exported"].tobytes())
      )
  except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
    raise errors.InvalidInputError(
      f"{path} is not an exported embedder (python -m proxy_nca_jax.export "
      f"writes them): {e}"
    ) from e
  return exported.call, spec


def save_saved_model(
  embed: embedder.EmbedFn, spec: embedder.EmbedderSpec, path: str
) -> None:
  """Writes a TensorFlow SavedModel of ``embed`` to the folder ``path``."""
  import tensorflow as tf  # noqa: PLC0415  (only this format needs it)
  from jax.experimental import jax2tf  # noqa: PLC0415

  height, width, channels = spec.input_shape
  converted = jax2tf.convert(
    embed,
    polymorphic_shapes=[f"(b, {height}, {width}, {channels})"],
    with_gradient=False,
  )
  module = tf.Module()
  module.embed = tf.function(
    lambda images: {"embeddings": converted(images)},
    input_signature=[
      tf.TensorSpec((None, height, width, channels), tf.uint8, name="images")
    ],
    autograph=False,
  )
  module.spec = tf.Variable(spec.to_json(), trainable=False, name="spec")
  tf.saved_model.save(
    module, path, signatures={"serving_default": module.embed}
  )
