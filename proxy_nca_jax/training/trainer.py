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
"""Training and evaluation: state, the sharded jitted step, and the loop.

``train_and_evaluate(config, workdir)`` is the whole job: prepare the data,
build (or restore) the state, train with periodic evaluation, checkpoints and
metrics, and return the evaluation results. Everything runs through one
device mesh (parallel.py): the same code on one CPU, fake CPU devices, GPUs
or a TPU pod slice.

The run is assembled by setup.py; the loop here steps, logs, saves and
stops on preemption, and leaves the rest to its modules: the health checks
to health.py, where new proxies start to proxy_init.py, and the evaluations
to periodic_evaluation.py.
"""

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
from jax.experimental import multihost_utils

from proxy_nca_jax import checkpointing, config_defaults, durations, parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.data import folder_recipe, pipeline, vit_recipe
from proxy_nca_jax.inference import embedding
from proxy_nca_jax.training import (
  config_changes,
  health,
  metric_writer,
  periodic_evaluation,
  preemption,
  proxy_init,
  run_lock,
  setup,
  train_state,
  workdirs,
)

# Backbones whose recipes assume ImageNet-pretrained weights.
IMAGENET_BACKBONES = ("bn_inception", "resnet50")


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  mesh: jax.sharding.Mesh | None = None,
  *,
  accept_config_change: bool = False,
) -> dict[int, dict[str, float]]:
  """Trains and evaluates; resumes from the latest checkpoint in workdir.

  Args:
    config: the full config (see configs/fashion_mnist.py).
    workdir: where checkpoints, metrics.jsonl and TensorBoard files go.
    mesh: the devices to train and evaluate on (default: every device of
      every process, which is what the train command uses).
    accept_config_change: resume even if the config differs from the
      recorded one in fields that affect results (config_changes.py);
      the change is recorded as a new segment.

  Raises:
    config_changes.ConfigChangeError: such a change, not accepted.

  Returns:
    The test-split results of this workdir, by step (read back from
    metrics.jsonl, so a resumed run still reports the untrained baseline).
  """
  tf_workdir = workdirs.check_training_workdir(workdir)
  config = vit_recipe.from_weights(
    folder_recipe.resolve(config_defaults.with_defaults(config))
  )
  mesh = parallel.create_mesh() if mesh is None else mesh
  parts = _prepare(config, mesh)
  with run_lock.hold(tf_workdir):
    return _train_locked(config, parts, tf_workdir, accept_config_change)


def _train_locked(
  config: ml_collections.ConfigDict,
  parts: setup.RunParts,
  tf_workdir: str,
  accept_config_change: bool,
) -> dict[int, dict[str, float]]:
  """The run once its workdir is locked: restore, train, evaluate."""
  mesh = parts.mesh
  ckpt = checkpointing.Checkpointer(
    os.path.join(tf_workdir, "checkpoints"),
    every_steps=config.ckpt.every_steps,
    keep=config.ckpt.keep,
  )
  try:
    segments, changes = _check_config_change(
      config, ckpt, tf_workdir, accept_config_change
    )
  except config_changes.ConfigChangeError:
    ckpt.close()
    raise
  state = parts.initial_state()
  shardings = parts.state_shardings(state)
  state, latest = _restore_or_initialize(parts, ckpt, state, shardings)
  dropped = 0
  if latest is not None:
    dropped = metric_writer.keep_until(tf_workdir, latest)
    if dropped:
      logging.info(
        "Dropped %d rows of metrics.jsonl after step %d (the interrupted "
        "segment, trained again now).",
        dropped,
        latest,
      )
  if jax.process_index() == 0:
    # Only once the checkpoint is known to fit: a refused run changes nothing.
    workdirs.save_config(config, tf_workdir, parts.num_proxies, segments)
  writer = metric_writer.MetricWriter(
    tf_workdir, resumed_from=latest if dropped else None
  )
  if changes:
    logging.warning(
      "Config changed from step %d on (accepted; segment %d): %s",
      latest,
      len(segments),
      "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()),
    )
    writer.write_scalars(latest, {"config_segment": float(len(segments))})
  loop = _Loop(
    parts=parts,
    train_step_fn=parts.train_step(shardings),
    evaluations=periodic_evaluation.Evaluations(
      config=parts.config,
      mesh=mesh,
      embed_fn=embedding.make_embed_fn(parts.model, mesh),
      writer=writer,
      workdir=tf_workdir,
    ),
    writer=writer,
    ckpt=ckpt,
  )
  try:
    loop.run(state, latest)
  finally:
    ckpt.close()  # Waits for a save in flight, also on errors.
    writer.close()
  return read_test_results(tf_workdir)


def _check_config_change(
  config: ml_collections.ConfigDict,
  ckpt: checkpointing.Checkpointer,
  tf_workdir: str,
  accept: bool,
) -> tuple[list[dict], dict[str, tuple[Any, Any]]]:
  """(segments to record, accepted changes) of a resume; nothing to compare
  for a new run (no checkpoint or no recorded config).

  Raises:
    config_changes.ConfigChangeError: refused changes.
  """
  latest = ckpt.latest_step()
  recorded = workdirs.recorded_run(tf_workdir)
  if latest is None or recorded is None:
    return [], {}
  recorded_config, segments = recorded
  changes = config_changes.check_resume(
    recorded_config, config, tf_workdir, latest, accept
  )
  return (
    config_changes.segments_after(segments, changes, latest, recorded_config),
    changes,
  )


def _prepare(
  config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh
) -> setup.RunParts:
  """Checks the config, prepares the dataset once, assembles the run."""
  setup.check_config(config, mesh)
  if jax.process_index() == 0:
    # One builder per data_dir; the other processes wait for it.
    pipeline.prepare_dataset(config.input)
  multihost_utils.sync_global_devices("dataset prepared")
  setup.check_query_gallery(config, config.evals.split)
  parts = setup.assemble(config, mesh)
  if config.model.name in IMAGENET_BACKBONES and not config.model.pretrained:
    logging.warning(
      "model.name=%s starts from random weights: its recipe (large images, "
      "small learning rate) is made for ImageNet-pretrained weights, and "
      "from scratch it learns slowly and may get worse before it gets "
      "better. Give weights (python -m proxy_nca_jax.import_weights, then "
      "--config.model.pretrained=DIR; docs/backbones.md), or for small "
      "images train convnet_s at their size (--config.model.name=convnet_s "
      "--config.input.image_size=SIZE).",
      config.model.name,
    )
  logging.info(
    "Mesh %s over %d devices, %d process(es); %d proxies, %s.",
    dict(mesh.shape),
    mesh.size,
    jax.process_count(),
    parts.num_proxies,
    parts.proxy_sharding,
  )
  return parts


def _restore_or_initialize(
  parts: setup.RunParts,
  ckpt: checkpointing.Checkpointer,
  state: train_state.TrainState,
  shardings: Any,
) -> tuple[train_state.TrainState, int | None]:
  """(the state to train from, the step of the checkpoint it came from).

  The newest checkpoint when there is one (its run signature checked);
  else ``proxy_init.starting_state``.
  """
  latest = ckpt.latest_step()
  if latest is not None:
    logging.info("Resuming from the checkpoint at step %d.", latest)
    return ckpt.restore(latest, state, parts.signature()), latest
  return proxy_init.starting_state(parts, state, shardings), None


@dataclasses.dataclass
class _Loop:
  """The training loop: steps, logs, checkpoints, evaluations, preemption."""

  parts: setup.RunParts
  train_step_fn: Callable[..., Any]
  evaluations: periodic_evaluation.Evaluations
  writer: metric_writer.MetricWriter
  ckpt: checkpointing.Checkpointer
  # (step, time) where the steps/s of the next log start counting.
  _timer: tuple[int, float] = dataclasses.field(default=(0, 0.0), init=False)

  def run(self, state: train_state.TrainState, latest: int | None) -> None:
    """Trains from ``state`` (at step ``latest`` or 0) to the last step."""
    config, mesh = self.parts.config, self.parts.mesh
    evals = self.evaluations
    num_steps, start_step = config.schedule.num_steps, int(state.step)
    if start_step == 0 and config.evals.at_step_zero:
      evals.evaluate(state, 0, config.evals.split)
    elif start_step > 0 and evals.due(start_step):
      evals.evaluate_if_missing(state, start_step, config.evals.split)
    batches = pipeline.create_train_iterator(
      config.input,
      seed=config.seed,
      start_step=start_step,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
    last_ckpt = latest
    norms = proxies_lib.proxy_norms(
      state.params["proxies"], self.parts.num_proxies
    )
    proxy_watch = health.ProxyNormWatch(float(norms["proxy_norm_max"]))
    stall_watch = health.StallWatch(config.loss.assignment)
    first_bad = jnp.int32(-1)
    watcher = preemption.StopWatcher()
    self._timer = (start_step, time.perf_counter())
    try:
      for step in range(start_step + 1, num_steps + 1):
        batch = parallel.global_batch(next(batches), mesh)
        state, metrics = self.train_step_fn(state, batch)
        first_bad = health.first_non_finite(first_bad, step, metrics)
        is_last = step == num_steps
        stop_now = watcher.should_stop(step) and not is_last
        log_now = step % config.log_every_steps == 0 or is_last
        save_now = (
          is_last
          or stop_now
          or (config.ckpt.every_steps and step % config.ckpt.every_steps == 0)
        )
        eval_now = evals.due(step)
        if log_now or save_now or eval_now:
          fetched = {k: float(v) for k, v in jax.device_get(metrics).items()}
          # Never checkpoint a diverged state: the last good one stays.
          health.check_finite(step, fetched, last_ckpt, int(first_bad))
          proxy_watch.check(step, fetched)
          stall_watch.check(step, fetched)
        if log_now:
          self._log_step(step, fetched)
        forced = is_last or stop_now
        if save_now and self.ckpt.save(
          step, state, self.parts.signature(), force=forced
        ):
          last_ckpt = step
        if stop_now:
          raise preemption.Preempted(step)
        if eval_now:
          evals.evaluate(state, step, config.evals.split)
          # Evaluation time is not training time.
          self._timer = (self._timer[0], time.perf_counter())
      if start_step == num_steps:
        logging.info("Training already finished at step %d.", num_steps)
      if config.evals.split != "test":
        evals.evaluate_if_missing(state, num_steps, "test")
    finally:
      watcher.close()

  def _log_step(self, step: int, fetched: dict[str, float]) -> None:
    """Writes the step's scalars and logs loss, speed and ETA."""
    num_steps = self.parts.config.schedule.num_steps
    now = time.perf_counter()
    timer_step, timer_start = self._timer
    steps_per_s = (step - timer_step) / max(now - timer_start, 1e-9)
    self._timer = (step, now)
    schedules = self.parts.schedules
    lrs = {f"lr/{g}": float(s(step - 1)) for g, s in schedules.items()}
    self.writer.write_scalars(
      step, {**fetched, **lrs, "steps_per_sec": steps_per_s}
    )
    logging.info(
      "step %d/%d loss %.4f | %.2f steps/s | ETA %s",
      step,
      num_steps,
      fetched["loss"],
      steps_per_s,
      durations.format_duration((num_steps - step) / max(steps_per_s, 1e-9)),
    )


def read_test_results(workdir: str) -> dict[int, dict[str, float]]:
  """Test-split metrics by step, read from workdir/metrics.jsonl."""
  rows = {}
  for record in metric_writer.read_metrics(workdir):
    test = {
      k.removeprefix("test/"): v
      for k, v in record.items()
      if k.startswith("test/")
    }
    if test:
      rows[record["step"]] = test
  return rows
