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
"""The training step (the paper's one update of network and proxies), jitted.

``train_step`` is one optimisation step of the network and the proxies on the
proxy loss of a global batch (Section 3 of the paper: the proxies are learned
jointly with the network, by the same gradient step); ``make_train_step``
jits it over a device mesh, the batch sharded and the state as configured.
``training.setup.assemble`` builds it from a config.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import optax

from proxy_nca_jax import parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.training import loss_binding, train_state

Batch = dict[str, jax.Array]
# Folded into the seed's key first: the network's own randomness in training
# (a ViT's stochastic depth) gets a stream of its own, apart from the
# initialisation and the sampled negatives (losses/sampled_proxies.py).
_DROPOUT_STREAM = 0xD70F


def dropout_key(seed: int, step: jax.Array) -> jax.Array:
  """The ``'dropout'`` rng of step ``step``: the same on a resumed run, and
  on any number of devices (JAX's partitionable threefry)."""
  return jax.random.fold_in(
    jax.random.fold_in(jax.random.key(seed), _DROPOUT_STREAM), step
  )


def train_step(
  state: train_state.TrainState,
  batch: Batch,
  *,
  model: nn.Module,
  tx: optax.GradientTransformation,
  loss_fn: loss_binding.LossFn,
  num_proxies: int | None = None,
  seed: int = 0,
) -> tuple[train_state.TrainState, dict[str, jax.Array]]:
  """One optimisation step on a (global, sharded) batch.

  BatchNorm statistics and the loss are computed over the whole global batch
  (XLA inserts the cross-device reductions), so the result does not depend on
  how many devices share the batch. ``num_proxies``: the real proxies, rows
  [0, C) of ``params['proxies']`` (default: all rows), for the logged norms.
  ``seed``: the run's seed, for the network's ``'dropout'`` rng
  (`dropout_key`; networks without randomness ignore it).
  """

  def objective(params):
    embeddings, updates = model.apply(
      {"params": params["model"], "batch_stats": state.batch_stats},
      batch["image"],
      train=True,
      mutable=["batch_stats"],
      rngs={"dropout": dropout_key(seed, state.step)},
    )
    loss = loss_fn(embeddings, batch["label"], params["proxies"], state.step)
    # A network without BatchNorm (a ViT) updates no statistics.
    return loss, updates.get("batch_stats", state.batch_stats)

  (loss, batch_stats), grads = jax.value_and_grad(objective, has_aux=True)(
    state.params
  )
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {
    "loss": loss,
    "grad_norm": optax.tree.norm(grads),
    **proxies_lib.proxy_norms(params["proxies"], num_proxies),
  }
  new_state = train_state.TrainState(
    step=state.step + 1,
    params=params,
    batch_stats=batch_stats,
    opt_state=opt_state,
  )
  return new_state, metrics


def make_train_step(
  model: nn.Module,
  tx: optax.GradientTransformation,
  loss_fn: loss_binding.LossFn,
  mesh: jax.sharding.Mesh,
  state_sharding: Any = None,
  num_proxies: int | None = None,
  seed: int = 0,
) -> Callable[
  [train_state.TrainState, Batch],
  tuple[train_state.TrainState, dict[str, jax.Array]],
]:
  """Jits ``train_step`` over ``mesh``: batch sharded, state as given.

  The state buffers are donated (updated in place). Batches of one shape and
  dtype compile once (tests/training/trainer_test.py checks it with
  ``chex.assert_max_traces`` over a whole run).

  Args:
    model: the network.
    tx: the optimiser.
    loss_fn: ``(embeddings, labels, proxies, step) -> loss``.
    mesh: the device mesh.
    state_sharding: the state's shardings (``train_state.state_shardings``),
      default all replicated.
    num_proxies: the real proxies (rows of ``params['proxies']`` before the
      padding of sharded proxies); default all rows.
    seed: the run's seed (`train_step`).
  """
  if state_sharding is None:
    state_sharding = parallel.replicated(mesh)

  def step(state: train_state.TrainState, batch: Batch):
    return train_step(
      state,
      batch,
      model=model,
      tx=tx,
      loss_fn=loss_fn,
      num_proxies=num_proxies,
      seed=seed,
    )

  return jax.jit(
    step,
    in_shardings=(state_sharding, parallel.batch_sharded(mesh)),
    out_shardings=(state_sharding, parallel.replicated(mesh)),
    donate_argnums=0,
  )
