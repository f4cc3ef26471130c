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
"""Inference: a trained network applied to evaluation batches on a mesh.

The embedding half of every evaluation (during training, the evaluate and
embed commands, the research runs): the network jitted in inference mode
with the batch sharded over the mesh, and the padded evaluation batches of
every process gathered into one (N, D) array.
"""

import functools
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils

from proxy_nca_jax import errors, parallel


def make_embed_fn(
  model: nn.Module, mesh: jax.sharding.Mesh
) -> Callable[[dict[str, Any], jax.Array], jax.Array]:
  """Jits inference: ``(variables, images) -> unit-norm embeddings``."""
  return jax.jit(
    functools.partial(model.apply, train=False),
    in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
    out_shardings=parallel.batch_sharded(mesh),
  )


def embed_examples(
  embed_fn: Callable[[dict[str, Any], jax.Array], jax.Array],
  variables: dict[str, Any],
  batches: Iterator[dict[str, np.ndarray]],
  mesh: jax.sharding.Mesh,
) -> dict[str, np.ndarray]:
  """Embeds padded evaluation batches; returns every process's real rows.

  Args:
    embed_fn: from ``make_embed_fn``.
    variables: the network's variables.
    batches: process-local dicts with 'image', boolean 'mask' and other
      per-example fields ('label', the pipeline's 'source').
    mesh: the device mesh.

  Returns:
    {'embedding': float32 (N, D), and each field of the batches but 'image'
    and 'mask'} of the whole split, rows aligned, the same on every process,
    padding removed.
  """
  embeddings, fields = [], []
  for local in batches:
    images = parallel.global_batch({"image": local["image"]}, mesh)["image"]
    out = embed_fn(variables, images)
    embeddings.append(multihost_utils.process_allgather(out, tiled=True))
    rest = {key: value for key, value in local.items() if key != "image"}
    fields.append(multihost_utils.process_allgather(rest, tiled=True))
  if not embeddings:
    raise errors.InvalidInputError("The evaluation split is empty.")
  mask = np.concatenate([f["mask"] for f in fields]).astype(bool)
  result = {"embedding": np.concatenate(embeddings)[mask]}
  for key in fields[0]:
    if key != "mask":
      result[key] = np.concatenate([f[key] for f in fields])[mask]
  return result


def embed_batches(
  embed_fn: Callable[[dict[str, Any], jax.Array], jax.Array],
  variables: dict[str, Any],
  batches: Iterator[dict[str, np.ndarray]],
  mesh: jax.sharding.Mesh,
) -> tuple[np.ndarray, np.ndarray]:
  """(embeddings float32 (N, D), labels int (N,)) of `embed_examples`."""
  result = embed_examples(embed_fn, variables, batches, mesh)
  return result["embedding"], result["label"]
