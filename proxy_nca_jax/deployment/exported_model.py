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

One ``.npz`` file (NumPy's zip of arrays) with three entries:

- ``exported``: uint8 bytes of ``jax.export.Exported.serialize()``, the
  embedder (embedder.py) lowered to StableHLO for CPU, CUDA and TPU, its
  weights inside as constants, its batch dimension symbolic ("b");
- ``spec``: the `EmbedderSpec` as a JSON string (input shape and dtype,
  embedding size, config signature, weights fingerprint, step, workdir,
  JAX version);
- ``sha256``: the hex SHA-256 of the two (`content_digest`).

`load` verifies the file before anything is embedded: the digest over what
it holds (so a spec edited by hand, or another model's function under this
spec, is refused: integrity, not authenticity), and the spec against the
exported function's own signature (input shape and dtype, embedding size).
A file without the digest (written before it existed) is refused too:
re-export it from its workdir.

Loading needs only NumPy and JAX, not this package::

  import hashlib, json, jax, numpy as np
  with np.load("model.npz") as f:
    exported, spec = f["exported"].tobytes(), str(f["spec"])
    digest = hashlib.sha256(exported + b"\0" + spec.encode()).hexdigest()
    assert digest == str(f["sha256"]), "the file was changed after export"
  embed = jax.export.deserialize(bytearray(exported))
  embeddings = embed.call(images)  # uint8 (B, *spec["input_shape"])

`jax.export` keeps a file loadable by a jaxlib built up to 6 months after
the exporting one (backward compatibility) and up to 3 weeks before it
(forward); re-export from the workdir with a newer JAX when that runs out.

``save_saved_model`` writes a TensorFlow SavedModel of the same function
(``jax2tf``, native serialisation) for TF Serving: signature
``serving_default``, input ``images`` uint8 (None, H, W, C), output
``embeddings`` float32 (None, D).
"""

import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np

from proxy_nca_jax import errors, url_files
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


def content_digest(exported: bytes, spec_json: str) -> str:
  """Hex SHA-256 of an exported function's bytes and its spec's JSON."""
  return hashlib.sha256(exported + b"\0" + spec_json.encode()).hexdigest()


def save(
  embed: embedder.EmbedFn, spec: embedder.EmbedderSpec, path: str
) -> None:
  """Writes the exported embedder and its spec to ``path`` (.npz)."""
  serialized = bytes(export(embed, spec).serialize())
  spec_json = spec.to_json()
  url_files.write_atomically(
    path,
    lambda f: np.savez(
      f,
      exported=np.frombuffer(serialized, np.uint8),
      spec=np.array(spec_json),
      sha256=np.array(content_digest(serialized, spec_json)),
    ),
    mode="wb",
  )


def load(path: str) -> tuple[embedder.EmbedFn, embedder.EmbedderSpec]:
  """(embed function, spec) of an exported file, verified (module doc).

  Raises:
    errors.MissingFileError: no such file.
    errors.InvalidInputError: not a file written by `save`, changed since,
      or a spec that does not describe its function.
  """
  if not os.path.isfile(path):
    raise errors.MissingFileError(f"--model={path}: no such file.")
  refused = (
    f"{path} is not an exported embedder as python -m proxy_nca_jax.export "
    "writes them"
  )
  try:
    with np.load(path) as contents:
      names = set(contents.files)
      if names != {"exported", "spec", "sha256"}:
        raise errors.InvalidInputError(
          f"{refused}: it holds {sorted(names)}; an older export lacks "
          "'sha256': export the run again."
        )
      serialized = contents["exported"].tobytes()
      spec_json = str(contents["spec"])
      digest = str(contents["sha256"])
  except (OSError, ValueError) as e:
    if isinstance(e, errors.Error):
      raise
    raise errors.InvalidInputError(f"{refused}: {e}") from e
  if content_digest(serialized, spec_json) != digest:
    raise errors.InvalidInputError(
      f"{path} was changed after it was exported (its SHA-256 does not "
      "match what it holds): export the run again."
    )
  try:
    spec = embedder.EmbedderSpec.from_json(spec_json)
    exported = jax.export.deserialize(bytearray(serialized))
  except (KeyError, ValueError, TypeError) as e:
    raise errors.InvalidInputError(f"{refused}: {e}") from e
  _check_signature(exported, spec, path)
  return exported.call, spec


def _check_signature(
  exported: jax.export.Exported, spec: embedder.EmbedderSpec, path: str
) -> None:
  """Refuses a spec that does not describe the exported function."""
  [images], [embeddings] = exported.in_avals, exported.out_avals
  described = (tuple(spec.input_shape), spec.input_dtype, spec.embedding_dim)
  actual = (
    tuple(int(d) for d in images.shape[1:]),
    str(images.dtype),
    int(embeddings.shape[-1]),
  )
  if described != actual:
    raise errors.InvalidInputError(
      f"{path}: its spec describes {described[1]} images {described[0]} -> "
      f"{described[2]}-d embeddings, its function takes {actual[1]} "
      f"{actual[0]} -> {actual[2]}-d: export the run again."
    )


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
