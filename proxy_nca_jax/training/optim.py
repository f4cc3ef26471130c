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
"""Optimisers with one learning rate and weight decay per parameter group.

Three groups: ``backbone`` (all network parameters but the embedding layer),
``head`` (the embedding layer) and ``proxies``. Proxies usually need a much
larger learning rate than the network ([1], Sec. 4; ProxyNCA++ uses a
multiplier above 100), and a peer's baseline famously forgot to optimise them
at all: here they are a group of their own, always optimised.

With ``model.frozen_bn`` a fourth group, ``frozen``, holds the BatchNorm
scales and biases: their updates are zero (no learning rate, no weight decay,
no optimiser state), so with the running statistics, which a frozen
BatchNorm does not update either, the layer stays exactly as loaded.
"""

import functools
from collections.abc import Callable

import jax
import ml_collections
import optax

from proxy_nca_jax import errors, models

GROUPS = ("backbone", "head", "proxies", "frozen")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
DECAYS = ("constant", "cosine")
_BN_LEAVES = {"scale", "bias"}


def batch_norm_modules(params: dict) -> set[tuple[str, ...]]:
  """Paths of the modules whose parameters are exactly ``scale`` and ``bias``.

  These are the BatchNorm layers of every model here (the head's LayerNorm
  has no parameters; tests/models/backbones_test.py checks that the set
  equals the modules holding batch statistics).
  """
  modules = {}
  for path, _ in jax.tree_util.tree_leaves_with_path(params):
    keys = tuple(getattr(k, "key", None) for k in path)
    modules.setdefault(keys[:-1], set()).add(keys[-1])
  return {path for path, leaves in modules.items() if leaves == _BN_LEAVES}


def param_groups(params: dict, *, frozen_bn: bool = False) -> dict:
  """Labels every leaf of ``{'model': ..., 'proxies': ...}`` with its group.

  Args:
    params: the parameter tree.
    frozen_bn: label BatchNorm scales and biases ``frozen``.

  Returns:
    A tree like ``params`` of group names (see ``GROUPS``).
  """
  frozen = batch_norm_modules(params) if frozen_bn else set()

  def label(path: tuple, _) -> str:
    keys = [getattr(k, "key", None) for k in path]
    if keys[0] == "proxies":
      return "proxies"
    if tuple(keys[:-1]) in frozen:
      return "frozen"
    return "head" if models.HEAD_MODULE in keys else "backbone"

  return jax.tree_util.tree_map_with_path(label, params)


def learning_rate_schedule(
  base_lr: float, schedule_config: ml_collections.ConfigDict
) -> optax.Schedule:
  """Linear warm-up to ``base_lr``, then constant or cosine decay to zero."""
  total = schedule_config.num_steps
  warmup = schedule_config.warmup_steps
  if schedule_config.decay not in DECAYS:
    raise errors.InvalidInputError(
      f"schedule.decay must be one of {DECAYS}, got {schedule_config.decay!r}."
    )
  if schedule_config.decay == "cosine":
    after = optax.cosine_decay_schedule(base_lr, max(total - warmup, 1))
  else:
    after = optax.constant_schedule(base_lr)
  if warmup == 0:
    return after
  ramp = optax.linear_schedule(0.0, base_lr, warmup)
  return optax.join_schedules([ramp, after], [warmup])


def group_schedules(
  config: ml_collections.ConfigDict,
) -> dict[str, optax.Schedule]:
  """The learning-rate schedule of each group."""
  opt = config.optimizer
  mults = {"backbone": 1.0, "head": opt.head_lr_mult}
  mults["proxies"] = opt.proxy_lr_mult
  return {
    group: learning_rate_schedule(opt.learning_rate * mult, config.schedule)
    for group, mult in mults.items()
  }


def _base_optimizer(
  opt: ml_collections.ConfigDict, lr: optax.Schedule, weight_decay: float
) -> optax.GradientTransformation:
  if opt.name == "adamw":
    return optax.adamw(lr, eps=opt.eps, weight_decay=weight_decay)
  if opt.name == "adam":
    base = optax.adam(lr, eps=opt.eps)
  elif opt.name == "rmsprop":
    # The paper trains with RMSprop, decay 0.94 ([1], Sec. 5).
    base = optax.rmsprop(
      lr, decay=opt.rmsprop_decay, eps=opt.eps, momentum=opt.momentum
    )
  else:
    base = optax.sgd(lr, momentum=opt.momentum)
  if weight_decay:
    # Coupled L2: the decay term goes through the optimiser like a gradient.
    return optax.chain(optax.add_decayed_weights(weight_decay), base)
  return base


def create_optimizer(
  config: ml_collections.ConfigDict,
) -> tuple[optax.GradientTransformation, dict[str, Callable]]:
  """Builds the per-group optimiser.

  Args:
    config: the full config (sections ``optimizer`` and ``schedule``, and
      ``model.frozen_bn``).

  Returns:
    The optax transformation for ``{'model': ..., 'proxies': ...}`` params,
    and the learning-rate schedule of each group (for logging).
  """
  opt = config.optimizer
  if opt.name not in OPTIMIZERS:
    raise errors.InvalidInputError(
      f"optimizer.name must be one of {OPTIMIZERS}, got {opt.name!r}."
    )
  schedules = group_schedules(config)
  decay = {
    "backbone": opt.weight_decay,
    "head": opt.weight_decay,
    "proxies": opt.proxy_weight_decay,
  }
  transforms = {
    group: _base_optimizer(opt, schedules[group], decay[group])
    for group in schedules
  }
  transforms["frozen"] = optax.set_to_zero()
  labels = functools.partial(param_groups, frozen_bn=config.model.frozen_bn)
  return optax.partition(transforms, labels), schedules
