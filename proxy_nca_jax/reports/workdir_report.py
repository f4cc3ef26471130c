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
"""The evaluation files of a training run, written into its workdir.

`evaluate_workdir` restores the run's newest checkpoint, embeds one split
(by default the never-seen test classes), and writes:

- ``metrics_<split>.json``: {"step", "split", "num_examples", "metrics"},
  every metric of `evaluation.evaluate_embeddings` with the run's
  ``config.evals`` (Recall@K for each K the config asks for, Precision@1,
  R-Precision, MAP@R, NMI, AMI);
- ``retrieval_<split>.png``: a few queries and their nearest neighbours,
  framed green (same class) or red (other class);
- ``projection_<split>.png``: the embeddings on their first two principal
  components, coloured by class (sets of at most ``max_projected``);
- ``convergence.png``: the training loss and every evaluation metric logged
  in ``metrics.jsonl`` against the step (when it holds any).

The same function serves ``python -m proxy_nca_jax.evaluate`` and the end of
``python -m proxy_nca_jax.train`` (``config.report.at_end``), so both name
their files alike. Every process embeds its share of the split; the figures,
which need every image in one process, are drawn by single-process runs only.
"""

import json
import os
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from proxy_nca_jax import errors, parallel
from proxy_nca_jax.data import pipeline
from proxy_nca_jax.evaluation import nearest
from proxy_nca_jax.inference import (
  embedding,
  split_embedding,
  split_evaluation,
  trained_model,
)
from proxy_nca_jax.reports import figures
from proxy_nca_jax.training import metric_writer, setup

CONVERGENCE = "convergence.png"
METRICS = "metrics_{split}.json"
RETRIEVAL = "retrieval_{split}.png"
PROJECTION = "projection_{split}.png"


def write_retrieval_grid(
  path: str,
  embeddings: np.ndarray,
  labels: np.ndarray,
  images: np.ndarray,
  input_config: ml_collections.ConfigDict,
  *,
  num_queries: int = 6,
  num_neighbours: int = 8,
  seed: int = 0,
) -> None:
  """Draws random queries of a set and their nearest neighbours in it.

  Args:
    path: the PNG file to write.
    embeddings: (N, D) unit embeddings of the set.
    labels: (N,) integer labels.
    images: (N, H, W, C) the set's images as the network saw them.
    input_config: the run's ``config.input`` (how to show the images:
      ``pipeline.display_images``).
    num_queries: rows, drawn at random (``seed``) without replacement.
    num_neighbours: neighbours per row (at most N - 1).
    seed: picks the queries.
  """
  rng = np.random.default_rng(seed)
  queries = np.sort(
    rng.choice(len(labels), min(num_queries, len(labels)), replace=False)
  )
  num = min(num_neighbours, len(labels) - 1)
  _, neighbours = nearest.nearest_neighbours(
    embeddings[queries], embeddings, num, exclude=queries
  )
  figures.retrieval_grid(
    pipeline.display_images(images, input_config),
    labels,
    queries,
    neighbours,
    path,
  )


def convergence_keys(records: Sequence[dict[str, float]]) -> list[str]:
  """The training loss, then every evaluation metric (split/name) logged."""
  return ["loss", *figures.evaluation_keys(records)]


def _convergence_records(workdir: str) -> list[dict[str, float]]:
  """The records of metrics.jsonl worth a convergence plot ([] if none)."""
  if not tf.io.gfile.exists(os.path.join(workdir, "metrics.jsonl")):
    return []
  records = metric_writer.read_metrics(workdir)
  keys = convergence_keys(records)
  return records if any(k in r for r in records for k in keys) else []


def _capped_input(
  input_config: ml_collections.ConfigDict, max_examples: int | None
) -> ml_collections.ConfigDict:
  """``input_config`` with at most ``max_examples`` evaluation images."""
  if max_examples is None:
    return input_config
  if max_examples < 2:
    raise errors.InvalidInputError(
      f"max_examples={max_examples} must be at least 2."
    )
  capped = ml_collections.ConfigDict(input_config.to_dict())
  cap = capped.max_eval_examples
  capped.max_eval_examples = min(cap or max_examples, max_examples)
  return capped


def evaluate_workdir(
  workdir: str,
  split: str = "test",
  *,
  max_examples: int | None = None,
  block_size: int | None = None,
  num_queries: int = 6,
  num_neighbours: int = 8,
  max_projected: int = 40_000,
  query_gallery: str | None = None,
  mesh: jax.sharding.Mesh | None = None,
) -> dict:
  """Evaluates a run's newest checkpoint; writes its metrics and figures.

  Everything is read and computed before the first file is written, so bad
  input leaves the workdir as it was.

  Args:
    workdir: the workdir of a training run.
    split: 'test', 'val' or 'train'.
    max_examples: images of the split evaluated, the first ones of the
      pipeline's fixed order (None: all, as the run's own evaluations).
    block_size: similarity tile side (None: ``config.evals.block_size``).
    num_queries: rows of the retrieval figure.
    num_neighbours: neighbours per row.
    max_projected: largest set drawn as a 2-D projection (0: never).
    query_gallery: overrides ``config.evals.query_gallery`` (e.g.
      'per_class:1': each class's first image queries the others).
    mesh: where to embed and evaluate (default: every device).

  Returns:
    What ``metrics_<split>.json`` holds, plus 'files': the paths written
    (by process 0; other processes write nothing).

  Raises:
    FileNotFoundError: not a training run's workdir, or no checkpoint.
    ValueError: a bad split, ``max_examples`` or configuration;
      DatasetError (a ValueError) if the run's dataset is not prepared.
  """
  trained = trained_model.load(workdir)
  workdir, config = trained.workdir, trained.config
  if query_gallery is not None:
    with config.unlocked():
      config.evals.query_gallery = query_gallery
  setup.check_query_gallery(config, split)
  input_config = _capped_input(config.input, max_examples)
  records = _convergence_records(workdir)
  mesh = parallel.create_mesh() if mesh is None else mesh
  embedded = split_embedding.embed_split(
    embedding.make_embed_fn(trained.model, mesh),
    jax.device_put(trained.variables, parallel.replicated(mesh)),
    input_config,
    split,
    mesh,
    with_sources=split_evaluation.needs_source_splits(config),
    keep_images=True,
  )
  metrics = split_evaluation.evaluate_with_config(
    embedded.embeddings,
    embedded.labels,
    config,
    source_splits=embedded.source_splits,
    block_size=block_size,
    mesh=mesh,
  )
  result = {
    "step": trained.step,
    "split": split,
    "num_examples": int(len(embedded.labels)),
    "query_gallery": config.evals.query_gallery,
    "metrics": metrics,
    "files": [],
  }
  if jax.process_index() != 0:
    return result
  path = os.path.join(workdir, METRICS.format(split=split))
  with tf.io.gfile.GFile(path, "w") as f:
    saved = {k: v for k, v in result.items() if k != "files"}
    f.write(json.dumps(saved, indent=2) + "\n")
  result["files"].append(path)
  if jax.process_count() > 1:
    logging.info("Figures need every image in one process: not drawn.")
    return result
  result["files"] += _draw_figures(
    workdir,
    config,
    result,
    (embedded.embeddings, embedded.labels, embedded.images),
    records,
    num_queries=num_queries,
    num_neighbours=num_neighbours,
    max_projected=max_projected,
  )
  return result


def _draw_figures(
  workdir: str,
  config: ml_collections.ConfigDict,
  result: dict,
  embedded: tuple[np.ndarray, np.ndarray, np.ndarray],
  records: list[dict[str, float]],
  *,
  num_queries: int,
  num_neighbours: int,
  max_projected: int,
) -> list[str]:
  """Draws the retrieval grid, projection and convergence; their paths."""
  embeddings, labels, images = embedded
  split, paths = result["split"], []
  path = os.path.join(workdir, RETRIEVAL.format(split=split))
  write_retrieval_grid(
    path,
    embeddings,
    labels,
    images,
    config.input,
    num_queries=num_queries,
    num_neighbours=num_neighbours,
    seed=config.seed,
  )
  paths.append(path)
  if len(labels) <= max_projected:
    path = os.path.join(workdir, PROJECTION.format(split=split))
    figures.embedding_projection(
      embeddings,
      labels,
      path,
      title=(
        f"{split} embeddings at step {result['step']} "
        f"({len(labels)} images, PCA)"
      ),
      seed=config.seed,
    )
    paths.append(path)
  if records:
    path = os.path.join(workdir, CONVERGENCE)
    figures.convergence_plot(
      records,
      path,
      keys=convergence_keys(records),
      title="training loss and evaluation metrics",
    )
    paths.append(path)
  return paths
