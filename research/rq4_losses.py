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
"""RQ4, zero-shot quality of every loss, settings and checkpoint chosen on
validation classes.

Every loss of ``losses.LOSSES``, and Proxy-NCA in both forms (``proxy_nca``
is the softmax form, ``proxy_nca_paper`` Eq. 4 without the positive in the
denominator), trains with some training classes held out as validation
classes (``--val_classes``, default the config's ``input.val_classes``, else
3 and 4: FMNIST-ZS). The runs are evaluated on the validation classes every
``--select_every`` steps, the checkpoint with the best validation MAP@R is
kept, and only that checkpoint is evaluated on the test classes. The test
classes never choose anything.

With ``--search_steps`` > 0 each loss first gets the same small search on
the validation classes (seed 0, ``--search_steps`` steps each): its own
parameter (``SEARCHED``; for the softmax losses the logits' scale) at half,
one and twice the config's value, then, for the proxy losses, the proxies'
learning-rate multiplier at a third, one and three times the config's, with
the parameter chosen. Each value is scored by its best validation MAP@R;
another value replaces the config's only if it scores more than
``--search_margin`` above it (one seed of a short run: smaller differences
are noise), the best such value (ties: the smaller). The seeds then run
with the chosen settings.

``--losses`` (default: every run of ``RUNS``) names the losses to run, in
order: each loss's search and seeds finish before the next loss starts, and
results.md is written again after each. It shows every loss recorded under
--out (runs are reused from their records, never retrained) and, when
``--losses`` is a subset, a table and figures of those losses first, with a
paragraph on where Proxy-NCA stands among them (rq4_report.py).

  python -m research.rq4_losses --out=docs/rq4
  python -m research.rq4_losses --out=docs/glyphs_rq4 \
      --config=configs/glyphs.py --num_steps=2000 --search_steps=500 \
      --select_every=250 --triplet_samples_per_class=8 \
      --max_eval_examples=10000
  # Issue 32: the margin/softmax family against Proxy-NCA and the two best
  # pair losses, on the runs above.
  LOSSES=proxy_nca_paper,proxy_anchor,normalized_softmax,cosface,arcface
  LOSSES=$LOSSES,subcenter_arcface,soft_triple,npairs,triplet_semihard
  python -m research.rq4_losses --out=docs/glyphs_rq4 \
      --config=configs/glyphs.py --num_steps=2000 --search_steps=500 \
      --select_every=250 --triplet_samples_per_class=8 \
      --max_eval_examples=10000 --seeds=0,1,2 --losses=$LOSSES
"""

import os
from collections.abc import Mapping
from typing import Any

from absl import app, flags

from proxy_nca_jax import losses
from proxy_nca_jax.data import class_splits
from research import common, rq4_report, variants

SELECT_EVERY = flags.DEFINE_integer(
  "select_every", 50, "Evaluate the validation classes every this many steps."
)
VAL_CLASSES = flags.DEFINE_list(
  "val_classes",
  None,
  "Training classes held out for selection (default: the config's "
  "input.val_classes, else 3,4).",
)
SEARCH_MARGIN = flags.DEFINE_float(
  "search_margin",
  0.01,
  "Validation MAP@R by which a searched value must beat the config's to "
  "replace it.",
)
SEARCH_STEPS = flags.DEFINE_integer(
  "search_steps",
  0,
  "Steps of each search run on the validation classes (seed 0); 0 keeps "
  "every loss's config settings.",
)

QUESTION = "rq4"
DEFAULT_STEPS = 150
DEFAULT_SEEDS = (0, 1, 2)
# The runs: name -> (loss.name, config changes).
RUNS = {
  "proxy_nca": ("proxy_nca", {"loss.form": "softmax"}),
  "proxy_nca_paper": ("proxy_nca", {"loss.form": "paper"}),
  **{name: (name, {}) for name in losses.LOSSES if name != "proxy_nca"},
}
# The parameter each run's search varies first.
SEARCHED = {
  "proxy_nca": "loss.scale",
  "proxy_nca_paper": "loss.scale",
  "proxy_ranking": "loss.margin",
  "proxy_anchor": "loss.proxy_anchor_alpha",
  "triplet_all": "loss.margin",
  "triplet_semihard": "loss.margin",
  "triplet_batch_hard": "loss.margin",
  "lifted_structure": "loss.lifted_margin",
  "npairs": "loss.scale",
  "contrastive": "loss.contrastive_margin",
  "nca": "loss.scale",
  # The softmax losses over class weights: the logits' scale, as Proxy-NCA's
  # scale and Proxy-Anchor's alpha (normalized softmax's scale is 1 / T).
  "normalized_softmax": "loss.softmax_temperature",
  "cosface": "loss.cosine_scale",
  "arcface": "loss.cosine_scale",
  "subcenter_arcface": "loss.cosine_scale",
  "dynamic_arcface": "loss.cosine_scale",
  "soft_triple": "loss.soft_triple_la",
}
PROXY_LR = "optimizer.proxy_lr_mult"
# Multiples of the config's value tried for a searched field.
FACTORS = {PROXY_LR: (1 / 3, 1.0, 3.0)}
PARAMETER_FACTORS = (0.5, 1.0, 2.0)
KEY = variants.KEY  # Validation MAP@R.


class NotRecordedError(Exception):
  """A run has no record under --out (a read-only look, ``run_records``)."""


def searched_fields(name: str) -> list[str]:
  """The fields the search of run ``name`` varies, in order."""
  loss = RUNS[name][0]
  return [SEARCHED[name]] + ([PROXY_LR] if loss in losses.PROXY_LOSSES else [])


def candidates(field: str, default: float) -> list[float]:
  """The values tried for ``field`` around its config value, config's first
  (it wins ties)."""
  factors = FACTORS.get(field, PARAMETER_FACTORS)
  values = [default * f for f in factors]
  return [default] + sorted(v for v in values if v != default)


def best_value(scores: Mapping[float, float], margin: float) -> float:
  """The first value of ``scores`` (``candidates`` puts the config's value
  first) unless another scores more than ``margin`` above it; then the best
  of those (ties: the earlier)."""
  default = next(iter(scores))
  best = max(scores, key=lambda v: scores[v])
  return best if scores[best] - scores[default] > margin else default


def field_value(config, field: str) -> Any:
  section, _, name = field.rpartition(".")
  return config[section][name]


def settings_name(settings: Mapping[str, float]) -> str:
  """A workdir-safe name of the searched settings, e.g. 'scale=8,lr=100'."""
  return ",".join(
    f"{field.rpartition('.')[2]}={value:g}"
    for field, value in sorted(settings.items())
  )


def pair_samples_per_class() -> int:
  """Images of each class in a batch of the data-point baselines:
  ``--triplet_samples_per_class`` if given, else 32 (as docs/rq4 ran)."""
  if flags.FLAGS["triplet_samples_per_class"].present:
    return common.TRIPLET_SAMPLES_PER_CLASS.value
  return 32


def run_overrides(name: str, seed: int, steps: int) -> dict:
  """A validation-selected run; the baselines get class-balanced batches
  (``pair_samples_per_class``)."""
  loss, changes = RUNS[name]
  every = SELECT_EVERY.value
  overrides = {
    "seed": seed,
    "loss.name": loss,
    **changes,
    "schedule.num_steps": steps,
    "evals.split": "val",
    "evals.every_steps": every,
    "evals.at_step_zero": False,
    "ckpt.every_steps": every,
    "ckpt.keep": steps // every + 1,
    "log_every_steps": every,
  }
  if VAL_CLASSES.value:
    overrides["input.val_classes"] = tuple(int(c) for c in VAL_CLASSES.value)
  elif not common.CONFIG.value.input.val_classes:
    overrides["input.val_classes"] = (3, 4)
  if loss not in losses.PROXY_LOSSES:
    overrides["input.samples_per_class"] = pair_samples_per_class()
  return overrides


def run_records(
  config, workdir: str, *, read_only: bool, needs_checkpoint: bool = False
) -> list[dict]:
  """``common.train``; or, ``read_only``, the recorded rows, never training.

  Raises:
    NotRecordedError: ``read_only`` and the run is not recorded.
  """
  if not read_only:
    return common.train(config, workdir, needs_checkpoint=needs_checkpoint)
  records = common.recorded_run(config, workdir)
  if records is None:
    raise NotRecordedError(workdir)
  return records


def search(
  name: str, steps: int, *, read_only: bool = False
) -> tuple[dict[str, float], list[str]]:
  """The settings of run ``name`` chosen on the validation classes, and a
  line per searched field: the values tried and their scores."""
  base = run_overrides(name, 0, steps)
  config = common.make_config(base)
  settings = {f: field_value(config, f) for f in searched_fields(name)}
  lines = []
  for field in searched_fields(name):
    scores = {}
    for value in candidates(field, settings[field]):
      trial = {**settings, field: value}
      records = run_records(
        common.make_config({**base, **trial}),
        common.workdir_of(QUESTION, f"search/{name}/{settings_name(trial)}"),
        read_only=read_only,
      )
      scores[value] = max(common.eval_curve(records, KEY).values())
    settings[field] = best_value(scores, SEARCH_MARGIN.value)
    tried = ", ".join(f"{v:g}: {s:.3f}" for v, s in scores.items())
    lines.append(f"{field} {tried} -> {settings[field]:g}")
  return settings, lines


def selected_step(records: list[dict]) -> int:
  """The evaluated step with the best validation MAP@R (ties: the earliest)."""
  val = common.eval_curve(records, KEY)
  return max(sorted(val), key=lambda s: val[s])


def selected_run(
  config, workdir: str, *, read_only: bool = False
) -> tuple[list[dict], dict]:
  """A run's metrics rows and the test metrics of its checkpoint with the
  best validation MAP@R.

  A recorded run whose test metrics are kept too needs no workdir; one
  whose are not is trained again if its workdir is gone, and the step is
  chosen on the rows of that training (``read_only``: NotRecordedError).
  """
  records = run_records(config, workdir, read_only=read_only)
  step = selected_step(records)
  path = common.beside_record(workdir, f"selected_test_step{step}")
  if not os.path.exists(path) and read_only:
    raise NotRecordedError(path)
  if not os.path.exists(path) and not common.has_checkpoint(workdir, step):
    records = common.train(config, workdir, needs_checkpoint=True)
    step = selected_step(records)
    path = common.beside_record(workdir, f"selected_test_step{step}")

  def compute():
    restored, model, state = common.restore(workdir, step)
    return common.evaluate_state(restored, model, state, "test")

  return records, {"step": step, **common.cached_json(path, compute)}


def loss_outcome(
  name: str, steps: int, seeds: list[int], *, read_only: bool = False
) -> rq4_report.Outcome:
  """Run ``name``'s search (``--search_steps``), then its seeds.

  Raises:
    NotRecordedError: ``read_only`` and one of its runs is not recorded.
  """
  settings, lines = {}, []
  if SEARCH_STEPS.value:
    settings, lines = search(name, SEARCH_STEPS.value, read_only=read_only)
  chosen = settings_name(settings)
  runs, selected, seconds = [], [], []
  for seed in seeds:
    config = common.make_config(
      {**run_overrides(name, seed, steps), **settings}
    )
    workdir = common.workdir_of(
      QUESTION, "_".join(filter(None, [name, chosen, f"seed{seed}"]))
    )
    records, test = selected_run(config, workdir, read_only=read_only)
    runs.append(records)
    selected.append(test)
    trained = common.training_seconds(records)
    seconds.append(trained[max(trained)])
  return rq4_report.Outcome(
    loss=RUNS[name][0],
    settings=chosen,
    search_lines=tuple(f"- {name}: {line}" for line in lines),
    runs=runs,
    selected=selected,
    seconds=seconds,
  )


def recorded_outcomes(
  steps: int, seeds: list[int]
) -> dict[str, rq4_report.Outcome]:
  """The outcome of every run of ``RUNS`` whose runs are all recorded under
  --out, in ``RUNS`` order; nothing is trained."""
  outcomes = {}
  for name in RUNS:
    try:
      outcomes[name] = loss_outcome(name, steps, seeds, read_only=True)
    except NotRecordedError:
      continue
  return outcomes


def write_results(
  compared: list[str],
  steps: int,
  seeds: list[int],
  session: common.Session,
) -> None:
  """results.md and figures of every loss recorded, ``compared`` first."""
  outcomes = recorded_outcomes(steps, seeds)
  untrained = [
    common.untrained_test_metrics(
      common.make_config(run_overrides(compared[0], seed, steps))
    )
    for seed in seeds
  ]
  config = common.make_config(run_overrides(compared[0], seeds[0], steps))
  splits = config.input
  title = common.dataset_title()
  searched = (
    f"Settings searched on the validation classes ({SEARCH_STEPS.value} "
    "steps, seed 0; module docstring; another value replaces the config's "
    f"only if it beats it by more than {SEARCH_MARGIN.value:g}), values "
    "tried: validation MAP@R:"
    if SEARCH_STEPS.value
    else "No search: every loss used its config settings."
  )
  what = (
    f"Each loss trained {steps} steps (batch {splits.batch_size}, "
    f"{config.optimizer.name} {config.optimizer.learning_rate:g}) on "
    f"{title}'s training classes less the validation classes "
    f"{class_splits.describe(splits.val_classes)}, seeds "
    f"{', '.join(map(str, seeds))}; the validation classes evaluated every "
    f"{SELECT_EVERY.value} steps (MAP@R chooses the checkpoint); the chosen "
    "checkpoint is evaluated once on the test classes "
    f"{class_splits.describe(splits.test_classes)}. {common.describe_eval()} "
    "Proxy losses: random batches; data-point baselines: "
    f"{pair_samples_per_class()} images of each of "
    f"{splits.batch_size // pair_samples_per_class()} classes per batch. "
    "Settings not searched are the config's. "
    "Training seconds exclude evaluation (wall clock on a shared machine). "
    "Mean ± sample std over seeds; the untrained row is the same network "
    "before any step."
  )
  rq4_report.write(
    common.OUT.value,
    title,
    [common.command_line(), what],
    searched,
    outcomes,
    compared,
    untrained,
    [session.describe()],
  )


def main(argv: list[str]) -> None:
  del argv
  session = common.Session()
  steps = common.num_steps(DEFAULT_STEPS)
  seeds = common.seeds(DEFAULT_SEEDS)
  compared = common.losses_of(list(RUNS))
  if unknown := sorted(set(compared) - set(RUNS)):
    raise app.UsageError(f"Unknown losses {unknown}; use {list(RUNS)}.")
  # Loss by loss: each loss's results are complete before the next starts.
  for name in compared:
    loss_outcome(name, steps, seeds)
    write_results(compared, steps, seeds, session)


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
