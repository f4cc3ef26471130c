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
"""RQ5, static against dynamic proxy assignment, and the number of proxies.

Proxy-NCA (softmax form, scale 16) on FMNIST-ZS's 5 training classes with
static assignment (one proxy per class) and with dynamic assignment (a
sample's positive is its nearest proxy no other class of the batch claims;
``dynamic_losses.dynamic_proxy_nca_loss``) with fewer, as many and more
proxies than classes (``proxies.num_proxies``). Every setting gets the same
class-balanced batches (16 images of 4 classes) and randomly initialised
proxies; one more row starts dynamic assignment from the class means, as its
docstring recommends. The last step is evaluated on the test classes
(nothing is selected).

  python -m research.rq5_assignment --out=docs/rq5
"""

import os

from absl import app, flags

from research import common, plots

QUESTION = "rq5"
DEFAULT_STEPS = 300
DEFAULT_SEEDS = (0, 1)
# name: (assignment, num_proxies or None, proxy init).
SETTINGS = {
  "static, 5 proxies": ("static", None, "normal"),
  "dynamic, 3 proxies": ("dynamic", 3, "normal"),
  "dynamic, 5 proxies": ("dynamic", 5, "normal"),
  "dynamic, 10 proxies": ("dynamic", 10, "normal"),
  "dynamic, 5 proxies, class-mean init": ("dynamic", None, "class_means"),
}
COLUMNS = {"map@r": "MAP@R", "nmi": "NMI", "recall@1": "R@1"}


def run_overrides(setting: str, seed: int, steps: int) -> dict:
  assignment, num_proxies, init = SETTINGS[setting]
  return {
    "seed": seed,
    "loss.assignment": assignment,
    "proxies.num_proxies": num_proxies,
    "proxies.init": init,
    "input.samples_per_class": 16,
    "schedule.num_steps": steps,
    "evals.every_steps": 0,
    "evals.at_step_zero": False,
    "ckpt.every_steps": steps,
    "log_every_steps": steps,
  }


def run_name(setting: str, seed: int) -> str:
  assignment, num_proxies, init = SETTINGS[setting]
  return f"{assignment}_p{num_proxies or 'classes'}_{init}_seed{seed}"


def main(argv: list[str]) -> None:
  del argv
  session = common.Session()
  steps = common.num_steps(DEFAULT_STEPS)
  seeds = common.seeds(DEFAULT_SEEDS)
  results = {setting: [] for setting in SETTINGS}
  untrained = []
  for seed in seeds:
    for setting in SETTINGS:
      config = common.make_config(run_overrides(setting, seed, steps))
      workdir = common.workdir_of(QUESTION, run_name(setting, seed))
      records = common.train(config, workdir)
      final = max(common.eval_curve(records, "test/map@r"))
      results[setting].append(
        {k: common.eval_curve(records, f"test/{k}")[final] for k in COLUMNS}
      )
    untrained.append(common.untrained_test_metrics(config))
  rows = [
    [
      "untrained network",
      *(common.mean_std([u[k] for u in untrained]) for k in COLUMNS),
    ]
  ]
  rows += [
    [
      setting,
      *(common.mean_std([r[k] for r in results[setting]]) for k in COLUMNS),
    ]
    for setting in SETTINGS
  ]
  table = common.markdown_table(["setting", *COLUMNS.values()], rows)
  plots.seed_bars(
    results,
    untrained,
    os.path.join(common.OUT.value, "assignment.png"),
    columns=COLUMNS,
    title="FMNIST-ZS: proxy assignment and number of proxies",
  )
  what = (
    f"Each setting trained {steps} steps (batch 64 = 16 images of 4 of the "
    f"5 training classes, Adam 1e-3, proxies x10, Proxy-NCA softmax form, "
    f"scale 16), seeds {', '.join(map(str, seeds))}, and evaluated once at "
    f"the last step on the test classes. {common.describe_eval()} Mean ± "
    "sample std over seeds. Static assignment with a number of proxies "
    "other than the classes is refused by the trainer "
    "(train_state.num_proxies), so only dynamic assignment varies it."
  )
  common.write_results(
    common.OUT.value,
    "RQ5: static vs dynamic assignment, and the number of proxies",
    [
      common.command_line(),
      what,
      table,
      "![assignment](assignment.png)",
      session.describe(),
    ],
  )


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
