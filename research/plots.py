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
"""Figures shared by the research commands."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def seed_bars(
  results: dict[str, list[dict]],
  untrained: list[dict],
  path: str,
  *,
  columns: dict[str, str],
  title: str,
) -> None:
  """Bars of the mean over seeds of MAP@R and NMI per run, seeds as dots.

  Args:
    results: per bar name, one metrics dict per seed.
    untrained: metrics of the untrained network, one per seed (dashed line).
    path: the PNG to write.
    columns: metric key -> axis label.
    title: the figure's title.
  """
  names = list(results)
  fig, axes = plt.subplots(1, 2, figsize=(12, 4))
  for ax, key in zip(axes, ("map@r", "nmi"), strict=True):
    values = np.array([[r[key] for r in results[n]] for n in names])
    ax.bar(
      range(len(names)),
      values.mean(1),
      yerr=values.std(1, ddof=1) if values.shape[1] > 1 else None,
      color="tab:blue",
      alpha=0.6,
      capsize=3,
    )
    ax.scatter(
      np.repeat(np.arange(len(names)), values.shape[1]),
      values.ravel(),
      color="k",
      s=8,
      zorder=3,
      label="seeds",
    )
    ax.axhline(
      np.mean([u[key] for u in untrained]),
      color="gray",
      ls="--",
      label="untrained",
    )
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_ylabel(f"{columns[key]} (test classes)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
