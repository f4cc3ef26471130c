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
"""What a training run keeps in its workdir, and loading it back.

A workdir holds ``config.json`` (the run's config), ``checkpoints/`` (orbax),
``metrics.jsonl`` and ``tensorboard/`` (metric_writer.py) and, at the end,
``results.txt``. Tools that work on a finished run (evaluation, embedding,
reports) need only ``--workdir``.
"""

import json
import os

import flax.linen as nn
import jax
import ml_collections
import tensorflow as tf

from proxy_nca_jax import checkpointing
from proxy_nca_jax.training import (
  config_changes,
  config_defaults,
  setup,
  train_state,
)

CONFIG_FILE = "config.json"


def absolute(workdir: str) -> str:
  """Local paths made absolute (orbax needs it); URLs (gs://...) kept."""
  return workdir if "://" in workdir else os.path.abspath(workdir)


def check_training_workdir(workdir: str) -> str:
  """The absolute workdir of a training run, refused before anything starts.

  Raises:
    ValueError: an empty ``workdir`` (it would train into the current
      folder), a path that is a file, or a local folder (or its nearest
      existing parent) this process cannot write.
  """
  if not workdir or not workdir.strip():
    raise ValueError(
      "--workdir is empty: name a folder for the run's checkpoints and "
      "metrics, e.g. --workdir=workdirs/my_run."
    )
  path = absolute(workdir)
  if tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path):
    raise ValueError(
      f"--workdir={workdir} is a file, not a folder: name a new folder."
    )
  if "://" not in path:
    existing = path
    while not os.path.exists(existing):
      existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
      raise ValueError(
        f"--workdir={workdir}: {existing} is not writable by this user; "
        "choose a folder you can write, or fix its permissions."
      )
  return path


def save_config(
  config: ml_collections.ConfigDict,
  workdir: str,
  segments: list[dict] | None = None,
) -> None:
  """Writes the run's config to workdir/config.json (read by tools), with
  the accepted config changes (``config_changes.segments_after``)."""
  tf.io.gfile.makedirs(workdir)
  record = json.loads(config.to_json())
  if segments:
    record[config_changes.SEGMENTS_KEY] = segments
  with tf.io.gfile.GFile(os.path.join(workdir, CONFIG_FILE), "w") as f:
    f.write(json.dumps(record, indent=2))


def recorded_run(workdir: str) -> tuple[dict, list[dict]] | None:
  """(the recorded config as a dict, defaults added; its segments), or None
  when ``workdir`` has no config.json."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    segments = json.load(f).get(config_changes.SEGMENTS_KEY, [])
  return load_config(workdir).to_dict(), segments


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run saved in ``workdir``."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(
      f"{path} not found: {workdir} is not the workdir of a training run "
      "(python -m proxy_nca_jax.train --workdir=...)."
    )
  with tf.io.gfile.GFile(path) as f:
    saved = json.load(f, object_hook=_with_tuples)
  saved.pop(config_changes.SEGMENTS_KEY, None)
  return config_defaults.with_defaults(ml_collections.ConfigDict(saved))


def _with_tuples(record: dict) -> dict:
  # JSON has only lists; configs hold sequences as tuples (class ids, ks).
  return {k: tuple(v) if isinstance(v, list) else v for k, v in record.items()}


def restore_trained(
  workdir: str,
  mesh: jax.sharding.Mesh | None = None,
  step: int | None = None,
) -> tuple[ml_collections.ConfigDict, nn.Module, train_state.TrainState]:
  """Loads a trained run for inference: its config, model and a state.

  Args:
    workdir: the workdir of a training run.
    mesh: where to place the state (default: every device).
    step: the checkpoint to load (default: the newest).

  Returns:
    (config, model, state) of that checkpoint.

  Raises:
    FileNotFoundError: no config or no (such) checkpoint in ``workdir``.
  """
  workdir = absolute(workdir)
  config = load_config(workdir)
  parts = setup.assemble(config, mesh)
  directory = os.path.join(workdir, "checkpoints")
  if not tf.io.gfile.isdir(directory):
    # Checked first: opening a Checkpointer would create the folder.
    raise FileNotFoundError(f"No checkpoint in {directory}.")
  ckpt = checkpointing.Checkpointer(
    directory, every_steps=0, keep=config.ckpt.keep
  )
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None or step not in ckpt.all_steps():
      raise FileNotFoundError(
        f"No checkpoint{'' if step is None else f' at step {step}'} in "
        f"{workdir}/checkpoints."
      )
    state = ckpt.restore(step, parts.abstract_state(), parts.signature())
  finally:
    ckpt.close()
  return config, parts.model, state
