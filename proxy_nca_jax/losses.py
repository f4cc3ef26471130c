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
"""Proxy losses (Proxy-NCA, proxy ranking, Proxy-Anchor) and loss selection.

Every loss is a pure function of ``(embeddings, labels, proxies?, *,
options)`` returning a float32 scalar, jit-able with static shapes.
Embeddings and proxies are L2-normalised inside the losses, as in the paper
(Sec. 4: "we normalise the embeddings and the proxies"); a zero vector stays
zero instead of producing NaN. The data-point baselines (triplet, lifted
structure, N-pairs, contrastive, NCA) are in ``pair_losses``;
``create_loss_fn`` selects any of them by ``config.loss.name``.

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
proxies (see ``dynamic_proxy_nca_loss``).

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

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from proxy_nca_jax import pair_losses
from proxy_nca_jax import proxies as proxies_lib

PROXY_NCA_FORMS = ("paper", "softmax")
ASSIGNMENTS = ("static", "dynamic")
PROXY_LOSSES = ("proxy_nca", "proxy_ranking", "proxy_anchor")
PAIR_LOSSES = (
  "triplet_all",
  "triplet_semihard",
  "triplet_batch_hard",
  "lifted_structure",
  "npairs",
  "contrastive",
  "nca",
)
LOSSES = PROXY_LOSSES + PAIR_LOSSES
# (embeddings (B, D), labels (B,), proxies (C, D)) -> scalar loss.
LossFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]

# Geometry and the first baseline moved to pair_losses; kept importable here.
l2_normalize = pair_losses.l2_normalize
squared_distances = pair_losses.squared_distances
triplet_semihard_loss = pair_losses.triplet_semihard_loss


def check_proxies(embeddings: jax.Array, proxies: jax.Array) -> None:
  """Raises ValueError unless embeddings are (B, D) and proxies (P, D)."""
  if embeddings.ndim != 2:
    raise ValueError(
      f"embeddings must have shape (batch, dim), got {embeddings.shape}."
    )
  if proxies.ndim != 2 or proxies.shape[1] != embeddings.shape[1]:
    raise ValueError(
      f"proxies must have shape (num_proxies, {embeddings.shape[1]}), "
      f"got {proxies.shape}."
    )


def _check_relations(
  embeddings: jax.Array, similar: jax.Array, dissimilar: jax.Array
) -> None:
  size = embeddings.shape[0]
  for name, mask in (("similar", similar), ("dissimilar", dissimilar)):
    if mask.shape != (size, size) or mask.dtype != jnp.bool_:
      raise ValueError(
        f"{name} must be a bool array of shape ({size}, {size}), got "
        f"{mask.dtype} {mask.shape}."
      )


def check_proxy_nca_options(
  form: str,
  scale: float,
  label_smoothing: float,
  embedding_norm: float,
  proxy_norm: float,
  assignment: str,
) -> None:
  """Raises ValueError for an option ``proxy_nca_loss`` does not accept."""
  if form not in PROXY_NCA_FORMS:
    raise ValueError(f"form must be one of {PROXY_NCA_FORMS}, got {form!r}.")
  if assignment not in ASSIGNMENTS:
    raise ValueError(
      f"assignment must be one of {ASSIGNMENTS}, got {assignment!r}."
    )
  for name, value in (
    ("scale", scale),
    ("embedding_norm", embedding_norm),
    ("proxy_norm", proxy_norm),
  ):
    if not value > 0:
      raise ValueError(f"{name} must be positive, got {value}.")
  if not 0 <= label_smoothing < 1:
    raise ValueError(
      f"label_smoothing must be in [0, 1), got {label_smoothing}."
    )
  if label_smoothing and (form != "softmax" or assignment != "static"):
    raise ValueError(
      "label_smoothing needs form='softmax' and assignment='static' (the "
      "smoothed target is a distribution over all the class proxies)."
    )


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
  proxy row, [0, C); 0 if there are none.

  ``assignment='dynamic'`` computes ``dynamic_proxy_nca_loss`` with the
  relations given by the labels (``proxies.relations_from_labels``); labels
  may then be any integers and the number of proxies any number.

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
  pair_losses.check_batch(embeddings, labels)
  check_proxies(embeddings, proxies)
  check_proxy_nca_options(
    form, scale, label_smoothing, embedding_norm, proxy_norm, assignment
  )
  norms = dict(embedding_norm=embedding_norm, proxy_norm=proxy_norm)
  if assignment == "dynamic":
    similar, dissimilar = proxies_lib.relations_from_labels(labels)
    return dynamic_proxy_nca_loss(
      embeddings, proxies, similar, dissimilar, form=form, scale=scale, **norms
    )
  num_proxies = proxies.shape[0]
  if (form == "paper" or label_smoothing) and num_proxies < 2:
    raise ValueError(
      "The paper form and label smoothing need at least two proxies."
    )

  logits = -scale * proxies_lib.proxy_distances(
    embeddings, proxies, **norms
  )  # (B, C)
  positive = proxies_lib.static_assignment(labels, num_proxies)
  positive_logit = jnp.sum(jnp.where(positive, logits, 0.0), axis=-1)
  if form == "paper":
    per_sample = (
      pair_losses.masked_logsumexp(logits, ~positive) - positive_logit
    )
  elif label_smoothing:
    targets = jnp.where(
      positive, 1.0 - label_smoothing, label_smoothing / (num_proxies - 1)
    )
    per_sample = -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)
  else:
    per_sample = jax.nn.logsumexp(logits, axis=-1) - positive_logit
  return pair_losses.masked_mean(per_sample, jnp.any(positive, axis=-1))


def dynamic_proxy_nca_loss(
  embeddings: jax.Array,
  proxies: jax.Array,
  similar: jax.Array,
  dissimilar: jax.Array,
  *,
  form: str = "softmax",
  scale: float = 1.0,
  embedding_norm: float = 1.0,
  proxy_norm: float = 1.0,
) -> jax.Array:
  """Proxy-NCA with dynamic proxy assignment ([1], Sec. 3.1).

  A sample's proxy is its nearest proxy, chosen without gradient, among any
  number of proxies. The supervision is relational: ``similar[i, j]`` (j is
  a positive of anchor i) and ``dissimilar[i, k]`` (k is a negative of i),
  built from labels by ``proxies.relations_from_labels`` or from (anchor,
  positive, negative) triplets by ``proxies.relations_from_triplets``.
  ``proxies.dynamic_targets`` gives each anchor x_i a positive proxy p+_i and
  a set N_i of negative proxies (the paper's L(x, p(y), p(Z)), see below),
  and, with d scaled as in ``proxy_nca_loss``::

      paper:   L_i = d(x_i, p+_i) + logsumexp_{p in N_i} (-d(x_i, p))
      softmax: L_i = d(x_i, p+_i)
                     + log(exp(-d(x_i, p+_i)) + sum_{p in N_i} exp(-d(x_i, p)))

  averaged over the anchors with a negative proxy and a proxy left for the
  positive (0 if none).

  Why this assignment. Read literally, the paper's proxies of a positive
  pair and of its negatives are p(y) and the set p(Z) of the negatives'
  nearest proxies. Early in training the classes' nearest proxies mix, so
  almost every p(y) is also in p(Z). Measured on FMNIST-ZS (softmax form,
  scale 16, proxies at the class means, batches of 4 classes x 16 images,
  300 steps, 3,000 test images, seed 0): keeping such proxies on both sides
  drew every sample to one proxy within 10 steps (loss stuck at log 2, no
  gradient), and leaving out the pairs whose p(y) is in p(Z) left no pair
  at all; MAP@R fell from 0.356 untrained to 0.314 and 0.258. Instead
  ``proxies.dynamic_targets`` counts a proxy as a negative of i only when
  the group of one of i's negatives *claims* it (has more of its nearest
  samples than any group it competes with), and takes as positive the
  anchor's nearest proxy that no negative claims: a sample stranded at
  another class's proxy is pulled to its own class's proxy or to a free
  one, and unused proxies get recruited. MAP@R 0.387 and 0.367 for seeds 0
  and 1 (static assignment: 0.358 and 0.390), NMI 0.475 and 0.409 (0.386
  and 0.461); from random proxies (seed 0) 0.334, NMI 0.384 (static 0.364,
  0.406), so start from proxies near the data. Where no two groups compete
  for a proxy the targets are exactly the paper's p(x) = p(y) and p(Z).

  Args:
    embeddings: float array (B, D). Normalised here.
    proxies: float array (P, D), any P >= 1. Normalised here.
    similar: bool array (B, B), similar[i, j]: j is a positive of i.
    dissimilar: bool array (B, B), dissimilar[i, k]: k is a negative of i.
    form: "paper" or "softmax" (see above).
    scale: positive multiplier of the squared distances.
    embedding_norm: a, the norm embeddings are scaled to.
    proxy_norm: b, the norm proxies are scaled to.

  Returns:
    float32 scalar.

  Raises:
    ValueError: for wrong shapes or dtypes, an unknown form, or a
      non-positive scale or norm.
  """
  check_proxies(embeddings, proxies)
  _check_relations(embeddings, similar, dissimilar)
  check_proxy_nca_options(
    form, scale, 0.0, embedding_norm, proxy_norm, "dynamic"
  )
  dist = proxies_lib.proxy_distances(
    embeddings, proxies, embedding_norm=embedding_norm, proxy_norm=proxy_norm
  )
  positive, negatives, valid = _dynamic_terms(dist, similar, dissimilar)
  negatives_lse = pair_losses.masked_logsumexp(-scale * dist, negatives, axis=1)
  negatives_lse = jnp.where(valid, negatives_lse, 0.0)
  positive = scale * positive
  if form == "paper":
    per_anchor = positive + negatives_lse
  else:
    per_anchor = positive + jnp.logaddexp(-positive, negatives_lse)
  return pair_losses.masked_mean(per_anchor, valid)


def _dynamic_terms(
  dist: jax.Array, similar: jax.Array, dissimilar: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """d(x_i, p+_i) (B,), negative proxies (B, P), valid anchors (B,)."""
  positive, negatives = proxies_lib.dynamic_targets(dist, similar, dissimilar)
  positive_dist = jnp.take_along_axis(dist, positive[:, None], axis=1)[:, 0]
  valid = jnp.any(negatives, axis=1) & ~jnp.all(negatives, axis=1)
  return positive_dist, negatives, valid


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
  pair_losses.check_batch(embeddings, labels)
  check_proxies(embeddings, proxies)
  if assignment not in ASSIGNMENTS:
    raise ValueError(
      f"assignment must be one of {ASSIGNMENTS}, got {assignment!r}."
    )
  if assignment == "dynamic":
    similar, dissimilar = proxies_lib.relations_from_labels(labels)
    return dynamic_proxy_ranking_loss(
      embeddings, proxies, similar, dissimilar, margin=margin
    )
  num_proxies = proxies.shape[0]
  if num_proxies < 2:
    raise ValueError("The static ranking loss needs at least two proxies.")
  dist = proxies_lib.proxy_distances(embeddings, proxies)  # (B, C)
  positive = proxies_lib.static_assignment(labels, num_proxies)
  positive_dist = jnp.sum(jnp.where(positive, dist, 0.0), axis=-1)
  hinge = jax.nn.relu(margin + positive_dist[:, None] - dist)
  per_sample = jnp.sum(jnp.where(positive, 0.0, hinge), axis=-1)
  per_sample /= num_proxies - 1
  return pair_losses.masked_mean(per_sample, jnp.any(positive, axis=-1))


def dynamic_proxy_ranking_loss(
  embeddings: jax.Array,
  proxies: jax.Array,
  similar: jax.Array,
  dissimilar: jax.Array,
  *,
  margin: float = 0.2,
) -> jax.Array:
  """Proxy ranking loss with dynamic assignment ([1], Sec. 3 and 3.1).

  Positive proxy p+_i and negative proxies N_i as in
  ``dynamic_proxy_nca_loss``: anchor i costs the mean over p in N_i of
  max(0, margin + d(x_i, p+_i) - d(x_i, p)), and the loss is the mean over
  the anchors with a negative proxy and a proxy left for the positive (0 if
  none). Memory is O(B^2 P), for the claims of ``proxies.dynamic_targets``.

  Args:
    embeddings: float array (B, D). Normalised here.
    proxies: float array (P, D), any P >= 1. Normalised here.
    similar: bool array (B, B), similar[i, j]: j is a positive of i.
    dissimilar: bool array (B, B), dissimilar[i, k]: k is a negative of i.
    margin: M, in squared-distance units.

  Returns:
    float32 scalar.
  """
  check_proxies(embeddings, proxies)
  _check_relations(embeddings, similar, dissimilar)
  dist = proxies_lib.proxy_distances(embeddings, proxies)
  positive, negatives, valid = _dynamic_terms(dist, similar, dissimilar)
  hinge = jax.nn.relu(margin + positive[:, None] - dist)
  count = jnp.maximum(jnp.sum(negatives, axis=1), 1)
  per_anchor = jnp.sum(jnp.where(negatives, hinge, 0.0), axis=1) / count
  return pair_losses.masked_mean(per_anchor, valid)


def log1p_sum_exp(lse: jax.Array) -> jax.Array:
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
  pair_losses.check_batch(embeddings, labels)
  check_proxies(embeddings, proxies)
  x = l2_normalize(embeddings.astype(jnp.float32))
  p = l2_normalize(proxies.astype(jnp.float32))
  cos = x @ p.T  # (B, C)
  positive = proxies_lib.static_assignment(labels, proxies.shape[0])
  pull = log1p_sum_exp(
    pair_losses.masked_logsumexp(-alpha * (cos - delta), positive, axis=0)
  )
  push = log1p_sum_exp(
    pair_losses.masked_logsumexp(alpha * (cos + delta), ~positive, axis=0)
  )
  with_positive = jnp.any(positive, axis=0)
  return pair_losses.masked_mean(pull, with_positive) + jnp.mean(push)


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


def create_loss_fn(loss_config: ml_collections.ConfigDict) -> LossFn:
  """Binds the configured loss to ``(embeddings, labels, proxies) -> loss``.

  ``loss_config.name`` is one of ``LOSSES``; the fields each loss reads are
  documented in ``configs/fashion_mnist.py``. The data-point baselines
  ignore the proxies (they stay in the state, untouched by the gradient, so
  checkpoints of all kinds have the same structure). The options are
  checked here, by tracing the loss once on an abstract batch of two.

  Raises:
    ValueError: an unknown name or a bad option.
  """
  name = loss_config.name
  if name not in LOSSES:
    raise ValueError(f"loss.name must be one of {LOSSES}, got {name!r}.")
  options = loss_options(loss_config)[name]
  if name in PROXY_LOSSES:
    loss_fn = functools.partial(globals()[f"{name}_loss"], **options)
  else:
    pair_loss = functools.partial(
      getattr(pair_losses, f"{name}_loss"), **options
    )

    def loss_fn(
      embeddings: jax.Array, labels: jax.Array, proxies: jax.Array
    ) -> jax.Array:
      del proxies  # Mined in the batch.
      return pair_loss(embeddings, labels)

  jax.eval_shape(
    loss_fn,
    jax.ShapeDtypeStruct((2, 1), jnp.float32),
    jax.ShapeDtypeStruct((2,), jnp.int32),
    jax.ShapeDtypeStruct((2, 1), jnp.float32),
  )
  return loss_fn
