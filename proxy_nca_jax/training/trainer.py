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
"""

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from proxy_nca_jax import checkpointing, durations, evaluation, parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.data import folder_recipe, pipeline
from proxy_nca_jax.evaluation import embedding
from proxy_nca_jax.training import (
  config_changes,
  config_defaults,
  metric_writer,
  preemption,
  run_lock,
  setup,
  train_state,
  workdirs,
)


def evaluate_split(
  config: ml_collections.ConfigDict,
  embed_fn: Callable[[dict[str, Any], jax.Array], jax.Array],
  state: train_state.TrainState,
  mesh: jax.sharding.Mesh,
  split: str,
) -> dict[str, float]:
  """Embeds ``split`` and computes its retrieval and clustering metrics."""
  batches = pipeline.create_eval_iterator(
    config.input,
    split,
    with_sources=evaluation.needs_source_splits(config),
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  examples = embedding.embed_examples(
    embed_fn, train_state.inference_variables(state), batches, mesh
  )
  return evaluation.evaluate_with_config(
    examples["embedding"],
    examples["label"],
    config,
    source_splits=pipeline.source_split_names(config.input, examples),
  )


def class_mean_proxy_init(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  state: train_state.TrainState,
  num_proxies: int,
  num_batches: int = 16,
) -> jax.Array:
  """Proxies at the class means of the initial network's embeddings.

  Uses a separately seeded stream of training batches, so the training
  stream (and resuming it) is unaffected.
  """
  embeddings, labels = zip(
    *embed_training_batches(
      config, model, state, seed=config.seed + 1, num_batches=num_batches
    ),
    strict=True,
  )
  return proxies_lib.class_mean_proxies(
    np.concatenate(embeddings), np.concatenate(labels), num_proxies
  )


def embed_training_batches(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  state: train_state.TrainState,
  *,
  seed: int,
  num_batches: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(embeddings, labels) of the first ``num_batches`` global batches of the
  training stream seeded ``seed``, embedded in training mode (each batch
  normalised by its own statistics, as the loss sees it) and gathered from
  every process."""
  batches = pipeline.create_train_iterator(
    config.input,
    seed=seed,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  for _, local in zip(range(num_batches), batches, strict=False):
    out, _ = model.apply(
      {"params": state.params["model"], "batch_stats": state.batch_stats},
      local["image"],
      train=True,
      mutable=["batch_stats"],
    )
    yield (
      multihost_utils.process_allgather(out, tiled=True),
      multihost_utils.process_allgather(local["label"], tiled=True),
    )


@jax.jit
def _first_non_finite(
  first: jax.Array, step: int, metrics: dict[str, jax.Array]
) -> jax.Array:
  """The first step with a non-finite metric (loss, gradient norm, proxy
  norms; -1: none yet), on the device: tracked every step without waiting
  for the step to finish."""
  finite = jnp.all(
    jnp.stack([jnp.isfinite(v).all() for v in jax.tree.leaves(metrics)])
  )
  return jnp.where((first < 0) & ~finite, step, first)


def _check_finite(
  step: int, metrics: dict[str, float], last_ckpt: int | None, first_bad: int
) -> None:
  """Raises FloatingPointError when a fetched metric is not finite.

  Args:
    step: the step whose metrics were fetched.
    metrics: its metrics.
    last_ckpt: the newest checkpoint (None: none yet).
    first_bad: the first step with a non-finite metric (-1: none).
  """
  bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
  if not bad and first_bad < 0:
    return
  first = step if first_bad < 0 else first_bad
  when = f"at step {first}" + (
    f" (the first non-finite one; found at step {step})"
    if first != step
    else ""
  )
  if last_ckpt is None:
    restart = (
      "No checkpoint was saved before it: rerun the same command with, "
      "e.g., --config.optimizer.learning_rate=<smaller> to start again."
    )
  else:
    restart = (
      f"The last good checkpoint (step {last_ckpt}) is intact; rerun the "
      "same command with, e.g., --config.optimizer.learning_rate=<smaller> "
      "--accept_config_change to resume from it."
    )
  # The metrics fetched now may be finite again after a non-finite step.
  what = bad or "non-finite metrics"
  raise FloatingPointError(
    f"Training diverged: {what} {when}. Likely "
    "causes: a learning rate too high for the loss scale "
    "(optimizer.learning_rate, optimizer.proxy_lr_mult) or loss.scale too "
    f"large. {restart}"
  )


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
  config = folder_recipe.resolve(config_defaults.with_defaults(config))
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
    workdirs.save_config(config, tf_workdir, segments)
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
    embed_fn=embedding.make_embed_fn(parts.model, mesh),
    writer=writer,
    ckpt=ckpt,
    workdir=tf_workdir,
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
  return config_changes.segments_after(segments, changes, latest), changes


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
  else ``starting_state``.
  """
  latest = ckpt.latest_step()
  if latest is not None:
    logging.info("Resuming from the checkpoint at step %d.", latest)
    return ckpt.restore(latest, state, parts.signature()), latest
  return starting_state(parts, state, shardings), None


def starting_state(
  parts: setup.RunParts, state: train_state.TrainState, shardings: Any
) -> train_state.TrainState:
  """``state`` (freshly initialised, placed by ``shardings``) as a new run
  starts from it: with its proxies at the class means, and the optimiser
  state of those, when ``proxies.init`` says so."""
  if parts.config.proxies.init != "class_means":
    return state
  proxies = proxies_lib.pad_proxies(
    class_mean_proxy_init(parts.config, parts.model, state, parts.num_proxies),
    train_state.proxy_shards(parts.config, parts.mesh),
  )
  params = jax.device_put(
    {**state.params, "proxies": proxies}, shardings.params
  )
  return state.replace(
    params=params,
    opt_state=jax.jit(parts.tx.init, out_shardings=shardings.opt_state)(params),
  )


# Backbones whose recipes assume ImageNet-pretrained weights.
IMAGENET_BACKBONES = ("bn_inception", "resnet50")
# A largest proxy norm this many times its value at the start of a run is a
# runaway: the default run's proxies stay within 2% of their start.
RUNAWAY_NORM_FACTOR = 100.0


@dataclasses.dataclass
class _ProxyNormWatch:
  """Warns (once) when the proxies' norms run away.

  Proxy-NCA compares embeddings and proxies as directions (Movshovitz-Attias
  et al. 2017, Sec. 3: both on the unit sphere), so a huge proxy barely
  turns under an update of bounded size: learning stalls while the loss
  stays finite, and no divergence check fires.
  """

  start_max: float
  warned: bool = False

  def check(self, step: int, fetched: dict[str, float]) -> None:
    norm = fetched.get("proxy_norm_max")
    if self.warned or norm is None or not np.isfinite(norm):
      return
    start = max(self.start_max, 1e-6)
    if norm > RUNAWAY_NORM_FACTOR * start:
      self.warned = True
      logging.warning(
        "Proxy norms are running away: the largest is %.3g at step %d, "
        "%.0fx its %.3g at the start of this run. Proxies are compared as "
        "directions, so such proxies barely move and learning stalls while "
        "the loss stays finite: lower optimizer.learning_rate or "
        "optimizer.proxy_lr_mult.",
        norm,
        step,
        norm / start,
        self.start_max,
      )


@dataclasses.dataclass
class _StallWatch:
  """Warns (once) when the loss and its gradient are exactly 0 at two
  checked steps in a row: no example of those batches had a loss term, so
  nothing trains any more, and no divergence check fires.

  Dynamic assignment gets there when the classes of a batch share their
  nearest proxy (``proxies.supervised_anchors``; docs/README.md, RQ5 on
  GLYPHS-ZS).
  """

  assignment: str
  last_zero: int | None = None
  warned: bool = False

  def check(self, step: int, fetched: dict[str, float]) -> None:
    zero = fetched.get("loss") == 0.0 and fetched.get("grad_norm") == 0.0
    if self.warned or not zero:
      self.last_zero = None
      return
    if self.last_zero is None:
      self.last_zero = step
      return
    self.warned = True
    if self.assignment == "dynamic":
      advice = (
        "With loss.assignment=dynamic the classes of the batches share "
        "their nearest proxy, none claims it, and no anchor gets a negative "
        "proxy; such runs did not recover on GLYPHS-ZS (docs/README.md, "
        "RQ5). Use loss.assignment=static when every image has a class."
      )
    else:
      advice = (
        "A loss over pairs or triplets needs several images of a class in "
        "each batch (input.samples_per_class)."
      )
    logging.warning(
      "The loss and its gradient are exactly 0 at steps %d and %d: no "
      "example of those batches has a loss term, so the network and the "
      "proxies no longer change. %s",
      self.last_zero,
      step,
      advice,
    )


@dataclasses.dataclass
class _Loop:
  """The training loop: steps, logs, checkpoints, evaluations, preemption."""

  parts: setup.RunParts
  train_step_fn: Callable[..., Any]
  embed_fn: Callable[[dict[str, Any], jax.Array], jax.Array]
  writer: metric_writer.MetricWriter
  ckpt: checkpointing.Checkpointer
  workdir: str
  # (step, time) where the steps/s of the next log start counting.
  _timer: tuple[int, float] = dataclasses.field(default=(0, 0.0), init=False)

  def evaluate_if_missing(self, state, step: int, split: str) -> None:
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

  def evaluate(self, state, step: int, split: str) -> None:
    config, mesh = self.parts.config, self.parts.mesh
    results = evaluate_split(config, self.embed_fn, state, mesh, split)
    _log_evaluation(self.writer, step, split, results)

  def run(self, state: train_state.TrainState, latest: int | None) -> None:
    """Trains from ``state`` (at step ``latest`` or 0) to the last step."""
    config, mesh = self.parts.config, self.parts.mesh
    num_steps, start_step = config.schedule.num_steps, int(state.step)
    if start_step == 0 and config.evals.at_step_zero:
      self.evaluate(state, 0, config.evals.split)
    elif start_step > 0 and self._eval_due(start_step):
      self.evaluate_if_missing(state, start_step, config.evals.split)
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
    proxy_watch = _ProxyNormWatch(float(norms["proxy_norm_max"]))
    stall_watch = _StallWatch(config.loss.assignment)
    first_bad = jnp.int32(-1)
    watcher = preemption.StopWatcher()
    self._timer = (start_step, time.perf_counter())
    try:
      for step in range(start_step + 1, num_steps + 1):
        batch = parallel.global_batch(next(batches), mesh)
        state, metrics = self.train_step_fn(state, batch)
        first_bad = _first_non_finite(first_bad, step, metrics)
        is_last = step == num_steps
        stop_now = watcher.should_stop(step) and not is_last
        log_now = step % config.log_every_steps == 0 or is_last
        save_now = (
          is_last
          or stop_now
          or (config.ckpt.every_steps and step % config.ckpt.every_steps == 0)
        )
        eval_now = self._eval_due(step)
        if log_now or save_now or eval_now:
          fetched = {k: float(v) for k, v in jax.device_get(metrics).items()}
          # Never checkpoint a diverged state: the last good one stays.
          _check_finite(step, fetched, last_ckpt, int(first_bad))
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
          self.evaluate(state, step, config.evals.split)
          # Evaluation time is not training time.
          self._timer = (self._timer[0], time.perf_counter())
      if start_step == num_steps:
        logging.info("Training already finished at step %d.", num_steps)
      if config.evals.split != "test":
        self.evaluate_if_missing(state, num_steps, "test")
    finally:
      watcher.close()

  def _eval_due(self, step: int) -> bool:
    """Whether ``step`` has an evaluation: every evals.every_steps, and the
    last step."""
    config = self.parts.config
    every = config.evals.every_steps
    return step == config.schedule.num_steps or bool(
      every and step % every == 0
    )

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
