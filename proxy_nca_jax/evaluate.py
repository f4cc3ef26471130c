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
r"""Evaluates the newest checkpoint of a training run: metrics and figures.

  python -m proxy_nca_jax.evaluate --workdir=workdirs/fashion_mnist \
      [--split=test] [--max_examples=N] [--block_size=1024] \
      [--query_gallery=per_class:K|splits:Q/G|classes:Q/G]

Loads the run's config and newest checkpoint from the workdir, embeds the
split (by default the never-seen test classes), prints the metrics table
(every Recall@K of the run's config, Precision@1, R-Precision, MAP@R, NMI,
AMI) and writes into the workdir (reports/workdir_report.py):

- ``metrics_<split>.json``: {"step", "split", "num_examples",
  "query_gallery", "metrics"};
- ``retrieval_<split>.png``: a few queries with their nearest neighbours,
  framed green (same class) or red (other class);
- ``projection_<split>.png``: the embeddings' first two principal
  components coloured by class, for sets of at most --max_projected images;
- ``convergence.png``: the training loss and the logged evaluation metrics
  against the step.

Training writes the same files at its end (``config.report.at_end``).
"""

import sys

import jax
from absl import flags

from proxy_nca_jax import command_line, evaluation
from proxy_nca_jax.reports import workdir_report

_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Workdir of a training run (config.json, checkpoints/)."
)
_SPLIT = flags.DEFINE_enum(
  "split", "test", ["test", "val", "train"], "Split to evaluate."
)
_MAX_EXAMPLES = flags.DEFINE_integer(
  "max_examples",
  None,
  "Images of the split evaluated, the first of its fixed order "
  "(default: all of them).",
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
_QUERY_GALLERY = flags.DEFINE_string(
  "query_gallery",
  None,
  "Separate query and gallery sets (evaluation/query_gallery.py): "
  "'per_class:K' (the first K images of each class query the others), "
  "'splits:Q/G' (images of tfds split Q query those of split G, e.g. "
  "'splits:query/gallery' for an image folder with query/ and gallery/) or "
  "'classes:Q/G' (classes Q query classes G, e.g. 'classes:5-6/5-9'); "
  "default: the run's evals.query_gallery (unset: every image queries all "
  "the others).",
)
flags.mark_flag_as_required("workdir")


def main() -> None:
  result = workdir_report.evaluate_workdir(
    _WORKDIR.value,
    _SPLIT.value,
    max_examples=_MAX_EXAMPLES.value,
    block_size=_BLOCK_SIZE.value,
    num_queries=_NUM_QUERIES.value,
    num_neighbours=_NUM_NEIGHBOURS.value,
    max_projected=_MAX_PROJECTED.value,
    query_gallery=_QUERY_GALLERY.value,
  )
  if jax.process_index() == 0:
    sys.stdout.write(f"{format_result(result)}\n")
    for path in result["files"]:
      sys.stdout.write(f"wrote {path}\n")


def format_result(result: dict) -> str:
  """The metrics table of an `evaluate_workdir` result, one row."""
  name = f"{result['split']}, step {result['step']}"
  return evaluation.format_results_table(
    {name: result["metrics"]}, list(result["metrics"])
  )


if __name__ == "__main__":
  command_line.run(main)
