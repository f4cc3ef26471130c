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
"""What a training run keeps in its workdir, and its whole state back.

A workdir holds ``config.json`` (the run's config) and ``model.json`` (what
loading the network needs beyond it; both read by
``inference.trained_model``), ``checkpoints/`` (orbax), ``metrics.jsonl``
and ``tensorboard/`` (metric_writer.py) and, at the end, ``results.txt``.
Files go through ``tf.io.gfile``, so a gs:// workdir works. Tools that use
a finished run's network (evaluate, export, index, search) load it with
``trained_model.load``; `restore_train_state` is for what needs the
proxies and the optimiser state too.
"""

import json
import os

import flax.linen as nn
import jax
import ml_collections
import tensorflow as tf

from proxy_nca_jax import checkpointing, errors, url_files
from proxy_nca_jax.inference import trained_model
from proxy_nca_jax.training import setup, train_state

RESULTS_FILE = "results.txt"


def check_training_workdir(workdir: str) -> str:
  """The absolute workdir of a training run, refused before anything starts.

  Raises:
    ValueError: an empty ``workdir`` (it would train into the current
      folder), a path that is a file, or a local folder (or its nearest
      existing parent) this process cannot write.
  """
  if not workdir or not workdir.strip():
    raise errors.InvalidInputError(
      "--workdir is empty: name a folder for the run's checkpoints and "
      "metrics, e.g. --workdir=workdirs/my_run."
    )
  path = trained_model.absolute(workdir)
  if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
    raise errors.InvalidInputError(
      f"--workdir={workdir} is a file, not a folder: name a new folder."
    )
  if "://" not in path:
    existing = path
    while not os.path.exists(existing):
      existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
      raise errors.InvalidInputError(
        f"--workdir={workdir}: {existing} is not writable by this user; "
        "choose a folder you can write, or fix its permissions."
      )
  return path


def save_config(
  config: ml_collections.ConfigDict,
  workdir: str,
  num_proxies: int,
  segments: list[dict] | None = None,
) -> None:
  """Writes what loading the trained model needs: the run's config to
  workdir/config.json, with the accepted config changes
  (``config_changes.segments_after``), and ``model.json``
  (``trained_model.write_model_record``)."""
  tf.io.gfile.makedirs(workdir)
  record = json.loads(config.to_json())
  if segments:
    record[trained_model.SEGMENTS_KEY] = segments
  # Through a temporary file: a kill mid-write leaves the old config.json.
  url_files.write_text(
    os.path.join(workdir, trained_model.CONFIG_FILE),
    json.dumps(record, indent=2),
  )
  trained_model.write_model_record(workdir, config, num_proxies)


def write_results(workdir: str, table: str) -> None:
  """Writes the final table of test-class metrics to workdir/results.txt."""
  with tf.io.gfile.GFile(os.path.join(workdir, RESULTS_FILE), "w") as f:
    f.write(table + "\n")


def recorded_run(workdir: str) -> tuple[dict, list[dict]] | None:
  """(the recorded config as a dict, defaults added; its segments), or None
  when ``workdir`` has no config.json."""
  try:
    config, segments = trained_model.read_config_and_segments(workdir)
  except errors.MissingFileError:
    return None
  return config.to_dict(), segments


def restore_train_state(
  workdir: str,
  mesh: jax.sharding.Mesh | None = None,
  step: int | None = None,
) -> tuple[ml_collections.ConfigDict, nn.Module, train_state.TrainState]:
  """Loads a run's whole train state (proxies and optimiser state too).

  For what needs the proxies (research on a finished run); inference loads
  the network alone (``inference.trained_model.load``).

  Args:
    workdir: the workdir of a training run.
    mesh: where to place the state (default: every device).
    step: the checkpoint to load (default: the newest).

  Returns:
    (config, model, state) of that checkpoint.

  Raises:
    FileNotFoundError: no config or no (such) checkpoint in ``workdir``.
  """
  workdir = trained_model.absolute(workdir)
  config = trained_model.read_config(workdir)
  parts = setup.assemble(config, mesh)
  directory = os.path.join(workdir, trained_model.CHECKPOINTS)
  if not tf.io.gfile.isdir(directory):
    # Checked first: opening a Checkpointer would create the folder.
    raise errors.MissingFileError(f"No checkpoint in {directory}.")
  ckpt = checkpointing.Checkpointer(
    directory, every_steps=0, keep=config.ckpt.keep
  )
  try:
    step = checkpointing.chosen_step(ckpt, step, directory)
    state = ckpt.restore(step, parts.abstract_state(), parts.signature())
  finally:
    ckpt.close()
  return config, parts.model, state
