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
"""End-to-end tests of the command line: results table and bad input.

Each test runs ``python -m proxy_nca_jax.train`` in a subprocess, as a user
would, and checks what the user sees: exit status and one clear message.
"""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile

import pytest
from absl.testing import absltest
from PIL import Image

from proxy_nca_jax.training import metric_writer
from tests.testing import tiny_run, tmpfs

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow


def run_train(*args: str) -> subprocess.CompletedProcess:
  """Runs the command line on the default config with extra ``args``."""
  return tiny_run.run_command(
    [
      sys.executable,
      "-m",
      "proxy_nca_jax.train",
      "--config=configs/fashion_mnist.py",
      *args,
    ]
  )


class TrainCommandTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    self.root = pathlib.Path(tmp.name)
    self.workdir = self.root / "workdir"

  def assert_one_clear_error(self, result, returncode, *patterns):
    self.assertEqual(result.returncode, returncode, result.stderr[-3000:])
    self.assertNotIn("Traceback", result.stderr)
    for pattern in patterns:
      self.assertRegex(result.stderr, pattern)
    self.assertFalse(self.workdir.exists(), "nothing may be written")

  def test_unknown_config_key(self):
    result = run_train(f"--workdir={self.workdir}", "--config.loss.scle=3")
    self.assert_one_clear_error(
      result, 2, r"unknown config field 'scle'", r'Did you mean "scale"'
    )

  def test_wrong_type_for_config_key(self):
    result = run_train(f"--workdir={self.workdir}", "--config.loss.scale=big")
    self.assert_one_clear_error(
      result, 2, r"--config.loss.scale=big: could not convert"
    )

  def test_missing_dataset_directory(self):
    missing = self.root / "no_such_folder"
    result = run_train(
      f"--workdir={self.workdir}",
      f"--config.input.manual_dir={missing}",
      f"--config.input.data_dir={self.root / 'tfds'}",
    )
    self.assert_one_clear_error(
      result,
      1,
      str(missing),
      r"apt-get install dataset-fashion-mnist",
      r"--config.input.manual_dir",
    )

  def test_missing_config_file(self):
    result = tiny_run.run_command(
      [
        sys.executable,
        "-m",
        "proxy_nca_jax.train",
        f"--config={self.root / 'nope.py'}",
        f"--workdir={self.workdir}",
      ]
    )
    self.assert_one_clear_error(
      result,
      2,
      r"error: the --config file could not be loaded: .*No such file",
      r"--config=configs/fashion_mnist.py",
    )

  def test_empty_workdir_is_refused(self):
    # It would otherwise train into the current folder (the repository).
    before = sorted(p.name for p in tiny_run.REPO.iterdir())
    result = run_train("--workdir=")
    self.assert_one_clear_error(result, 1, r"error: --workdir is empty")
    self.assertEqual(sorted(p.name for p in tiny_run.REPO.iterdir()), before)

  def test_workdir_that_is_a_file_is_refused(self):
    self.workdir = self.root / "a_file"
    self.workdir.write_text("mine")
    result = run_train(f"--workdir={self.workdir}")
    self.assertEqual(result.returncode, 1, result.stderr[-3000:])
    self.assertNotIn("Traceback", result.stderr)
    self.assertRegex(result.stderr, r"a_file is a file, not a folder")
    self.assertEqual(self.workdir.read_text(), "mine")

  def test_read_only_workdir_is_refused(self):
    # A read-only filesystem refuses even root (file modes would not).
    mount = tmpfs.mount(self, "size=1M,ro")
    self.workdir = mount / "run"
    result = run_train(f"--workdir={self.workdir}")
    self.assert_one_clear_error(
      result,
      1,
      rf"error: --workdir={self.workdir}: {mount} is not writable by this "
      r"user; choose a folder you can write, or fix its permissions\.",
    )

  def test_second_run_on_a_locked_workdir_is_refused(self):
    # The lock of a live run: this test's own process, on this host.
    self.workdir.mkdir()
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}
    (self.workdir / ".lock").write_text(json.dumps(lock))
    result = run_train(f"--workdir={self.workdir}")
    self.assertEqual(result.returncode, 1, result.stderr[-3000:])
    self.assertNotIn("Traceback", result.stderr)
    self.assertRegex(
      result.stderr,
      rf"error: Another run \(pid {os.getpid()} on host "
      rf"{re.escape(socket.gethostname())}, started now\) is training in",
    )
    self.assertEqual(sorted(os.listdir(self.workdir)), [".lock"])

  def test_batch_not_divisible_by_devices(self):
    result = run_train(
      f"--workdir={self.workdir}",
      "--num_cpu_devices=8",
      "--config.input.batch_size=12",
    )
    self.assert_one_clear_error(
      result,
      1,
      r"input.batch_size=12 does not divide over the 8 devices",
      r"--config.input.batch_size=8 or 16",
    )

  def test_query_gallery_the_data_cannot_serve_is_refused_before_training(
    self,
  ):
    result = run_train(
      f"--workdir={self.workdir}",
      "--config.evals.query_gallery=splits:query/gallery",
    )
    self.assert_one_clear_error(
      result,
      1,
      r"evals.query_gallery='splits:query/gallery' names split\(s\) "
      r"\['query', 'gallery'\], but the dataset's splits are "
      r"\['train', 'test'\]",
    )
    self.assertFalse(list(self.workdir.glob("checkpoints/*")))


class TrainEndToEndTest(tiny_run.WrittenDataTest):
  def test_trains_and_prints_the_results_table(self):
    workdir = self.root / "workdir"
    argv = tiny_run.train_command(
      self.root,
      workdir,
      schedule__num_steps=4,
      ckpt__every_steps=2,
      evals__at_step_zero=True,
      report__at_end=True,
    )
    result = tiny_run.run_command([*argv, "--num_cpu_devices=2"])
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "recall@1" in line)
    for key in ("recall@2", "recall@4", "recall@8", "nmi", "map@r"):
      self.assertIn(key, header)
    self.assertTrue(any("step 0 (untrained)" in line for line in lines))
    self.assertTrue(any(line.startswith("step 4") for line in lines))
    self.assertIn("steps/s", result.stderr)
    self.assertIn("ETA", result.stderr)
    table = (workdir / "results.txt").read_text()
    self.assertIn("step 0 (untrained)", table)
    self.assertTrue((workdir / "metrics.jsonl").exists())
    # The evaluate command's files, written at the end of training (their
    # content: reports/workdir_report_test.py).
    for name in ("convergence", "retrieval_test", "projection_test"):
      with Image.open(workdir / f"{name}.png") as png:
        self.assertEqual((png.format, png.mode), ("PNG", "RGBA"))
        self.assertGreater(png.size[0], 500)
    saved = json.loads((workdir / "metrics_test.json").read_text())
    self.assertEqual(saved["step"], 4)
    last = metric_writer.read_metrics(str(workdir))
    logged = {
      k[5:]: v
      for r in last
      if r["step"] == 4
      for k, v in r.items()
      if k.startswith("test/")
    }
    self.assertNotEmpty(logged)
    for key, value in logged.items():
      self.assertAlmostEqual(saved["metrics"][key], value, places=5)


if __name__ == "__main__":
  absltest.main()
