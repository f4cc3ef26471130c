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
"""The train state: what a run optimises, checkpoints and resumes.

``params`` holds the network's parameters and the proxies (a (C, D) float32
array, one row per training class for static assignment) side by side, so
one optimiser, one sharding rule and one checkpoint cover both.
"""

import functools
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from proxy_nca_jax import input_pipeline, losses, parallel
from proxy_nca_jax import proxies as proxies_lib

# Fashion-MNIST images; datasets of other shapes come with their builders.
IMAGE_SHAPE = (28, 28, 1)


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs.

  Attributes:
    step: int32 scalar, number of steps taken.
    params: {'model': network parameters, 'proxies': (C, D) float32}.
    batch_stats: BatchNorm running statistics.
    opt_state: optimiser state for ``params``.
  """

  step: jax.Array
  params: dict[str, Any]
  batch_stats: dict[str, Any]
  opt_state: optax.OptState


def num_proxies(config: ml_collections.ConfigDict) -> int:
  """The number of proxies of a run: ``proxies.num_proxies`` or one a class.

  Raises:
    ValueError: ``proxies.num_proxies`` is not positive, or differs from the
      number of training classes where the loss assigns proxies statically
      or the proxies start at the class means.
  """
  classes = input_pipeline.num_classes(config.input, "train")
  requested = config.proxies.num_proxies
  if requested is None:
    return classes
  if requested < 1:
    raise ValueError(
      f"proxies.num_proxies={requested} must be positive (None: one per "
      "training class)."
    )
  if requested != classes:
    if losses.uses_static_assignment(config.loss):
      raise ValueError(
        f"proxies.num_proxies={requested} but there are {classes} training "
        f"classes, and loss.name={config.loss.name!r} with static "
        "assignment needs one proxy per class: set "
        "--config.loss.assignment=dynamic (proxy_nca, proxy_ranking) or "
        "leave proxies.num_proxies unset."
      )
    if config.proxies.init == "class_means":
      raise ValueError(
        f"proxies.init='class_means' places one proxy at each of the "
        f"{classes} class means, but proxies.num_proxies={requested}: use "
        "--config.proxies.init=normal or leave proxies.num_proxies unset."
      )
  return requested


def run_signature(
  config: ml_collections.ConfigDict, num_proxies: int
) -> dict[str, Any]:
  """What a checkpoint must match to be restored into this run."""
  return {
    "model": config.model.name,
    "embedding_dim": config.model.embedding_dim,
    "widths": list(config.model.widths),
    "pooling": config.model.pooling,
    "layer_norm": config.model.layer_norm,
    "num_proxies": num_proxies,
    "optimizer": config.optimizer.name,
  }


def init_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  key: jax.Array,
  sample_images: jax.Array,
  num_proxies: int,
  proxy_init_scale: float,
) -> TrainState:
  """Initialises network, proxies and optimiser state (pure; jit-able)."""
  model_key, proxy_key = jax.random.split(key)
  variables = model.init(model_key, sample_images, train=False)
  proxies = proxies_lib.init_proxies(
    proxy_key,
    num_proxies,
    model.embedding_dim,
    scale=proxy_init_scale,
  )
  params = {"model": variables["params"], "proxies": proxies}
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=variables["batch_stats"],
    opt_state=tx.init(params),
  )


def create_state(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
  num_proxies: int,
) -> TrainState:
  """A freshly initialised state, replicated over ``mesh``."""
  init = jax.jit(
    functools.partial(
      init_state,
      model,
      tx,
      sample_images=jnp.zeros((1, *IMAGE_SHAPE), jnp.float32),
      num_proxies=num_proxies,
      proxy_init_scale=config.proxies.init_scale,
    ),
    out_shardings=parallel.replicated(mesh),
  )
  return init(jax.random.key(config.seed))


def inference_variables(state: TrainState) -> dict[str, Any]:
  """The network's variables in the form ``model.apply`` takes."""
  return {"params": state.params["model"], "batch_stats": state.batch_stats}
