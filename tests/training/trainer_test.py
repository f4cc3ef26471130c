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
"""Tests of trainer.py: sharding equivalence, compile-once, resume, results."""

import functools
import json
import pathlib
import shutil
from unittest import mock

import chex
import jax
import numpy as np
import pytest
from absl.testing import absltest

from proxy_nca_jax import checkpointing, parallel
from proxy_nca_jax.training import (
  config_changes,
  metric_writer,
  train_state,
  trainer,
  workdirs,
)
from proxy_nca_jax.training import step as step_lib
from tests.testing import tiny_run

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow

tiny_config = tiny_run.tiny_config


class TrainerTest(tiny_run.PreparedDataTest):
  def test_eight_devices_match_one_device(self):
    losses_1, state_1 = tiny_run.train_steps(
      tiny_config(self.root), parallel.create_mesh(jax.devices()[:1]), 4
    )
    losses_8, state_8 = tiny_run.train_steps(
      tiny_config(self.root), parallel.create_mesh(), 4
    )
    self.assertEqual(jax.device_count(), 8)
    np.testing.assert_allclose(losses_8, losses_1, rtol=1e-5)
    # Global BatchNorm statistics and gradient all-reduce make the sharded
    # step the same function: parameters agree to float32 rounding.
    chex.assert_trees_all_close(state_8.params, state_1.params, atol=2e-5)
    chex.assert_trees_all_close(
      state_8.batch_stats, state_1.batch_stats, atol=2e-5
    )
    self.assertEqual(int(state_8.step), 4)

  def test_loss_decreases_on_learnable_data(self):
    loss_values, _ = tiny_run.train_steps(
      tiny_config(self.root), parallel.create_mesh(), 12
    )
    self.assertLess(np.mean(loss_values[-3:]), np.mean(loss_values[:3]))

  def test_train_step_is_traced_once_per_run(self):
    config = tiny_config(self.root)
    with config.unlocked():
      config.evals.every_steps = 2  # Evaluations and saves between steps.
    chex.clear_trace_counter()
    guarded = chex.assert_max_traces(step_lib.train_step, n=1)
    with mock.patch.object(step_lib, "train_step", guarded):
      trainer.train_and_evaluate(config, str(self.root / "traced"))
      # The guard does fire on a second trace (a new step function).
      with self.assertRaisesRegex(AssertionError, "traced > 1 times"):
        trainer.train_and_evaluate(config, str(self.root / "traced_again"))

  def _final_state(self, workdir: pathlib.Path, config):
    step, state = tiny_run.latest_state(workdir, config)
    self.assertEqual(step, config.schedule.num_steps)
    return state

  def test_resumed_run_equals_uninterrupted_run(self):
    config = tiny_config(self.root)
    straight = self.root / "straight"
    trainer.train_and_evaluate(config, str(straight))

    resumed = self.root / "resumed"
    with config.unlocked():
      config.schedule.num_steps = 3  # Stops after the step-3 checkpoint...
    trainer.train_and_evaluate(config, str(resumed))
    with config.unlocked():
      config.schedule.num_steps = 6  # ...and the rerun continues from it.
    trainer.train_and_evaluate(config, str(resumed))

    # Bit-identical: same batches (the input resumes at step 3), same code.
    chex.assert_trees_all_equal(
      self._final_state(resumed, config), self._final_state(straight, config)
    )
    steps = [r["step"] for r in metric_writer.read_metrics(str(resumed))]
    self.assertIn(2, steps)  # Logged before the interruption...
    self.assertIn(6, steps)  # ...and after it.

  def test_restore_trained_needs_only_the_workdir(self):
    config = tiny_config(self.root)
    workdir = self.root / "restorable"
    trainer.train_and_evaluate(config, str(workdir))
    saved, model, state = workdirs.restore_train_state(str(workdir))
    self.assertEqual(saved.to_dict(), config.to_dict())
    chex.assert_trees_all_equal(
      jax.device_get(state), self._final_state(workdir, config)
    )
    images = np.zeros((8, 28, 28, 1), np.float32)
    out = jax.jit(functools.partial(model.apply, train=False))(
      train_state.inference_variables(state), images
    )
    chex.assert_shape(out, (8, config.model.embedding_dim))
    with self.assertRaisesRegex(FileNotFoundError, "not the workdir"):
      workdirs.restore_train_state(str(self.root / "nothing_here"))

  def test_incompatible_checkpoint_is_a_clear_error(self):
    config = tiny_config(self.root)
    workdir = str(self.root / "incompatible")
    with config.unlocked():
      config.schedule.num_steps = 3
    trainer.train_and_evaluate(config, workdir)
    saved_config = (self.root / "incompatible" / "config.json").read_text()
    with config.unlocked():
      config.schedule.num_steps = 6
      config.model.embedding_dim = 16
    # The recorded config differs: refused first, listing the change.
    with self.assertRaisesRegex(
      config_changes.ConfigChangeError,
      r"model.embedding_dim: 8 -> 16.*--accept_config_change",
    ):
      trainer.train_and_evaluate(config, workdir)
    # Accepted, the checkpoint itself still cannot hold the new model.
    with self.assertRaisesRegex(
      checkpointing.IncompatibleCheckpointError,
      r"differently configured run.*'embedding_dim': \(8, 16\).*--workdir",
    ):
      trainer.train_and_evaluate(config, workdir, accept_config_change=True)
    # The refused run wrote nothing: tools still read the run's own config.
    self.assertEqual(
      (self.root / "incompatible" / "config.json").read_text(), saved_config
    )

  def test_results_hold_untrained_and_final_test_metrics(self):
    config = tiny_config(self.root)
    with config.unlocked():
      config.evals.at_step_zero = True
      config.evals.every_steps = 3
    workdir = self.root / "results"
    results = trainer.train_and_evaluate(config, str(workdir))
    self.assertEqual(sorted(results), [0, 3, 6])
    for row in results.values():
      for key in ("recall@1", "recall@8", "nmi", "map@r", "r_precision"):
        self.assertBetween(row[key], 0.0, 1.0)
    self.assertTrue((workdir / "tensorboard").is_dir())
    records = metric_writer.read_metrics(str(workdir))
    logged = [r for r in records if "loss" in r]
    self.assertEqual([r["step"] for r in logged], [2, 4, 6])
    for record in logged:
      self.assertIn("lr/proxies", record)
      self.assertIn("steps_per_sec", record)
      np.testing.assert_allclose(record["lr/proxies"], 1e-2, rtol=1e-6)

  def test_an_interrupted_run_completes_its_history_once(self):
    config = tiny_config(self.root)
    with config.unlocked():
      config.evals.at_step_zero = True
      config.evals.every_steps = 3  # Checkpoints at 3 and 6 too.
    straight = self.root / "history"
    trainer.train_and_evaluate(config, str(straight))
    expected = metric_writer.read_metrics(str(straight))

    def rows(workdir):
      return [json.loads(x) for x in (workdir / "metrics.jsonl").open()]

    def write_rows(workdir, records):
      with (workdir / "metrics.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)

    def is_eval(record):
      return any(k.startswith("test/") for k in record)

    # What kill -9 during the final evaluation leaves: the step-6
    # checkpoint complete, its evaluation row never written.
    killed_in_eval = self.root / "killed_in_eval"
    shutil.copytree(straight, killed_in_eval)
    kept = [r for r in rows(straight) if not (r["step"] == 6 and is_eval(r))]
    write_rows(killed_in_eval, kept)
    results = trainer.train_and_evaluate(config, str(killed_in_eval))
    self.assertEqual(sorted(results), [0, 3, 6])
    self.assertEqual(metric_writer.read_metrics(str(killed_in_eval)), expected)

    # What kill -9 between step 6's log row and its checkpoint leaves: the
    # run resumes at 3, and the rows after 3 are not doubled.
    killed_before_save = self.root / "killed_before_save"
    shutil.copytree(straight, killed_before_save)
    shutil.rmtree(killed_before_save / "checkpoints" / "6")
    write_rows(killed_before_save, kept)
    trainer.train_and_evaluate(config, str(killed_before_save))
    resumed = metric_writer.read_metrics(str(killed_before_save))
    without_speed = lambda records: [  # noqa: E731
      {k: v for k, v in r.items() if k != "steps_per_sec"} for r in records
    ]
    # The same rows in the same order; training is bit-identical on resume.
    self.assertEqual(without_speed(resumed), without_speed(expected))


if __name__ == "__main__":
  absltest.main()
