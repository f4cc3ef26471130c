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
r"""Draws the report of a training run: three PNG files in its workdir.

  python -m proxy_nca_jax.report --workdir=workdirs/fashion_mnist \
      [--split=test] [--max_examples=5000]

Writes ``convergence.png`` (training loss and evaluation metrics against the
step), ``retrieval_grid.png`` (queries and their 8 nearest neighbours, green
same class, red other class) and ``embedding_projection.png`` (2-D PCA of
the split's embeddings, coloured by class) from the run's metrics and latest
checkpoint (report.py). Training writes the same files at its end
unless ``--config.report.at_end=False``. Runs in one process.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import app, flags  # noqa: E402

from proxy_nca_jax import quiet_logs  # noqa: E402
from proxy_nca_jax.evaluation import report  # noqa: E402

_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Workdir of a training run (config.json, checkpoints/)."
)
_SPLIT = flags.DEFINE_enum(
  "split", "test", ["test", "val", "train"], "Split drawn in the figures."
)
_MAX_EXAMPLES = flags.DEFINE_integer(
  "max_examples",
  None,
  "Images of the split embedded (default: the run's "
  f"config.report.max_examples, else {report.DEFAULT_MAX_EXAMPLES}).",
)
flags.mark_flag_as_required("workdir")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  quiet_logs.quiet_libraries()
  try:
    paths = report.write_report(
      _WORKDIR.value, split=_SPLIT.value, max_examples=_MAX_EXAMPLES.value
    )
  except (FileNotFoundError, ValueError) as error:
    # Not a workdir, no checkpoint, data not prepared: one line, no trace.
    sys.stderr.write(f"error: {error}\n")
    sys.exit(1)
  for path in paths:
    sys.stdout.write(f"wrote {path}\n")


if __name__ == "__main__":
  app.run(main)
