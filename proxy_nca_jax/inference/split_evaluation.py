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
"""The metrics of ``evaluation`` bound to a run's config.

``evaluate_with_config`` reads ``config.evals`` (Recall@K's K, the block
size, k-means restarts and iterations, the query/gallery protocol of
``evaluation.query_gallery``) and ``config.seed``; ``evaluate_split`` embeds
a split (``split_embedding.embed_split``) and evaluates it so, as the
trainer does at each evaluation.
"""

from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from proxy_nca_jax import evaluation
from proxy_nca_jax.evaluation import query_gallery
from proxy_nca_jax.inference import split_embedding

Array = np.ndarray | jax.Array


def needs_source_splits(config: ml_collections.ConfigDict) -> bool:
  """Whether `evaluate_with_config` needs each image's tfds split."""
  protocol = query_gallery.parse(config.evals.query_gallery)
  return protocol is not None and protocol.needs_source_splits


def evaluate_with_config(
  embeddings: Array,
  labels: Array,
  config: ml_collections.ConfigDict,
  *,
  source_splits: np.ndarray | None = None,
  block_size: int | None = None,
  mesh: jax.sharding.Mesh | None = None,
) -> dict[str, float]:
  """`evaluation.evaluate_embeddings` with the run's ``config.evals`` and
  ``config.seed``.

  Args:
    embeddings: (N, D) float array, assumed L2-normalised.
    labels: (N,) integer class labels.
    config: a full run config.
    source_splits: (N,) the tfds split each image was read from (the
      pipeline's 'source'); needed by ``evals.query_gallery='splits:Q/G'``.
    block_size: overrides ``config.evals.block_size`` when given.
    mesh: devices to spread the work over (default: as
      `evaluation.evaluate_embeddings`).

  Returns:
    The metrics of `evaluation.evaluate_embeddings`; with
    ``evals.query_gallery`` (evaluation/query_gallery.py), the retrieval
    metrics are those of its queries against its gallery, and NMI/AMI still
    cluster the whole set.

  Raises:
    ValueError: a bad ``evals.query_gallery``, or one that leaves no query
      or no gallery image.
  """
  spec = config.evals.query_gallery
  protocol = query_gallery.parse(spec)
  block_size = block_size or config.evals.block_size
  ks = tuple(config.evals.recall_ks)
  if protocol is None:
    metrics = evaluation.retrieval_metrics(
      embeddings, labels, ks=ks, block_size=block_size, mesh=mesh
    )
  else:
    x, y = np.asarray(embeddings), np.asarray(labels)
    queries, gallery, shared = query_gallery.select(
      protocol, y, source_splits, spec
    )
    if shared:
      # Leave-one-out over the gallery, averaged over its query rows.
      scores = evaluation.per_query_scores(
        x[gallery], y[gallery], max_k=max(ks), block_size=block_size, mesh=mesh
      )
      scores = {key: value[queries] for key, value in scores.items()}
      metrics = evaluation.summarize_retrieval(scores, ks)
    else:
      metrics = evaluation.retrieval_metrics(
        x[queries],
        y[queries],
        gallery=x[gallery],
        gallery_labels=y[gallery],
        ks=ks,
        block_size=block_size,
        mesh=mesh,
      )
  metrics.update(
    evaluation.clustering_metrics(
      embeddings,
      labels,
      seed=config.seed,
      num_iters=config.evals.kmeans_iters,
      num_restarts=config.evals.kmeans_restarts,
    )
  )
  return metrics


def evaluate_split(
  config: ml_collections.ConfigDict,
  embed_fn: Callable[[dict[str, Any], jax.Array], jax.Array],
  variables: dict[str, Any],
  mesh: jax.sharding.Mesh,
  split: str,
) -> dict[str, float]:
  """Embeds ``split`` and computes its retrieval and clustering metrics.

  Args:
    config: a full run config.
    embed_fn: the network in inference mode, ``embedding.make_embed_fn``.
    variables: its variables, replicated over ``mesh``.
    mesh: the device mesh.
    split: 'test', 'val' or 'train'.

  Returns:
    The metrics of `evaluate_with_config`.
  """
  embedded = split_embedding.embed_split(
    embed_fn,
    variables,
    config.input,
    split,
    mesh,
    with_sources=needs_source_splits(config),
  )
  return evaluate_with_config(
    embedded.embeddings,
    embedded.labels,
    config,
    source_splits=embedded.source_splits,
  )
