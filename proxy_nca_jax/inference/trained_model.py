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
"""A trained model is its config and its weights: loading a run to use it.

`load(workdir)` reads what a training run wrote and nothing else:

- ``config.json``: the run's config (older configs get today's defaults for
  fields they lack), from which ``models.create_model`` builds the network;
- ``model.json``: what the network needs beyond its config, written when
  training starts (`write_model_record`): the input shape and the number of
  proxies. Workdirs of older runs lack it; then the input shape comes from
  the config (``catalog``; no dataset is read) and the proxies from the
  checkpoint's signature;
- the checkpoint's network parameters and BatchNorm statistics, restored
  alone (``checkpointing.restore_network``): no optimiser, no proxies, no
  loss, no dataset builder.

So a run exports, indexes and searches after its dataset has moved or gone;
evaluating it needs the data, of course.
"""

import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from proxy_nca_jax import (
  checkpointing,
  config_defaults,
  errors,
  models,
  url_files,
)
from proxy_nca_jax.data import catalog

CONFIG_FILE = "config.json"
MODEL_FILE = "model.json"
CHECKPOINTS = "checkpoints"
# config.json's key for the accepted config changes (training's record,
# training/config_changes.py): not a config field.
SEGMENTS_KEY = "_segments"


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """A trained network, ready for ``model.apply(variables, x, train=False)``.

  Attributes:
    config: the run's config.
    model: the network (``models.create_model(config.model)``).
    variables: ``{'params': ..., 'batch_stats': ...}``, host arrays.
    input_shape: (H, W, C) of the network's input images.
    num_proxies: C, the proxies the run trained.
    signature: the checkpoint's run signature (``train_state.run_signature``
      of the run that wrote it).
    step: the checkpoint's training step.
    workdir: the run's absolute workdir (or URL).
  """

  config: ml_collections.ConfigDict
  model: nn.Module
  variables: dict[str, Any]
  input_shape: tuple[int, int, int]
  num_proxies: int
  signature: dict[str, Any]
  step: int
  workdir: str


def absolute(workdir: str) -> str:
  """Local paths made absolute (orbax needs it); URLs (gs://...) kept."""
  return workdir if url_files.is_url(workdir) else os.path.abspath(workdir)


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run saved in ``workdir``, defaults added.

  Raises:
    errors.MissingFileError: ``workdir`` has no config.json.
    errors.InvalidInputError: it is not valid JSON (edited or cut short).
  """
  return read_config_and_segments(workdir)[0]


def read_config_and_segments(
  workdir: str,
) -> tuple[ml_collections.ConfigDict, list[dict[str, Any]]]:
  """`read_config`, and the run's segments (training/config_changes.py)
  as the file records them, from one read of config.json."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not url_files.exists(path):
    raise errors.MissingFileError(
      f"{path} not found: {workdir} is not the workdir of a training run "
      "(python -m proxy_nca_jax.train --workdir=...)."
    )
  with url_files.open(path) as f:
    text = f.read()
  try:
    saved = json.loads(text, object_hook=_with_tuples)
  except json.JSONDecodeError as error:
    raise errors.InvalidInputError(
      f"{path} is not the JSON a training run writes ({error}): restore "
      "it, or rerun the training command, which writes it again."
    ) from None
  saved.pop(SEGMENTS_KEY, None)
  # The segments as written (their lists stay lists).
  segments = json.loads(text).get(SEGMENTS_KEY, [])
  config = config_defaults.with_defaults(ml_collections.ConfigDict(saved))
  return config, segments


def _with_tuples(record: dict) -> dict:
  # JSON has only lists; configs hold sequences as tuples (class ids, ks).
  return {k: tuple(v) if isinstance(v, list) else v for k, v in record.items()}


def config_input_shape(
  input_config: ml_collections.ConfigDict,
) -> tuple[int, int, int]:
  """(H, W, C) of the network's input under ``input_config`` (no data)."""
  return tuple(catalog.traits(input_config.dataset).shape(input_config))


def write_model_record(
  workdir: str, config: ml_collections.ConfigDict, num_proxies: int
) -> None:
  """Writes ``model.json``: what loading the network needs beyond config."""
  record = {
    "model": config.model.name,
    "embedding_dim": config.model.embedding_dim,
    "input_shape": list(config_input_shape(config.input)),
    "num_proxies": num_proxies,
  }
  url_files.write_text(
    os.path.join(workdir, MODEL_FILE), json.dumps(record, indent=1) + "\n"
  )


def _model_record(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, MODEL_FILE)
  if not url_files.exists(path):
    return None
  with url_files.open(path) as f:
    return json.load(f)


def load(workdir: str, step: int | None = None) -> TrainedModel:
  """Loads a trained run's network: config + parameters + BN statistics.

  Args:
    workdir: the workdir of a training run.
    step: the checkpoint to load (default: the newest).

  Returns:
    The `TrainedModel`.

  Raises:
    errors.MissingFileError: no config, or no (such) checkpoint.
    errors.InvalidInputError: the files disagree with each other (a
      ``model.json`` or ``config.json`` that does not describe the
      checkpoint).
  """
  workdir = absolute(workdir)
  config = read_config(workdir)
  model = models.create_model(config.model)
  input_shape = config_input_shape(config.input)
  record = _model_record(workdir)
  if record is not None and tuple(record["input_shape"]) != input_shape:
    raise errors.InvalidInputError(
      f"{workdir}/{MODEL_FILE} says the network takes {record['input_shape']}"
      f" images, {CONFIG_FILE} {list(input_shape)}: one of them was edited; "
      "restore the files the training run wrote."
    )
  abstract = jax.eval_shape(
    lambda: model.init(
      jax.random.key(0), jnp.zeros((1, *input_shape)), train=False
    )
  )
  variables, signature, step = checkpointing.restore_network(
    os.path.join(workdir, CHECKPOINTS), step, abstract
  )
  num_proxies = signature["num_proxies"]
  if record is not None and record["num_proxies"] != num_proxies:
    raise errors.InvalidInputError(
      f"{workdir}/{MODEL_FILE} says {record['num_proxies']} proxies, the "
      f"checkpoint of step {step} {num_proxies}: restore the files the "
      "training run wrote."
    )
  _check_signature(config, signature, workdir, step)
  return TrainedModel(
    config=config,
    model=model,
    variables=variables,
    input_shape=input_shape,
    num_proxies=num_proxies,
    signature=signature,
    step=step,
    workdir=workdir,
  )


def network_signature(model_config: ml_collections.ConfigDict) -> dict:
  """The fields of a checkpoint's run signature that fix the network's
  variables (the rest of ``train_state.run_signature`` is the training's);
  a ViT's also those of its ``model.vit`` options that fix its variables or
  what it reads out (not ``drop_path``, which acts in training only)."""
  signature = {
    "model": model_config.name,
    "embedding_dim": model_config.embedding_dim,
    "widths": list(model_config.widths),
    "pooling": model_config.pooling,
    "layer_norm": model_config.layer_norm,
    "frozen_bn": model_config.frozen_bn,
  }
  if model_config.name in models.vit.MODELS:
    signature["vit"] = {
      field: model_config.vit[field] for field in models.vit.NETWORK_OPTIONS
    }
  return signature


def _check_signature(
  config: ml_collections.ConfigDict,
  signature: dict[str, Any],
  workdir: str,
  step: int,
) -> None:
  """Refuses a config.json whose network is not the checkpoint's."""
  differences = {
    key: (signature.get(key), value)
    for key, value in network_signature(config.model).items()
    if signature.get(key) != value
  }
  if differences:
    raise errors.InvalidInputError(
      f"The checkpoint of step {step} in {workdir} was written by another "
      f"network than {CONFIG_FILE} describes (checkpoint vs config: "
      f"{differences}): restore the files the training run wrote."
    )
