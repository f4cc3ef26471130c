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
"""End-to-end tests of ``python -m proxy_nca_jax.evaluate`` on a tiny run.

A tiny run (tests/testing/tiny_run.py: generated Fashion-MNIST-like data, 6
steps) is trained in-process once; the command is then run as a subprocess, and
its JSON and PNGs are read back (matplotlib.image.imread).
"""

import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from absl.testing import absltest
from matplotlib import image as mpimg

from proxy_nca_jax.evaluation import figures
from proxy_nca_jax.training import metric_writer, trainer
from tests.evaluation import figures_test
from tests.testing import tiny_run

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow


def _evaluate(*flags: str) -> subprocess.CompletedProcess:
  return tiny_run.run_command(
    [sys.executable, "-m", "proxy_nca_jax.evaluate", *flags]
  )


class EvaluateCommandTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.root = pathlib.Path(cls._tmp.name)
    tiny_run.write_data(cls.root)
    cls.workdir = cls.root / "run"
    trainer.train_and_evaluate(tiny_run.tiny_config(cls.root), str(cls.workdir))
    cls.result = _evaluate(f"--workdir={cls.workdir}")

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()

  def test_writes_metrics_json_of_the_latest_checkpoint(self):
    self.assertEqual(self.result.returncode, 0, self.result.stderr)
    with open(self.workdir / "metrics_test.json") as f:
      saved = json.load(f)
    self.assertEqual(saved["step"], 6)
    self.assertEqual(saved["split"], "test")
    # 5 test classes x (12 + 4) generated images.
    self.assertEqual(saved["num_examples"], 80)
    expected = {"precision@1", "r_precision", "map@r", "nmi", "ami"}
    expected |= {f"recall@{k}" for k in (1, 2, 4, 8)}
    self.assertEqual(set(saved["metrics"]), expected)
    # The trainer evaluated the same state at its last step.
    final = [
      r for r in metric_writer.read_metrics(str(self.workdir)) if r["step"] == 6
    ]
    logged = {k[5:]: v for r in final for k, v in r.items() if "test/" in k}
    self.assertNotEmpty(logged)
    for key, value in logged.items():
      self.assertAlmostEqual(saved["metrics"][key], value, places=5, msg=key)
    self.assertIn("map@r", self.result.stdout)

  def test_retrieval_figure_marks_correct_and_wrong_neighbours(self):
    self.assertEqual(self.result.returncode, 0, self.result.stderr)
    png = mpimg.imread(self.workdir / "retrieval_test.png")
    # 6 queries x (1 + 8) thumbnails.
    self.assertGreater(png.shape[1], 800)
    self.assertGreater(png.shape[0], 500)
    green = figures_test.colour_pixels(png, figures.CORRECT_RGB)
    red = figures_test.colour_pixels(png, figures.WRONG_RGB)
    # A barely trained model: both kinds of neighbour are on the grid.
    self.assertGreater(red, 100)
    self.assertGreater(green, 100)

  def test_projection_figure_for_a_small_set(self):
    self.assertEqual(self.result.returncode, 0, self.result.stderr)
    png = mpimg.imread(self.workdir / "projection_test.png")
    self.assertEqual(png.shape[:2], (500, 600))
    self.assertGreater(np.std(png[..., :3]), 0.01)

  def test_not_a_workdir_is_one_line_error(self):
    empty = self.root / "empty"
    empty.mkdir(exist_ok=True)
    for workdir in (empty, self.root / "missing"):
      result = _evaluate(f"--workdir={workdir}")
      self.assertEqual(result.returncode, 1)
      lines = result.stderr.strip().splitlines()
      self.assertLen(lines, 1, result.stderr)
      self.assertStartsWith(lines[0], "error: ")
      self.assertIn("is not the workdir of a training run", lines[0])

  def test_split_without_classes_is_one_line_error(self):
    result = _evaluate(f"--workdir={self.workdir}", "--split=val")
    self.assertEqual(result.returncode, 1)
    self.assertIn("error: ", result.stderr)
    self.assertIn(
      "val_classes is empty", result.stderr.strip().splitlines()[-1]
    )


if __name__ == "__main__":
  absltest.main()
