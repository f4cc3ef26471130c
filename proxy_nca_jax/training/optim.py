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

Two options of the Vision Transformer fine-tuning recipe (BEiT, Bao et al.,
ICLR 2022, Sec. 2.6; MAE, He et al., CVPR 2022, App. A.2; timm):

* ``optimizer.layer_decay`` (layer-wise learning-rate decay) d < 1: the
  backbone parameter of layer l out of L + 1 learns at d^(L + 1 - l) times
  the backbone rate, where the patch embedding, class and register tokens,
  position embeddings and CLIP's pre-norm are layer 0, block i is layer
  i + 1 and the final norm (and CLIP's projection) layer L + 1 (so it
  learns at the full rate, like the head). Applied as a per-parameter factor
  on the group's update, which equals a learning rate scaled by it for every
  optimiser here (their state is built from gradients, never from the rate;
  AdamW's decoupled decay is scaled with the rate, as torch's per-group
  learning rate does);
* ``optimizer.decay_matrices_only``: weight decay on weight matrices and
  convolution kernels only, not on biases, normalisation scales, LayerScale
  gains, tokens or position embeddings (timm's ``no_weight_decay``).
"""

import functools
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from proxy_nca_jax import errors, models

GROUPS = ("backbone", "head", "proxies", "frozen")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
DECAYS = ("constant", "cosine")
_BN_LEAVES = {"scale", "bias"}
# ViT parameter names (models/vit.py): the blocks, and what comes before them.
_VIT_BLOCK = re.compile(r"blocks_(\d+)")
_VIT_EMBEDDING = {"patch_embed", "cls_token", "reg_token", "pos_embed"}
_VIT_EMBEDDING_NORM = "norm_pre"
# Leaves that are no weight matrix though they may have 2+ dimensions.
_NOT_MATRICES = {"cls_token", "reg_token", "pos_embed"}


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


def _path_keys(path: tuple) -> list:
  return [getattr(k, "key", None) for k in path]


def vit_layer(keys: list, depth: int) -> int:
  """Layer of a ViT backbone parameter (module docstring): 0 to depth + 1."""
  for key in keys:
    match = _VIT_BLOCK.fullmatch(str(key))
    if match:
      return int(match.group(1)) + 1
  if _VIT_EMBEDDING_NORM in keys or _VIT_EMBEDDING.intersection(keys):
    return 0
  return depth + 1


def layer_decay_factors(
  *, layer_decay: float, depth: int
) -> optax.GradientTransformation:
  """Scales each ViT backbone update by layer_decay^(depth + 1 - layer).

  Args:
    layer_decay: the decay d, in (0, 1].
    depth: the number of transformer blocks L.

  Returns:
    A stateless transformation for the backbone group (leaves of other
    groups are masked out by ``optax.partition`` and not visited).
  """

  def update_fn(updates, state, params=None):
    del params

    def scale(path: tuple, update: jax.Array) -> jax.Array:
      layer = vit_layer(_path_keys(path), depth)
      return update * jnp.asarray(
        layer_decay ** (depth + 1 - layer), update.dtype
      )

    return jax.tree_util.tree_map_with_path(scale, updates), state

  return optax.GradientTransformation(
    lambda params: optax.EmptyState(), update_fn
  )


def is_weight_matrix(path: tuple, leaf: jax.Array) -> bool:
  """Weight decay target of ``decay_matrices_only``: kernels, 2+ dims."""
  keys = _path_keys(path)
  return leaf.ndim >= 2 and not _NOT_MATRICES.intersection(keys)


def _decay_mask(params):
  return jax.tree_util.tree_map_with_path(is_weight_matrix, params)


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
  mask = _decay_mask if opt.decay_matrices_only else None
  if opt.name == "adamw":
    return optax.adamw(lr, eps=opt.eps, weight_decay=weight_decay, mask=mask)
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
    return optax.chain(optax.add_decayed_weights(weight_decay, mask), base)
  return base


def _check_layer_decay(config: ml_collections.ConfigDict) -> int:
  """The ViT depth that ``optimizer.layer_decay`` applies to (0: off)."""
  decay = config.optimizer.layer_decay
  if decay == 1.0:
    return 0
  if not 0.0 < decay < 1.0:
    raise errors.InvalidInputError(
      f"optimizer.layer_decay must be in (0, 1] (1: off), got {decay}."
    )
  size = models.vit.SIZES.get(config.model.name)
  if size is None:
    raise errors.InvalidInputError(
      "optimizer.layer_decay applies to the ViT backbones "
      f"({', '.join(models.vit.MODELS)}), not {config.model.name!r}; "
      "set it to 1."
    )
  return size.depth


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
  depth = _check_layer_decay(config)
  if depth:
    transforms["backbone"] = optax.chain(
      transforms["backbone"],
      layer_decay_factors(layer_decay=opt.layer_decay, depth=depth),
    )
  transforms["frozen"] = optax.set_to_zero()
  labels = functools.partial(param_groups, frozen_bn=config.model.frozen_bn)
  return optax.partition(transforms, labels), schedules
