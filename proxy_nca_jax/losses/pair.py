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
"""Data-point losses: the baselines that Proxy-NCA is compared against.

Every loss here compares embeddings of the same batch with each other (no
proxies) and mines its pairs or triplets in the batch with boolean masks, so
it is jit-able with static shapes. With x_i the L2-normalised embedding of
sample i, the losses use d_ij = |x_i - x_j|^2 (squared) or D_ij = |x_i - x_j|
(Euclidean), as their papers do. Positives of an anchor i are the other
samples of its class (j != i), negatives the samples of other classes.

Most of these losses need several images per class in a batch; use
class-balanced batches (``config.input.samples_per_class``).

The geometry they share with the proxy losses (``l2_normalize``,
``squared_distances``, ``masked_logsumexp``) is in ``geometry``.

References:
  [1] Y. Movshovitz-Attias, A. Toshev, T. Leung, S. Ioffe, S. Singh. No Fuss
      Distance Metric Learning using Proxies. ICCV 2017.
  [2] F. Schroff, D. Kalenichenko, J. Philbin. FaceNet: A Unified Embedding
      for Face Recognition and Clustering. CVPR 2015.
  [3] A. Hermans, L. Beyer, B. Leibe. In Defense of the Triplet Loss for
      Person Re-Identification. arXiv:1703.07737, 2017.
  [4] H. O. Song, Y. Xiang, S. Jegelka, S. Savarese. Deep Metric Learning via
      Lifted Structured Feature Embedding. CVPR 2016.
  [5] K. Sohn. Improved Deep Metric Learning with Multi-class N-pair Loss
      Objective. NeurIPS 2016.
  [6] R. Hadsell, S. Chopra, Y. LeCun. Dimensionality Reduction by Learning
      an Invariant Mapping. CVPR 2006.
  [7] J. Goldberger, S. Roweis, G. Hinton, R. Salakhutdinov. Neighbourhood
      Components Analysis. NeurIPS 2004.
"""

import jax
import jax.numpy as jnp

from proxy_nca_jax import errors, geometry
from proxy_nca_jax.losses import _checks

NCA_FORMS = ("paper", "softmax")


def _batch_geometry(
  embeddings: jax.Array, labels: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Returns squared distances (B, B) and positive and negative masks."""
  _checks.check_batch(embeddings, labels)
  x = geometry.l2_normalize(embeddings.astype(jnp.float32))
  same = labels[:, None] == labels[None, :]
  not_self = ~jnp.eye(labels.shape[0], dtype=bool)
  return geometry.squared_distances(x, x), same & not_self, ~same


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of ``values`` where ``mask``; 0 when the mask is empty."""
  total = jnp.sum(jnp.where(mask, values, 0.0))
  return total / jnp.maximum(jnp.sum(mask), 1)


def triplet_all_loss(
  embeddings: jax.Array, labels: jax.Array, *, margin: float = 0.2
) -> jax.Array:
  """Triplet loss over every triplet of the batch ([2], Eq. 1).

  The mean of max(0, margin + d_ap - d_an) over all (anchor a, positive p,
  negative n) of the batch, easy (zero-loss) triplets included; 0 when the
  batch has no triplet. Memory is O(B^3).

  Args:
    embeddings: float array (B, D). Normalised here.
    labels: int array (B,) of class labels (any integer values).
    margin: the margin alpha of [2], in squared-distance units.

  Returns:
    float32 scalar.
  """
  dist, positive, negative = _batch_geometry(embeddings, labels)
  valid = positive[:, :, None] & negative[:, None, :]  # [a, p, n]
  hinge = jax.nn.relu(margin + dist[:, :, None] - dist[:, None, :])
  return masked_mean(hinge, valid)


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
  dist, positive_pair, negative = _batch_geometry(embeddings, labels)
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
  return masked_mean(hinge, valid)


def triplet_batch_hard_loss(
  embeddings: jax.Array, labels: jax.Array, *, margin: float = 0.2
) -> jax.Array:
  """Triplet loss with the hardest positive and negative per anchor ([3]).

  Batch-hard ([3], Eq. 5, hinge version): for every anchor a,
  max(0, margin + max_p d_ap - min_n d_an), averaged over the anchors that
  have at least one positive and one negative in the batch (0 if none). Uses
  squared distances like the other triplet losses here (so one margin means
  the same thing for all of them); [3] uses Euclidean distances.

  Args:
    embeddings: float array (B, D). Normalised here.
    labels: int array (B,) of class labels (any integer values).
    margin: the margin, in squared-distance units.

  Returns:
    float32 scalar.
  """
  dist, positive, negative = _batch_geometry(embeddings, labels)
  hardest_positive = jnp.max(jnp.where(positive, dist, -jnp.inf), axis=1)
  hardest_negative = jnp.min(jnp.where(negative, dist, jnp.inf), axis=1)
  valid = jnp.any(positive, axis=1) & jnp.any(negative, axis=1)
  gap = jnp.where(valid, hardest_positive - hardest_negative, 0.0)
  return masked_mean(jax.nn.relu(margin + gap), valid)


def lifted_structure_loss(
  embeddings: jax.Array, labels: jax.Array, *, margin: float = 1.0
) -> jax.Array:
  """Smooth lifted structured loss ([4], Eq. 4).

  With Euclidean distances D and, for each positive pair (i, j),

      J_ij = log( sum_{k in N(i)} exp(margin - D_ik)
                  + sum_{l in N(j)} exp(margin - D_jl) ) + D_ij

  (N(i): the negatives of i in the batch), the loss is
  1 / (2 |P|) * sum_{(i, j) in P} max(0, J_ij)^2 over the set P of
  unordered positive pairs; 0 when there is none. A pair neither of whose
  samples has a negative contributes 0.

  The embeddings are unit-norm, so D <= 2 and a pair whose samples have n
  negatives in all has J_ij >= margin - 2 + log(n): with 8 images of each
  of 8 classes (n = 112) the hinge never closes, and the margin only adds
  a constant to every J_ij, a weight that Adam's step mostly normalises
  away (docs/README.md, RQ4 on GLYPHS-ZS).

  Args:
    embeddings: float array (B, D). Normalised here.
    labels: int array (B,) of class labels (any integer values).
    margin: alpha of [4], in Euclidean-distance units (1 in [4]).

  Returns:
    float32 scalar.
  """
  sq, positive, negative = _batch_geometry(embeddings, labels)
  dist = geometry.euclidean_from_squared(sq)
  per_sample = geometry.masked_logsumexp(
    margin - dist, negative, axis=1
  )  # (B,)
  shape = dist.shape
  both = jnp.stack(
    [
      jnp.broadcast_to(per_sample[:, None], shape),
      jnp.broadcast_to(per_sample[None, :], shape),
    ],
    axis=-1,
  )
  pair_lse = geometry.masked_logsumexp(both, jnp.isfinite(both), axis=-1)
  has_negative = jnp.isfinite(pair_lse)
  j = jnp.where(has_negative, pair_lse, 0.0) + dist
  terms = jnp.where(has_negative, jnp.square(jax.nn.relu(j)), 0.0)
  # Ordered pairs count each unordered pair twice: sum / (2 * num_ordered).
  return 0.5 * masked_mean(terms, positive)


def npairs_loss(
  embeddings: jax.Array, labels: jax.Array, *, scale: float = 1.0
) -> jax.Array:
  """Multi-class N-pair loss over every positive pair of the batch ([5]).

  For an anchor i, a positive j and the negatives k of the batch ([5],
  Eq. 3, the (N+1)-tuplet loss):

      L_ij = log(1 + sum_k exp(s d_ij - s d_ik)),  s = scale,

  averaged over all ordered positive pairs (i, j) whose anchor has a
  negative; 0 if there is none. On unit vectors s (d_ij - d_ik) =
  2 s (x_i.x_k - x_i.x_j), so this is [5]'s inner-product form with the
  inner products multiplied by 2 s (the embeddings are normalised here,
  which replaces [5]'s L2 penalty on the embedding norms). With exactly two
  images per class it is [5]'s N-pair-mc batch construction, made symmetric
  (each image of a pair is an anchor in turn) and with both images of every
  other class as negatives; taking every pair keeps the loss invariant to
  the order of the batch.

  Args:
    embeddings: float array (B, D). Normalised here.
    labels: int array (B,) of class labels (any integer values); needs two
      or more images per class to have positives.
    scale: s, multiplier of the squared distances (as in Proxy-NCA).

  Returns:
    float32 scalar.
  """
  dist, positive, negative = _batch_geometry(embeddings, labels)
  logits = -scale * dist
  negatives_lse = geometry.masked_logsumexp(logits, negative, axis=1)  # (B,)
  has_negative = jnp.isfinite(negatives_lse)
  valid = positive & has_negative[:, None]
  gap = jnp.where(has_negative, negatives_lse, 0.0)[:, None] - logits
  return masked_mean(jax.nn.softplus(gap), valid)


def contrastive_loss(
  embeddings: jax.Array, labels: jax.Array, *, margin: float = 1.0
) -> jax.Array:
  """Contrastive loss over every pair of the batch ([6], Eq. 4).

  With D the Euclidean distance, a similar pair costs D^2 / 2 and a
  dissimilar pair max(0, margin - D)^2 / 2. The loss is the mean over all
  ordered pairs (i, j), i != j, similar and dissimilar alike (the sum of
  [6] divided by the number of pairs); 0 for a batch of one.

  Args:
    embeddings: float array (B, D). Normalised here.
    labels: int array (B,) of class labels (any integer values).
    margin: m of [6], in Euclidean-distance units (unit vectors are at most
      2 apart).

  Returns:
    float32 scalar.
  """
  sq, positive, negative = _batch_geometry(embeddings, labels)
  pull = 0.5 * sq
  push = 0.5 * jnp.square(
    jax.nn.relu(margin - geometry.euclidean_from_squared(sq))
  )
  terms = jnp.where(positive, pull, push)
  return masked_mean(terms, positive | negative)


def check_nca_options(form: str, scale: float) -> None:
  """Raises ValueError for an unknown NCA form or a non-positive scale."""
  if form not in NCA_FORMS:
    raise errors.InvalidInputError(
      f"form must be one of {NCA_FORMS}, got {form!r}."
    )
  if not scale > 0:
    raise errors.InvalidInputError(f"scale must be positive, got {scale}.")


def nca_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  *,
  form: str = "softmax",
  scale: float = 1.0,
) -> jax.Array:
  """Neighbourhood components analysis over the points of the batch.

  With logits l_ij = -scale * d_ij:

  * "softmax" (Goldberger et al. [7], the log objective of Sec. 2): a
    sample's neighbour is drawn with p_ij = softmax_{j != i}(l_ij), and the
    loss is -log sum_{j in P(i)} p_ij over its positives P(i), averaged over
    the anchors that have a positive. With one positive it is the softmax
    form of Proxy-NCA with the positive sample as proxy.
  * "paper" ([1], Eq. 3 over data points, the loss the proxy loss bounds):
    for each positive pair (i, j), -log(exp(l_ij) / sum_{k in N(i)}
    exp(l_ik)) with the positive left out of the denominator, averaged over
    the pairs whose anchor has a negative. Can be negative.

  Args:
    embeddings: float array (B, D). Normalised here.
    labels: int array (B,) of class labels (any integer values).
    form: "softmax" or "paper" (see above).
    scale: positive multiplier of the squared distances.

  Returns:
    float32 scalar.

  Raises:
    ValueError: for an unknown form or a non-positive scale.
  """
  check_nca_options(form, scale)
  dist, positive, negative = _batch_geometry(embeddings, labels)
  logits = -scale * dist
  if form == "softmax":
    others = positive | negative
    positives_lse = geometry.masked_logsumexp(logits, positive, axis=1)
    valid = jnp.any(positive, axis=1)
    per_anchor = geometry.masked_logsumexp(logits, others, axis=1) - jnp.where(
      valid, positives_lse, 0.0
    )
    return masked_mean(per_anchor, valid)
  negatives_lse = geometry.masked_logsumexp(logits, negative, axis=1)
  has_negative = jnp.isfinite(negatives_lse)
  per_pair = jnp.where(has_negative, negatives_lse, 0.0)[:, None] - logits
  return masked_mean(per_pair, positive & has_negative[:, None])
