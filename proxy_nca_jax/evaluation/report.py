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
"""The report of a training run: three PNG files in its workdir.

- ``convergence.png``: the training loss and every evaluation metric against
  the step, from the run's ``metrics.jsonl``.
- ``retrieval_grid.png``: queries of the evaluation split and their 8
  nearest neighbours, framed green (same class) or red (other class).
- ``embedding_projection.png``: the split's embeddings on their first two
  principal components, coloured by class.

`write_report` embeds at most ``max_examples`` images of the split (the
first ones of the pipeline's fixed order), so a report takes seconds after
any run; the grid's neighbours are searched among those images. It runs at
the end of ``python -m proxy_nca_jax.train`` (``config.report.at_end``) and
on demand as ``python -m proxy_nca_jax.report``. `embed_split` and
`write_retrieval_grid` are shared with ``python -m proxy_nca_jax.evaluate``.
"""

import os
from collections.abc import Iterator, Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import tensorflow as tf

from proxy_nca_jax import parallel
from proxy_nca_jax.data import pipeline
from proxy_nca_jax.evaluation import embedding, figures
from proxy_nca_jax.training import metric_writer, train_state, workdirs

CONVERGENCE = "convergence.png"
RETRIEVAL_GRID = "retrieval_grid.png"
PROJECTION = "embedding_projection.png"
_FIGURES = (CONVERGENCE, RETRIEVAL_GRID, PROJECTION)
# Images embedded for a report when the config has no report section.
DEFAULT_MAX_EXAMPLES = 5000


def _stash_images(
  batches: Iterator[dict[str, np.ndarray]], images: list[np.ndarray]
) -> Iterator[dict[str, np.ndarray]]:
  """Passes `batches` through, keeping the real images of each."""
  for batch in batches:
    images.append(batch["image"][batch["mask"].astype(bool)])
    yield batch


def embed_split(
  input_config: ml_collections.ConfigDict,
  model: nn.Module,
  state: train_state.TrainState,
  mesh: jax.sharding.Mesh,
  split: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Embeds an evaluation split and keeps its images.

  Args:
    input_config: the run's ``config.input``.
    model: the run's network.
    state: its trained state, replicated over ``mesh``.
    mesh: the device mesh.
    split: 'test', 'val' or 'train'.

  Returns:
    (embeddings float32 (N, D), labels int (N,)) of the whole split, and this
    process's images float32 (n, H, W, C) as the network saw them (n = N
    with one process).
  """
  images: list[np.ndarray] = []
  batches = pipeline.create_eval_iterator(
    input_config,
    split,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  embeddings, labels = embedding.embed_batches(
    embedding.make_embed_fn(model, mesh),
    train_state.inference_variables(state),
    _stash_images(batches, images),
    mesh,
  )
  return embeddings, labels, np.concatenate(images)


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
  neighbours = figures.nearest_neighbours(embeddings, queries, num)
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


def write_report(
  workdir: str,
  *,
  split: str = "test",
  max_examples: int | None = None,
  mesh: jax.sharding.Mesh | None = None,
) -> list[str]:
  """Writes the three figures of a run's latest checkpoint into its workdir.

  The metrics, checkpoint and split are all read before the first file is
  written, so bad input leaves the workdir as it was.

  Args:
    workdir: the workdir of a training run.
    split: the evaluation split drawn in the grid and projection.
    max_examples: images of the split embedded (None: the run's
      ``config.report.max_examples``, else `DEFAULT_MAX_EXAMPLES`).
    mesh: where to embed (default: every device).

  Returns:
    The paths written: convergence, retrieval grid, projection.

  Raises:
    FileNotFoundError: not a training run's workdir, no checkpoint or no
      metrics.
    ValueError: several processes, a bad split or ``max_examples``, or no
      metric to plot; DatasetError (a ValueError) if the run's dataset is not
      prepared.
  """
  if jax.process_count() > 1:
    raise ValueError(
      "The report needs every image in one process: run python -m "
      "proxy_nca_jax.report --workdir=... on one host."
    )
  workdir = workdirs.absolute(workdir)
  config = workdirs.load_config(workdir)
  if max_examples is None:
    report = config.get("report") or {}
    max_examples = report.get("max_examples", DEFAULT_MAX_EXAMPLES)
  if max_examples < 2:
    raise ValueError(f"max_examples={max_examples} must be at least 2.")
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if not tf.io.gfile.exists(metrics_path):
    raise FileNotFoundError(f"{metrics_path} not found: nothing to plot.")
  records = metric_writer.read_metrics(workdir)
  keys = convergence_keys(records)
  if not any(key in r for r in records for key in keys):
    raise ValueError(f"{metrics_path} has no metric to plot yet.")

  mesh = parallel.create_mesh() if mesh is None else mesh
  config, model, state = workdirs.restore_trained(workdir, mesh)
  input_config = ml_collections.ConfigDict(config.input.to_dict())
  cap = input_config.max_eval_examples
  input_config.max_eval_examples = min(cap or max_examples, max_examples)
  embeddings, labels, images = embed_split(
    input_config, model, state, mesh, split
  )
  step = int(jax.device_get(state.step))

  paths = [os.path.join(workdir, name) for name in _FIGURES]
  figures.convergence_plot(
    records,
    paths[0],
    keys=keys,
    title="training loss and evaluation metrics",
  )
  write_retrieval_grid(
    paths[1], embeddings, labels, images, config.input, seed=config.seed
  )
  figures.embedding_projection(
    embeddings,
    labels,
    paths[2],
    title=f"{split} embeddings at step {step} ({len(labels)} images, PCA)",
    seed=config.seed,
  )
  return paths
