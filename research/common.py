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
"""Run-and-collect machinery shared by the research questions.

Every research question trains runs of one config file (``--config``,
default ``configs/fashion_mnist.py``, FMNIST-ZS; RQ2 also runs on
``configs/glyphs.py``) plus named overrides, through
``trainer.train_and_evaluate`` (the same loop, checkpoints and
``metrics.jsonl`` as ``python -m proxy_nca_jax.train``), and reads its
numbers back from the workdirs. Evaluation is reduced for the CPU
budget (``--max_eval_examples``, ``--kmeans_restarts``); ``describe_runs``
records exactly what ran in each ``results.md``.

Each finished run is also recorded beside the results, in
``OUT/runs/<question>/<run>.json`` (its config and metrics rows, a few
kilobytes): committed with ``results.md``, the record lets a later command,
on another machine or after the workdirs are gone, reuse the run instead of
training it again, so a campaign of many runs can span several sessions.
"""

import copy
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from proxy_nca_jax import (
  checkpointing,
  config_defaults,
  parallel,
  quiet_logs,
)
from proxy_nca_jax import losses as losses_lib
from proxy_nca_jax.inference import (
  embedding,
  split_embedding,
  split_evaluation,
  trained_model,
)
from proxy_nca_jax.training import (
  metric_writer,
  proxy_init,
  setup,
  train_state,
  trainer,
  workdirs,
)

OUT = flags.DEFINE_string(
  "out", None, "Folder for results.md and the figure (e.g. docs/rq2)."
)
WORKDIR_ROOT = flags.DEFINE_string(
  "workdir_root",
  "workdirs/research",
  "Training runs go to WORKDIR_ROOT/<question>/<run>; finished runs are "
  "reused.",
)
SEEDS = flags.DEFINE_list(
  "seeds", None, "Seeds of every setting (default: the question's)."
)
NUM_STEPS = flags.DEFINE_integer(
  "num_steps", None, "Training steps of every run (default: the question's)."
)
LOSSES = flags.DEFINE_list(
  "losses", None, "Losses compared (default: the question's)."
)
MAX_EVAL_EXAMPLES = flags.DEFINE_integer(
  "max_eval_examples", 5000, "Images per evaluated split (None: all)."
)
KMEANS_RESTARTS = flags.DEFINE_integer(
  "kmeans_restarts", 1, "k-means restarts of the NMI evaluation."
)
CONFIG = config_flags.DEFINE_config_file(
  "config",
  "configs/fashion_mnist.py",
  "Config file every run starts from (any field can be overridden, e.g. "
  "--config.input.data_dir=DIR).",
  lock_config=False,
)
EVAL_EVERY = flags.DEFINE_integer(
  "eval_every",
  50,
  "Evaluate every this many steps (rq2_convergence, slow_start; rq3_ordinal "
  "measures the rq2_convergence runs of this interval, reused if finished).",
)
TRIPLET_SAMPLES_PER_CLASS = flags.DEFINE_integer(
  "triplet_samples_per_class",
  16,
  "Images of each class in a batch of the data-point baselines (batch 64: "
  "16 gives 4 classes per batch).",
)

Overrides = Mapping[str, Any]


def seeds(default: Sequence[int]) -> list[int]:
  """--seeds, or the question's ``default``."""
  return [int(s) for s in SEEDS.value] if SEEDS.value else list(default)


def floats_of(flag: flags.FlagHolder) -> list[float]:
  """The numbers of a comma-separated list flag (--proxy_ratios=0.5,1).

  Raises:
    app.UsageError: an item is not a number.
  """
  try:
    return [float(v) for v in flag.value]
  except ValueError:
    raise app.UsageError(
      f"--{flag.name} takes numbers separated by commas (e.g. 0.5,1), not "
      f"{','.join(flag.value)!r}."
    ) from None


def num_steps(default: int) -> int:
  """--num_steps, or the question's ``default``."""
  return NUM_STEPS.value or default


def losses_of(default: Sequence[str]) -> list[str]:
  """--losses, or the question's ``default``."""
  return list(LOSSES.value) if LOSSES.value else list(default)


def convergence_overrides(
  loss: str, seed: int, steps: int, eval_every: int
) -> dict[str, Any]:
  """A run evaluated on the test classes every ``eval_every`` steps.

  Proxy losses get plain random batches (all they need); the data-point
  baselines class-balanced ones (what in-batch mining needs):
  ``--triplet_samples_per_class`` images of each class.
  """
  overrides = {
    "seed": seed,
    "loss.name": loss,
    "schedule.num_steps": steps,
    "evals.every_steps": eval_every,
    "log_every_steps": eval_every,
    "ckpt.every_steps": steps,
  }
  if loss not in losses_lib.PROXY_LOSSES:
    overrides["input.samples_per_class"] = TRIPLET_SAMPLES_PER_CLASS.value
  return overrides


def make_config(overrides: Overrides) -> ml_collections.ConfigDict:
  """``--config`` with the reduced evaluation and ``overrides``.

  Args:
    overrides: {'section.field': value}, e.g. {'loss.name': 'nca'}.

  Returns:
    A locked config.
  """
  config = copy.deepcopy(CONFIG.value)
  base = {
    "input.max_eval_examples": MAX_EVAL_EXAMPLES.value,
    "evals.kmeans_restarts": KMEANS_RESTARTS.value,
    # Figures are not results; the questions draw their own.
    "report.at_end": False,
  }
  with config.unlocked():
    for key, value in {**base, **overrides}.items():
      section, _, field = key.rpartition(".")
      node = config[section] if section else config
      if field not in node:
        raise ValueError(f"Unknown config field {key!r}.")
      node[field] = value
  config.lock()
  return config


def workdir_of(question: str, run: str) -> str:
  return os.path.join(WORKDIR_ROOT.value, question, run)


def _finished(config: ml_collections.ConfigDict, workdir: str) -> bool:
  """Whether ``workdir`` holds a finished run of exactly ``config``."""
  path = os.path.join(workdir, trained_model.CONFIG_FILE)
  if not os.path.exists(path):
    return False
  with open(path) as f:
    same = f.read() == config.to_json(indent=2)
  return same and config.schedule.num_steps in checkpoint_steps(workdir)


def record_path(workdir: str) -> str:
  """Where the finished run of ``workdir`` is recorded: OUT/runs/, then its
  path under WORKDIR_ROOT (OUT/runs/rq5/static_pclasses_normal_seed0.json)."""
  run = os.path.relpath(
    trained_model.absolute(workdir), trained_model.absolute(WORKDIR_ROOT.value)
  )
  return os.path.join(OUT.value, "runs", run + ".json")


def beside_record(workdir: str, name: str) -> str:
  """The path of a file ``name`` kept beside the run's record."""
  return f"{record_path(workdir).removesuffix('.json')}_{name}.json"


def has_checkpoint(workdir: str, step: int) -> bool:
  """Whether ``workdir`` exists and holds a checkpoint of ``step``."""
  return os.path.isdir(workdir) and step in checkpoint_steps(workdir)


# (section, field) of the config whose value changes no recorded number,
# so a record answers a config that differs from it there: the retrieval
# metrics are exact whatever the size of the similarity tiles
# (tests/evaluation/evaluation_test.py checks identical results across
# sizes), which only sets how fast the evaluation runs.
_NO_EFFECT_FIELDS = (("evals", "block_size"),)


def _compared(config: ml_collections.ConfigDict) -> dict:
  """``config`` as plain JSON without `_NO_EFFECT_FIELDS`."""
  values = json.loads(config.to_json())
  for section, field in _NO_EFFECT_FIELDS:
    values.get(section, {}).pop(field, None)
  return values


def _recorded(config: ml_collections.ConfigDict, path: str) -> list | None:
  """The metrics rows recorded at ``path`` for ``config``, if any: a run of
  the same config up to `_NO_EFFECT_FIELDS`.

  A record written before some of the schema's optional fields existed
  (``config_defaults.OPTIONAL_FIELDS``) is completed with their defaults
  first, the behaviour from before them: the run answers a config that has
  those defaults, not one with another value.
  """
  if not os.path.exists(path):
    return None
  with open(path) as f:
    record = json.load(f)
  completed = config_defaults.with_defaults(
    ml_collections.ConfigDict(record["config"])
  )
  same = _compared(completed) == _compared(config)
  return record["metrics"] if same else None


def recorded_run(
  config: ml_collections.ConfigDict, workdir: str
) -> list[dict] | None:
  """The metrics rows of the run of ``config`` in ``workdir`` recorded under
  --out (``record_path``), or None; never trains."""
  return _recorded(config, record_path(trained_model.absolute(workdir)))


def train(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  needs_checkpoint: bool = False,
) -> list[dict]:
  """Trains (or resumes) a run; returns its metrics.jsonl rows.

  A finished run of the same config is reused as it is (not even its last
  evaluation is repeated): its record (``record_path``) if there is one,
  unless the caller goes on to read the run's checkpoints, else its workdir.
  A run trained or found finished here is recorded.
  """
  workdir = trained_model.absolute(workdir)
  path = record_path(workdir)
  records = None if needs_checkpoint else _recorded(config, path)
  if records is not None:
    logging.info("Reusing the run recorded in %s", path)
    return records
  if _finished(config, workdir):
    logging.info("Reusing the finished run in %s", workdir)
  else:
    logging.info("Run %s", workdir)
    trainer.train_and_evaluate(config, workdir)
  records = metric_writer.read_metrics(workdir)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(
      {"config": json.loads(config.to_json()), "metrics": records}, f, indent=1
    )
  return records


def measured_run(
  config: ml_collections.ConfigDict,
  workdir: str,
  name: str,
  measure: Callable[[ml_collections.ConfigDict, Any, Any], dict],
) -> dict:
  """``measure(config, model, state)`` of a run's last checkpoint, kept
  beside its record (``beside_record``) and read back from
  there; the run is trained again only if the value is not kept and the
  workdir is gone."""

  def compute() -> dict:
    if not has_checkpoint(workdir, config.schedule.num_steps):
      train(config, workdir, needs_checkpoint=True)
    restored, model, state = restore(workdir, config.schedule.num_steps)
    return measure(restored, model, state)

  return cached_json(beside_record(workdir, name), compute)


def measured_start(
  config: ml_collections.ConfigDict,
  workdir: str,
  name: str,
  measure: Callable[[ml_collections.ConfigDict, Any, Any], dict],
) -> dict:
  """``measure(config, model, state)`` of the state a run starts from
  (``initial_state``), kept beside its record as ``{name}_step0``."""
  return cached_json(
    beside_record(workdir, f"{name}_step0"),
    lambda: measure(config, *initial_state(config)),
  )


def eval_curve(
  records: Iterable[Mapping[str, float]], key: str
) -> dict[int, float]:
  """{step: value} of one logged metric, e.g. 'test/map@r'."""
  return {int(r["step"]): r[key] for r in records if key in r}


def training_seconds(
  records: Sequence[Mapping[str, float]],
) -> dict[int, float]:
  """Cumulative training wall time (evaluation excluded) at each logged step.

  The trainer logs ``steps_per_sec`` over each logging interval, with the
  clock restarted after every evaluation; summing interval / rate gives the
  time spent in training steps (input included) up to each logged step.
  """
  seconds, last, total = {0: 0.0}, 0, 0.0
  for record in sorted(records, key=lambda r: r["step"]):
    if "steps_per_sec" in record:
      step = int(record["step"])
      total += (step - last) / record["steps_per_sec"]
      seconds[step], last = total, step
  return seconds


def restore(workdir: str, step: int | None = None):
  """(config, model, state) of a run's checkpoint at ``step`` (or newest)."""
  return workdirs.restore_train_state(workdir, step=step)


def checkpoint_steps(workdir: str) -> list[int]:
  """The steps of the checkpoints a run kept."""
  ckpt = checkpointing.Checkpointer(
    os.path.join(trained_model.absolute(workdir), "checkpoints"),
    every_steps=0,
    keep=1,
  )
  try:
    return ckpt.all_steps()
  finally:
    ckpt.close()


def evaluate_state(config, model, state, split: str) -> dict[str, float]:
  """Retrieval and clustering metrics of ``state`` on an eval ``split``."""
  mesh = parallel.create_mesh()
  state = jax.device_put(state, parallel.replicated(mesh))
  return split_evaluation.evaluate_split(
    config,
    embedding.make_embed_fn(model, mesh),
    train_state.inference_variables(state),
    mesh,
    split,
  )


def embed_split(
  config, model, state, split: str
) -> tuple[np.ndarray, np.ndarray]:
  """(unit embeddings (N, D), original class ids (N,)) of an eval split."""
  mesh = parallel.create_mesh()
  state = jax.device_put(state, parallel.replicated(mesh))
  embedded = split_embedding.embed_split(
    embedding.make_embed_fn(model, mesh),
    train_state.inference_variables(state),
    config.input,
    split,
    mesh,
  )
  return embedded.embeddings, embedded.labels


def cached_json(path: str, compute) -> dict:
  """``compute()``, stored at ``path`` the first time and read back after."""
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  value = compute()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(value, f, indent=1)
  return value


def untrained_test_metrics(config: ml_collections.ConfigDict) -> dict:
  """Test-class metrics of the network a run of ``config`` starts from.

  Kept per seed beside the run records (OUT/runs/untrained/; the network's
  initialisation depends only on the seed and the model).
  """
  name = (
    f"{config.input.dataset}_seed{config.seed}"
    f"_eval{config.input.max_eval_examples}"
    f"_kmeans{config.evals.kmeans_restarts}_test.json"
  )
  path = os.path.join(OUT.value, "runs", "untrained", name)
  return cached_json(
    path, lambda: evaluate_state(config, *initial_state(config), "test")
  )


def initial_state(config: ml_collections.ConfigDict):
  """(model, state) exactly as a run of ``config`` starts
  (``proxy_init.starting_state``: class-mean proxies when configured)."""
  parts = setup.assemble(config)
  state = parts.initial_state()
  return parts.model, proxy_init.starting_state(
    parts, state, parts.state_shardings(state)
  )


def mean_std(values: Sequence[float], digits: int = 3) -> str:
  """'m ± s' (sample standard deviation, ddof=1) of per-seed values."""
  values = np.asarray(values, np.float64)
  if values.size < 2:
    return f"{values.mean():.{digits}f}"
  return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


class Session:
  """Times a research command and describes the machine it ran on; its log
  shows our progress and every warning, not the libraries' routine chatter
  (quiet_logs)."""

  def __init__(self):
    quiet_logs.quiet_libraries()
    os.makedirs(OUT.value, exist_ok=True)
    self.start = time.time()
    self.load_start = os.getloadavg()

  def describe(self) -> str:
    minutes = (time.time() - self.start) / 60
    load_end = os.getloadavg()
    return (
      f"Ran {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on "
      f"{platform.machine()} with {os.cpu_count()} CPU cores "
      f"({jax.device_count()} JAX device(s), {jax.default_backend()}), "
      f"{minutes:.1f} min wall in this command (reused finished runs are "
      f"not retrained); load average (1 min) {self.load_start[0]:.1f} at "
      f"the start and {load_end[0]:.1f} at the end, the machine shared with "
      "other jobs."
    )


def command_line() -> str:
  """'Command: `python -m <module> <flags>`' as this process was started."""
  module = sys.modules["__main__"].__spec__.name
  return f"Command: `python -m {module} {' '.join(sys.argv[1:])}`"


def dataset_title() -> str:
  """The benchmark ``--config`` trains on, e.g. 'FMNIST-ZS'."""
  dataset = CONFIG.value.input.dataset
  return {"fashion_mnist_idx": "FMNIST-ZS", "glyphs": "GLYPHS-ZS"}.get(
    dataset, dataset
  )


def describe_eval() -> str:
  return (
    f"Evaluation on at most {MAX_EVAL_EXAMPLES.value} images per split "
    f"(the first of the split's fixed order), NMI with "
    f"{KMEANS_RESTARTS.value} k-means restart(s)."
  )


def write_results(out: str, title: str, sections: Sequence[str]) -> str:
  """Writes OUT/results.md: a title, then the sections, blank-line apart."""
  path = os.path.join(out, "results.md")
  with open(path, "w") as f:
    f.write(f"# {title}\n\n" + "\n\n".join(s.strip() for s in sections) + "\n")
  logging.info("Wrote %s", path)
  return path
