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

import os
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from proxy_nca_jax import checkpointing, evaluation, models, parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.data import pipeline
from proxy_nca_jax.evaluation import embedding
from proxy_nca_jax.training import (
  metric_writer,
  optim,
  preemption,
  setup,
  train_state,
  workdirs,
)

Batch = dict[str, jax.Array]


def train_step(
  state: train_state.TrainState,
  batch: Batch,
  *,
  model: nn.Module,
  tx: optax.GradientTransformation,
  loss_fn: setup.LossFn,
  num_proxies: int | None = None,
) -> tuple[train_state.TrainState, dict[str, jax.Array]]:
  """One optimisation step on a (global, sharded) batch.

  BatchNorm statistics and the loss are computed over the whole global batch
  (XLA inserts the cross-device reductions), so the result does not depend on
  how many devices share the batch. ``num_proxies``: the real proxies, rows
  [0, C) of ``params['proxies']`` (default: all rows), for the logged norms.
  """

  def objective(params):
    embeddings, updates = model.apply(
      {"params": params["model"], "batch_stats": state.batch_stats},
      batch["image"],
      train=True,
      mutable=["batch_stats"],
    )
    loss = loss_fn(embeddings, batch["label"], params["proxies"])
    return loss, updates["batch_stats"]

  (loss, batch_stats), grads = jax.value_and_grad(objective, has_aux=True)(
    state.params
  )
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {
    "loss": loss,
    "grad_norm": optax.tree.norm(grads),
    **proxies_lib.proxy_norms(params["proxies"], num_proxies),
  }
  new_state = train_state.TrainState(
    step=state.step + 1,
    params=params,
    batch_stats=batch_stats,
    opt_state=opt_state,
  )
  return new_state, metrics


def make_train_step(
  model: nn.Module,
  tx: optax.GradientTransformation,
  loss_fn: setup.LossFn,
  mesh: jax.sharding.Mesh,
  state_sharding: Any = None,
  num_proxies: int | None = None,
) -> Callable[
  [train_state.TrainState, Batch],
  tuple[train_state.TrainState, dict[str, jax.Array]],
]:
  """Jits ``train_step`` over ``mesh``: batch sharded, state as given.

  The state buffers are donated (updated in place). Batches of one shape and
  dtype compile once (tests/training/trainer_test.py checks it with
  ``chex.assert_max_traces`` over a whole run).

  Args:
    model: the network.
    tx: the optimiser.
    loss_fn: ``(embeddings, labels, proxies) -> loss``.
    mesh: the device mesh.
    state_sharding: the state's shardings (``train_state.state_shardings``),
      default all replicated.
    num_proxies: the real proxies (rows of ``params['proxies']`` before the
      padding of sharded proxies); default all rows.
  """
  if state_sharding is None:
    state_sharding = parallel.replicated(mesh)

  def step(state: train_state.TrainState, batch: Batch):
    return train_step(
      state, batch, model=model, tx=tx, loss_fn=loss_fn, num_proxies=num_proxies
    )

  return jax.jit(
    step,
    in_shardings=(state_sharding, parallel.batch_sharded(mesh)),
    out_shardings=(state_sharding, parallel.replicated(mesh)),
    donate_argnums=0,
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
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  embeddings, labels = embedding.embed_batches(
    embed_fn, train_state.inference_variables(state), batches, mesh
  )
  return evaluation.evaluate_with_config(embeddings, labels, config)


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
  batches = pipeline.create_train_iterator(
    config.input,
    seed=config.seed + 1,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  embeddings, labels = [], []
  for _, local in zip(range(num_batches), batches, strict=False):
    out, _ = model.apply(
      {"params": state.params["model"], "batch_stats": state.batch_stats},
      local["image"],
      train=True,
      mutable=["batch_stats"],
    )
    embeddings.append(multihost_utils.process_allgather(out, tiled=True))
    labels.append(multihost_utils.process_allgather(local["label"], tiled=True))
  return proxies_lib.class_mean_proxies(
    np.concatenate(embeddings), np.concatenate(labels), num_proxies
  )


def _check_finite(step: int, metrics: dict[str, float], last_ckpt) -> None:
  bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
  if bad:
    raise FloatingPointError(
      f"Training diverged: {bad} at step {step}. Likely causes: a learning "
      "rate too high for the loss scale (optimizer.learning_rate, "
      "optimizer.proxy_lr_mult) or loss.scale too large. The last good "
      f"checkpoint (step {last_ckpt}) is intact; rerun the same command "
      "with, e.g., --config.optimizer.learning_rate=<smaller> to resume "
      "from it."
    )


def _format_duration(seconds: float) -> str:
  minutes, secs = divmod(int(round(seconds)), 60)
  return f"{minutes}m{secs:02d}s"


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
) -> dict[int, dict[str, float]]:
  """Trains and evaluates; resumes from the latest checkpoint in workdir.

  Args:
    config: the full config (see configs/fashion_mnist.py).
    workdir: where checkpoints, metrics.jsonl and TensorBoard files go.
    mesh: the devices to train and evaluate on (default: every device of
      every process, which is what the train command uses).

  Returns:
    The test-split results of this workdir, by step (read back from
    metrics.jsonl, so a resumed run still reports the untrained baseline).
  """
  mesh = parallel.create_mesh() if mesh is None else mesh
  parallel.check_global_batch(config.input.batch_size, mesh, "input.batch_size")
  parallel.check_global_batch(
    config.input.eval_batch_size, mesh, "input.eval_batch_size"
  )
  if config.proxies.init not in proxies_lib.PROXY_INITS:
    raise ValueError(
      f"proxies.init must be one of {proxies_lib.PROXY_INITS}, got "
      f"{config.proxies.init!r}."
    )
  sharding = train_state.proxy_sharding(config)
  if sharding == "sharded":
    setup.check_supported(config.loss)
  loss_fn = setup.create_loss_fn(config.loss)
  model = models.create_model(config.model)
  tx, schedules = optim.create_optimizer(config)
  if jax.process_index() == 0:
    # One builder per data_dir; the other processes wait for it.
    pipeline.prepare_dataset(config.input)
  multihost_utils.sync_global_devices("dataset prepared")
  num_proxies = train_state.num_proxies(config)
  if sharding == "sharded":
    loss_fn = setup.create_sharded_loss_fn(config.loss, mesh, num_proxies)
  signature = train_state.run_signature(config, num_proxies, mesh)
  num_steps = config.schedule.num_steps
  logging.info(
    "Mesh %s over %d devices, %d process(es); %d proxies, %s.",
    dict(mesh.shape),
    mesh.size,
    jax.process_count(),
    num_proxies,
    sharding,
  )

  state = train_state.create_state(config, model, tx, mesh, num_proxies)
  shardings = train_state.state_shardings(state, mesh, sharding)

  tf_workdir = workdirs.absolute(workdir)
  ckpt = checkpointing.Checkpointer(
    os.path.join(tf_workdir, "checkpoints"),
    every_steps=config.ckpt.every_steps,
    keep=config.ckpt.keep,
  )
  latest = ckpt.latest_step()
  if latest is not None:
    logging.info("Resuming from the checkpoint at step %d.", latest)
    state = ckpt.restore(latest, state, signature)
  elif config.proxies.init == "class_means":
    proxies = proxies_lib.pad_proxies(
      class_mean_proxy_init(config, model, state, num_proxies),
      train_state.proxy_shards(config, mesh),
    )
    params = jax.device_put(
      {**state.params, "proxies": proxies}, shardings.params
    )
    state = state.replace(
      params=params,
      opt_state=jax.jit(tx.init, out_shardings=shardings.opt_state)(params),
    )
  start_step = int(state.step)
  if jax.process_index() == 0:
    # Only once the checkpoint is known to fit: a refused run changes nothing.
    workdirs.save_config(config, tf_workdir)

  writer = metric_writer.MetricWriter(tf_workdir)
  train_step_fn = make_train_step(
    model, tx, loss_fn, mesh, shardings, num_proxies
  )
  embed_fn = embedding.make_embed_fn(model, mesh)
  eval_split = config.evals.split

  def run_eval(step: int) -> None:
    results = evaluate_split(config, embed_fn, state, mesh, eval_split)
    _log_evaluation(writer, step, eval_split, results)

  if start_step == 0 and config.evals.at_step_zero:
    run_eval(0)

  batches = pipeline.create_train_iterator(
    config.input,
    seed=config.seed,
    start_step=start_step,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  last_ckpt = latest
  watcher = preemption.StopWatcher()
  timer_step, timer_start = start_step, time.perf_counter()
  try:
    for step in range(start_step + 1, num_steps + 1):
      batch = parallel.global_batch(next(batches), mesh)
      state, metrics = train_step_fn(state, batch)

      is_last = step == num_steps
      stop_now = watcher.should_stop(step) and not is_last
      log_now = step % config.log_every_steps == 0 or is_last
      save_now = (
        is_last
        or stop_now
        or (config.ckpt.every_steps and step % config.ckpt.every_steps == 0)
      )
      eval_now = is_last or (
        config.evals.every_steps and step % config.evals.every_steps == 0
      )
      if log_now or save_now or eval_now:
        fetched = {k: float(v) for k, v in jax.device_get(metrics).items()}
        # Never checkpoint a diverged state: the last good one stays.
        _check_finite(step, fetched, last_ckpt)
      if log_now:
        now = time.perf_counter()
        steps_per_s = (step - timer_step) / max(now - timer_start, 1e-9)
        timer_step, timer_start = step, now
        lrs = {f"lr/{g}": float(s(step - 1)) for g, s in schedules.items()}
        writer.write_scalars(
          step, {**fetched, **lrs, "steps_per_sec": steps_per_s}
        )
        logging.info(
          "step %d/%d loss %.4f | %.2f steps/s | ETA %s",
          step,
          num_steps,
          fetched["loss"],
          steps_per_s,
          _format_duration((num_steps - step) / max(steps_per_s, 1e-9)),
        )
      forced = is_last or stop_now
      if save_now and ckpt.save(step, state, signature, force=forced):
        last_ckpt = step
      if stop_now:
        raise preemption.Preempted(step)
      if eval_now:
        run_eval(step)
        # Evaluation time is not training time.
        timer_start = time.perf_counter()
    if start_step == num_steps:
      logging.info("Training already finished at step %d.", num_steps)
    if eval_split != "test":
      _log_evaluation(
        writer,
        num_steps,
        "test",
        evaluate_split(config, embed_fn, state, mesh, "test"),
      )
  finally:
    watcher.close()
    ckpt.close()  # Waits for a save in flight, also on errors.
    writer.close()
  return read_test_results(tf_workdir)


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
