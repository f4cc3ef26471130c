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
"""The proxy losses: Proxy-NCA, proxy ranking and Proxy-Anchor.

Every loss is a pure function of ``(embeddings, labels, proxies?, *,
options)`` returning a float32 scalar, jit-able with static shapes.
Embeddings and proxies are L2-normalised inside the losses, as in the paper
(Sec. 4: "we normalise the embeddings and the proxies"); a zero vector stays
zero instead of producing NaN. The data-point baselines (triplet, lifted
structure, N-pairs, contrastive, NCA) are in ``losses.pair``;
``training.loss_binding.create_loss_fn`` selects any loss by
``config.loss.name``.

Distances. With x = embedding / |embedding| and p = proxy / |proxy|, the
proxy losses use d(x, p) = |a x - b p|^2 (a = ``embedding_norm``, b =
``proxy_norm``, both 1 by default), times ``scale`` in the NCA losses.
Because |a x - b p|^2 = a^2 + b^2 - 2 a b x.p and the NCA and ranking losses
only compare distances of one sample to several proxies, the constant
a^2 + b^2 cancels: these losses depend on ``scale * a * b`` alone
(ProxyNCA++'s a = b = 3 is ``scale`` 9). The separate norms are offered to
match implementations that set them.

Proxy assignment (``proxies``): static, one proxy per class (a sample's label
is its proxy's row), or dynamic, a sample's nearest proxy, any number of
proxies (see ``losses.dynamic``).

References:
  [1] Y. Movshovitz-Attias, A. Toshev, T. Leung, S. Ioffe, S. Singh. No Fuss
      Distance Metric Learning using Proxies. ICCV 2017.
  [2] E. W. Teh, T. DeVries, G. W. Taylor. ProxyNCA++: Revisiting and
      Revitalizing Proxy Neighborhood Component Analysis. ECCV 2020.
  [3] C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna. Rethinking the
      Inception Architecture for Computer Vision. CVPR 2016 (label smoothing,
      Sec. 7).
  [4] S. Kim, D. Kim, M. Cho, S. Kwak. Proxy Anchor Loss for Deep Metric
      Learning. CVPR 2020.
"""

import jax
import jax.numpy as jnp

from proxy_nca_jax import errors, geometry
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.losses import _checks, dynamic, pair, proxy_blocks


def proxy_nca_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  form: str = "softmax",
  scale: float = 1.0,
  label_smoothing: float = 0.0,
  embedding_norm: float = 1.0,
  proxy_norm: float = 1.0,
  assignment: str = "static",
  block_size: int | None = None,
) -> jax.Array:
  """Proxy-NCA loss ([1], Eq. 4), static or dynamic proxy assignment.

  With static assignment (one proxy per class) and the scaled distance
  d(x, p) = scale * |a x - b p|^2, the loss of a sample of class y is, in
  the paper's form (the positive proxy is *excluded* from the denominator,
  so the loss can be negative)::

      L_paper = -log( exp(-d(x, p_y)) / sum_{z != y} exp(-d(x, p_z)) )
              = d(x, p_y) + logsumexp_{z != y} (-d(x, p_z))

  and in the softmax form used by most reimplementations (positive included,
  L >= 0; pytorch-metric-learning's ProxyNCALoss with softmax_scale=scale)::

      L_softmax = d(x, p_y) + logsumexp_z (-d(x, p_z))

  Label smoothing ([3]; as in the PyTorch Proxy-NCA of dichotomies and in
  [2]'s code) replaces the one-hot target of the softmax form by 1 - eps on
  the sample's proxy and eps / (C - 1) on each other proxy::

      L_smooth = -sum_z t_z log softmax_z(-d(x, p_z))

  ``scale`` is the temperature's inverse: scale = s^2 is the same as
  normalising embeddings and proxies to norm s (ProxyNCA++ [2] uses s = 3,
  i.e. scale = 9). The loss is averaged over the samples whose label is a
  proxy row, [0, C); 0 if there are none. Concrete labels outside [0, C)
  raise ValueError; traced ones (inside ``jit``) are left out.

  ``assignment='dynamic'`` computes ``losses.dynamic`` with the
  relations given by the labels (``proxies.relations_from_labels``); labels
  may then be any integers and the number of proxies any number.

  With more static proxies than ``block_size``, the sums over the proxies
  are taken a block of ``block_size`` proxies at a time
  (``losses.proxy_blocks``), and no (B, C) array is formed: the same loss
  to float32 rounding, with a fraction of the memory and a quarter of the
  time at a million proxies (benchmarks/README.md). ``None`` chooses: blocks
  of about 4,096 above 65,536 proxies (``proxy_blocks.chosen_block_size``:
  a divisor of their number where one lies in (2,048, 4,096]).

  Args:
    embeddings: float array (B, D). Normalised here; need not be unit norm.
    labels: int array (B,); static: values in [0, C), the index of each
      sample's proxy (one proxy per training class).
    proxies: float array (C, D). Normalised here.
    form: "paper" or "softmax" (see above).
    scale: positive multiplier of the squared distances.
    label_smoothing: eps in [0, 1); static softmax form only.
    embedding_norm: a, the norm embeddings are scaled to.
    proxy_norm: b, the norm proxies are scaled to.
    assignment: "static" or "dynamic".
    block_size: proxies per block, or None for the automatic choice.

  Returns:
    float32 scalar, the mean loss over the batch.

  Raises:
    ValueError: for wrong shapes, an unknown form or assignment, a
      non-positive scale or norm, label smoothing outside [0, 1) or with
      the paper form or dynamic assignment, or the static paper form (or
      label smoothing) with a single proxy.

  Example:
    >>> loss = proxy_nca_loss(emb, labels, params['proxies'], scale=8.0)
  """
  _checks.check_batch(embeddings, labels)
  _checks.check_proxies(embeddings, proxies)
  _checks.check_proxy_nca_options(
    form, scale, label_smoothing, embedding_norm, proxy_norm, assignment
  )
  block_size = proxy_blocks.chosen_block_size(block_size, proxies.shape[0])
  norms = dict(embedding_norm=embedding_norm, proxy_norm=proxy_norm)
  if assignment == "dynamic":
    similar, dissimilar = proxies_lib.relations_from_labels(labels)
    return dynamic.dynamic_proxy_nca_loss(
      embeddings, proxies, similar, dissimilar, form=form, scale=scale, **norms
    )
  num_proxies = proxies.shape[0]
  _checks.check_static_labels(labels, num_proxies)
  if (form == "paper" or label_smoothing) and num_proxies < 2:
    raise errors.InvalidInputError(
      "The paper form and label smoothing need at least two proxies."
    )
  if block_size is not None:
    lse, logit_sum, positive_logit = proxy_blocks.nca_terms(
      embeddings,
      proxies,
      labels,
      jnp.zeros((), jnp.int32),
      block_size=block_size,
      scale=scale,
      num_columns=num_proxies,
      exclude_positive=form == "paper",
      **norms,
    )
    per_sample = smoothed_nca(
      lse, positive_logit, logit_sum, label_smoothing, num_proxies
    )
    return pair.masked_mean(per_sample, (labels >= 0) & (labels < num_proxies))

  logits = -scale * proxies_lib.proxy_distances(
    embeddings, proxies, **norms
  )  # (B, C)
  positive = proxies_lib.static_assignment(labels, num_proxies)
  positive_logit = jnp.sum(jnp.where(positive, logits, 0.0), axis=-1)
  if form == "paper":
    per_sample = geometry.masked_logsumexp(logits, ~positive) - positive_logit
  elif label_smoothing:
    targets = jnp.where(
      positive, 1.0 - label_smoothing, label_smoothing / (num_proxies - 1)
    )
    per_sample = -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)
  else:
    per_sample = jax.nn.logsumexp(logits, axis=-1) - positive_logit
  return pair.masked_mean(per_sample, jnp.any(positive, axis=-1))


def smoothed_nca(
  lse: jax.Array,
  positive_logit: jax.Array,
  logit_sum: jax.Array | None,
  label_smoothing: float,
  num_proxies: int,
) -> jax.Array:
  """Per-sample NCA loss from its log-sum-exp, positive logit and logit sum.

  -sum_z t_z log softmax_z(l) = lse - (1 - eps) l_y - eps / (C - 1)
  sum_{z != y} l_z for the smoothed targets t (``proxy_nca_loss``), which
  is lse - l_y for eps = 0 (either form: ``lse`` is taken over the form's
  denominator; ``logit_sum``, sum_z l_z, is then not needed).
  """
  if not label_smoothing:
    return lse - positive_logit
  others = (logit_sum - positive_logit) / (num_proxies - 1)
  return (
    lse - (1.0 - label_smoothing) * positive_logit - label_smoothing * others
  )


def proxy_ranking_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  margin: float = 0.2,
  assignment: str = "static",
) -> jax.Array:
  """Proxy ranking (triplet) loss ([1], Sec. 3), static or dynamic.

  With d the squared distance between the normalised embedding and proxies,
  each (sample x, positive proxy p(y), negative proxy p(z)) costs
  max(0, margin + d(x, p(y)) - d(x, p(z))). Reduction: the mean over the
  negative proxies of a sample (static: the C - 1 other proxies), then the
  mean over the samples whose label is in [0, C) (static), so the loss is
  the mean over all B (C - 1) triplets; 0 if there are none.
  ``assignment='dynamic'`` is ``dynamic_proxy_ranking_loss`` with the
  relations given by the labels.

  Args:
    embeddings: float array (B, D). Normalised here.
    labels: int array (B,); static: values in [0, C).
    proxies: float array (C, D). Normalised here.
    margin: M, in squared-distance units (unit vectors: d in [0, 4]).
    assignment: "static" or "dynamic".

  Returns:
    float32 scalar.

  Raises:
    ValueError: for wrong shapes, an unknown assignment or, static, a single
      proxy.
  """
  _checks.check_batch(embeddings, labels)
  _checks.check_proxies(embeddings, proxies)
  if assignment not in _checks.ASSIGNMENTS:
    raise errors.InvalidInputError(
      f"assignment must be one of {_checks.ASSIGNMENTS}, got {assignment!r}."
    )
  if assignment == "dynamic":
    similar, dissimilar = proxies_lib.relations_from_labels(labels)
    return dynamic.dynamic_proxy_ranking_loss(
      embeddings, proxies, similar, dissimilar, margin=margin
    )
  num_proxies = proxies.shape[0]
  _checks.check_static_labels(labels, num_proxies)
  if num_proxies < 2:
    raise errors.InvalidInputError(
      "The static ranking loss needs at least two proxies."
    )
  dist = proxies_lib.proxy_distances(embeddings, proxies)  # (B, C)
  positive = proxies_lib.static_assignment(labels, num_proxies)
  positive_dist = jnp.sum(jnp.where(positive, dist, 0.0), axis=-1)
  hinge = jax.nn.relu(margin + positive_dist[:, None] - dist)
  per_sample = jnp.sum(jnp.where(positive, 0.0, hinge), axis=-1)
  per_sample /= num_proxies - 1
  return pair.masked_mean(per_sample, jnp.any(positive, axis=-1))


def _log1p_sum_exp(lse: jax.Array) -> jax.Array:
  """log(1 + sum exp(.)) from the log-sum-exp; 0 for an empty sum."""
  finite = jnp.isfinite(lse)
  return jnp.where(finite, jax.nn.softplus(jnp.where(finite, lse, 0.0)), 0.0)


def proxy_anchor_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  alpha: float = 32.0,
  delta: float = 0.1,
) -> jax.Array:
  """Proxy-Anchor loss ([4], Eq. 4), static assignment.

  Each proxy is an anchor for the batch. With s(x, p) the cosine similarity,
  X_p^+ the samples of proxy p's class, X_p^- the others, P^+ the proxies
  with at least one sample in the batch and P all C proxies::

      L = 1/|P^+| sum_{p in P^+} log(1 + sum_{x in X_p^+}
                                          exp(-alpha (s(x, p) - delta)))
        + 1/|P|   sum_{p in P}   log(1 + sum_{x in X_p^-}
                                          exp(alpha (s(x, p) + delta)))

  computed with log-sum-exp (stable for alpha = 32). The first term is 0
  when no label of the batch is in [0, C).

  Args:
    embeddings: float array (B, D). Normalised here.
    labels: int array (B,), values in [0, C).
    proxies: float array (C, D). Normalised here.
    alpha: scaling factor (32 in [4]).
    delta: margin (0.1 in [4]).

  Returns:
    float32 scalar.
  """
  _checks.check_batch(embeddings, labels)
  _checks.check_proxies(embeddings, proxies)
  _checks.check_static_labels(labels, proxies.shape[0])
  x = geometry.l2_normalize(embeddings.astype(jnp.float32))
  p = geometry.l2_normalize(proxies.astype(jnp.float32))
  cos = x @ p.T  # (B, C)
  positive = proxies_lib.static_assignment(labels, proxies.shape[0])
  pull = _log1p_sum_exp(
    geometry.masked_logsumexp(-alpha * (cos - delta), positive, axis=0)
  )
  push = _log1p_sum_exp(
    geometry.masked_logsumexp(alpha * (cos + delta), ~positive, axis=0)
  )
  with_positive = jnp.any(positive, axis=0)
  return pair.masked_mean(pull, with_positive) + jnp.mean(push)
