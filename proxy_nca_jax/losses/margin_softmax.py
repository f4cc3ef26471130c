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
"""The class-weight losses: a softmax over cosine similarities to the
classes, with a margin on the sample's own class.

Normalized Softmax [1], CosFace [2], ArcFace [3], SubCenter-ArcFace [4] and
SoftTriple [5] are one cross-entropy. With x the normalised embedding of a
sample of class y, S_c(x) its similarity to class c (below), s the scale
and psi the margin on the target,

    L = -log( exp(s psi(S_y)) / (exp(s psi(S_y)) + sum_{c != y} exp(s S_c)) )
      = logaddexp( logsumexp_{c != y} s S_c,  s psi(S_y) ) - s psi(S_y).

The class weights are our proxies: a class owns K consecutive rows of the
proxy matrix (rows c K .. c K + K - 1; K = 1 but for SubCenter-ArcFace and
SoftTriple), normalised here, so initialisation, the proxy learning rate,
sharding, checkpoints and export treat them as any proxies.

    loss                  S_c                      psi(S)           s
    Normalized Softmax    cos                      S                1/T
    CosFace    [2] Eq. 4  cos                      S - m            s
    ArcFace    [3] Eq. 3  cos                      cos(theta + m)   s
    SubCenter  [4] Eq. 1  max_k cos_k              cos(theta + m)   s
    SoftTriple [5] Eq. 8  sum_k softmax_k(cos_k /  S - delta        lambda
                          gamma) cos_k

with theta = arccos S. ArcFace's cos(theta + m) rises again once
theta + m > pi; there the target becomes cos theta - m sin m, which keeps the
loss decreasing in the target similarity (InsightFace's and
pytorch-metric-learning's choice), and cos(theta + m) is computed as
S cos m - sqrt(1 - S^2) sin m, finite at S = +-1. SoftTriple adds
tau times its centre-merging regulariser ([5], Eq. 11):

    R = sum_c sum_{k < k'} sqrt(2 + 1e-5 - 2 w_ck . w_ck') / (C K (K - 1))

(the 1e-5 of the authors' code keeps the square root's gradient finite when
two centres meet).

The dynamic-margin ArcFace ([6]; ``dynamic_arcface_loss``) is
SubCenter-ArcFace with class c's own margin m_c = a n_c^-lambda + b from
its training images n_c (``dynamic_margins``), for long-tailed classes.

Normalized Softmax is Proxy-NCA's softmax form: -scale |x - p|^2 =
2 scale x.p - 2 scale for unit vectors, and the constant cancels in the
softmax, so temperature T is ``proxy_nca_loss(form='softmax',
scale=1 / (2 T))``, which is what ``normalized_softmax_loss`` computes (with
its blocks, sharding and sampling).

Precision: float32, or float64 when the inputs are float64 and JAX runs with
x64 (the parity tests do). Blocks: with one centre a class and more than
65,536 classes (per device), the sums over the classes are taken about
4,096 at a time with ``losses.proxy_blocks`` (``blocked_terms``; float32), as
Proxy-NCA's are, so no (B, C) array is formed.

References:
  [1] A. Zhai, H.-Y. Wu. Classification is a Strong Baseline for Deep Metric
      Learning. BMVC 2019.
  [2] H. Wang, Y. Wang, Z. Zhou, X. Ji, D. Gong, J. Zhou, Z. Li, W. Liu.
      CosFace: Large Margin Cosine Loss for Deep Face Recognition. CVPR 2018.
  [3] J. Deng, J. Guo, N. Xue, S. Zafeiriou. ArcFace: Additive Angular Margin
      Loss for Deep Face Recognition. CVPR 2019.
  [4] J. Deng, J. Guo, T. Liu, M. Gong, S. Zafeiriou. Sub-center ArcFace:
      Boosting Face Recognition by Large-Scale Noisy Web Faces. ECCV 2020.
  [5] Q. Qian, L. Shang, B. Sun, J. Hu, H. Li, R. Jin. SoftTriple Loss: Deep
      Metric Learning Without Triplet Sampling. ICCV 2019.
  [6] Q. Ha, B. Bui, K. Le, H. Nguyen. Google Landmark Recognition 2020
      Competition Third Place Solution. arXiv:2010.05350, 2020.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from proxy_nca_jax import errors, geometry
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.losses import _checks, pair, proxy_blocks, proxy_nca

# psi, the margin on the target similarity (module docstring).
TARGET_MARGINS = ("none", "additive_cosine", "additive_angle")
# How a class's K centre similarities make its similarity S_c.
CENTER_POOLINGS = ("max", "soft")
# The 1e-5 of SoftTriple's regulariser (module docstring).
_REGULARISER_EPS = 1e-5


@dataclasses.dataclass(frozen=True, eq=False)
class MarginSoftmax:
  """One loss of the family (module docstring), its static options.

  Attributes:
    scale: s, the logits' multiplier (> 0).
    margin: m (CosFace: cosine units; ArcFace: radians; SoftTriple: delta).
    class_margins: ArcFace only, instead of ``margin``: float (C,), one
      margin per class in radians (the dynamic margins of
      ``dynamic_margins``), or None.
    target_margin: psi, one of ``TARGET_MARGINS``.
    centers_per_class: K, rows of the proxy matrix per class.
    center_pooling: "max" (SubCenter-ArcFace) or "soft" (SoftTriple); only
      read when K > 1.
    gamma: SoftTriple's softmax temperature over a class's centres.
    tau: weight of SoftTriple's centre-merging regulariser (0: none).
  """

  scale: float
  margin: float = 0.0
  class_margins: np.ndarray | None = None
  target_margin: str = "none"
  centers_per_class: int = 1
  center_pooling: str = "max"
  gamma: float = 0.1
  tau: float = 0.0

  def __post_init__(self):
    if not self.scale > 0:
      raise errors.InvalidInputError(
        f"scale must be positive, got {self.scale}."
      )
    if self.target_margin not in TARGET_MARGINS:
      raise errors.InvalidInputError(
        f"target_margin must be one of {TARGET_MARGINS}, got "
        f"{self.target_margin!r}."
      )
    if self.target_margin == "additive_angle" and not (
      0 <= self.margin < math.pi
    ):
      raise errors.InvalidInputError(
        f"The angular margin is in radians and must be in [0, pi), got "
        f"{self.margin} (pytorch-metric-learning 2.x's 28.6 is degrees: "
        "0.4992 radians)."
      )
    if self.class_margins is not None and (
      self.target_margin != "additive_angle"
      or np.ndim(self.class_margins) != 1
      or not np.all((self.class_margins >= 0) & (self.class_margins < math.pi))
    ):
      raise errors.InvalidInputError(
        "class_margins must be one angular margin per class, in radians in "
        "[0, pi), for an additive angular margin (ArcFace)."
      )
    if self.target_margin == "additive_cosine" and not self.margin >= 0:
      raise errors.InvalidInputError(
        f"The cosine margin must be >= 0, got {self.margin}."
      )
    whole = isinstance(self.centers_per_class, int) and not isinstance(
      self.centers_per_class, bool
    )
    if not whole or self.centers_per_class < 1:
      raise errors.InvalidInputError(
        "centers_per_class must be a positive integer, got "
        f"{self.centers_per_class!r}."
      )
    if self.center_pooling not in CENTER_POOLINGS:
      raise errors.InvalidInputError(
        f"center_pooling must be one of {CENTER_POOLINGS}, got "
        f"{self.center_pooling!r}."
      )
    if not self.gamma > 0:
      raise errors.InvalidInputError(
        f"gamma must be positive, got {self.gamma}."
      )
    if not self.tau >= 0:
      raise errors.InvalidInputError(f"tau must be >= 0, got {self.tau}.")

  def num_classes(self, num_rows: int) -> int:
    """C for a proxy matrix of ``num_rows`` rows (K rows a class).

    Raises:
      ValueError: a row count that is not a multiple of K.
    """
    if num_rows % self.centers_per_class:
      raise errors.InvalidInputError(
        f"{num_rows} proxy rows are not {self.centers_per_class} centres "
        "for each class: give num_classes * centers_per_class rows."
      )
    return num_rows // self.centers_per_class

  def class_similarities(self, x: jax.Array, rows: jax.Array) -> jax.Array:
    """S (B, C): the similarity of each normalised embedding to each class
    of ``rows`` (raw proxy rows, K a class, normalised here)."""
    cosines = x @ geometry.l2_normalize(rows.astype(x.dtype)).T
    k = self.centers_per_class
    if k == 1:
      return cosines
    cosines = cosines.reshape(x.shape[0], -1, k)
    if self.center_pooling == "soft":
      weights = jax.nn.softmax(cosines / self.gamma, axis=-1)
      return jnp.sum(weights * cosines, axis=-1)
    # The gradient goes to the first largest centre alone (a tie between
    # copies of a centre does not split it), as torch's max does.
    best = jnp.argmax(cosines, axis=-1)
    return jnp.take_along_axis(cosines, best[..., None], axis=-1)[..., 0]

  def target(
    self, similarity: jax.Array, labels: jax.Array | None = None
  ) -> jax.Array:
    """psi(S_y), the target similarity with its margin (with class margins:
    each sample's class's, from ``labels``, the global classes)."""
    if self.target_margin == "additive_cosine":
      return similarity - self.margin
    if self.target_margin == "none":
      return similarity
    margin = self.margin
    if self.class_margins is not None:
      margins = jnp.asarray(self.class_margins, similarity.dtype)
      margin = margins[jnp.clip(labels, 0, len(self.class_margins) - 1)]
    cosine = jnp.clip(similarity, -1.0, 1.0)
    squared_sine = 1.0 - cosine * cosine
    positive = squared_sine > 0
    sine = jnp.where(
      positive, jnp.sqrt(jnp.where(positive, squared_sine, 1)), 0
    )
    shifted = cosine * jnp.cos(margin) - sine * jnp.sin(margin)
    # theta <= pi - m  <=>  cos theta >= -cos m.
    return jnp.where(
      cosine >= -jnp.cos(margin), shifted, cosine - margin * jnp.sin(margin)
    )

  def per_sample(
    self,
    negative_lse: jax.Array,
    target_similarity: jax.Array,
    labels: jax.Array | None = None,
  ) -> jax.Array:
    """L per sample from logsumexp_{c != y} s S_c and S_y (``labels``: the
    samples' global classes, read with class margins)."""
    target_logit = self.scale * self.target(target_similarity, labels)
    return jnp.logaddexp(negative_lse, target_logit) - target_logit

  def center_pair_sum(self, rows: jax.Array, real: jax.Array) -> jax.Array:
    """sum over the ``real`` classes (bool (C,)) of ``rows`` of
    sum_{k < k'} sqrt(2 + 1e-5 - 2 w_ck . w_ck'): the numerator of R."""
    k = self.centers_per_class
    w = geometry.l2_normalize(rows)
    w = w.reshape(-1, k, w.shape[-1])
    gram = jnp.einsum("ckd,cjd->ckj", w, w)
    upper = jnp.triu(jnp.ones((k, k), bool), 1)
    terms = jnp.sqrt(2.0 + _REGULARISER_EPS - 2.0 * gram)
    per_class = jnp.sum(jnp.where(upper, terms, 0.0), axis=(1, 2))
    return jnp.sum(jnp.where(real, per_class, 0.0))

  def has_regulariser(self) -> bool:
    return self.tau > 0 and self.centers_per_class > 1

  def regulariser_scale(self, num_classes: int | jax.Array) -> jax.Array:
    """tau / (C K (K - 1)), the factor of ``center_pair_sum``."""
    k = self.centers_per_class
    return self.tau / (num_classes * k * (k - 1))


def compute_dtype(*arrays: jax.Array) -> jnp.dtype:
  """float32, or float64 for float64 inputs (with x64)."""
  return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def uses_blocks(
  spec: MarginSoftmax, block_size: int | None, rows: int
) -> int | None:
  """The block size of a loss over ``rows`` class rows, or None for every
  logit at once: blocks of ``losses.proxy_blocks`` for one centre a class
  (``proxy_blocks.chosen_block_size``: by default above 65,536 classes);
  never with several centres a class (their similarity pools each class's
  rows)."""
  if spec.centers_per_class > 1:
    return None
  return proxy_blocks.chosen_block_size(block_size, rows)


def blocked_terms(
  embeddings: jax.Array,
  rows: jax.Array,
  labels: jax.Array,
  first_column: jax.Array,
  *,
  scale: float,
  num_columns: int | jax.Array,
  block_size: int,
) -> tuple[jax.Array, jax.Array]:
  """One centre a class, a block of rows at a time (``losses.proxy_blocks``):
  logsumexp_{c != y} s cos_c over the columns below ``num_columns``, and
  s (cos_y - 1) where the label is among ``rows`` (0 elsewhere).

  For unit x and w, -(s / 2) |x - w|^2 = s cos - s: these are Proxy-NCA's
  paper-form terms at scale s / 2, the log-sum-exp shifted back by s; no
  (B, C) array is formed. float32.
  """
  lse, _, positive = proxy_blocks.nca_terms(
    embeddings,
    rows,
    labels,
    first_column,
    block_size=block_size,
    scale=scale / 2,
    embedding_norm=1.0,
    proxy_norm=1.0,
    num_columns=num_columns,
    exclude_positive=True,
  )
  return lse + scale, positive


def margin_softmax_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  spec: MarginSoftmax,
  *,
  block_size: int | None = None,
  margin_classes: jax.Array | None = None,
) -> jax.Array:
  """The loss ``spec`` describes (module docstring).

  Args:
    embeddings: float (B, D). Normalised here.
    labels: int (B,), classes in [0, C), C = rows / K; outside it (only
      traced labels) the sample is left out of the mean.
    proxies: float (C K, D), class c's centres in rows c K .. c K + K - 1.
    spec: the loss and its options.
    block_size: one centre a class only: classes per block
      (``blocked_terms``), or None for the automatic choice (blocks of
      about 4,096 above 65,536 classes, as Proxy-NCA).
    margin_classes: int (B,), with class margins: the samples' classes in
      them when ``labels`` number a subset of the classes (sampled
      negatives); default ``labels``.

  Returns:
    Scalar: the mean over the samples with a class, plus SoftTriple's
    regulariser.
  """
  _checks.check_batch(embeddings, labels)
  _checks.check_proxies(embeddings, proxies)
  num_classes = spec.num_classes(proxies.shape[0])
  _checks.check_static_labels(labels, num_classes)
  valid = (labels >= 0) & (labels < num_classes)
  margin_classes = labels if margin_classes is None else margin_classes
  block_size = uses_blocks(spec, block_size, num_classes)
  if block_size is not None:
    negative_lse, shifted_target = blocked_terms(
      embeddings,
      proxies,
      labels,
      jnp.zeros((), jnp.int32),
      scale=spec.scale,
      num_columns=num_classes,
      block_size=block_size,
    )
    per_sample = spec.per_sample(
      negative_lse, shifted_target / spec.scale + 1, margin_classes
    )
    return pair.masked_mean(per_sample, valid)
  dtype = compute_dtype(embeddings, proxies)
  x = geometry.l2_normalize(embeddings.astype(dtype))
  similarity = spec.class_similarities(x, proxies.astype(dtype))  # (B, C)
  positive = proxies_lib.static_assignment(labels, num_classes)
  target = jnp.sum(jnp.where(positive, similarity, 0.0), axis=-1)
  negative_lse = geometry.masked_logsumexp(spec.scale * similarity, ~positive)
  per_sample = spec.per_sample(negative_lse, target, margin_classes)
  loss = pair.masked_mean(per_sample, valid)
  if spec.has_regulariser():
    real = jnp.ones((num_classes,), bool)
    loss += spec.regulariser_scale(num_classes) * spec.center_pair_sum(
      proxies.astype(dtype), real
    )
  return loss


def normalized_softmax_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  temperature: float = 0.05,
  block_size: int | None = None,
) -> jax.Array:
  """Normalized Softmax ([1]): cross-entropy of the logits cos(x, w_c) / T.

  Exactly Proxy-NCA's softmax form at scale 1 / (2 T) (module docstring),
  and computed as that (``losses.proxy_nca_loss``), blocks of proxies
  included. pytorch-metric-learning: ``NormalizedSoftmaxLoss``
  (temperature 0.05).

  Args:
    embeddings: float (B, D). Normalised here.
    labels: int (B,), values in [0, C).
    proxies: float (C, D), the class weights. Normalised here.
    temperature: T > 0.
    block_size: as ``losses.proxy_nca_loss``.

  Returns:
    float32 scalar, the mean over the batch.
  """
  return proxy_nca.proxy_nca_loss(
    embeddings,
    labels,
    proxies,
    form="softmax",
    scale=softmax_scale(temperature),
    block_size=block_size,
  )


def softmax_scale(temperature: float) -> float:
  """Proxy-NCA's scale of Normalized Softmax at ``temperature``: 1 / (2 T).

  Raises:
    ValueError: a temperature that is not positive.
  """
  if not temperature > 0:
    raise errors.InvalidInputError(
      f"temperature must be positive, got {temperature}."
    )
  return 1.0 / (2.0 * temperature)


def cosface_spec(*, margin: float = 0.35, scale: float = 64.0) -> MarginSoftmax:
  """CosFace's options ([2]; pytorch-metric-learning's defaults)."""
  return MarginSoftmax(
    scale=scale, margin=margin, target_margin="additive_cosine"
  )


def arcface_spec(
  *, margin: float = 0.5, scale: float = 64.0, centers_per_class: int = 1
) -> MarginSoftmax:
  """ArcFace's options ([3]; K > 1: SubCenter-ArcFace [4])."""
  return MarginSoftmax(
    scale=scale,
    margin=margin,
    target_margin="additive_angle",
    centers_per_class=centers_per_class,
    center_pooling="max",
  )


def dynamic_margins(
  class_counts: np.ndarray,
  *,
  margin_bounds: tuple[float, float] = (0.05, 0.5),
  power: float = 0.25,
) -> np.ndarray:
  """Per-class ArcFace margins from the classes' sizes ([6], Sec. 3.3):

      m_c = a n_c^(-lambda) + b,

  a and b chosen so that the smallest class gets the upper bound and the
  largest the lower (pytorch-metric-learning 3.0's ``DynamicArcFaceLoss``;
  margins in radians). When every class has the same size, every class gets
  the upper bound (the plain ArcFace margin).

  Args:
    class_counts: int (C,), the training images of each class (> 0).
    margin_bounds: (lower, upper) in radians, 0 <= lower <= upper < pi.
    power: lambda > 0.

  Returns:
    float64 (C,), radians.

  Raises:
    ValueError: an empty or non-positive count, or bad bounds or power.
  """
  counts = np.asarray(class_counts, np.float64)
  lower, upper = margin_bounds
  if counts.ndim != 1 or not counts.size or np.any(counts <= 0):
    raise errors.InvalidInputError(
      "class_counts must be a positive count for every class (a class "
      "without training images has no margin to derive)."
    )
  if not 0 <= lower <= upper < math.pi or not power > 0:
    raise errors.InvalidInputError(
      f"margin_bounds must be 0 <= lower <= upper < pi (radians) and power "
      f"> 0, got {margin_bounds} and {power}."
    )
  weights = counts**-power
  smallest, largest = weights.max(), weights.min()
  if smallest == largest:
    return np.full(counts.shape, float(upper))
  slope = (upper - lower) / (smallest - largest)
  return slope * weights + (lower - slope * largest)


def soft_triple_spec(
  *,
  centers_per_class: int = 10,
  la: float = 20.0,
  gamma: float = 0.1,
  margin: float = 0.01,
  tau: float = 0.2,
) -> MarginSoftmax:
  """SoftTriple's options ([5]'s defaults)."""
  return MarginSoftmax(
    scale=la,
    margin=margin,
    target_margin="additive_cosine",
    centers_per_class=centers_per_class,
    center_pooling="soft",
    gamma=gamma,
    tau=tau,
  )


def cosface_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  margin: float = 0.35,
  scale: float = 64.0,
  block_size: int | None = None,
) -> jax.Array:
  """CosFace ([2], Eq. 4): target logit s (cos theta_y - m), others
  s cos theta_c. pytorch-metric-learning: ``CosFaceLoss`` (margin 0.35,
  scale 64).

  Args:
    embeddings: float (B, D). Normalised here.
    labels: int (B,), values in [0, C).
    proxies: float (C, D), the class weights. Normalised here.
    margin: m, in cosine units (>= 0).
    scale: s > 0.
    block_size: classes per block (``margin_softmax_loss``), None: auto.

  Returns:
    Scalar, the mean over the batch.
  """
  spec = cosface_spec(margin=margin, scale=scale)
  return margin_softmax_loss(
    embeddings, labels, proxies, spec, block_size=block_size
  )


def arcface_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  margin: float = 0.5,
  scale: float = 64.0,
  block_size: int | None = None,
) -> jax.Array:
  """ArcFace ([3], Eq. 3): target logit s cos(theta_y + m), others
  s cos theta_c; past theta_y = pi - m the target is s (cos theta_y -
  m sin m) (module docstring). pytorch-metric-learning: ``ArcFaceLoss``,
  whose margin is in degrees in 2.x (28.6) and radians in 3.x.

  Args:
    embeddings: float (B, D). Normalised here.
    labels: int (B,), values in [0, C).
    proxies: float (C, D), the class weights. Normalised here.
    margin: m in radians, [0, pi).
    scale: s > 0.
    block_size: classes per block (``margin_softmax_loss``), None: auto.

  Returns:
    Scalar, the mean over the batch.
  """
  spec = arcface_spec(margin=margin, scale=scale)
  return margin_softmax_loss(
    embeddings, labels, proxies, spec, block_size=block_size
  )


def subcenter_arcface_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  margin: float = 0.5,
  scale: float = 64.0,
  centers_per_class: int = 3,
) -> jax.Array:
  """SubCenter-ArcFace ([4], Eq. 1): ArcFace on S_c = max_k cos(x, w_ck),
  each class's nearest of its K sub-centres. pytorch-metric-learning:
  ``SubCenterArcFaceLoss`` (3 sub-centres; margin as ``arcface_loss``).
  ``subcenters.subcenter_outliers`` lists the training images far from
  their class's dominant sub-centre, as [4] does after training.

  Args:
    embeddings: float (B, D). Normalised here.
    labels: int (B,), values in [0, C).
    proxies: float (C K, D): class c's sub-centres in rows c K .. c K + K - 1.
    margin: m in radians, [0, pi).
    scale: s > 0.
    centers_per_class: K >= 1.

  Returns:
    Scalar, the mean over the batch.
  """
  spec = arcface_spec(
    margin=margin, scale=scale, centers_per_class=centers_per_class
  )
  return margin_softmax_loss(embeddings, labels, proxies, spec)


def dynamic_arcface_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  class_counts: np.ndarray,
  margin_bounds: tuple[float, float] = (0.05, 0.5),
  power: float = 0.25,
  scale: float = 64.0,
  centers_per_class: int = 3,
  margin_classes: jax.Array | None = None,
) -> jax.Array:
  """SubCenter-ArcFace with a margin per class that grows as the class gets
  smaller ([6]; ``dynamic_margins``), for long-tailed classes.
  pytorch-metric-learning 3.0: ``DynamicArcFaceLoss`` (bounds (0.05, 0.5)
  radians, power 0.25, 3 sub-centres).

  Args:
    embeddings: float (B, D). Normalised here.
    labels: int (B,), values in [0, C).
    proxies: float (C K, D), K sub-centres a class (K = 1: ArcFace with
      class margins).
    class_counts: int (C,), each class's training images.
    margin_bounds: (lower, upper) margins in radians.
    power: lambda.
    scale: s > 0.
    centers_per_class: K >= 1.
    margin_classes: int (B,), each sample's class in ``class_counts`` when
      ``labels`` and ``proxies`` are a subset of the classes (sampled
      negatives); default ``labels``.

  Returns:
    Scalar, the mean over the batch.
  """
  spec = dynamic_arcface_spec(
    class_counts=class_counts,
    margin_bounds=margin_bounds,
    power=power,
    scale=scale,
    centers_per_class=centers_per_class,
  )
  return margin_softmax_loss(
    embeddings, labels, proxies, spec, margin_classes=margin_classes
  )


def dynamic_arcface_spec(
  *,
  class_counts: np.ndarray,
  margin_bounds: tuple[float, float] = (0.05, 0.5),
  power: float = 0.25,
  scale: float = 64.0,
  centers_per_class: int = 3,
) -> MarginSoftmax:
  """The dynamic-margin ArcFace's options ([6])."""
  return MarginSoftmax(
    scale=scale,
    class_margins=dynamic_margins(
      class_counts, margin_bounds=margin_bounds, power=power
    ),
    target_margin="additive_angle",
    centers_per_class=centers_per_class,
    center_pooling="max",
  )


def soft_triple_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  centers_per_class: int = 10,
  la: float = 20.0,
  gamma: float = 0.1,
  margin: float = 0.01,
  tau: float = 0.2,
) -> jax.Array:
  """SoftTriple ([5], Eq. 8 and 11): K centres a class, S_c their cosines
  weighted by softmax(cos / gamma), logits lambda (S_c - delta [c = y]),
  plus tau times the centre-merging regulariser. pytorch-metric-learning:
  ``SoftTripleLoss`` (10 centres, la 20, gamma 0.1, margin 0.01), without
  the regulariser (its tau is 0).

  Args:
    embeddings: float (B, D). Normalised here.
    labels: int (B,), values in [0, C).
    proxies: float (C K, D): class c's centres in rows c K .. c K + K - 1.
    centers_per_class: K >= 1.
    la: lambda, the scale (> 0).
    gamma: the centres' softmax temperature (> 0).
    margin: delta, in cosine units (>= 0).
    tau: the regulariser's weight (>= 0; no effect when K = 1).

  Returns:
    Scalar, the mean over the batch plus the regulariser.
  """
  spec = soft_triple_spec(
    centers_per_class=centers_per_class,
    la=la,
    gamma=gamma,
    margin=margin,
    tau=tau,
  )
  return margin_softmax_loss(embeddings, labels, proxies, spec)
