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
"""The one assembly of a run: config -> model, optimiser, loss, state, step.

``assemble(config, mesh)`` checks the config against the mesh and returns a
`RunParts`: the network (``models.create_model``), the optimiser and its
learning-rate schedules (``optim``), the loss bound to its options
(``loss_binding``; its sharded form when ``proxies.sharding='sharded'``), the
number of proxies and how they are placed. From those it makes the initial
state, its abstract shapes (to restore a checkpoint into), the run signature
checked on restore, and the jitted train step. The trainer, the inference
path (``workdirs.restore_trained``), the research commands, the tests and the
benchmarks all build their runs here.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import optax
from absl import logging

from proxy_nca_jax import errors, models, native, parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.data import pipeline
from proxy_nca_jax.evaluation import query_gallery
from proxy_nca_jax.native import convolution
from proxy_nca_jax.training import loss_binding, optim, step, train_state


def check_config(
  config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh
) -> None:
  """Raises ValueError for what the run would refuse later (cheap checks).

  The global batches must divide over the mesh, ``proxies.init`` and
  ``proxies.sharding`` must be known, sharded proxies need a loss with a
  sharded form, and the loss options and ``evals.query_gallery`` must be
  valid.
  """
  parallel.check_global_batch(config.input.batch_size, mesh, "input.batch_size")
  parallel.check_global_batch(
    config.input.eval_batch_size, mesh, "input.eval_batch_size"
  )
  if config.proxies.init not in proxies_lib.PROXY_INITS:
    raise errors.InvalidInputError(
      f"proxies.init must be one of {proxies_lib.PROXY_INITS}, got "
      f"{config.proxies.init!r}."
    )
  if train_state.proxy_sharding(config) == "sharded":
    loss_binding.check_supported(config.loss)
  loss_binding.check_options(config.loss)
  query_gallery.parse(config.evals.query_gallery)


def check_query_gallery(config: ml_collections.ConfigDict, split: str) -> None:
  """Raises ValueError when the prepared dataset cannot serve
  ``evals.query_gallery`` on ``split``: a tfds split it does not have, or
  classes ``split`` does not hold (`query_gallery.check_available`)."""
  spec = config.evals.query_gallery
  protocol = query_gallery.parse(spec)
  if protocol is None or protocol.kind == "per_class":
    return  # Any split serves these: nothing to read.
  query_gallery.check_available(
    protocol,
    pipeline.split_names(config.input),
    pipeline.classes_of(config.input, split),
    spec,
  )


@dataclasses.dataclass(frozen=True)
class RunParts:
  """What a config assembles into, on one mesh.

  Attributes:
    config: the run's config.
    mesh: the devices of the run.
    model: the network.
    tx: the optimiser (parameter groups as ``optim.create_optimizer``).
    schedules: the learning rate of each group against the step.
    loss_fn: ``(embeddings, labels, proxies, step) -> loss``.
    num_proxies: the real proxies C (rows beyond are sharding padding).
    proxy_sharding: 'replicated' or 'sharded'.
  """

  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  model: nn.Module
  tx: optax.GradientTransformation
  schedules: dict[str, optax.Schedule]
  loss_fn: loss_binding.LossFn
  num_proxies: int
  proxy_sharding: str

  def initial_state(self) -> train_state.TrainState:
    """The freshly initialised state, placed on the mesh."""
    return train_state.create_state(
      self.config, self.model, self.tx, self.mesh, self.num_proxies
    )

  def abstract_state(self) -> Any:
    """The state's shapes, dtypes and shardings (computes nothing)."""
    return train_state.abstract_state(
      self.config, self.model, self.tx, self.mesh, self.num_proxies
    )

  def signature(self) -> dict[str, Any]:
    """What a checkpoint of this run must match to be restored."""
    return train_state.run_signature(self.config, self.num_proxies, self.mesh)

  def state_shardings(self, state: Any) -> Any:
    """The shardings of ``state`` (proxies as configured)."""
    return train_state.state_shardings(state, self.mesh, self.proxy_sharding)

  def train_step(
    self, state_sharding: Any = None
  ) -> Callable[
    [train_state.TrainState, step.Batch],
    tuple[train_state.TrainState, dict[str, jax.Array]],
  ]:
    """The jitted step (``step.make_train_step``); state replicated unless
    ``state_sharding`` (`state_shardings` of the state) says otherwise."""
    return step.make_train_step(
      self.model,
      self.tx,
      self.loss_fn,
      self.mesh,
      state_sharding,
      self.num_proxies,
      seed=self.config.seed,
    )


def training_conv(
  model_config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh
) -> models.ConvFactory:
  """convnet-S's convolution in training, by ``model.conv``.

  oneDNN's (native/convolution.py) for ``"onednn"`` on CPU devices where
  its library builds; else XLA's, with a warning for ``"onednn"`` (the same
  function to float32 rounding, only slower on CPU).
  """
  if model_config.conv != "onednn" or model_config.name != "convnet_s":
    return models.conv3x3  # create_model rejects what is not allowed.
  if mesh.devices.flat[0].platform != "cpu":
    logging.warning("model.conv='onednn' is for CPUs: XLA's used here.")
    return models.conv3x3
  if not native.available("onednn_conv"):
    logging.warning(
      "model.conv='onednn' without oneDNN's kernels (see the warning "
      "above): XLA's convolutions used."
    )
    return models.conv3x3
  return convolution.conv_factory(mesh)


def assemble(
  config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh | None = None,
  num_proxies: int | None = None,
) -> RunParts:
  """Builds the parts of a run of ``config`` on ``mesh``.

  Args:
    config: the full config (configs/fashion_mnist.py).
    mesh: the devices (default: every device of every process).
    num_proxies: the proxies C (default: ``train_state.num_proxies``, which
      reads the prepared dataset's classes).

  Returns:
    The `RunParts`.

  Raises:
    ValueError: a config the run would refuse (`check_config`, a bad loss
      option, an unknown model or optimiser).
  """
  mesh = parallel.create_mesh() if mesh is None else mesh
  check_config(config, mesh)
  sharding = train_state.proxy_sharding(config)
  class_counts = None
  if config.loss.name == "dynamic_arcface":
    class_counts = pipeline.train_class_counts(config.input)
  loss_fn = loss_binding.create_loss_fn(
    config.loss, seed=config.seed, class_counts=class_counts
  )
  model = models.create_model(
    config.model, conv=training_conv(config.model, mesh)
  )
  tx, schedules = optim.create_optimizer(config)
  if num_proxies is None:
    num_proxies = train_state.num_proxies(config)
  if sharding == "sharded":
    loss_fn = loss_binding.create_sharded_loss_fn(
      config.loss,
      mesh,
      num_proxies,
      seed=config.seed,
      class_counts=class_counts,
    )
  return RunParts(
    config=config,
    mesh=mesh,
    model=model,
    tx=tx,
    schedules=schedules,
    loss_fn=loss_fn,
    num_proxies=num_proxies,
    proxy_sharding=sharding,
  )
