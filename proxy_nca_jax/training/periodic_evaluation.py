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
"""The evaluations during training: when they are due, running them, and
logging their metrics.

An evaluation embeds the split with the network in inference mode and
computes the run's metrics (``inference.split_evaluation.evaluate_split``),
then writes them as scalars ``<split>/<metric>`` and logs them. A run killed
after a checkpoint but before that step's evaluation finished completes it
when resumed (``evaluate_if_missing``).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from proxy_nca_jax.inference import split_evaluation
from proxy_nca_jax.training import metric_writer, train_state


def _log_evaluation(
  writer: metric_writer.MetricWriter,
  step: int,
  split: str,
  results: dict[str, float],
) -> None:
  writer.write_scalars(step, {f"{split}/{k}": v for k, v in results.items()})
  logging.info(
    "eval %s at step %d: %s",
    split,
    step,
    ", ".join(f"{k} {v:.4f}" for k, v in results.items()),
  )


@dataclasses.dataclass
class Evaluations:
  """The evaluations of one run.

  Attributes:
    config: the run's full config (``evals``, ``schedule.num_steps``).
    mesh: the device mesh.
    embed_fn: the network in inference mode (``embedding.make_embed_fn``),
      jitted once for every evaluation of the run.
    writer: where the metrics go.
    workdir: the run's workdir (its metrics.jsonl says what was evaluated).
  """

  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  embed_fn: Callable[[dict[str, Any], jax.Array], jax.Array]
  writer: metric_writer.MetricWriter
  workdir: str

  def due(self, step: int) -> bool:
    """Whether ``step`` has an evaluation: every evals.every_steps, and the
    last step."""
    every = self.config.evals.every_steps
    return step == self.config.schedule.num_steps or bool(
      every and step % every == 0
    )

  def evaluate(
    self, state: train_state.TrainState, step: int, split: str
  ) -> None:
    """Evaluates ``state`` on ``split``; writes and logs the metrics."""
    results = split_evaluation.evaluate_split(
      self.config,
      self.embed_fn,
      train_state.inference_variables(state),
      self.mesh,
      split,
    )
    _log_evaluation(self.writer, step, split, results)

  def evaluate_if_missing(
    self, state: train_state.TrainState, step: int, split: str
  ) -> None:
    """Evaluates ``split`` at ``step`` unless metrics.jsonl already has it.

    A run killed after its checkpoint at ``step`` but before that step's
    evaluation finished completes it when resumed (process 0 reads the file
    and tells the others, so every process takes the same branch).
    """
    missing = False
    if jax.process_index() == 0:
      prefix = f"{split}/"
      missing = not any(
        r["step"] == step and any(k.startswith(prefix) for k in r)
        for r in metric_writer.read_metrics_if_any(self.workdir)
      )
    if multihost_utils.broadcast_one_to_all(np.asarray(missing)):
      logging.info(
        "Evaluating %s at step %d (missing from metrics).", split, step
      )
      self.evaluate(state, step, split)
