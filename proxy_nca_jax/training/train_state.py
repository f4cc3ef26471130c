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
one optimiser and one checkpoint cover both.

Sharding (``config.proxies.sharding``): "replicated" holds the whole state on
every device. "sharded" splits the proxies, and the optimiser's state for
them (e.g. Adam's mu and nu), by rows over the mesh's ``data`` axis, for
millions of classes (``losses.sharded``); the rest stays replicated. Sharded
proxies are padded with zero rows to a multiple of the device count
(``num_proxy_rows``): ``params['proxies']`` is then (R, D), R >= C, in the
state and in checkpoints, and its first C rows are the proxies
(``real_proxies``).

With ``config.model.pretrained`` the backbone's variables (parameters and
BatchNorm statistics) start from converted ImageNet weights
(pretrained.py); the embedding layer and the proxies are initialised as
usual.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from proxy_nca_jax import errors, models, parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.data import pipeline
from proxy_nca_jax.inference import trained_model
from proxy_nca_jax.models import pretrained
from proxy_nca_jax.training import loss_binding

PROXY_SHARDINGS = ("replicated", "sharded")


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs.

  Attributes:
    step: int32 scalar, number of steps taken.
    params: {'model': network parameters, 'proxies': (R, D) float32}; R = C
      but for sharded proxies (padding rows, see the module docstring).
    batch_stats: BatchNorm running statistics.
    opt_state: optimiser state for ``params``.
  """

  step: jax.Array
  params: dict[str, Any]
  batch_stats: dict[str, Any]
  opt_state: optax.OptState


def proxy_sharding(config: ml_collections.ConfigDict) -> str:
  """``config.proxies.sharding``, checked."""
  sharding = config.proxies.sharding
  if sharding not in PROXY_SHARDINGS:
    raise errors.InvalidInputError(
      f"proxies.sharding must be one of {PROXY_SHARDINGS}, got {sharding!r}."
    )
  return sharding


def proxy_shards(
  config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh
) -> int:
  """How many devices the proxies' rows are split over (1: replicated)."""
  if proxy_sharding(config) == "sharded":
    return mesh.shape[parallel.DATA_AXIS]
  return 1


def num_proxy_rows(
  config: ml_collections.ConfigDict, num_proxies: int, mesh: jax.sharding.Mesh
) -> int:
  """R: C, or C padded to a multiple of the device count when sharded (of
  whole classes, for a loss with several centres a class)."""
  return proxies_lib.padded_num_proxies(
    num_proxies,
    proxy_shards(config, mesh),
    loss_binding.centers_per_class(config.loss),
  )


def real_proxies(state: TrainState, num_proxies: int) -> jax.Array:
  """The (C, D) proxies of ``state``, without the padding rows."""
  return state.params["proxies"][:num_proxies]


def state_shardings(state: Any, mesh: jax.sharding.Mesh, sharding: str) -> Any:
  """The sharding of every leaf of a (possibly abstract) state.

  Args:
    state: a TrainState of arrays or jax.ShapeDtypeStruct.
    mesh: the device mesh.
    sharding: "replicated", or "sharded": the proxies and their optimiser
      state (the leaves at a ``'proxies'`` key, in ``params`` and in the
      optimiser's moments) split by rows, the rest replicated.

  Returns:
    A pytree of NamedSharding with the structure of ``state``.
  """

  def leaf_sharding(path: tuple, _) -> jax.sharding.NamedSharding:
    key = getattr(path[-1], "key", None) if path else None
    if sharding == "sharded" and key == "proxies":
      return parallel.row_sharded(mesh)
    return parallel.replicated(mesh)

  return jax.tree_util.tree_map_with_path(leaf_sharding, state)


def num_proxies(config: ml_collections.ConfigDict) -> int:
  """The number of proxies of a run: ``proxies.num_proxies`` or one a class
  (K a class for a loss with K centres a class: SubCenter-ArcFace,
  SoftTriple).

  Raises:
    ValueError: ``proxies.num_proxies`` is not positive, or differs from the
      number of training classes where the loss assigns proxies statically
      or the proxies start at the class means.
  """
  classes = pipeline.num_classes(config.input, "train")
  centers = loss_binding.centers_per_class(config.loss)
  requested = config.proxies.num_proxies
  if requested is None:
    return classes * centers
  if requested < 1:
    raise errors.InvalidInputError(
      f"proxies.num_proxies={requested} must be positive (None: one per "
      "training class)."
    )
  if requested != classes * centers:
    if loss_binding.uses_static_assignment(config.loss):
      raise errors.InvalidInputError(
        f"proxies.num_proxies={requested} but there are {classes} training "
        f"classes, and loss.name={config.loss.name!r} with static "
        f"assignment needs {centers} proxy row(s) per class: set "
        "--config.loss.assignment=dynamic (proxy_nca, proxy_ranking) or "
        "leave proxies.num_proxies unset."
      )
    if config.proxies.init == "class_means":
      raise errors.InvalidInputError(
        f"proxies.init='class_means' places one proxy at each of the "
        f"{classes} class means, but proxies.num_proxies={requested}: use "
        "--config.proxies.init=normal or leave proxies.num_proxies unset."
      )
  return requested


def run_signature(
  config: ml_collections.ConfigDict,
  num_proxies: int,
  mesh: jax.sharding.Mesh | None = None,
) -> dict[str, Any]:
  """What a checkpoint must match to be restored into this run.

  Args:
    config: the run's config.
    num_proxies: C, the number of training classes.
    mesh: the run's mesh (default: every device); it sets the proxies'
      padding when they are sharded.
  """
  mesh = parallel.create_mesh() if mesh is None else mesh
  return {
    **trained_model.network_signature(config.model),
    "num_proxies": num_proxies,
    "proxy_rows": num_proxy_rows(config, num_proxies, mesh),
    "optimizer": config.optimizer.name,
  }


def init_state(
  variables: dict[str, Any],
  proxy_key: jax.Array,
  tx: optax.GradientTransformation,
  num_proxies: int,
  embedding_dim: int,
  proxy_init_scale: float,
  num_shards: int = 1,
  rows_per_class: int = 1,
) -> TrainState:
  """The state around an initialised network: proxies and optimiser state
  (pure; jit-able).

  Args:
    variables: the network's ``model.init`` variables (params, batch_stats).
    proxy_key: the key of the proxies' initialisation.
    tx: the optimiser.
    num_proxies: C.
    embedding_dim: D.
    proxy_init_scale: the proxies' initial standard deviation.
    num_shards: the proxies get zero padding rows up to a multiple of it;
      the first C rows do not depend on it.
    rows_per_class: K, the rows of a class (several centres a class): the
      padding keeps a class's rows on one device.
  """
  proxies = proxies_lib.init_proxies(
    proxy_key, num_proxies, embedding_dim, scale=proxy_init_scale
  )
  proxies = proxies_lib.pad_proxies(proxies, num_shards, rows_per_class)
  params = {"model": variables["params"], "proxies": proxies}
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    # A network without BatchNorm (a ViT) has no statistics: {}.
    batch_stats=variables.get("batch_stats", {}),
    opt_state=tx.init(params),
  )


def create_state(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
  num_proxies: int,
) -> TrainState:
  """A freshly initialised state on ``mesh``, sharded as configured."""
  init, _ = _initializer(config, model, tx, mesh, num_proxies)
  state = init(jax.random.key(config.seed))
  if config.model.pretrained:
    state = with_pretrained_backbone(state, config, tx)
  return state


def _initializer(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
  num_proxies: int,
) -> tuple[Callable[[jax.Array], TrainState], Any]:
  """``key -> state`` of `create_state`, placed on ``mesh``, and the
  state's shardings.

  The network is initialised by a program of its own: it depends only on
  the network, the image shape and the mesh, so runs that differ in their
  proxies (another dataset) load it from JAX's compilation cache instead of
  compiling it again. It is most of the compile time of a large backbone's
  initialisation (BN-Inception on CPU: 19 of 21 s). The values are those
  of one program over both parts, bit for bit.
  """
  sample_images = jnp.zeros(
    (1, *pipeline.image_shape(config.input)), jnp.float32
  )

  def model_variables(key: jax.Array) -> dict[str, Any]:
    return model.init(key, sample_images, train=False)

  init_model = jax.jit(model_variables, out_shardings=parallel.replicated(mesh))
  around_model = functools.partial(
    init_state,
    tx=tx,
    num_proxies=num_proxies,
    embedding_dim=model.embedding_dim,
    proxy_init_scale=config.proxies.init_scale,
    num_shards=proxy_shards(config, mesh),
    rows_per_class=loss_binding.centers_per_class(config.loss),
  )
  key = jax.random.key(config.seed)  # Abstract arguments' stand-in.
  shardings = state_shardings(
    jax.eval_shape(around_model, jax.eval_shape(model_variables, key), key),
    mesh,
    proxy_sharding(config),
  )
  # The network's variables are donated: the state takes them over.
  init_around_model = jax.jit(
    around_model, out_shardings=shardings, donate_argnums=0
  )

  def init(key: jax.Array) -> TrainState:
    model_key, proxy_key = jax.random.split(key)
    return init_around_model(init_model(model_key), proxy_key)

  return init, shardings


def abstract_state(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  tx: optax.GradientTransformation,
  mesh: jax.sharding.Mesh,
  num_proxies: int,
) -> TrainState:
  """``create_state``'s shapes, dtypes and shardings, computing nothing.

  A restore target: restoring onto it skips compiling the initialisation,
  most of the time of loading a trained run (and reads no pretrained
  backbone: the checkpoint replaces every array).
  """
  init, shardings = _initializer(config, model, tx, mesh, num_proxies)
  return jax.tree.map(
    lambda leaf, sharding: jax.ShapeDtypeStruct(
      leaf.shape, leaf.dtype, sharding=sharding
    ),
    jax.eval_shape(init, jax.random.key(config.seed)),
    shardings,
  )


def with_pretrained_backbone(
  state: TrainState,
  config: ml_collections.ConfigDict,
  tx: optax.GradientTransformation,
) -> TrainState:
  """``state`` with the backbone read from ``config.model.pretrained``.

  The optimiser state is initialised again for the new parameters, with
  the shardings of the one it replaces.
  """
  name = models.BACKBONE_MODULE
  if name not in state.params["model"]:
    raise errors.InvalidInputError(
      f"model.pretrained applies to {pretrained.ARCHS}, not to "
      f"{config.model.name}."
    )
  loaded = pretrained.load_pretrained(
    config.model.pretrained,
    config.model.name,
    {
      "params": state.params["model"][name],
      "batch_stats": state.batch_stats.get(name, {}),
    },
    model_config=config.model,
  )
  params = {
    **state.params,
    "model": {**state.params["model"], name: loaded["params"]},
  }
  return state.replace(
    params=params,
    batch_stats={
      **state.batch_stats,
      **({name: loaded["batch_stats"]} if "batch_stats" in loaded else {}),
    },
    opt_state=jax.jit(
      tx.init,
      out_shardings=jax.tree.map(lambda x: x.sharding, state.opt_state),
    )(params),
  )


def inference_variables(state: TrainState) -> dict[str, Any]:
  """The network's variables in the form ``model.apply`` takes."""
  return {"params": state.params["model"], "batch_stats": state.batch_stats}
