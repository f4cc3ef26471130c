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
"""``benchmarks.summary``'s smallest mode, end to end, and its JSON.

The smoke sizes measure nothing (their figures are not checked); the rows,
their ratios, the record of the machine and the tables are. The train step
is left out of the run (its own command exports FMNIST-ZS and compiles
both frameworks' steps: over a minute) and its row is built from a result
of that command's shape instead.
"""

import json
import pathlib
import tempfile

import numpy as np
import pytest
from absl.testing import absltest

from benchmarks import cpu_timing, summary, summary_rows

# Compiles the evaluation, k-means, search and proxy-step programs.
pytestmark = pytest.mark.slow

_ROWS = ["retrieval", "kmeans", "search_batch", "search_one", "proxy_step"]
_VERSIONS = ["jax", "jaxlib", "numpy", "torch", "faiss"]
_VERSIONS.append("pytorch_metric_learning")


class MeasureTest(absltest.TestCase):
  def test_peak_memory_of_a_short_lived_allocation(self):
    # 256 MiB touched and freed within the call: the kernel's peak sees it
    # even if no sample falls inside; nothing is held after.
    def allocate():
      block = np.ones(64 * 2**20, np.float32)
      return float(block[::4096].sum())

    run = cpu_timing.measure(allocate, repeats=2)
    self.assertEqual(run["result"], 64 * 2**20 / 4096)
    self.assertBetween(run["rss_extra_mb"], 250, 300)
    self.assertLen(run["seconds"], 2)


class SummarySmokeTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.folder = pathlib.Path(tempfile.mkdtemp())
    report = summary.run("smoke", skip=("train_step",))
    cls.path = cls.folder / f"summary_{report['machine']['cpu_kind']}.json"
    summary.write_report(report, str(cls.path))
    cls.report = json.loads(cls.path.read_text())

  def test_json_records_the_machine_and_its_rates(self):
    report = self.report
    self.assertEqual((report["schema"], report["mode"]), (1, "smoke"))
    machine = report["machine"]
    self.assertGreaterEqual(machine["cores"], 1)
    self.assertTrue(machine["cpu_kind"])
    self.assertEqual(sorted(machine["versions"]), sorted(_VERSIONS))
    for key in ("load_1min_before", "load_1min_after", "wall_s"):
      self.assertGreaterEqual(report[key], 0)
    rates = report["rates"]
    self.assertEqual(sorted(rates["matmul_gflops"]), ["jax", "numpy", "torch"])
    self.assertEqual(
      rates["floor_gflops"], max(rates["matmul_gflops"].values())
    )
    self.assertEqual(rates["floor_gbs"], max(rates["bandwidth_gbs"].values()))
    self.assertEqual(report["skipped"], ["train_step"])
    self.assertEqual(
      list(report["benchmarks"]), ["evaluation", "search", "proxy_step"]
    )

  def test_each_ratio_is_ours_over_peer_of_its_row(self):
    rows = self.report["rows"]
    self.assertEqual([row["key"] for row in rows], _ROWS)
    for row in rows:
      self.assertTrue(row["work"])
      self.assertGreater(row["floor_s"], 0)
      self.assertEqual(row["ours_over_floor"], row["ours_s"] / row["floor_s"])
      if row["key"] == "proxy_step":
        self.assertIsNone(row["peer"])
        self.assertIsNone(row["ours_over_peer"])
      else:
        self.assertEqual(row["ours_over_peer"], row["ours_s"] / row["peer_s"])

  def test_both_sides_agree(self):
    rows = {row["key"]: row["details"] for row in self.report["rows"]}
    self.assertEqual(rows["retrieval"]["queries_scored_differently"], 0)
    self.assertLessEqual(rows["retrieval"]["max_metric_difference"], 1e-6)
    self.assertEqual(rows["search_batch"]["lists_differing"], 0)
    kmeans = rows["kmeans"]
    self.assertEqual(kmeans["faiss"]["iterations"], kmeans["lloyd_iterations"])

  def test_train_step_row_from_its_command_result(self):
    side = {"timed_steps": 10, "quiet_steps": 4}
    metrics = {"recall@1": 0.9, "map@r": 0.3, "nmi": 0.4}
    result = {
      "steps": 12,
      "batch_size": 64,
      "dataset": "fashion_mnist_idx",
      "jax_devices": 2,
      "torch_threads": 2,
      "ours": {**side, "median_ms": 30.0, "quiet_median_ms": float("nan")},
      "PyTorch": {**side, "median_ms": 24.0, "quiet_median_ms": 23.0},
      "metrics": {"ours, 12 steps": metrics, "PyTorch, 12 steps": metrics},
    }
    row = summary_rows.train_step_row(result)
    self.assertEqual((row["ours_s"], row["peer_s"]), (0.03, 0.024))
    self.assertEqual(row["ours_over_peer"], 0.03 / 0.024)
    self.assertIsNone(row["floor_s"])
    self.assertEqual(row["details"]["trained_metrics"]["ours"], metrics)
    self.assertEqual(row["key"], "train_step")
    onednn = summary_rows.train_step_row({**result, "onednn_conv": True})
    self.assertEqual(onednn["key"], "train_step_onednn")
    self.assertIn("oneDNN convolutions", onednn["work"])

  def test_tables_from_the_written_files(self):
    table = summary.render_results(self.folder)
    self.assertEqual(table, summary.format_table(self.report))
    self.assertIn(f"({self.report['machine']['cpu_kind']})", table)
    for row in self.report["rows"]:
      self.assertIn(f"| {row['work']} |", table)


if __name__ == "__main__":
  absltest.main()
