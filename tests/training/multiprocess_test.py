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
"""Multi-process training: 2 local processes x 4 CPU devices == 1 x 8.

Real processes of ``python -m proxy_nca_jax.train`` joined by
``jax.distributed.initialize`` over a loopback coordinator (CPU collectives).
Also checked: only process 0 logs progress and writes metrics, and the
checkpoint the two processes wrote together resumes in one process; and the
sharded class-weight losses (ArcFace, and SubCenter-ArcFace and SoftTriple
on sampled classes) over the 2 x 4 devices equal them on 1 x 8, values and
gradients.
"""

import pathlib
import socket
import subprocess
import sys
import tempfile

import chex
import numpy as np
import pytest
from absl.testing import absltest

from proxy_nca_jax import parallel
from proxy_nca_jax.training import metric_writer, trainer
from tests.testing import (
  class_weight_references,
  sharded_class_weights,
  tiny_run,
)

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow

CHANGES = {"schedule__num_steps": 8, "ckpt__every_steps": 4}


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def losses_by_step(workdir: pathlib.Path) -> dict[int, float]:
  return {
    r["step"]: r["loss"]
    for r in metric_writer.read_metrics(str(workdir))
    if "loss" in r
  }


class MultiProcessTest(tiny_run.PreparedDataTest):
  def test_two_processes_match_one_and_their_checkpoint_restores_in_one(self):
    config = tiny_run.tiny_config(self.root, **CHANGES)

    # The 1 x 8 reference trains in this process, on its 8 devices
    # (conftest): the program of the command with --num_cpu_devices=8,
    # without a second TensorFlow start-up. The command's own single-process
    # runs are the fault and train-command tests'.
    self.assertEqual(parallel.create_mesh().size, 8)
    single = self.root / "single"
    trainer.train_and_evaluate(config, str(single))

    double = self.root / "double"
    port = free_port()
    processes = [
      subprocess.Popen(
        [
          *tiny_run.train_command(self.root, double, **CHANGES),
          "--num_cpu_devices=4",
          f"--coordinator_address=127.0.0.1:{port}",
          "--num_processes=2",
          f"--process_id={i}",
        ],
        cwd=tiny_run.REPO,
        env=tiny_run.subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
      )
      for i in range(2)
    ]
    logs = []
    for process in processes:
      _, stderr = process.communicate(timeout=600)
      self.assertEqual(process.returncode, 0, stderr[-3000:])
      logs.append(stderr)
    # Process 0 logs the progress and writes each metric record once.
    self.assertIn("step 8/8 loss", logs[0])
    self.assertNotIn("step 8/8 loss", logs[1])
    records = metric_writer.read_metrics(str(double))
    logged = [r["step"] for r in records if "loss" in r]
    self.assertEqual(logged, [2, 4, 6, 8])

    # Same global batches, same 8-device program: the same training.
    single_losses, double_losses = (
      losses_by_step(single),
      losses_by_step(double),
    )
    self.assertEqual(sorted(single_losses), [2, 4, 6, 8])
    self.assertEqual(sorted(double_losses), sorted(single_losses))
    for step, loss in single_losses.items():
      self.assertAlmostEqual(double_losses[step], loss, places=5)
    step_1, state_1 = tiny_run.latest_state(single, config)
    step_2, state_2 = tiny_run.latest_state(double, config)
    self.assertEqual(step_1, step_2)
    chex.assert_trees_all_close(state_2, state_1, atol=1e-5)

    # The 2-process checkpoint resumes in a 1-process run (this one's 8
    # devices).
    more = tiny_run.tiny_config(
      self.root, **{**CHANGES, "schedule__num_steps": 10}
    )
    with self.assertLogs(level="INFO") as resumed:
      trainer.train_and_evaluate(more, str(double))
    self.assertTrue(
      any(
        "Resuming from the checkpoint at step 8" in r for r in resumed.output
      ),
      resumed.output,
    )
    step, _ = tiny_run.latest_state(double, config)
    self.assertEqual(step, 10)


class MultiProcessLossesTest(absltest.TestCase):
  def test_sharded_class_weight_losses_match_one_process(self):
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
      out = pathlib.Path(tmp) / "results.npz"
      processes = [
        subprocess.Popen(
          [
            sys.executable,
            "-m",
            "tests.testing.sharded_class_weights",
            f"--port={port}",
            f"--process_id={i}",
            f"--out={out}",
          ],
          cwd=tiny_run.REPO,
          env=tiny_run.subprocess_env(),
          stdout=subprocess.DEVNULL,
          stderr=subprocess.PIPE,
          text=True,
        )
        for i in range(2)
      ]
      for process in processes:
        _, stderr = process.communicate(timeout=300)
        self.assertEqual(process.returncode, 0, stderr[-3000:])
      with np.load(out) as results:
        double = dict(results)
    # The same program on this process's 8 devices.
    single = sharded_class_weights.values_and_grads(parallel.create_mesh())
    self.assertEqual(sorted(double), sorted(single))
    self.assertLen(single, 3 * len(sharded_class_weights.LOSSES))
    x, labels, weights = sharded_class_weights.problem()
    np.testing.assert_allclose(
      double["arcface value"],
      class_weight_references.reference(
        "arcface", x, labels, weights["arcface"]
      ),
      rtol=2e-6,
    )
    for key, want in single.items():
      with self.subTest(key):
        # The gradients' all-reduces add in another order across processes.
        if key.endswith("value"):
          np.testing.assert_allclose(double[key], want, rtol=1e-6)
        else:
          np.testing.assert_allclose(double[key], want, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
  absltest.main()
