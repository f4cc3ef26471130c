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

Proxy-NCA (the config's form and scale) on the C training classes of
``--config`` with static assignment (one proxy per class) and with dynamic
assignment (a sample's positive is its nearest proxy no other class of the
batch claims; ``losses.dynamic.dynamic_proxy_nca_loss``) with fewer, as
many and more proxies than classes: ``--proxy_ratios`` times C
(``proxies.num_proxies``). Every setting gets the same class-balanced
batches (``--triplet_samples_per_class`` images of each class) and randomly
initialised proxies; one more row starts dynamic assignment with C proxies
from the class means, as its docstring recommends. The last step is
evaluated on the test classes (nothing is selected). How the proxies
cover the training classes at the first and the last step is measured too
(``proxy_usage``, on the first ``--max_eval_examples`` training images):
how many proxies are some image's nearest, and how pure their images'
classes are; and, for dynamic assignment, the share of the anchors of the
first training batches that get a loss term at all
(``dynamic_supervision``).

  python -m research.rq5_assignment --out=docs/rq5
  python -m research.rq5_assignment --out=docs/glyphs_rq5 \
      --config=configs/glyphs.py --proxy_ratios=0.1,0.5,1,2 \
      --triplet_samples_per_class=8 --num_steps=2000 --seeds=0,1,2 \
      --max_eval_examples=10000
"""

import os

import numpy as np
from absl import app, flags

from proxy_nca_jax import evaluation
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.data import pipeline
from proxy_nca_jax.training import proxy_init
from research import common, plots

PROXY_RATIOS = flags.DEFINE_list(
  "proxy_ratios",
  ["0.6", "1", "2"],
  "Dynamic assignment's numbers of proxies, as multiples of the training "
  "classes (FMNIST-ZS's 5: 3, 5 and 10 proxies).",
)

QUESTION = "rq5"
DEFAULT_STEPS = 300
DEFAULT_SEEDS = (0, 1)
COLUMNS = {"map@r": "MAP@R", "nmi": "NMI", "recall@1": "R@1"}
# Training batches ``dynamic_supervision`` looks at.
SUPERVISION_BATCHES = 16
# name: (assignment, num_proxies or None (one per class), proxy init).
Settings = dict[str, tuple[str, int | None, str]]


def settings(num_classes: int, ratios: list[float]) -> Settings:
  """Static with one proxy per class, dynamic with ``ratios`` times as many
  proxies, and dynamic from the class means (one per class)."""
  rows = {f"static, {num_classes} proxies": ("static", None, "normal")}
  for ratio in ratios:
    n = max(1, round(ratio * num_classes))
    rows[f"dynamic, {n} proxies"] = ("dynamic", n, "normal")
  rows[f"dynamic, {num_classes} proxies, class-mean init"] = (
    "dynamic",
    None,
    "class_means",
  )
  return rows


def run_overrides(
  setting: tuple[str, int | None, str], seed: int, steps: int
) -> dict:
  assignment, num_proxies, init = setting
  return {
    "seed": seed,
    "loss.assignment": assignment,
    "proxies.num_proxies": num_proxies,
    "proxies.init": init,
    "input.samples_per_class": common.TRIPLET_SAMPLES_PER_CLASS.value,
    "schedule.num_steps": steps,
    "evals.every_steps": 0,
    "evals.at_step_zero": False,
    "ckpt.every_steps": steps,
    "log_every_steps": steps,
  }


def proxy_usage(
  embeddings: np.ndarray, class_ids: np.ndarray, proxies: np.ndarray
) -> dict[str, float]:
  """How proxies cover a set of labelled embeddings.

  Each embedding's proxy is its nearest (the largest cosine, the proxy
  dynamic assignment picks at any norms a and b).

  Args:
    embeddings: (N, D) unit embeddings.
    class_ids: (N,) their classes.
    proxies: (P, D) raw proxies.

  Returns:
    'classes': distinct classes among the embeddings; 'in_use': proxies
    that are some embedding's nearest; 'purity': the share of embeddings
    whose proxy's most frequent class is their own (1: no proxy mixes
    classes).
  """
  unit = proxies / np.linalg.norm(proxies, axis=1, keepdims=True)
  nearest = np.argmax(embeddings @ unit.T, axis=1)
  agreeing = 0
  for proxy in np.unique(nearest):
    _, counts = np.unique(class_ids[nearest == proxy], return_counts=True)
    agreeing += counts.max()
  return {
    "classes": len(np.unique(class_ids)),
    "in_use": len(np.unique(nearest)),
    "purity": agreeing / len(class_ids),
  }


def measure_usage(config, model, state) -> dict[str, float]:
  """``proxy_usage`` of a trained state on the first training images."""
  embeddings, class_ids = common.embed_split(config, model, state, "train")
  return proxy_usage(embeddings, class_ids, np.asarray(state.params["proxies"]))


def dynamic_supervision(
  config, model, state, num_batches: int = SUPERVISION_BATCHES
) -> dict[str, float]:
  """The share of anchors dynamic assignment gives a loss term
  (``proxies.supervised_anchors``) in the first ``num_batches`` batches of
  the run's training stream, embedded as the loss sees them (training
  mode). An anchor without one adds nothing to the loss or its gradient."""
  supervised = []
  for embeddings, labels in proxy_init.embed_training_batches(
    config, model, state, seed=config.seed, num_batches=num_batches
  ):
    similar, dissimilar = proxies_lib.relations_from_labels(labels)
    _, negatives = proxies_lib.dynamic_targets(
      proxies_lib.proxy_distances(embeddings, state.params["proxies"]),
      similar,
      dissimilar,
    )
    supervised.append(np.asarray(proxies_lib.supervised_anchors(negatives)))
  return {"supervised": float(np.concatenate(supervised).mean())}


def coverage(
  setting: tuple[str, int | None, str], config, workdir: str
) -> dict[str, float]:
  """``proxy_usage`` of a run's proxies at its first and last step, and,
  for dynamic assignment, ``dynamic_supervision`` at both."""
  start = common.measured_start(config, workdir, "proxy_usage", measure_usage)
  result = {
    **common.measured_run(config, workdir, "proxy_usage", measure_usage),
    "in_use_step0": start["in_use"],
  }
  if setting[0] == "dynamic":
    name = "dynamic_supervision"
    result["supervised_step0"] = common.measured_start(
      config, workdir, name, dynamic_supervision
    )["supervised"]
    result["supervised"] = common.measured_run(
      config, workdir, name, dynamic_supervision
    )["supervised"]
  return result


def run_name(setting: tuple[str, int | None, str], seed: int) -> str:
  assignment, num_proxies, init = setting
  return f"{assignment}_p{num_proxies or 'classes'}_{init}_seed{seed}"


def main(argv: list[str]) -> None:
  del argv
  session = common.Session()
  steps = common.num_steps(DEFAULT_STEPS)
  seeds = common.seeds(DEFAULT_SEEDS)
  num_classes = pipeline.num_classes(common.CONFIG.value.input, "train")
  runs = settings(num_classes, common.floats_of(PROXY_RATIOS))
  results = {setting: [] for setting in runs}
  usage = {setting: [] for setting in runs}
  untrained = []
  for seed in seeds:
    for setting, spec in runs.items():
      config = common.make_config(run_overrides(spec, seed, steps))
      workdir = common.workdir_of(QUESTION, run_name(spec, seed))
      records = common.train(config, workdir)
      final = max(common.eval_curve(records, "test/map@r"))
      results[setting].append(
        {k: common.eval_curve(records, f"test/{k}")[final] for k in COLUMNS}
      )
      usage[setting].append(coverage(spec, config, workdir))
    untrained.append(common.untrained_test_metrics(config))
  rows = [
    [
      name,
      *(common.mean_std([r[k] for r in seeds]) for k in COLUMNS),
      ", ".join(f"{r['map@r']:.3f}" for r in seeds),
    ]
    for name, seeds in [("untrained network", untrained), *results.items()]
  ]
  table = evaluation.markdown_table(
    ["setting", *COLUMNS.values(), "MAP@R per seed"], rows
  )

  def measured(setting: str, key: str) -> list[float]:
    return [u[key] for u in usage[setting] if key in u]

  def column(setting: str, key: str, digits: int = 3) -> str:
    values = measured(setting, key)
    return common.mean_std(values, digits) if values else "-"

  def per_seed(setting: str, key: str) -> str:
    """Each seed's value: these are all or nothing, a mean would hide it."""
    return ", ".join(f"{v:.2f}" for v in measured(setting, key)) or "-"

  usage_rows = [
    [
      setting,
      runs[setting][1] or num_classes,
      column(setting, "in_use_step0", 0),
      column(setting, "in_use", 0),
      column(setting, "purity"),
      per_seed(setting, "supervised_step0"),
      per_seed(setting, "supervised"),
    ]
    for setting in runs
  ]
  covered = {u["classes"] for values in usage.values() for u in values}
  usage_table = evaluation.markdown_table(
    [
      "setting",
      "proxies",
      "in use at step 0",
      f"in use at step {steps}",
      f"purity at step {steps}",
      "anchors with a loss term at step 0, per seed",
      f"at step {steps}, per seed",
    ],
    usage_rows,
  )
  usage_text = (
    "How the proxies cover the training classes (`proxy_usage`): over the "
    f"first {config.input.max_eval_examples} training images "
    f"({', '.join(map(str, sorted(covered)))} classes), each image's "
    "nearest proxy; *in use*: proxies that are some image's nearest; "
    "*purity*: the share of images whose proxy's most frequent class is "
    "their own. Anchors with a loss term (`dynamic_supervision`, dynamic "
    "assignment only): the share of the anchors of the run's first "
    f"{SUPERVISION_BATCHES} training batches, embedded in training mode, "
    "that have a negative "
    "proxy (one claimed by another class of the batch) and a free one for "
    "the positive; the others add nothing to the loss or its gradient."
  )
  plots.seed_bars(
    results,
    untrained,
    os.path.join(common.OUT.value, "assignment.png"),
    columns=COLUMNS,
    title=f"{common.dataset_title()}: proxy assignment and number of proxies",
  )
  per_class = common.TRIPLET_SAMPLES_PER_CLASS.value
  batch = config.input.batch_size
  what = (
    f"Each setting trained {steps} steps (batch {batch} = {per_class} images "
    f"of {batch // per_class} of the {num_classes} training classes, "
    f"{config.optimizer.name} {config.optimizer.learning_rate:g}, proxies "
    f"x{config.optimizer.proxy_lr_mult:g}, Proxy-NCA {config.loss.form} "
    f"form, scale {config.loss.scale:g}), seeds "
    f"{', '.join(map(str, seeds))}, and evaluated once at the last step on "
    f"the test classes. {common.describe_eval()} Mean ± sample std over "
    "seeds. Static assignment with a number of proxies other than the "
    "classes is refused by the trainer (train_state.num_proxies), so only "
    "dynamic assignment varies it."
  )
  common.write_results(
    common.OUT.value,
    "RQ5: static vs dynamic assignment, and the number of proxies, on "
    f"{common.dataset_title()}",
    [
      common.command_line(),
      what,
      table,
      usage_text,
      usage_table,
      "![assignment](assignment.png)",
      session.describe(),
    ],
  )


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
