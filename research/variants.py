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
"""Studies of variants: one config, one change each, validation curves.

A *variant* is a loss and a few config changes on top of ``--config``. Each
is trained ``--num_steps`` steps per seed and evaluated on the validation
classes every ``--eval_every`` steps (the test classes take no part in the
choice); ``curves_table`` and ``plot_curves`` show MAP@R over the steps.
Used by research/slow_start.py and research/sampled_negatives.py.
"""

import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from proxy_nca_jax import evaluation  # noqa: E402
from research import common  # noqa: E402

# name -> (loss, {dotted config field: value}).
Variants = Mapping[str, tuple[str, Mapping[str, Any]]]
# name -> the metrics.jsonl rows of each seed's run.
Runs = dict[str, list[list[dict]]]
KEY = "val/map@r"

NAMES = flags.DEFINE_list(
  "variants", None, "Variants to run (default: all of the study's)."
)


def train_variants(
  question: str,
  variants: Variants,
  names: Sequence[str] | None,
  steps: int,
  seeds: Sequence[int],
) -> tuple[Runs, ml_collections.ConfigDict]:
  """Trains (or reuses) every named variant for every seed.

  Returns:
    The runs, and the config of the last one (for what they share).

  Raises:
    app.UsageError: an unknown variant name.
  """
  names = list(names or variants)
  unknown = sorted(set(names) - set(variants))
  if unknown:
    raise app.UsageError(f"Unknown variants {unknown}; use {list(variants)}.")
  runs = {name: [] for name in names}
  config = None
  for seed in seeds:
    for name in names:
      loss, changes = variants[name]
      overrides = common.convergence_overrides(
        loss, seed, steps, common.EVAL_EVERY.value
      )
      config = common.make_config(
        {**overrides, "evals.split": "val", **changes}
      )
      runs[name].append(
        common.train(config, common.workdir_of(question, f"{name}_seed{seed}"))
      )
  return runs, config


def curves_table(runs: Runs, variants: Variants, steps: Sequence[int]) -> str:
  """Validation MAP@R of each variant at each evaluated step (mean ± std
  over seeds), and its training seconds."""
  rows = []
  for name, seeds in runs.items():
    curves = [common.eval_curve(r, KEY) for r in seeds]
    seconds = [
      common.training_seconds(r)[max(c)]
      for r, c in zip(seeds, curves, strict=True)
    ]
    changes = variants[name][1]
    rows.append(
      [name, ", ".join(f"{k}={v}" for k, v in changes.items()) or "-"]
      + [common.mean_std([c[s] for c in curves]) for s in steps]
      + [common.mean_std(seconds, 0)]
    )
  return evaluation.markdown_table(
    ["variant", "change", *(f"step {s}" for s in steps), "training seconds"],
    rows,
  )


def evaluated_steps(runs: Runs) -> list[int]:
  """The steps the first run was evaluated at."""
  return sorted(common.eval_curve(next(iter(runs.values()))[0], KEY))


def write_study(
  runs: Runs,
  variants: Variants,
  *,
  title: str,
  what: str,
  figure: str,
  figure_title: str,
  session: common.Session,
) -> None:
  """Writes the study's figure (``figure``, a PNG name) and results.md to
  ``--out``: the command, ``what`` ran, the curves table, the figure, the
  session."""
  plot_curves(
    runs, variants, os.path.join(common.OUT.value, figure), figure_title
  )
  common.write_results(
    common.OUT.value,
    title,
    [
      common.command_line(),
      what,
      curves_table(runs, variants, evaluated_steps(runs)),
      f"![{figure_title}]({figure})",
      session.describe(),
    ],
  )


def plot_curves(runs: Runs, variants: Variants, path: str, title: str) -> None:
  """MAP@R over the steps, mean over seeds; other losses dashed."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for name, seeds in runs.items():
    curves = [common.eval_curve(r, KEY) for r in seeds]
    steps = sorted(curves[0])
    values = np.array([[c[s] for s in steps] for c in curves]).mean(0)
    style = "--" if variants[name][0] != "proxy_nca" else "-"
    ax.plot(steps, values, style, marker="o", ms=3, label=name)
  ax.set_xlabel("step")
  ax.set_ylabel("MAP@R (validation classes)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
