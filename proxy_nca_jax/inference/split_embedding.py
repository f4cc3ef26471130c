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
"""An evaluation split of a run's dataset, embedded by a network.

The one sequence every evaluation shares (during training, the evaluate
command, the research runs): this process's share of the split from the
input pipeline, padded batches embedded on the mesh, every process's real
rows gathered, and the tfds split of each image named when the
query/gallery protocol needs it.
"""

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np

from proxy_nca_jax.data import pipeline
from proxy_nca_jax.inference import embedding


@dataclasses.dataclass(frozen=True)
class EmbeddedSplit:
  """An evaluation split embedded, padding removed, rows aligned.

  Attributes:
    embeddings: float32 (N, D) of the whole split, the same on every process.
    labels: int (N,) the original class ids.
    source_splits: (N,) the tfds split each image was read from, or None
      (not asked for).
    images: float32 (n, H, W, C) this process's images as the network saw
      them (n = N with one process), or None (not asked for).
  """

  embeddings: np.ndarray
  labels: np.ndarray
  source_splits: np.ndarray | None = None
  images: np.ndarray | None = None


def _stash_images(
  batches: Iterator[dict[str, np.ndarray]], images: list[np.ndarray]
) -> Iterator[dict[str, np.ndarray]]:
  """Passes `batches` through, keeping the real images of each."""
  for batch in batches:
    images.append(batch["image"][batch["mask"].astype(bool)])
    yield batch


def embed_split(
  embed_fn: Callable[[dict[str, Any], jax.Array], jax.Array],
  variables: dict[str, Any],
  input_config: ml_collections.ConfigDict,
  split: str,
  mesh: jax.sharding.Mesh,
  *,
  with_sources: bool = False,
  keep_images: bool = False,
) -> EmbeddedSplit:
  """Embeds an evaluation split of ``input_config``'s dataset.

  Args:
    embed_fn: the network in inference mode, ``embedding.make_embed_fn``.
    variables: its variables ({'params', 'batch_stats'}), replicated over
      ``mesh``.
    input_config: the run's ``config.input``.
    split: 'test', 'val' or 'train' (``pipeline.create_eval_iterator``).
    mesh: the device mesh.
    with_sources: also name each image's tfds split (needed by the
      ``evals.query_gallery='splits:Q/G'`` protocol).
    keep_images: also keep this process's images (for figures).

  Returns:
    The embedded split.

  Raises:
    ValueError: a bad split or configuration, or an empty split.
  """
  images: list[np.ndarray] = []
  batches = pipeline.create_eval_iterator(
    input_config,
    split,
    with_sources=with_sources,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  if keep_images:
    batches = _stash_images(batches, images)
  examples = embedding.embed_examples(embed_fn, variables, batches, mesh)
  return EmbeddedSplit(
    embeddings=examples["embedding"],
    labels=examples["label"],
    source_splits=pipeline.source_split_names(input_config, examples),
    images=np.concatenate(images) if keep_images else None,
  )
