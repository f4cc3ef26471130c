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
"""RQ3, ordinal relations: do the proxies preserve the data's orderings?

The paper's premise (Sec. 3) is that a triplet (anchor a, positive y,
negative z) of data points keeps its ordering when y and z are replaced by
their proxies: d(a, y) < d(a, z) exactly when d(a, p(y)) < d(a, p(z)). For
every such triplet among ``--ordinal_examples`` training-class images
(static assignment: p(v) is the proxy of v's class) we count the triplets
whose ordering the proxies preserve, before training (the initial network
and proxies) and after, for the Proxy-NCA runs of RQ2 (trained here if
missing). Distances are squared Euclidean between unit vectors.

  python -m research.rq3_ordinal --out=docs/rq3
"""

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from matplotlib import patches  # noqa: E402

from proxy_nca_jax import evaluation  # noqa: E402
from research import common  # noqa: E402

ORDINAL_EXAMPLES = flags.DEFINE_integer(
  "ordinal_examples", 2000, "Training-class images whose triplets count."
)

RQ2_STEPS = 600
DEFAULT_SEEDS = (0, 1, 2)


def _unit(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  norm = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.where(norm > 0, norm, 1.0)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
  return np.maximum(d, 0.0)


def ordinal_counts(
  embeddings: np.ndarray, labels: np.ndarray, proxies: np.ndarray
) -> dict[str, int]:
  """Counts triplets and the orderings the proxies preserve.

  Triplets are (a, y, z) with y != a of a's class and z of another class.
  The data orders it "y first" when d(a, y) < d(a, z), the proxies when
  d(a, p_{label a}) < d(a, p_{label z}); the ordering is preserved when both
  agree. For each anchor and negative class the proxy ordering is one
  comparison, and the data orderings are counted by a binary search of the
  negatives' distances among the sorted positives' distances.

  Args:
    embeddings: float (N, D); normalised here (float64).
    labels: int (N,) in [0, C), the row of each point's proxy.
    proxies: float (C, D); normalised here.

  Returns:
    {'triplets', 'preserved', 'data_ordered', 'proxy_ordered'}: the number
    of triplets, of those whose ordering the proxies preserve, of those the
    data orders "y first", and of those the proxies order "y first".
  """
  x, p = _unit(embeddings), _unit(proxies)
  labels = np.asarray(labels)
  d_xx, d_xp = _squared_distances(x, x), _squared_distances(x, p)
  counts = dict.fromkeys(
    ("triplets", "preserved", "data_ordered", "proxy_ordered"), 0
  )
  for a in range(len(x)):
    same = labels == labels[a]
    same[a] = False
    positives = np.sort(d_xx[a, same])
    for c in np.unique(labels[labels != labels[a]]):
      negatives = d_xx[a, labels == c]
      data_first = int(np.searchsorted(positives, negatives).sum())
      pairs = positives.size * negatives.size
      proxy_first = d_xp[a, labels[a]] < d_xp[a, c]
      counts["triplets"] += pairs
      counts["data_ordered"] += data_first
      counts["proxy_ordered"] += pairs if proxy_first else 0
      counts["preserved"] += data_first if proxy_first else pairs - data_first
  return counts


def measure(config, model, state) -> dict[str, float]:
  """Fractions of ``ordinal_counts`` on the training-class images."""
  with config.unlocked():
    config.input.max_eval_examples = ORDINAL_EXAMPLES.value
  embeddings, class_ids = common.embed_split(config, model, state, "train")
  train_classes = [
    c for c in config.input.train_classes if c not in config.input.val_classes
  ]
  rows = np.array([train_classes.index(c) for c in class_ids])
  counts = ordinal_counts(embeddings, rows, np.asarray(state.params["proxies"]))
  total = counts.pop("triplets")
  fractions = {k: v / total for k, v in counts.items()}
  return {"triplets": total, "classes": len(np.unique(rows)), **fractions}


def main(argv: list[str]) -> None:
  del argv
  session = common.Session()
  seeds = common.seeds(DEFAULT_SEEDS)
  steps = common.num_steps(RQ2_STEPS)
  results = {"before": [], "after": []}
  for seed in seeds:
    overrides = common.convergence_overrides(
      "proxy_nca", seed, steps, common.EVAL_EVERY.value
    )
    workdir = common.workdir_of("rq2", f"proxy_nca_seed{seed}")
    common.train(common.make_config(overrides), workdir, needs_checkpoint=True)
    config, model, state = common.restore(workdir)
    results["after"].append(measure(config, model, state))
    _, initial = common.initial_state(config)
    results["before"].append(measure(config, model, initial))
  keys = {
    "preserved": "orderings preserved by the proxies",
    "data_ordered": "triplets the data orders correctly",
    "proxy_ordered": "triplets the proxies order correctly",
  }
  rows = [
    [
      when,
      *(common.mean_std([r[k] for r in results[when]]) for k in keys),
      ", ".join(f"{r['preserved']:.4f}" for r in results[when]),
    ]
    for when in results
  ]
  table = evaluation.markdown_table(
    ["", *keys.values(), "preserved, per seed"], rows
  )
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, key in enumerate(keys):
    for j, when in enumerate(results):
      values = [r[key] for r in results[when]]
      ax.bar(i * 3 + j, np.mean(values), color=f"C{j}", alpha=0.7)
      ax.scatter([i * 3 + j] * len(values), values, color="k", s=8, zorder=3)
  ax.set_xticks(
    [0.5, 3.5, 6.5], ["preserved", "data correct", "proxies correct"]
  )
  ax.legend(
    handles=[
      patches.Patch(color="C0", alpha=0.7, label="before training"),
      patches.Patch(color="C1", alpha=0.7, label=f"after {steps} steps"),
    ],
    fontsize=8,
  )
  ax.set_ylim(0, 1)
  ax.set_ylabel("fraction of (anchor, positive, negative) triplets")
  ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  fig.savefig(os.path.join(common.OUT.value, "ordinal.png"), dpi=100)
  plt.close(fig)
  triplets = results["after"][0]["triplets"]
  classes = results["after"][0]["classes"]
  what = (
    f"The Proxy-NCA runs of RQ2 on {common.dataset_title()} ({steps} steps, "
    f"{config.loss.form} form, scale {config.loss.scale:g}, random batches, "
    f"seeds {', '.join(map(str, seeds))}): the first "
    f"{ORDINAL_EXAMPLES.value} images of the training classes (in the "
    f"dataset's fixed order; {classes} classes among them), {triplets:,} "
    "triplets, embedded in inference "
    "mode by the initial network with its initial (random) proxies "
    "('before') and by the last checkpoint with its trained proxies "
    "('after'). Mean ± sample std over seeds."
  )
  common.write_results(
    common.OUT.value,
    f"RQ3: ordinal relations the proxies preserve ({common.dataset_title()})",
    [
      common.command_line(),
      what,
      table,
      "![ordinal](ordinal.png)",
      session.describe(),
    ],
  )


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
