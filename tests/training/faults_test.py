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
"""Fault tests: SIGTERM, kill -9 and divergence lose nothing.

The runs are real processes of ``python -m proxy_nca_jax.train`` on
generated data; the reference is the same command run without interruption.
Two classes (two pytest-xdist scopes): the interruptions, which share that
reference, and the other faults, which do not need it.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

import chex
import numpy as np
import pytest
from absl.testing import absltest

from proxy_nca_jax.training import trainer
from tests.testing import tiny_run, tmpfs

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow

# Long enough to be interrupted past step 20 and again 10 steps later, with
# steps to spare (about 25 ms a step alone; checkpoints every 10 steps).
NUM_STEPS = 80


def last_logged_step(workdir: pathlib.Path) -> int:
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return 0
  steps = [json.loads(line)["step"] for line in path.read_text().splitlines()]
  return max(steps, default=0)


class InterruptionsTest(tiny_run.WrittenDataTest):
  """SIGTERM and kill -9, then a resume: the uninterrupted run's state."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.changes = {
      "schedule__num_steps": NUM_STEPS,
      "ckpt__every_steps": 10,
      "log_every_steps": 5,
    }
    cls.config = tiny_run.tiny_config(cls.root, **cls.changes)
    straight = cls.root / "straight"
    result = tiny_run.run_command(
      tiny_run.train_command(cls.root, straight, **cls.changes)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    cls.reference = tiny_run.latest_state(straight, cls.config)

  def _start(self, workdir: pathlib.Path) -> subprocess.Popen:
    return subprocess.Popen(
      tiny_run.train_command(self.root, workdir, **self.changes),
      cwd=tiny_run.REPO,
      env=tiny_run.subprocess_env(),
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      text=True,
    )

  def _wait_for_step(self, process, workdir: pathlib.Path, step: int):
    deadline = time.monotonic() + 300
    while last_logged_step(workdir) < step:
      self.assertIsNone(process.poll(), "the run ended before the signal")
      self.assertLess(time.monotonic(), deadline)
      time.sleep(0.02)

  def _resume_and_compare(self, workdir: pathlib.Path):
    result = tiny_run.run_command(
      tiny_run.train_command(self.root, workdir, **self.changes)
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    step, state = tiny_run.latest_state(workdir, self.config)
    self.assertEqual(step, NUM_STEPS)
    # Bit-identical to the uninterrupted run (same seed, devices, batches).
    chex.assert_trees_all_equal(state, self.reference[1])

  def test_sigterm_saves_the_current_step_and_exits_75(self):
    workdir = self.root / "sigterm"
    process = self._start(workdir)
    self._wait_for_step(process, workdir, 20)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    # Not 0: the run did not finish (EX_TEMPFAIL, docs/errors.md).
    self.assertEqual(process.returncode, 75, stderr[-3000:])
    self.assertIn("Stopped on request (SIGTERM) at step", stderr)
    self.assertNotIn("Traceback", stderr)
    stopped_at, _ = tiny_run.latest_state(workdir, self.config)
    self.assertBetween(stopped_at, 20, NUM_STEPS - 1)
    self.assertIn(f"at step {stopped_at};", stderr)
    self._resume_and_compare(workdir)

  def test_kill_9_at_random_moments_resumes_from_a_complete_checkpoint(self):
    rng = np.random.default_rng(7)
    workdir = self.root / "kill9"
    for _ in range(2):
      process = self._start(workdir)
      # Somewhere past the next checkpoint, often while one is being written.
      self._wait_for_step(process, workdir, last_logged_step(workdir) + 10)
      time.sleep(rng.uniform(0.0, 0.3))
      process.kill()
      process.communicate(timeout=60)
      self.assertEqual(process.returncode, -signal.SIGKILL)
    self._resume_and_compare(workdir)


class FaultsTest(tiny_run.WrittenDataTest):
  """Divergence, a full disk and warnings: one clear message each."""

  def test_divergence_stops_with_a_message_and_keeps_the_last_checkpoint(self):
    workdir = self.root / "diverge"
    config = tiny_run.tiny_config(self.root, schedule__num_steps=4)
    with config.unlocked():
      config.ckpt.every_steps = 2
    trainer.train_and_evaluate(config, str(workdir))
    good_step, good_state = tiny_run.latest_state(workdir, config)
    self.assertEqual(good_step, 4)

    with config.unlocked():
      config.schedule.num_steps = 12
      config.optimizer.learning_rate = 1e30
      # Checked only at step 8: the first non-finite metric (step 5, the
      # proxy norms after its update) is tracked on the device in between.
      config.ckpt.every_steps = 4
      config.log_every_steps = 4
    with self.assertRaisesRegex(
      FloatingPointError,
      r"Training diverged: .* at step 5 \(the first non-finite one; found "
      r"at step 8\)\..*learning rate.*checkpoint \(step 4\) is intact.*"
      r"--accept_config_change",
    ):
      trainer.train_and_evaluate(
        config, str(workdir), accept_config_change=True
      )
    step, state = tiny_run.latest_state(workdir, config)
    self.assertEqual(step, 4)
    chex.assert_trees_all_equal(state, good_state)

    with config.unlocked():
      config.optimizer.learning_rate = 1e-3  # Resume with sane settings.
    trainer.train_and_evaluate(config, str(workdir), accept_config_change=True)
    step, state = tiny_run.latest_state(workdir, config)
    self.assertEqual(step, 12)
    chex.assert_tree_all_finite(state.params)

  def test_disk_full_at_a_save_stops_with_one_message(self):
    mount = tmpfs.mount(self, "size=8M")
    workdir = mount / "run"
    first = tiny_run.run_command(
      tiny_run.train_command(self.root, workdir, schedule__num_steps=3)
    )
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])
    # Leave 600 KB: enough for logs, not for a checkpoint of the tiny state.
    filler = mount / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(mount).free - 600 * 1024))
    full = tiny_run.run_command(
      tiny_run.train_command(self.root, workdir, schedule__num_steps=6)
    )
    self.assertEqual(full.returncode, 1)
    message = full.stderr.strip().splitlines()[-1]
    self.assertRegex(
      message,
      rf"^error: No space to save the checkpoint of step 6 in "
      rf"{workdir}/checkpoints \(0\.\d MB free, about \d+\.\d MB needed\)\. "
      r"The last complete checkpoint \(step 3\) is intact; free some space",
    )
    self.assertLess(len(full.stderr.splitlines()), 40)  # No traceback pile.
    filler.unlink()
    resumed = tiny_run.run_command(
      tiny_run.train_command(self.root, workdir, schedule__num_steps=6)
    )
    self.assertEqual(resumed.returncode, 0, resumed.stderr[-3000:])
    self.assertEqual(sorted(os.listdir(workdir / "checkpoints")), ["3", "6"])

  def test_divergence_before_any_checkpoint_says_so(self):
    config = tiny_run.tiny_config(
      self.root, optimizer__learning_rate=1e30, ckpt__every_steps=6
    )
    with self.assertRaisesRegex(
      FloatingPointError,
      r"Training diverged: .* at step 1 \(the first non-finite one; found "
      r"at step 2\)\. .*No checkpoint was saved before it: .* to start "
      r"again\.$",
    ) as caught:
      trainer.train_and_evaluate(config, str(self.root / "early"))
    self.assertNotIn("None", str(caught.exception))

  def test_runaway_proxy_norms_are_warned_about(self):
    # Adam moves each proxy coordinate by about the learning rate per step:
    # at 1e3 the proxies leave their start (norm about 1) at once, while the
    # loss of unit directions stays finite.
    config = tiny_run.tiny_config(
      self.root, optimizer__learning_rate=1e3, optimizer__proxy_lr_mult=1.0
    )
    with self.assertLogs(level="WARNING") as logs:
      trainer.train_and_evaluate(config, str(self.root / "runaway"))
    warnings = [r for r in logs.output if "Proxy norms are running away" in r]
    self.assertLen(warnings, 1)
    self.assertIn("lower optimizer.learning_rate", warnings[0])

  def test_a_stalled_loss_is_warned_about(self):
    # One proxy under dynamic assignment: every class of a batch has it as
    # nearest proxy, so no anchor ever gets a negative proxy and every
    # step's loss and gradient are exactly 0.
    config = tiny_run.tiny_config(
      self.root,
      loss__assignment="dynamic",
      proxies__num_proxies=1,
      input__samples_per_class=4,
    )
    with self.assertLogs(level="WARNING") as logs:
      trainer.train_and_evaluate(config, str(self.root / "stalled"))
    warnings = [r for r in logs.output if "exactly 0" in r]
    self.assertLen(warnings, 1)
    self.assertIn("at steps 2 and 3", warnings[0])
    self.assertIn("loss.assignment=static", warnings[0])
    # A run that trains is not warned about.
    with self.assertLogs(level="INFO") as logs:
      trainer.train_and_evaluate(
        tiny_run.tiny_config(self.root), str(self.root / "trains")
      )
    self.assertEmpty([r for r in logs.output if "exactly 0" in r])


if __name__ == "__main__":
  absltest.main()
