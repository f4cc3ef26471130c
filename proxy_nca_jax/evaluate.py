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
r"""Evaluates the latest checkpoint of a training run: metrics and figures.

  python -m proxy_nca_jax.evaluate --workdir=workdirs/fashion_mnist \
      [--split=test] [--block_size=2048]

Loads the run's config and newest checkpoint from the workdir, embeds the
split (by default the never-seen test classes), computes Recall@K,
Precision@1, R-Precision, MAP@R, NMI and AMI (evaluation.py), and writes into
the workdir:

- ``metrics_<split>.json``: {"step", "split", "num_examples", "metrics"}.
- ``retrieval_<split>.png``: a few queries with their top-8 neighbours,
  framed green (same class) or red (other class).
- ``projection_<split>.png``: the embeddings' first two principal
  components coloured by class, for sets of at most --max_projected images.

The metrics table also goes to stdout.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import jax  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from proxy_nca_jax import evaluation, parallel, quiet_logs  # noqa: E402
from proxy_nca_jax.evaluation import figures, report  # noqa: E402
from proxy_nca_jax.training import workdirs  # noqa: E402

_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Workdir of a training run (config.json, checkpoints/)."
)
_SPLIT = flags.DEFINE_enum(
  "split", "test", ["test", "val", "train"], "Split to evaluate."
)
_BLOCK_SIZE = flags.DEFINE_integer(
  "block_size", None, "Similarity tile side (default: the run's config)."
)
_NUM_QUERIES = flags.DEFINE_integer(
  "num_queries", 6, "Queries (rows) of the retrieval figure."
)
_NUM_NEIGHBOURS = flags.DEFINE_integer(
  "num_neighbours", 8, "Neighbours per query in the retrieval figure."
)
_MAX_PROJECTED = flags.DEFINE_integer(
  "max_projected",
  40_000,
  "Largest split that gets a 2-D projection figure (0: never).",
)
flags.mark_flag_as_required("workdir")


def evaluate_workdir(
  workdir: str,
  split: str,
  *,
  block_size: int | None = None,
  num_queries: int = 6,
  num_neighbours: int = 8,
  max_projected: int = 40_000,
) -> dict:
  """Evaluates a run's latest checkpoint; writes metrics JSON and figures.

  Args:
    workdir: the workdir of a training run.
    split: 'test', 'val' or 'train'.
    block_size: similarity tile side (None: config.evals.block_size).
    num_queries: rows of the retrieval figure.
    num_neighbours: neighbours per row.
    max_projected: largest split drawn as a 2-D projection.

  Returns:
    What metrics_<split>.json holds, plus 'figures': the PNG paths written.

  Raises:
    FileNotFoundError: not a training run's workdir, or no checkpoint.
    ValueError: a bad split or configuration; DatasetError (a ValueError)
      if the run's dataset is not prepared.
  """
  workdir = workdirs.absolute(workdir)
  mesh = parallel.create_mesh()
  config, model, state = workdirs.restore_trained(workdir, mesh)
  embeddings, labels, images = report.embed_split(
    config.input, model, state, mesh, split
  )
  metrics = evaluation.evaluate_with_config(
    embeddings, labels, config, block_size=block_size, mesh=mesh
  )
  result = {
    "step": int(jax.device_get(state.step)),
    "split": split,
    "num_examples": int(len(labels)),
    "metrics": metrics,
  }
  if jax.process_index() != 0:
    return result
  with tf.io.gfile.GFile(
    os.path.join(workdir, f"metrics_{split}.json"), "w"
  ) as f:
    f.write(json.dumps(result, indent=2) + "\n")
  result["figures"] = []
  if jax.process_count() > 1:
    logging.info("Figures need every image on one process: skipped.")
    return result
  path = os.path.join(workdir, f"retrieval_{split}.png")
  report.write_retrieval_grid(
    path,
    embeddings,
    labels,
    images,
    config.input,
    num_queries=num_queries,
    num_neighbours=num_neighbours,
    seed=config.seed,
  )
  result["figures"].append(path)
  if len(labels) <= max_projected:
    path = os.path.join(workdir, f"projection_{split}.png")
    figures.embedding_projection(
      embeddings,
      labels,
      path,
      title=f"{split} embeddings at step {result['step']} (PCA)",
    )
    result["figures"].append(path)
  return result


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  quiet_logs.quiet_libraries()
  try:
    result = evaluate_workdir(
      _WORKDIR.value,
      _SPLIT.value,
      block_size=_BLOCK_SIZE.value,
      num_queries=_NUM_QUERIES.value,
      num_neighbours=_NUM_NEIGHBOURS.value,
      max_projected=_MAX_PROJECTED.value,
    )
  except (FileNotFoundError, ValueError) as error:
    # Not a workdir, no checkpoint, data not prepared: one line, no trace.
    sys.stderr.write(f"error: {error}\n")
    sys.exit(1)
  if jax.process_index() == 0:
    name = f"{result['split']}, step {result['step']}"
    table = evaluation.format_results_table(
      {name: result["metrics"]}, list(result["metrics"])
    )
    sys.stdout.write(f"{table}\n")
    for path in result["figures"]:
      sys.stdout.write(f"wrote {path}\n")


if __name__ == "__main__":
  app.run(main)
