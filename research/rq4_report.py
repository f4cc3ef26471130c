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
"""RQ4's report: tables, figures and results.md from the losses' outcomes.

``research/rq4_losses.py`` runs the losses and hands each one's outcome
here. Every loss recorded under --out gets a row of the table of all
losses; the losses of ``--losses``, when they are a subset, also get a
table and figures of their own, and a paragraph saying where Proxy-NCA
stands among them, written from the numbers.
"""

import dataclasses
import os
from collections.abc import Mapping, Sequence

import numpy as np

from proxy_nca_jax import evaluation
from research import common, plots, variants

COLUMNS = {
  "recall@1": "R@1",
  "recall@2": "R@2",
  "recall@4": "R@4",
  "recall@8": "R@8",
  "nmi": "NMI",
  "map@r": "MAP@R",
  "r_precision": "R-Precision",
}
# The metrics of the paragraph on where Proxy-NCA stands, ranking first.
STANDING = {"map@r": "MAP@R", "recall@1": "R@1", "nmi": "NMI"}
# The run Proxy-NCA's standing is about, in order of preference.
PROXY_NCA_RUNS = ("proxy_nca_paper", "proxy_nca")


@dataclasses.dataclass(frozen=True)
class Outcome:
  """One loss's runs.

  Attributes:
    loss: its ``loss.name``.
    settings: the name of the settings its search chose (``''``: the
      config's).
    search_lines: a line per searched field, values tried and scores.
    runs: per seed, the run's metrics rows.
    selected: per seed, the test metrics of the checkpoint chosen on the
      validation classes, with its 'step'.
    seconds: per seed, the training seconds (evaluation excluded).
  """

  loss: str
  settings: str
  search_lines: tuple[str, ...]
  runs: list[list[dict]]
  selected: list[dict]
  seconds: list[float]


def results_table(
  outcomes: Mapping[str, Outcome], untrained: list[dict]
) -> str:
  """The test metrics of each loss (mean ± std over seeds), in order."""
  rows = [
    [
      "untrained network",
      *(common.mean_std([u[k] for u in untrained]) for k in COLUMNS),
      "-",
      "-",
      "-",
    ]
  ]
  for name, outcome in outcomes.items():
    rows.append(
      [
        name,
        *(common.mean_std([r[k] for r in outcome.selected]) for k in COLUMNS),
        outcome.settings or "config",
        ", ".join(str(r["step"]) for r in outcome.selected),
        common.mean_std(outcome.seconds, 0),
      ]
    )
  return evaluation.markdown_table(
    [
      "loss",
      *COLUMNS.values(),
      "settings",
      "selected step per seed",
      "training seconds",
    ],
    rows,
  )


def _ordinal(n: int) -> str:
  suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
  return f"{n}{'th' if 10 <= n % 100 <= 20 else suffix}"


def standing(outcomes: Mapping[str, Outcome], reference: str) -> str:
  """Where run ``reference`` ranks among ``outcomes`` by each metric of
  ``STANDING`` (mean over seeds), against the best other loss."""

  def values(name: str, key: str) -> list[float]:
    return [r[key] for r in outcomes[name].selected]

  parts, ranking = [], ""
  for key, label in STANDING.items():
    means = {name: float(np.mean(values(name, key))) for name in outcomes}
    order = sorted(means, key=lambda n: -means[n])
    if not ranking:
      ranking = ", ".join(f"{n} {means[n]:.3f}" for n in order)
    rank = order.index(reference) + 1
    other = order[1] if rank == 1 else order[0]
    parts.append(
      f"by {label} {_ordinal(rank)} of {len(order)} at "
      f"{common.mean_std(values(reference, key))}, "
      f"{'the next' if rank == 1 else 'the best'} being {other} at "
      f"{common.mean_std(values(other, key))} (difference "
      f"{means[reference] - means[other]:+.3f})"
    )
  seeds = len(outcomes[reference].selected)
  return (
    f"Where Proxy-NCA ({reference}) stands among these {len(outcomes)} "
    f"losses, each searched with the same budget, on the test classes: "
    f"{'; '.join(parts)}. Ranked by mean test MAP@R: {ranking}. With "
    f"{seeds} seeds, a difference within the losses' standard deviations "
    "is not resolved."
  )


def _figures(
  outcomes: Mapping[str, Outcome],
  untrained: list[dict],
  out: str,
  names: tuple[str, str],
  title: str,
) -> list[str]:
  """Test-metric bars and validation curves of ``outcomes``, written to
  OUT/<names>.png; their links."""
  bars, curves = names
  plots.seed_bars(
    {name: o.selected for name, o in outcomes.items()},
    untrained,
    os.path.join(out, f"{bars}.png"),
    columns=COLUMNS,
    title=f"{title}, checkpoint chosen on validation classes",
  )
  variants.plot_curves(
    {name: o.runs for name, o in outcomes.items()},
    {name: (o.loss, {}) for name, o in outcomes.items()},
    os.path.join(out, f"{curves}.png"),
    f"{title}: validation MAP@R over the steps, mean over seeds",
  )
  return [f"![{bars}]({bars}.png)", f"![{curves}]({curves}.png)"]


def write(
  out: str,
  title: str,
  head: Sequence[str],
  search: str,
  outcomes: Mapping[str, Outcome],
  compared: Sequence[str],
  untrained: list[dict],
  tail: Sequence[str],
) -> str:
  """Writes OUT/results.md and its figures.

  Args:
    out: the folder.
    title: the benchmark's name, e.g. 'GLYPHS-ZS'.
    head: the sections before the results (command, what ran).
    search: how the settings were searched; each loss's lines follow it.
    outcomes: every loss recorded, in the order of the table of all losses.
    compared: the losses of ``--losses``. Unless they are all of
      ``outcomes``, they get a table, figures and the standing paragraph of
      their own, first.
    untrained: test metrics of the untrained network, one per seed.
    tail: the sections after the results.

  Returns:
    The path of results.md.
  """
  sections = list(head)
  if missing := [name for name in compared if name not in outcomes]:
    sections.append(f"Not recorded yet (still to run): {', '.join(missing)}.")
  compared = {name: outcomes[name] for name in compared if name in outcomes}
  separate = compared.keys() != outcomes.keys()
  if separate and compared:
    sections += [
      f"## The losses compared ({len(compared)} recorded)",
      results_table(compared, untrained),
      *_standing_of(compared),
      *_figures(
        compared, untrained, out, ("comparison", "comparison_curves"), title
      ),
      f"## Every loss recorded under {out}",
    ]
  lines = [line for o in outcomes.values() for line in o.search_lines]
  sections += [
    "\n\n".join(filter(None, [search, "\n".join(lines)])),
    results_table(outcomes, untrained),
    *([] if separate else _standing_of(outcomes)),
    *_figures(outcomes, untrained, out, ("losses", "validation_curves"), title),
    *tail,
  ]
  return common.write_results(
    out, f"RQ4: zero-shot quality of every loss on {title}", sections
  )


def _standing_of(outcomes: Mapping[str, Outcome]) -> list[str]:
  """The standing paragraph of Proxy-NCA's run among ``outcomes``, if any."""
  reference = next((n for n in PROXY_NCA_RUNS if n in outcomes), None)
  return (
    [standing(outcomes, reference)] if reference and len(outcomes) > 1 else []
  )
