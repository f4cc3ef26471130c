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
"""Binds a config's loss section to the pure losses.

The losses are pure functions with keyword options; this module binds the
``config.loss`` section to them (``create_loss_fn`` and, for proxies sharded
over devices, ``create_sharded_loss_fn``), so the library modules below it
never read a config.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from proxy_nca_jax import errors, losses
from proxy_nca_jax.losses import sampled_proxies, sharded

# (embeddings (B, D), labels (B,), proxies (C, D), step ()) -> scalar loss;
# the step number draws the sampled negative proxies (loss.negative_fraction).
LossFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def loss_options(c: ml_collections.ConfigDict) -> dict[str, dict[str, object]]:
  """The config fields each loss reads, as its keyword arguments."""
  triplet = {"margin": c.margin}
  return {
    "proxy_nca": {
      "form": c.form,
      "scale": c.scale,
      "label_smoothing": c.label_smoothing,
      "embedding_norm": c.embedding_norm,
      "proxy_norm": c.proxy_norm,
      "assignment": c.assignment,
      "block_size": c.proxy_block_size,
    },
    "proxy_ranking": {"margin": c.margin, "assignment": c.assignment},
    "proxy_anchor": {
      "alpha": c.proxy_anchor_alpha,
      "delta": c.proxy_anchor_delta,
    },
    "triplet_all": triplet,
    "triplet_semihard": triplet,
    "triplet_batch_hard": triplet,
    "lifted_structure": {"margin": c.lifted_margin},
    "npairs": {"scale": c.scale},
    "contrastive": {"margin": c.contrastive_margin},
    "nca": {"form": c.form, "scale": c.scale},
  }


def uses_static_assignment(loss_config: ml_collections.ConfigDict) -> bool:
  """Whether the configured loss needs one proxy per class.

  True for Proxy-Anchor and for Proxy-NCA and proxy ranking with static
  assignment; False for dynamic assignment and the data-point baselines
  (which ignore the proxies).
  """
  if loss_config.name == "proxy_anchor":
    return True
  return (
    loss_config.name in ("proxy_nca", "proxy_ranking")
    and loss_config.assignment == "static"
  )


def create_loss_fn(
  loss_config: ml_collections.ConfigDict, seed: int = 0
) -> LossFn:
  """Binds the configured loss to ``(embeddings, labels, proxies, step)
  -> loss``.

  ``loss_config.name`` is one of ``losses.LOSSES``; the fields each loss
  reads are documented in ``configs/fashion_mnist.py``. The data-point baselines
  ignore the proxies (they stay in the state, untouched by the gradient, so
  checkpoints of all kinds have the same structure). The options are
  checked here, by tracing the loss once on an abstract batch of two.

  With ``loss.negative_fraction`` below 1 (Proxy-NCA, static assignment),
  each step's loss uses the batch's positive proxies and that fraction of
  the others, drawn from ``seed`` and the step (``losses.sampled_proxies``);
  otherwise the step is ignored.

  Raises:
    ValueError: an unknown name or a bad option.
  """
  name = loss_config.name
  if name not in losses.LOSSES:
    raise errors.InvalidInputError(
      f"loss.name must be one of {losses.LOSSES}, got {name!r}."
    )
  options = loss_options(loss_config)[name]
  if name in losses.PROXY_LOSSES:
    loss_fn = functools.partial(getattr(losses, f"{name}_loss"), **options)
  else:
    pair_loss = functools.partial(getattr(losses, f"{name}_loss"), **options)

    def loss_fn(
      embeddings: jax.Array, labels: jax.Array, proxies: jax.Array
    ) -> jax.Array:
      del proxies  # Mined in the batch.
      return pair_loss(embeddings, labels)

  bound = _with_sampled_negatives(loss_fn, loss_config, seed)
  jax.eval_shape(
    bound,
    jax.ShapeDtypeStruct((2, 1), jnp.float32),
    jax.ShapeDtypeStruct((2,), jnp.int32),
    jax.ShapeDtypeStruct((2, 1), jnp.float32),
    jax.ShapeDtypeStruct((), jnp.int32),
  )
  return bound


def _every_proxy(
  loss_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
) -> LossFn:
  """``loss_fn`` as a `LossFn`: every proxy at every step."""

  def bound(embeddings, labels, proxies, step):
    del step  # Only sampled negatives depend on it.
    return loss_fn(embeddings, labels, proxies)

  return bound


def _with_sampled_negatives(
  loss_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
  loss_config: ml_collections.ConfigDict,
  seed: int,
) -> LossFn:
  """``loss_fn`` taking the step, on the step's sampled proxies when
  ``loss.negative_fraction`` < 1 (``losses.sampled_proxies``)."""
  fraction = loss_config.negative_fraction
  sampled_proxies.num_sampled(fraction, 1, 1)  # Checks the fraction.
  if fraction == 1:
    return _every_proxy(loss_fn)
  if loss_config.name != "proxy_nca" or loss_config.assignment != "static":
    raise errors.InvalidInputError(
      f"loss.negative_fraction={fraction} needs loss.name='proxy_nca' with "
      "loss.assignment='static' (one proxy per class), got "
      f"loss.name={loss_config.name!r}, loss.assignment="
      f"{loss_config.assignment!r}; use --config.loss.negative_fraction=1."
    )

  def sampled(embeddings, labels, proxies, step):
    num_proxies = proxies.shape[0]
    rows, sampled_labels = sampled_proxies.sample_proxies(
      sampled_proxies.sample_key(seed, step),
      labels,
      num_proxies,
      sampled_proxies.num_sampled(fraction, num_proxies, labels.shape[0]),
    )
    return loss_fn(embeddings, sampled_labels, proxies[rows])

  return sampled


def check_supported(loss_config: ml_collections.ConfigDict) -> None:
  """Raises ValueError unless the configured loss has a sharded form.

  Args:
    loss_config: the ``loss`` section of the config.
  """
  name, assignment = loss_config.name, loss_config.assignment
  if name not in sharded.SHARDED_LOSSES or (
    name == "proxy_nca" and assignment != "static"
  ):
    what = f"loss.name={name!r}"
    if name in sharded.SHARDED_LOSSES:
      what += f" with loss.assignment={assignment!r}"
    raise errors.InvalidInputError(
      f"proxies.sharding='sharded' does not support {what}. Sharded "
      f"proxies work with loss.name in {sharded.SHARDED_LOSSES} and static "
      "assignment (one proxy per class); use "
      "--config.proxies.sharding=replicated for the other losses."
    )


def create_sharded_loss_fn(
  loss_config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh,
  num_proxies: int,
  seed: int = 0,
) -> LossFn:
  """Binds the configured loss to ``(embeddings, labels, proxies, step)
  -> loss``.

  The sharded counterpart of ``create_loss_fn``: the same config fields,
  the proxies (R, D) padded and sharded as ``training.train_state`` keeps
  them, ``num_proxies`` real ones. Sampled negatives
  (``loss.negative_fraction`` < 1) are drawn on each device from its own
  rows, from ``seed`` and the step (``losses.sampled_proxies``).

  Raises:
    ValueError: a loss without a sharded form (``check_supported``) or a
      bad option.
  """
  check_supported(loss_config)
  create_loss_fn(loss_config)  # Checks the options.
  options = loss_options(loss_config)[loss_config.name]
  options.pop("assignment", None)
  if loss_config.name == "proxy_anchor":
    return _every_proxy(
      functools.partial(
        sharded.sharded_proxy_anchor_loss,
        mesh=mesh,
        num_proxies=num_proxies,
        **options,
      )
    )
  fraction = loss_config.negative_fraction

  def bound(embeddings, labels, proxies, step):
    key = sampled_proxies.sample_key(seed, step) if fraction < 1 else None
    return sharded.sharded_proxy_nca_loss(
      embeddings,
      labels,
      proxies,
      mesh=mesh,
      num_proxies=num_proxies,
      negative_fraction=fraction,
      key=key,
      **options,
    )

  return bound
