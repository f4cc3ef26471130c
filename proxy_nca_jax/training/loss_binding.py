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
import numpy as np

from proxy_nca_jax import errors, losses
from proxy_nca_jax.losses import margin_softmax, sampled_proxies, sharded

# (embeddings (B, D), labels (B,), proxies (C, D), step ()) -> scalar loss;
# the step number draws the sampled negative proxies (loss.negative_fraction).
LossFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def loss_options(c: ml_collections.ConfigDict) -> dict[str, dict[str, object]]:
  """The config fields each loss reads, as its keyword arguments."""
  triplet = {"margin": c.margin}
  arcface = {"margin": c.arcface_margin, "scale": c.cosine_scale}
  blocks = {"block_size": c.proxy_block_size}
  return {
    "proxy_nca": {
      "form": c.form,
      "scale": c.scale,
      "label_smoothing": c.label_smoothing,
      "embedding_norm": c.embedding_norm,
      "proxy_norm": c.proxy_norm,
      "assignment": c.assignment,
      **blocks,
    },
    "proxy_ranking": {"margin": c.margin, "assignment": c.assignment},
    "proxy_anchor": {
      "alpha": c.proxy_anchor_alpha,
      "delta": c.proxy_anchor_delta,
    },
    "normalized_softmax": {"temperature": c.softmax_temperature, **blocks},
    "cosface": {"margin": c.cosface_margin, "scale": c.cosine_scale, **blocks},
    "arcface": {**arcface, **blocks},
    "subcenter_arcface": {**arcface, "centers_per_class": c.sub_centers},
    "dynamic_arcface": {
      "margin_bounds": tuple(c.dynamic_margin_bounds),
      "power": c.dynamic_margin_power,
      "scale": c.cosine_scale,
      "centers_per_class": c.sub_centers,
    },
    "soft_triple": {
      "centers_per_class": c.soft_triple_centers,
      "la": c.soft_triple_la,
      "gamma": c.soft_triple_gamma,
      "margin": c.soft_triple_margin,
      "tau": c.soft_triple_tau,
    },
    "triplet_all": triplet,
    "triplet_semihard": triplet,
    "triplet_batch_hard": triplet,
    "lifted_structure": {"margin": c.lifted_margin},
    "npairs": {"scale": c.scale},
    "contrastive": {"margin": c.contrastive_margin},
    "nca": {"form": c.form, "scale": c.scale},
  }


def centers_per_class(loss_config: ml_collections.ConfigDict) -> int:
  """K, the proxy rows of one class: ``loss.sub_centers`` for
  subcenter_arcface, ``loss.soft_triple_centers`` for soft_triple, else 1."""
  options = loss_options(loss_config)[loss_config.name]
  return options.get("centers_per_class", 1)


def margin_softmax_spec(
  loss_config: ml_collections.ConfigDict,
  class_counts: np.ndarray | None = None,
) -> margin_softmax.MarginSoftmax:
  """The ``MarginSoftmax`` of a loss of ``losses.CLASS_WEIGHT_LOSSES``
  (``class_counts``: dynamic_arcface's class sizes)."""
  options = _bound_options(loss_config, class_counts)
  options.pop("block_size", None)  # How it is computed, not which loss.
  return {
    "cosface": margin_softmax.cosface_spec,
    "arcface": margin_softmax.arcface_spec,
    "subcenter_arcface": margin_softmax.arcface_spec,
    "dynamic_arcface": margin_softmax.dynamic_arcface_spec,
    "soft_triple": margin_softmax.soft_triple_spec,
  }[loss_config.name](**options)


def _bound_options(
  loss_config: ml_collections.ConfigDict, class_counts: np.ndarray | None
) -> dict[str, object]:
  """The configured loss's keyword arguments, with the class sizes for
  dynamic_arcface.

  Raises:
    ValueError: dynamic_arcface without class sizes.
  """
  options = dict(loss_options(loss_config)[loss_config.name])
  if loss_config.name == "dynamic_arcface":
    if class_counts is None:
      raise errors.InvalidInputError(
        "loss.name='dynamic_arcface' needs the training classes' sizes "
        "(class_counts), which the trainer reads from the dataset."
      )
    options["class_counts"] = class_counts
  return options


def uses_static_assignment(loss_config: ml_collections.ConfigDict) -> bool:
  """Whether the configured loss needs one proxy per class.

  True for Proxy-Anchor and the class-weight losses, and for Proxy-NCA
  and proxy ranking with static assignment; False for dynamic assignment
  and the data-point baselines (which ignore the proxies).
  """
  if loss_config.name in ("proxy_anchor", *losses.CLASS_WEIGHT_LOSSES):
    return True
  return (
    loss_config.name in ("proxy_nca", "proxy_ranking")
    and loss_config.assignment == "static"
  )


def create_loss_fn(
  loss_config: ml_collections.ConfigDict,
  seed: int = 0,
  class_counts: np.ndarray | None = None,
) -> LossFn:
  """Binds the configured loss to ``(embeddings, labels, proxies, step)
  -> loss``.

  ``loss_config.name`` is one of ``losses.LOSSES``; the fields each loss
  reads are documented in ``configs/fashion_mnist.py``. The data-point baselines
  ignore the proxies (they stay in the state, untouched by the gradient, so
  checkpoints of all kinds have the same structure). The options are
  checked here, by tracing the loss once on an abstract batch of two.

  With ``loss.negative_fraction`` below 1 (Proxy-NCA with static
  assignment, Normalized Softmax and the class-weight losses), each step's
  loss uses the batch's classes and that fraction of the others (all K
  rows of a class with several centres), drawn from ``seed`` and the step
  (``losses.sampled_proxies``); otherwise the step is ignored.
  ``class_counts``, int (C,), the training images of each class, is read
  by dynamic_arcface alone (its margins).

  Raises:
    ValueError: an unknown name or a bad option.
  """
  name = loss_config.name
  if name not in losses.LOSSES:
    raise errors.InvalidInputError(
      f"loss.name must be one of {losses.LOSSES}, got {name!r}."
    )
  options = _bound_options(loss_config, class_counts)
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
    jax.ShapeDtypeStruct((2 * centers_per_class(loss_config), 1), jnp.float32),
    jax.ShapeDtypeStruct((), jnp.int32),
  )
  return bound


def check_options(loss_config: ml_collections.ConfigDict) -> None:
  """Raises ValueError for a bad option of the configured loss, before the
  dataset is read (dynamic_arcface's class sizes: two stand-ins, so that
  its bounds and power are checked)."""
  stand_in = np.array([1, 2]) if loss_config.name == "dynamic_arcface" else None
  create_loss_fn(loss_config, class_counts=stand_in)


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
  if not supports_sampled_negatives(loss_config):
    raise errors.InvalidInputError(
      f"loss.negative_fraction={fraction} needs a loss with one proxy (or "
      f"K centres) per class: loss.name in {SAMPLED_LOSSES}, proxy_nca with "
      f"loss.assignment='static'; got loss.name={loss_config.name!r}, "
      f"loss.assignment={loss_config.assignment!r}; use "
      "--config.loss.negative_fraction=1."
    )
  k = centers_per_class(loss_config)

  def sampled(embeddings, labels, proxies, step):
    num_classes = proxies.shape[0] // k
    classes, sampled_labels = sampled_proxies.sample_proxies(
      sampled_proxies.sample_key(seed, step),
      labels,
      num_classes,
      sampled_proxies.num_sampled(fraction, num_classes, labels.shape[0]),
    )
    rows = sampled_proxies.class_rows(classes, k)
    if loss_config.name == "dynamic_arcface":  # Margins of the real classes.
      return loss_fn(
        embeddings, sampled_labels, proxies[rows], margin_classes=labels
      )
    return loss_fn(embeddings, sampled_labels, proxies[rows])

  return sampled


# The losses whose denominator can run over sampled classes
# (loss.negative_fraction < 1); proxy_nca with static assignment too.
SAMPLED_LOSSES = ("normalized_softmax", *losses.CLASS_WEIGHT_LOSSES)


def supports_sampled_negatives(loss_config: ml_collections.ConfigDict) -> bool:
  """Whether ``loss.negative_fraction`` < 1 applies to the configured loss."""
  if loss_config.name == "proxy_nca":
    return loss_config.assignment == "static"
  return loss_config.name in SAMPLED_LOSSES


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
  class_counts: np.ndarray | None = None,
) -> LossFn:
  """Binds the configured loss to ``(embeddings, labels, proxies, step)
  -> loss``.

  The sharded counterpart of ``create_loss_fn``: the same config fields,
  the proxies (R, D) padded and sharded as ``training.train_state`` keeps
  them, ``num_proxies`` real rows (K a class for several centres a class).
  Sampled negatives (``loss.negative_fraction`` < 1) are drawn on each
  device from its own classes, from ``seed`` and the step
  (``losses.sampled_proxies``).

  Raises:
    ValueError: a loss without a sharded form (``check_supported``) or a
      bad option.
  """
  check_supported(loss_config)
  create_loss_fn(loss_config, class_counts=class_counts)  # Checks options.
  name = loss_config.name
  options = loss_options(loss_config)[name]
  options.pop("assignment", None)
  if name == "proxy_anchor":
    return _every_proxy(
      functools.partial(
        sharded.sharded_proxy_anchor_loss,
        mesh=mesh,
        num_proxies=num_proxies,
        **options,
      )
    )
  fraction = loss_config.negative_fraction

  def key_of(step: jax.Array) -> jax.Array | None:
    return sampled_proxies.sample_key(seed, step) if fraction < 1 else None

  if name in losses.CLASS_WEIGHT_LOSSES:
    spec = margin_softmax_spec(loss_config, class_counts)
    num_classes = spec.num_classes(num_proxies)

    def bound_margin_softmax(embeddings, labels, proxies, step):
      return sharded.sharded_margin_softmax_loss(
        embeddings,
        labels,
        proxies,
        spec,
        mesh=mesh,
        num_classes=num_classes,
        negative_fraction=fraction,
        key=key_of(step),
        block_size=loss_config.proxy_block_size,
      )

    return bound_margin_softmax
  if name == "normalized_softmax":
    options = {
      "form": "softmax",
      "scale": margin_softmax.softmax_scale(options.pop("temperature")),
      **options,
    }

  def bound(embeddings, labels, proxies, step):
    return sharded.sharded_proxy_nca_loss(
      embeddings,
      labels,
      proxies,
      mesh=mesh,
      num_proxies=num_proxies,
      negative_fraction=fraction,
      key=key_of(step),
      **options,
    )

  return bound
