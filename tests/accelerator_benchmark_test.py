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
"""``python -m benchmarks.accelerator --smoke``: every part runs on the CPU.

The command is what a GPU machine will run; here it runs at tiny shapes, so
a broken part is found before device time is spent on it. Its figures are
not checked (a smoke run measures nothing), its answers are: the loss of
both sides against pytorch-metric-learning, the evaluation's metrics against
faiss's neighbour lists.

The command runs with XLA:CPU's backend optimisation off: its CPU code is
never what a GPU runs and its speed is not checked. Its backbones part runs
the ViT case only (``vit_test`` standing in for ViT-S/16: about 6 s of CPU
time). ResNet-50 and BN-Inception go through the same code of the command
(``time_backbone``: the recipe's config, our step, the PyTorch twin); their
networks are compiled and trained in tests/training/paper_configs_e2e_test.py
and their PyTorch twins run in tests/models/weight_import_test.py, and
compiling them here cost about 70 s of the suite (39 s for ResNet-50 alone,
measured 2026-12-06).
"""

import json
import pathlib
import sys
import tempfile

import pytest
from absl.testing import absltest

from tests.testing import tiny_run

# Compiles ResNet-50, BN-Inception and ViT train steps: left out of
# test-fast.
pytestmark = pytest.mark.slow


class AcceleratorSmokeTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.out = pathlib.Path(tempfile.mkdtemp()) / "smoke"
    cls.result = tiny_run.run_command(
      [
        sys.executable,
        "-m",
        "benchmarks.accelerator",
        "--smoke",
        "--backbones=vit_s16",
        f"--out={cls.out}",
      ],
      num_devices=1,
      xla_flags=("--xla_backend_optimization_level=0",),
    )

  def report(self) -> dict:
    self.assertEqual(self.result.returncode, 0, self.result.stderr[-3000:])
    return json.loads(self.out.with_suffix(".json").read_text())

  def test_every_part_ran_and_is_tabulated(self):
    report = self.report()
    self.assertTrue(report["smoke"])
    self.assertEqual(
      [r["backbone"] for r in report["backbones"]],
      ["vit_test"],  # vit_test for ViT-S/16.
    )
    self.assertEqual([r["optimizer"] for r in report["backbones"]], ["adamw"])
    for row in report["backbones"]:
      self.assertGreater(row["ours"]["images_per_s"], 0)
      self.assertGreater(row["pytorch"]["images_per_s"], 0)
    self.assertEqual([r["proxies"] for r in report["loss"]], [100, 1000])
    self.assertIn("faiss_cpu", report["evaluation"])
    markdown = self.out.with_suffix(".md").read_text()
    self.assertEqual(markdown.count("\n|---"), 3)
    self.assertIn("| vit_test (vit) | 4 |", markdown)
    self.assertIn("| 1,000 | 4 x 64 |", markdown)

  def test_both_sides_compute_the_same_loss(self):
    for row in self.report()["loss"]:
      self.assertAlmostEqual(
        row["loss_ours"], row["loss_pml"], delta=1e-5 * abs(row["loss_pml"])
      )

  def test_evaluation_agrees_with_faiss_neighbours(self):
    row = self.report()["evaluation"]
    ours, theirs = row["metrics_ours"], row["metrics_faiss"]
    self.assertEqual(set(ours), set(theirs))
    # Well-separated classes: no near-tie can reorder a neighbour list.
    for key in ours:
      self.assertAlmostEqual(ours[key], theirs[key], delta=1e-6, msg=key)
    self.assertGreater(ours["map@r"], 0.5)


if __name__ == "__main__":
  absltest.main()
