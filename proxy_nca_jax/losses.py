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
"""Metric-learning losses: Proxy-NCA and the triplet baseline.

Every loss is a pure function of ``(embeddings, labels, proxies?, *,
options)`` returning a float32 scalar, jit-able with static shapes.
Embeddings and proxies are L2-normalised inside the losses, as in the paper
(Sec. 4: "we normalise the embeddings and the proxies"); a zero vector stays
zero instead of producing NaN.

References:
  [1] Y. Movshovitz-Attias, A. Toshev, T. Leung, S. Ioffe, S. Singh. No Fuss
      Distance Metric Learning using Proxies. ICCV 2017.
  [2] F. Schroff, D. Kalenichenko, J. Philbin. FaceNet: A Unified Embedding
      for Face Recognition and Clustering. CVPR 2015.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from proxy_nca_jax import proxies as proxies_lib

PROXY_NCA_FORMS = ("paper", "softmax")
LOSSES = ("proxy_nca", "triplet_semihard")
# (embeddings (B, D), labels (B,), proxies (C, D)) -> scalar loss.
LossFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
_NORM_EPS = 1e-12


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  """Scales vectors to unit norm; a zero vector stays zero (no NaN)."""
  sq_norm = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq_norm, _NORM_EPS**2))


def squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
  """Pairwise squared Euclidean distances ||a_i - b_j||^2, shape (N, M).

  Uses the expansion |a|^2 + |b|^2 - 2 a.b (a matrix product), clamped at
  zero against rounding.
  """
  sq_a = jnp.sum(jnp.square(a), axis=-1)[:, None]
  sq_b = jnp.sum(jnp.square(b), axis=-1)[None, :]
  return jnp.maximum(sq_a + sq_b - 2.0 * a @ b.T, 0.0)


def _check_batch(embeddings: jax.Array, labels: jax.Array) -> None:
  if embeddings.ndim != 2:
    raise ValueError(
      f"embeddings must have shape (batch, dim), got {embeddings.shape}."
    )
  if labels.shape != embeddings.shape[:1]:
    raise ValueError(
      f"labels must have shape ({embeddings.shape[0]},) to match the "
      f"embeddings, got {labels.shape}."
    )


def proxy_nca_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  form: str = "softmax",
  scale: float = 1.0,
) -> jax.Array:
  """Proxy-NCA loss with static proxy assignment ([1], Eq. 4).

  With x = embedding / |embedding|, p_z = proxy_z / |proxy_z| and the scaled
  squared distance d(x, p) = scale * |x - p|^2, the loss of a sample of class
  y is, in the paper's form (the positive proxy is *excluded* from the
  denominator, so the loss can be negative)::

      L_paper = -log( exp(-d(x, p_y)) / sum_{z != y} exp(-d(x, p_z)) )
              = d(x, p_y) + logsumexp_{z != y} (-d(x, p_z))

  and in the softmax form used by most reimplementations (positive included,
  L >= 0; pytorch-metric-learning's ProxyNCALoss with softmax_scale=scale)::

      L_softmax = d(x, p_y) + logsumexp_z (-d(x, p_z))

  ``scale`` is the temperature's inverse: scale = s^2 is the same as
  normalising embeddings and proxies to norm s (ProxyNCA++ uses s = 3, i.e.
  scale = 9). The loss is averaged over the batch.

  Args:
    embeddings: float array (B, D). Normalised here; need not be unit norm.
    labels: int array (B,), values in [0, C): the index of each sample's
      proxy (static assignment, one proxy per training class).
    proxies: float array (C, D). Normalised here.
    form: "paper" or "softmax" (see above).
    scale: positive multiplier of the squared distances.

  Returns:
    float32 scalar, the mean loss over the batch.

  Raises:
    ValueError: for wrong shapes, an unknown form, a non-positive scale, or
      the paper form with a single proxy (its denominator would be empty).

  Example:
    >>> loss = proxy_nca_loss(emb, labels, params['proxies'], scale=8.0)
  """
  _check_batch(embeddings, labels)
  if proxies.ndim != 2 or proxies.shape[1] != embeddings.shape[1]:
    raise ValueError(
      f"proxies must have shape (num_proxies, {embeddings.shape[1]}), "
      f"got {proxies.shape}."
    )
  if form not in PROXY_NCA_FORMS:
    raise ValueError(f"form must be one of {PROXY_NCA_FORMS}, got {form!r}.")
  if not scale > 0:
    raise ValueError(f"scale must be positive, got {scale}.")
  if form == "paper" and proxies.shape[0] < 2:
    raise ValueError("The paper form needs at least two proxies.")

  x = l2_normalize(embeddings.astype(jnp.float32))
  p = l2_normalize(proxies.astype(jnp.float32))
  logits = -scale * squared_distances(x, p)  # (B, C): -d(x, p_z).
  positive = proxies_lib.static_assignment(labels, proxies.shape[0])
  positive_logit = jnp.sum(jnp.where(positive, logits, 0.0), axis=-1)
  if form == "paper":
    # -inf drops the positive from the denominator (and from its gradient).
    logits = jnp.where(positive, -jnp.inf, logits)
  per_sample = jax.nn.logsumexp(logits, axis=-1) - positive_logit
  return jnp.mean(per_sample)


def triplet_semihard_loss(
  embeddings: jax.Array, labels: jax.Array, *, margin: float = 0.2
) -> jax.Array:
  """Triplet loss with semi-hard negatives mined in the batch ([2], Eq. 1).

  For every anchor a and positive p (same label, p != a) the loss is
  max(0, margin + d(a, p) - d(a, n)) with d the squared Euclidean distance
  between L2-normalised embeddings. The negative n is semi-hard ([2],
  Sec. 3.2): the closest negative that is still farther than the positive,
  d(a, n) > d(a, p). When no negative is farther than the positive, the
  farthest negative is used (as in TF-Addons' triplet_semihard_loss). Pairs
  whose anchor has no negative in the batch are left out. The loss is the mean
  over the remaining (anchor, positive) pairs, 0 if there are none.

  Args:
    embeddings: float array (B, D). Normalised here.
    labels: int array (B,) of class labels (any integer values).
    margin: the margin alpha of [2].

  Returns:
    float32 scalar.
  """
  _check_batch(embeddings, labels)
  x = l2_normalize(embeddings.astype(jnp.float32))
  dist = squared_distances(x, x)  # (B, B)
  same = labels[:, None] == labels[None, :]
  not_self = ~jnp.eye(labels.shape[0], dtype=bool)
  positive_pair = same & not_self  # [a, p]
  negative = ~same  # [a, n]

  # For each (a, p): candidates n with d(a, n) > d(a, p), shape (B, B, B).
  d_ap = dist[:, :, None]
  d_an = dist[:, None, :]
  semihard = negative[:, None, :] & (d_an > d_ap)
  closest_semihard = jnp.min(jnp.where(semihard, d_an, jnp.inf), axis=-1)
  farthest_negative = jnp.max(jnp.where(negative, dist, -jnp.inf), axis=-1)
  d_neg = jnp.where(
    jnp.any(semihard, axis=-1), closest_semihard, farthest_negative[:, None]
  )
  valid = positive_pair & jnp.any(negative, axis=-1)[:, None]
  hinge = jnp.maximum(margin + dist - jnp.where(valid, d_neg, 0.0), 0.0)
  num_valid = jnp.sum(valid)
  return jnp.sum(jnp.where(valid, hinge, 0.0)) / jnp.maximum(num_valid, 1)


def create_loss_fn(loss_config: ml_collections.ConfigDict) -> LossFn:
  """Binds the configured loss to ``(embeddings, labels, proxies) -> loss``.

  The triplet baseline ignores the proxies (they stay in the state, untouched
  by its gradient, so checkpoints of both kinds have the same structure).
  """
  if loss_config.name == "proxy_nca":
    return functools.partial(
      proxy_nca_loss, form=loss_config.form, scale=loss_config.scale
    )
  if loss_config.name == "triplet_semihard":

    def triplet(embeddings, labels, proxies):
      del proxies  # Data-point loss: mined in the batch.
      return triplet_semihard_loss(
        embeddings, labels, margin=loss_config.margin
      )

    return triplet
  raise ValueError(
    f"loss.name must be one of {LOSSES}, got {loss_config.name!r}."
  )
