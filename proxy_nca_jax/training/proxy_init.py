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
"""Proxy initialisation: where a new run's proxies start.

With ``proxies.init='class_means'`` each proxy starts at the mean embedding
of its class under the initial network (``class_mean_proxy_init``), over a
separately seeded stream of training batches, so the training stream (and
resuming it) is unaffected; ``starting_state`` puts those proxies and their
optimiser state into a freshly initialised state.
"""

from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from proxy_nca_jax import errors
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.data import pipeline
from proxy_nca_jax.training import loss_binding, setup, train_state


def embed_training_batches(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  state: train_state.TrainState,
  *,
  seed: int,
  num_batches: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(embeddings, labels) of the first ``num_batches`` global batches of the
  training stream seeded ``seed``, embedded in training mode (each batch
  normalised by its own statistics, as the loss sees it) and gathered from
  every process."""
  batches = pipeline.create_train_iterator(
    config.input,
    seed=seed,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )
  for _, local in zip(range(num_batches), batches, strict=False):
    out, _ = model.apply(
      {"params": state.params["model"], "batch_stats": state.batch_stats},
      local["image"],
      train=True,
      mutable=["batch_stats"],
    )
    yield (
      multihost_utils.process_allgather(out, tiled=True),
      multihost_utils.process_allgather(local["label"], tiled=True),
    )


def class_mean_proxy_init(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  state: train_state.TrainState,
  num_proxies: int,
  num_batches: int = 16,
) -> jax.Array:
  """Proxies at the class means of the initial network's embeddings.

  Uses a separately seeded stream of training batches, so the training
  stream (and resuming it) is unaffected.
  """
  embeddings, labels = zip(
    *embed_training_batches(
      config, model, state, seed=config.seed + 1, num_batches=num_batches
    ),
    strict=True,
  )
  return proxies_lib.class_mean_proxies(
    np.concatenate(embeddings), np.concatenate(labels), num_proxies
  )


def starting_state(
  parts: setup.RunParts, state: train_state.TrainState, shardings: Any
) -> train_state.TrainState:
  """``state`` (freshly initialised, placed by ``shardings``) as a new run
  starts from it: with its proxies at the class means, and the optimiser
  state of those, when ``proxies.init`` says so."""
  if parts.config.proxies.init != "class_means":
    return state
  if loss_binding.centers_per_class(parts.config.loss) > 1:
    raise errors.InvalidInputError(
      f"proxies.init='class_means' would start the "
      f"{loss_binding.centers_per_class(parts.config.loss)} centres of each "
      f"class of loss.name={parts.config.loss.name!r} at the same point, "
      "where they would stay; use --config.proxies.init=normal."
    )
  proxies = proxies_lib.pad_proxies(
    class_mean_proxy_init(parts.config, parts.model, state, parts.num_proxies),
    train_state.proxy_shards(parts.config, parts.mesh),
  )
  params = jax.device_put(
    {**state.params, "proxies": proxies}, shardings.params
  )
  return state.replace(
    params=params,
    opt_state=jax.jit(parts.tx.init, out_shardings=shardings.opt_state)(params),
  )
