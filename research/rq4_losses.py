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
"""RQ4, zero-shot quality of every loss, checkpoint chosen on validation.

Every loss of ``losses.LOSSES`` trains on FMNIST-ZS with two of the five
training classes held out as validation classes (``input.val_classes``):
the runs see classes 0-2, are evaluated on the validation classes 3-4 every
``--select_every`` steps, the checkpoint with the best validation MAP@R is
kept, and only that checkpoint is evaluated on the test classes 5-9. The
test classes never choose anything.

  python -m research.rq4_losses --out=docs/rq4
"""

import os

from absl import app, flags

from proxy_nca_jax import losses
from research import common, plots

SELECT_EVERY = flags.DEFINE_integer(
  "select_every", 50, "Evaluate the validation classes every this many steps."
)
VAL_CLASSES = flags.DEFINE_list(
  "val_classes", ["3", "4"], "Training classes held out for selection."
)

QUESTION = "rq4"
DEFAULT_STEPS = 150
DEFAULT_SEEDS = (0, 1, 2)
COLUMNS = {
  "recall@1": "R@1",
  "recall@2": "R@2",
  "recall@4": "R@4",
  "recall@8": "R@8",
  "nmi": "NMI",
  "map@r": "MAP@R",
  "r_precision": "R-Precision",
}


def run_overrides(loss: str, seed: int, steps: int) -> dict:
  """Validation-selected run; the baselines get 32 images of 2 classes."""
  every = SELECT_EVERY.value
  overrides = {
    "seed": seed,
    "loss.name": loss,
    "input.val_classes": tuple(int(c) for c in VAL_CLASSES.value),
    "schedule.num_steps": steps,
    "evals.split": "val",
    "evals.every_steps": every,
    "evals.at_step_zero": False,
    "ckpt.every_steps": every,
    "ckpt.keep": steps // every + 1,
    "log_every_steps": every,
  }
  if loss not in losses.PROXY_LOSSES:
    overrides["input.samples_per_class"] = 32
  return overrides


def selected_test_metrics(workdir: str, records: list[dict]) -> dict:
  """Test metrics of the checkpoint with the best validation MAP@R."""
  val = common.eval_curve(records, "val/map@r")
  step = max(sorted(val), key=lambda s: val[s])  # Ties: the earliest.

  def compute():
    config, model, state = common.restore(workdir, step)
    return common.evaluate_state(config, model, state, "test")

  path = os.path.join(workdir, f"selected_test_step{step}.json")
  return {"step": step, **common.cached_json(path, compute)}


def main(argv: list[str]) -> None:
  del argv
  session = common.Session()
  steps = common.num_steps(DEFAULT_STEPS)
  seeds = common.seeds(DEFAULT_SEEDS)
  names = common.losses_of(losses.LOSSES)
  results = {name: [] for name in names}
  untrained = []
  for seed in seeds:  # Seed-major: every loss has a seed before the next.
    for name in names:
      config = common.make_config(run_overrides(name, seed, steps))
      workdir = common.workdir_of(QUESTION, f"{name}_seed{seed}")
      records = common.train(config, workdir)
      results[name].append(selected_test_metrics(workdir, records))
    untrained.append(common.untrained_test_metrics(config))
  rows = [
    [
      "untrained network",
      *(common.mean_std([u[k] for u in untrained]) for k in COLUMNS),
      "-",
    ]
  ]
  for name in names:
    rows.append(
      [
        name,
        *(common.mean_std([r[k] for r in results[name]]) for k in COLUMNS),
        ", ".join(str(r["step"]) for r in results[name]),
      ]
    )
  table = common.markdown_table(
    ["loss", *COLUMNS.values(), "selected step per seed"], rows
  )
  plots.seed_bars(
    results,
    untrained,
    os.path.join(common.OUT.value, "losses.png"),
    columns=COLUMNS,
    title="FMNIST-ZS, checkpoint chosen on validation classes",
  )
  what = (
    f"Each loss trained {steps} steps (batch 64, Adam 1e-3, proxies x10) on "
    f"training classes 0-2, seeds {', '.join(map(str, seeds))}; validation "
    f"classes {', '.join(VAL_CLASSES.value)} evaluated every "
    f"{SELECT_EVERY.value} steps (MAP@R chooses the checkpoint); the chosen "
    f"checkpoint is evaluated once on test classes 5-9. "
    f"{common.describe_eval()} Proxy losses: random batches, their config "
    "defaults (Proxy-NCA softmax form, scale 16; proxy ranking margin 0.2; "
    "Proxy-Anchor alpha 32, delta 0.1). Data-point baselines: 32 images of "
    "each of 2 classes per batch, margins and scales from "
    "configs/fashion_mnist.py, not tuned. Mean ± sample std over seeds; the "
    "untrained row is the same network before any step."
  )
  common.write_results(
    common.OUT.value,
    "RQ4: zero-shot quality of every loss on FMNIST-ZS",
    [
      common.command_line(),
      what,
      table,
      "![losses](losses.png)",
      session.describe(),
    ],
  )


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
