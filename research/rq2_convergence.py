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
"""RQ2, convergence: Proxy-NCA against triplet with semi-hard mining.

Same model (convnet-S), batch size (64), optimiser (Adam 1e-3) and number of
steps for both losses; the triplet loss gets class-balanced batches
(``--triplet_samples_per_class`` images of each class, what in-batch mining
needs), Proxy-NCA plain random batches (what the paper uses). Both are
evaluated on the test classes every ``--eval_every`` steps. The paper
(Fig. 1) claims Proxy-NCA reaches its quality about three times faster; we
report the steps and the training wall time each run needs to first reach a
common MAP@R target (Recall@1 saturates near 0.9 on FMNIST-ZS even
untrained, so it cannot show convergence).

  python -m research.rq2_convergence --out=docs/rq2

The same on GLYPHS-ZS (2,000 Han character classes; ``configs/glyphs.py``):

  python -m research.rq2_convergence --out=docs/glyphs_rq2 \
      --config=configs/glyphs.py --num_steps=1000 --eval_every=100 \
      --triplet_samples_per_class=8 --max_eval_examples=10000

``--target_fraction=0.8,1.0`` writes one table per target; 1.0 is the
slower loss's final level, the "reach and hold" target of the longer run
(issue 15: 3,000 steps, with the class-mean start beside the two losses).

``--losses`` names losses (their config settings) or the runs of
``VARIANTS``, e.g. ``proxy_nca_class_means``: Proxy-NCA with its proxies
started at the initial network's class means, the fix of the slow start
that research/slow_start.py chose on the validation classes, or
``proxy_nca_paper``: the paper's Eq. 4 (no positive in the denominator),
the form research/rq4_losses.py ranks first on the validation classes.
"""

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from proxy_nca_jax import evaluation, losses  # noqa: E402
from research import common  # noqa: E402

TARGET_FRACTIONS = flags.DEFINE_list(
  "target_fraction",
  ["0.8"],
  "One or more fractions, one table each: target MAP@R = untrained + the "
  "fraction of the way to the lower of the losses' mean final MAP@R (1.0: "
  "the slower loss's final level); steps to target = first step from which "
  "every later evaluation is at or above it.",
)

QUESTION = "rq2"
DEFAULT_STEPS = 600
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_LOSSES = ("proxy_nca", "triplet_semihard")
# Runs other than a loss with its config settings: name -> (loss, changes).
VARIANTS = {
  "proxy_nca_class_means": ("proxy_nca", {"proxies.init": "class_means"}),
  "proxy_nca_paper": ("proxy_nca", {"loss.form": "paper"}),
}
KEYS = {"map@r": "MAP@R", "recall@1": "Recall@1"}


def run_of(name: str) -> tuple[str, dict[str, str]]:
  """The loss and config changes of run ``name`` (a loss or a variant).

  Raises:
    app.UsageError: ``name`` is neither.
  """
  if name in VARIANTS:
    return VARIANTS[name]
  if name in losses.LOSSES:
    return name, {}
  raise app.UsageError(
    f"Unknown run {name!r}; use a loss of {list(losses.LOSSES)} or a "
    f"variant of {list(VARIANTS)}."
  )


def first_step_reaching(curve: dict[int, float], target: float) -> int | None:
  """The first trained step from which every evaluation is >= ``target``.

  "Reaches and holds": MAP@R on FMNIST-ZS starts high (the untrained
  network) and usually dips in the first steps, so the first crossing alone
  would credit the untrained network.
  """
  steps = sorted(s for s in curve if s > 0)
  holding = None
  for step in reversed(steps):
    if curve[step] < target:
      break
    holding = step
  return holding


def first_step_crossing(curve: dict[int, float], target: float) -> int | None:
  """The first trained step evaluated at or above ``target``."""
  return next((s for s in sorted(curve) if s > 0 and curve[s] >= target), None)


def target_of(
  curves: dict[str, list[dict[int, float]]], fraction: float
) -> float:
  """untrained + ``fraction`` x (lower mean final MAP@R - untrained)."""
  untrained = np.mean([c[0] for cs in curves.values() for c in cs])
  final = min(np.mean([c[max(c)] for c in cs]) for cs in curves.values())
  return float(untrained + fraction * (final - untrained))


def reach_table(
  runs: dict[str, list[list[dict]]],
  curves: dict[str, list[dict[int, float]]],
  target: float,
) -> str:
  """Per loss: the endpoints, and the steps and training seconds to first
  reach ``target`` and to reach and hold it, per seed and mean ± std."""
  rows = []
  for loss, records in runs.items():
    steps, seconds = [], []
    for record, curve in zip(records, curves[loss], strict=True):
      step = first_step_reaching(curve, target)
      steps.append(step)
      seconds.append(
        None if step is None else common.training_seconds(record)[step]
      )
    reached = [s for s in steps if s is not None]
    crossed = [first_step_crossing(c, target) for c in curves[loss]]
    recall = [common.eval_curve(r, "test/recall@1") for r in records]
    rows.append(
      [
        loss,
        common.mean_std([c[0] for c in curves[loss]]),
        common.mean_std([c[max(c)] for c in curves[loss]]),
        common.mean_std([max(c.values()) for c in curves[loss]]),
        common.mean_std([c[max(c)] for c in recall]),
        ", ".join("-" if s is None else str(s) for s in crossed),
        ", ".join("not reached" if s is None else str(s) for s in steps),
        common.mean_std(reached, 0) if reached else "-",
        ", ".join("-" if s is None else f"{s:.0f}" for s in seconds),
      ]
    )
  last = max(next(iter(curves.values()))[0])
  return evaluation.markdown_table(
    [
      "loss",
      "MAP@R untrained",
      f"MAP@R at step {last}",
      "best MAP@R",
      f"Recall@1 at step {last}",
      f"first step at MAP@R >= {target:.4f}, per seed",
      "steps to reach and hold it, per seed",
      "reach and hold, mean ± std",
      "training seconds to reach and hold, per seed",
    ],
    rows,
  )


def summarize(
  runs: dict[str, list[list[dict]]], fractions: list[float]
) -> tuple[list[str], list[float]]:
  """The tables of results.md (one per target fraction, then the
  endpoints) and the target MAP@R of each fraction."""
  curves = {
    loss: [common.eval_curve(r, "test/map@r") for r in records]
    for loss, records in runs.items()
  }
  targets = [target_of(curves, f) for f in fractions]
  tables = [reach_table(runs, curves, t) for t in targets]
  return [*tables, endpoint_table(runs)], targets


def endpoint_table(runs: dict[str, list[list[dict]]]) -> str:
  """Every test metric untrained and at the last step, mean ± std over seeds.

  With the training seconds (evaluation excluded) of the whole run.
  """
  records = next(iter(runs.values()))[0]
  logged = {
    k.removeprefix("test/") for r in records for k in r if k.startswith("test/")
  }
  recalls = sorted(
    (k for k in logged if k.startswith("recall@")),
    key=lambda k: int(k.removeprefix("recall@")),
  )
  keys = recalls + [k for k in ("nmi", "map@r") if k in logged]
  rows = []
  for loss, seeds in runs.items():
    curves = {
      k: [common.eval_curve(r, f"test/{k}") for r in seeds] for k in keys
    }
    last = max(curves[keys[0]][0])
    for step, name in ((0, "untrained"), (last, f"step {last}")):
      seconds = [common.training_seconds(r).get(step, 0.0) for r in seeds]
      rows.append(
        [loss, name]
        + [common.mean_std([c[step] for c in curves[k]]) for k in keys]
        + [common.mean_std(seconds, 0)]
      )
  return evaluation.markdown_table(
    ["loss", "network", *keys, "training seconds"], rows
  )


def plot(
  runs: dict[str, list[list[dict]]], targets: list[float], path: str
) -> None:
  """MAP@R and Recall@1 against steps and against training seconds."""
  fig, axes = plt.subplots(2, 2, figsize=(10, 7))
  for (key, name), row in zip(KEYS.items(), axes, strict=True):
    for loss, records in runs.items():
      curves = [common.eval_curve(r, f"test/{key}") for r in records]
      steps = sorted(set.intersection(*(set(c) for c in curves)))
      values = np.array([[c[s] for s in steps] for c in curves])
      seconds = np.array(
        [[common.training_seconds(r)[s] for s in steps] for r in records]
      )
      for ax, x in ((row[0], np.array(steps)), (row[1], seconds.mean(0))):
        (line,) = ax.plot(x, values.mean(0), marker="o", ms=3, label=loss)
        ax.fill_between(
          x, values.min(0), values.max(0), color=line.get_color(), alpha=0.2
        )
    for ax, xlabel in zip(row, ("step", "training seconds"), strict=True):
      ax.set_xlabel(xlabel)
      ax.set_ylabel(f"{name} (test classes)")
      ax.grid(alpha=0.3)
      if key == "map@r":
        for i, target in enumerate(targets):
          ax.axhline(
            target,
            color="gray",
            ls=("--", ":", "-.")[i % 3],
            lw=1,
            label=f"target {target:.3f}",
          )
      ax.legend(fontsize=8)
  num_seeds = len(next(iter(runs.values())))
  fig.suptitle(
    f"{common.dataset_title()} convergence: mean over {num_seeds} seeds, "
    "band = min to max"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def describe_setup(configs: dict[str, ml_collections.ConfigDict]) -> str:
  """What the runs of each name were, read from their configs."""
  parts = []
  for name, config in configs.items():
    opt = config.optimizer
    batches = (
      f"{config.input.samples_per_class} images of each of "
      f"{config.input.batch_size // config.input.samples_per_class} classes "
      "per batch"
      if config.input.samples_per_class
      else "random batches"
    )
    if config.loss.name in losses.PROXY_LOSSES:
      details = (
        f"{config.loss.form} form, scale {config.loss.scale:g}, proxy "
        f"learning rate x{opt.proxy_lr_mult:g}, proxies initialised "
        f"{config.proxies.init}"
      )
    else:
      details = f"margin {config.loss.margin:g}"
    parts.append(
      f"{name}: batch {config.input.batch_size}, {opt.name} "
      f"{opt.learning_rate:g}, {details}, {batches}, augmentation "
      f"{config.input.augmentation}"
    )
  return "; ".join(parts) + "."


def main(argv: list[str]) -> None:
  del argv
  fractions = common.floats_of(TARGET_FRACTIONS)  # Before hours of training.
  session = common.Session()
  steps = common.num_steps(DEFAULT_STEPS)
  names = common.losses_of(DEFAULT_LOSSES)
  chosen = {name: run_of(name) for name in names}
  runs = {name: [] for name in names}
  configs = {}
  # Seed by seed, the runs in turn, so machine load falls on all alike.
  for seed in common.seeds(DEFAULT_SEEDS):
    for name, (loss, changes) in chosen.items():
      configs[name] = common.make_config(
        {
          **common.convergence_overrides(
            loss, seed, steps, common.EVAL_EVERY.value
          ),
          **changes,
        }
      )
      runs[name].append(
        common.train(
          configs[name],
          common.workdir_of(QUESTION, f"{name}_seed{seed}"),
        )
      )
  tables, targets = summarize(runs, fractions)
  plot(runs, targets, os.path.join(common.OUT.value, "convergence.png"))
  seeds = ", ".join(map(str, common.seeds(DEFAULT_SEEDS)))
  what = (
    f"Each loss trained {steps} steps (seeds {seeds}), evaluated on the "
    f"test classes every {common.EVAL_EVERY.value} steps. "
    f"{common.describe_eval()} "
    f"{describe_setup(configs)} Target MAP@R = untrained + fraction x "
    "(lower mean final MAP@R - untrained), one table per fraction: "
    + ", ".join(
      f"{f:g} gives {t:.4f}" for f, t in zip(fractions, targets, strict=True)
    )
    + ". Training seconds exclude evaluation and are wall-clock "
    "on a shared machine: compare them between rows of one command only."
  )
  common.write_results(
    common.OUT.value,
    "RQ2: convergence of Proxy-NCA and triplet (semi-hard) on "
    f"{common.dataset_title()}",
    [
      common.command_line(),
      what,
      *tables,
      "![convergence](convergence.png)",
      session.describe(),
    ],
  )


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
