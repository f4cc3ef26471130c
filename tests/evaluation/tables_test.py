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
"""Tests of evaluation/tables.py: the text and Markdown tables of results."""

from absl.testing import absltest

from proxy_nca_jax import evaluation


class FormatResultsTableTest(absltest.TestCase):
  def test_rows_columns_and_rounding(self):
    rows = {
      "step 0 (untrained)": {"recall@1": 0.891234, "map@r": 0.25, "nmi": 0.2},
      "step 600": {"recall@1": 0.94004, "map@r": 0.333333, "nmi": 1.0},
    }
    table = evaluation.format_results_table(rows, ["recall@1", "map@r"])
    lines = table.splitlines()
    self.assertLen(lines, 4)
    self.assertEqual(lines[0].split(), ["recall@1", "map@r"])
    self.assertEqual(
      lines[2].split(), ["step", "0", "(untrained)", "0.8912", "0.2500"]
    )
    self.assertEqual(lines[3].split(), ["step", "600", "0.9400", "0.3333"])
    self.assertNotIn("nmi", table)
    # Columns line up: every value ends where its header ends.
    header_end = lines[0].index("map@r") + len("map@r")
    self.assertEqual(lines[2].index("0.2500") + 6, header_end)
    self.assertEqual(lines[3].index("0.3333") + 6, header_end)

  def test_missing_metric(self):
    table = evaluation.format_results_table({"a": {"nmi": 0.5}}, ["nmi", "x"])
    self.assertEqual(table.splitlines()[-1].split(), ["a", "0.5000", "-"])


class MarkdownTableTest(absltest.TestCase):
  def test_header_rule_and_cells(self):
    table = evaluation.markdown_table(
      ["loss", "MAP@R", "seeds"], [["proxy_nca", 0.5, 3], ["npairs", "-", 1]]
    )
    self.assertEqual(
      table,
      "| loss | MAP@R | seeds |\n"
      "|---|---|---|\n"
      "| proxy_nca | 0.5 | 3 |\n"
      "| npairs | - | 1 |",
    )

  def test_no_rows(self):
    self.assertEqual(evaluation.markdown_table(["a"], []), "| a |\n|---|")


class ResultsTableTest(absltest.TestCase):
  def test_shows_every_recall_the_config_asks_for(self):
    # Stanford Online Products' columns (configs/sop.py): Recall@1/10/100/
    # 1000; the table once dropped every K but 1, 2, 4, 8.
    metrics = {"recall@1000": 0.9, "recall@1": 0.5, "recall@100": 0.8}
    metrics.update({"recall@10": 0.7, "nmi": 0.6, "map@r": 0.2, "ami": 0.1})
    table = evaluation.results_table({0: metrics, 600: metrics})
    header = table.splitlines()[0].split()
    self.assertEqual(
      header,
      ["recall@1", "recall@10", "recall@100", "recall@1000", "nmi", "map@r"],
    )
    self.assertIn("step 0 (untrained)", table)
    self.assertIn("0.9000", table.splitlines()[-1])

  def test_rows_after_an_accepted_config_change_say_so(self):
    metrics = {"recall@1": 0.5, "map@r": 0.2}
    results = {0: metrics, 300: metrics, 600: metrics}
    table = evaluation.results_table(results, config_changed_at=[300, 450])
    # Each row: its name, then two spaces and the cells.
    names = [line.split("  ")[0] for line in table.splitlines()[2:]]
    self.assertEqual(
      names,
      ["step 0 (untrained)", "step 600 (config changed at step 300, 450)"],
    )
    unchanged = evaluation.results_table(results, config_changed_at=[700])
    self.assertNotIn("config changed", unchanged)


if __name__ == "__main__":
  absltest.main()
