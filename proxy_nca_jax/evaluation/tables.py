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
"""Text tables of results, for logs, commands' output and reports.

`format_results_table` lays out any named metrics as aligned plain text;
`results_table` picks a run's first and last evaluations and the columns
worth reading; `markdown_table` writes the tables of the research and
benchmark reports.
"""

from collections.abc import Iterable, Mapping, Sequence


def format_results_table(
  rows: Mapping[str, Mapping[str, float]], keys: Sequence[str]
) -> str:
  """Formats named results as a plain-text table, 4 decimals per value.

  Args:
    rows: result name (e.g. 'step 0 (untrained)') -> metrics dict.
    keys: the metric keys to show, one column each, in this order; a metric
      missing from a row is shown as '-'.

  Returns:
    The table, one header line, one rule and one line per row, no trailing
    newline. Example::

                         recall@1   map@r
      ------------------ -------- -------
      step 0 (untrained)   0.8900  0.2500
  """
  name_width = max([len(name) for name in rows] + [0])
  widths = [max(len(key), 6) for key in keys]

  def line(name: str, cells: Sequence[str]) -> str:
    parts = [name.ljust(name_width)]
    parts += [cell.rjust(w) for cell, w in zip(cells, widths, strict=True)]
    return " ".join(parts).rstrip()

  lines = [
    line("", list(keys)),
    line("-" * name_width, ["-" * w for w in widths]),
  ]
  for name, metrics in rows.items():
    cells = [f"{metrics[key]:.4f}" if key in metrics else "-" for key in keys]
    lines.append(line(name, cells))
  return "\n".join(lines)


def results_table(
  results: Mapping[int, Mapping[str, float]],
  config_changed_at: Sequence[int] = (),
) -> str:
  """The first (untrained, when evaluated) and last evaluations, as text.

  Columns: every Recall@K of the results in order of K (all of those the
  config asks for, e.g. 1, 10, 100, 1000 on Stanford Online Products), then
  NMI and MAP@R.

  Args:
    results: metrics by step.
    config_changed_at: the steps where an accepted config change started a
      new segment of the run; a row after one says so (``step 9 (config
      changed at step 6)``), so the table cannot pass for one recipe's.
  """
  steps = sorted(results)
  named = {}
  for step in dict.fromkeys((steps[0], steps[-1])):
    changes = [start for start in config_changed_at if start <= step]
    name = f"step {step}" + (" (untrained)" if step == 0 else "")
    if changes:
      name += f" (config changed at step {', '.join(map(str, changes))})"
    named[name] = results[step]
  last = results[steps[-1]]
  recalls = sorted(
    (k for k in last if k.startswith("recall@")),
    key=lambda k: int(k.removeprefix("recall@")),
  )
  keys = recalls + [k for k in ("nmi", "map@r") if k in last]
  return format_results_table(named, keys)


def markdown_table(
  header: Sequence[str], rows: Iterable[Sequence[object]]
) -> str:
  """A GitHub-flavoured Markdown table, each cell written as `str(cell)`.

  Returns:
    One header line, one rule and one line per row, no trailing newline.
    Example: `markdown_table(["loss", "MAP@R"], [["proxy_nca", 0.9]])` is::

      | loss | MAP@R |
      |---|---|
      | proxy_nca | 0.9 |
  """
  lines = [
    "| " + " | ".join(header) + " |",
    "|" + "|".join("---" for _ in header) + "|",
  ]
  lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
  return "\n".join(lines)
