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
r"""Trains and evaluates a Proxy-NCA model: the command-line entry point.

  python -m proxy_nca_jax.train --config=configs/fashion_mnist.py \
      --workdir=workdirs/fashion_mnist [--config.loss.scale=12 ...]

Re-running the same command with the same workdir resumes from the latest
checkpoint; a changed config that affects results (class split, loss,
optimiser, seed, ...: training/config_changes.py) is refused unless
--accept_config_change is given. For several processes (multi-host GPU, or
local tests) pass --coordinator_address, --num_processes and --process_id;
on Cloud TPU VMs and in multi-task Slurm or Open MPI jobs JAX detects them
(distributed.py states the rule). Only process 0 logs progress (the others
log warnings and errors) and writes metrics. The final table of test-class
metrics goes to stdout and to workdir/results.txt.

Exit status: 0 finished; 1 refused (one line ``error: ...``: config, data,
disk, divergence); 2 a usage error (flags, the config file); 75 stopped on
request (SIGTERM) with the current step saved: rerun to resume
(training/preemption.py).
"""

import os
import sys

import jax
import ml_collections
from absl import flags, logging
from ml_collections import config_flags

# command_line first: it quiets TensorFlow before the data modules load it.
from proxy_nca_jax import command_line, errors, evaluation, parallel
from proxy_nca_jax.data import class_splits, pipeline
from proxy_nca_jax.reports import workdir_report
from proxy_nca_jax.training import (
  distributed,
  preemption,
  trainer,
  workdirs,
)

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Config file, e.g. configs/fashion_mnist.py[:variant]."
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Folder (or gs:// URL) for checkpoints and metrics."
)
_ACCEPT_CONFIG_CHANGE = flags.DEFINE_bool(
  "accept_config_change",
  False,
  "Resume a workdir even though the config changes fields that affect "
  "results (class split, loss, optimiser, seed, ...); recorded as a new "
  "segment in config.json and the metrics.",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  None,
  "HOST:PORT of process 0 in a multi-process run (with --num_processes and "
  "--process_id); not needed on Cloud TPU VMs, Slurm or Open MPI.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "Number of processes in a multi-process run."
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "This process's index in a multi-process run."
)
_NUM_CPU_DEVICES = flags.DEFINE_integer(
  "num_cpu_devices",
  None,
  "Split the CPU into this many JAX devices (data parallelism on CPU). "
  "Default for a single process: one per core, as many as divide the train "
  "and eval batch sizes; 1 keeps one CPU device.",
)
flags.mark_flags_as_required(["config", "workdir"])


def _initialize_distribution(config: ml_collections.ConfigDict) -> None:
  """Joins the multi-process job, if any (rule in distributed.py)."""
  plan = distributed.plan(
    _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value
  )
  cpu_devices = _NUM_CPU_DEVICES.value
  if cpu_devices is None and not plan.initialize:
    # Only the CPU backend reads this; GPUs and TPUs are unaffected.
    cpu_devices = parallel.cpu_device_count(
      (config.input.batch_size, config.input.eval_batch_size),
      len(os.sched_getaffinity(0)),
    )
  if cpu_devices:
    jax.config.update("jax_num_cpu_devices", cpu_devices)
  distributed.initialize(plan)
  if jax.process_index() != 0:
    # Process 0 logs the progress of all; the others only what goes wrong.
    logging.set_verbosity(logging.WARNING)
  logging.info("%s", plan.reason)


def parse_flags(argv: list[str]) -> list[str]:
  """Parses flags; an unknown ``--config.`` field is one clear error."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as error:
    # ml_collections reports a mistyped override as a lookup error.
    detail = str(error).strip("'\"").replace("\\n", " ").replace("\\'", "'")
    command_line.fail(
      f"unknown config field {detail}. Overrides name a field of the "
      "--config file, e.g. --config.loss.scale=8.",
      command_line.USAGE_ERROR,
    )
  except flags.Error as error:
    # A value of the wrong type, a missing required flag, ...
    command_line.fail(str(error), command_line.USAGE_ERROR)


def main() -> None:
  try:
    config, workdir = _CONFIG.value, _WORKDIR.value
    config.keys()  # Loads the file (ml_collections defers it).
  except OSError as error:
    # ml_collections loads the file lazily; its message spans lines.
    reason = str(error).strip().splitlines()[-1].strip()
    command_line.fail(
      f"the --config file could not be loaded: {reason}. Name a "
      "config file, e.g. --config=configs/fashion_mnist.py.",
      command_line.USAGE_ERROR,
    )
  try:
    _initialize_distribution(config)
  except errors.Error as error:
    # Incomplete distributed flags: one line, nothing written.
    command_line.fail(str(error), command_line.USAGE_ERROR)
  try:
    results = trainer.train_and_evaluate(
      config, workdir, accept_config_change=_ACCEPT_CONFIG_CHANGE.value
    )
  except preemption.Preempted as stopped:
    logging.warning("%s", stopped)
    sys.exit(preemption.EXIT_STATUS)
  if jax.process_index() == 0 and results:
    _, segments = workdirs.recorded_run(workdir)
    table = evaluation.results_table(
      results, [segment["from_step"] for segment in segments]
    )
    workdirs.write_results(workdir, table)
    test_classes = pipeline.classes_of(config.input, "test")
    sys.stdout.write(
      f"\n{config.input.dataset}: test classes "
      f"{class_splits.describe(test_classes)} (never seen in training)\n"
      f"{table}\n"
    )
  if config.report.at_end:
    _write_report(workdir, config)


def _write_report(workdir: str, config: ml_collections.ConfigDict) -> None:
  """The evaluate command's files (reports/workdir_report.py); training
  succeeded either way."""
  try:
    result = workdir_report.evaluate_workdir(
      workdir, max_examples=config.report.max_examples
    )
  except errors.Error as error:
    logging.warning("Evaluation files not written: %s", error)
    return
  for path in result["files"]:
    logging.info("Wrote %s", path)


if __name__ == "__main__":
  command_line.run(main, flags_parser=parse_flags)
