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
"""Proxies: the learned points that stand in for the data (paper, Sec. 3).

Proxies are a plain ``(num_proxies, dim)`` float32 array held in the parameter
pytree beside the network (``params['proxies']``), so they are optimised,
sharded and checkpointed like any other parameter. They are kept float32 even
when the network computes in lower precision.

Static assignment (paper, Sec. 3.1): every training class has exactly one
proxy, and the proxy of a sample is the proxy of its class,
p(x) = p_{y(x)}. The input pipeline maps training classes to 0..C-1, so a
sample's label is the row index of its proxy.

Dynamic assignment (paper, Sec. 3.1): the proxy of a sample
is its nearest proxy, p(x) = argmin_{p in P} d(x, p), with no gradient
through the arg-min; any number of proxies. The supervision is then a set of
relations between the samples of the batch, "i is similar to j" and "i is
dissimilar to k", which ``relations_from_labels`` and
``relations_from_triplets`` build from class labels or from (anchor,
positive, negative) triplets; ``dynamic_targets`` turns them into each
anchor's positive and negative proxies.
"""

import jax
import jax.numpy as jnp

from proxy_nca_jax import errors, geometry

PROXY_INITS = ("normal", "class_means")

__all__ = [
  "PROXY_INITS",
  "class_mean_proxies",
  "dynamic_assignment",
  "dynamic_targets",
  "init_proxies",
  "pad_proxies",
  "padded_num_proxies",
  "proxy_distances",
  "proxy_norms",
  "relations_from_labels",
  "relations_from_triplets",
  "static_assignment",
]


def init_proxies(
  key: jax.Array, num_proxies: int, dim: int, *, scale: float = 1.0
) -> jax.Array:
  """Draws proxies from an isotropic Gaussian.

  Directions of Gaussian vectors are uniform on the sphere; the losses
  normalise proxies, so ``scale`` only changes how fast plain gradient steps
  move their directions.

  Args:
    key: PRNG key.
    num_proxies: C, the number of proxies (number of training classes).
    dim: D, the embedding dimension.
    scale: standard deviation of each coordinate.

  Returns:
    float32 array of shape (C, D).
  """
  if num_proxies < 1 or dim < 1:
    raise errors.InvalidInputError(
      f"Need at least one proxy of one dimension, got {num_proxies=} "
      f"and {dim=}."
    )
  return scale * jax.random.normal(key, (num_proxies, dim), jnp.float32)


def class_mean_proxies(
  embeddings: jax.Array, labels: jax.Array, num_proxies: int
) -> jax.Array:
  """Places each proxy at the mean embedding of its class.

  The paper's bound (Sec. 3.2) tightens as proxies get within epsilon of their
  samples; starting at the class means starts training near that regime. A
  class absent from ``labels`` gets a zero proxy, which the losses handle (its
  distance to every unit embedding is 1).

  Args:
    embeddings: float array (N, D) of embeddings of training images.
    labels: int array (N,) with values in [0, num_proxies).
    num_proxies: C.

  Returns:
    float32 array of shape (C, D).
  """
  embeddings = jnp.asarray(embeddings, jnp.float32)
  sums = jax.ops.segment_sum(embeddings, labels, num_segments=num_proxies)
  counts = jax.ops.segment_sum(
    jnp.ones_like(labels, jnp.float32), labels, num_segments=num_proxies
  )
  return sums / jnp.maximum(counts, 1.0)[:, None]


def static_assignment(labels: jax.Array, num_proxies: int) -> jax.Array:
  """Marks each sample's own proxy: the static assignment of Sec. 3.1.

  Args:
    labels: int array (B,), the sample's class index in [0, num_proxies).
    num_proxies: C.

  Returns:
    bool array (B, C), True exactly at (i, labels[i]). A label outside
    [0, C) gives a row of False; the losses treat such a sample as having no
    positive proxy.
  """
  return labels[:, None] == jnp.arange(num_proxies)[None, :]


def dynamic_assignment(distances: jax.Array) -> jax.Array:
  """Marks each sample's nearest proxy: the dynamic assignment of Sec. 3.1.

  Args:
    distances: float array (B, P), any distance that increases with the
      distance between sample i and proxy p (the loss's own). No gradient
      flows through the arg-min.

  Returns:
    bool array (B, P), True exactly at (i, argmin_p distances[i, p]); ties
    go to the lowest proxy index.
  """
  nearest = jnp.argmin(jax.lax.stop_gradient(distances), axis=-1)
  return nearest[:, None] == jnp.arange(distances.shape[-1])[None, :]


def proxy_distances(
  embeddings: jax.Array,
  proxies: jax.Array,
  *,
  embedding_norm: float = 1.0,
  proxy_norm: float = 1.0,
) -> jax.Array:
  """Squared distances |a x_i - b p_z|^2 between normalised vectors.

  Args:
    embeddings: float array (B, D).
    proxies: float array (P, D).
    embedding_norm: a, the norm the embeddings are scaled to.
    proxy_norm: b, the norm the proxies are scaled to.

  Returns:
    float32 array (B, P).
  """
  x = embedding_norm * geometry.l2_normalize(embeddings.astype(jnp.float32))
  p = proxy_norm * geometry.l2_normalize(proxies.astype(jnp.float32))
  return geometry.squared_distances(x, p)


def dynamic_targets(
  distances: jax.Array, similar: jax.Array, dissimilar: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Positive and negative proxies of each anchor under dynamic assignment.

  With p(x) the nearest proxy of x (``dynamic_assignment``), the group of
  sample i is i and the samples similar to it. Proxy q is *claimed* by the
  group of i when more of that group's samples have q as nearest proxy than
  of the group of any sample dissimilar to i (a majority vote in the batch).
  Then, for anchor i:

  * negative proxies: those claimed by the group of some negative of i (the
    in-batch estimate of the paper's p(Z));
  * positive proxy: its nearest proxy among the others (the paper's p(x) =
    p(y) for similar x and y, where no negative claims it).

  Where no two groups compete for a proxy this is exactly p(x) and p(Z).

  Args:
    distances: float array (B, P), d(x_i, p_q).
    similar: bool array (B, B), similar[i, j]: j is a positive of i.
    dissimilar: bool array (B, B), dissimilar[i, k]: k is a negative of i.

  Returns:
    positive: int array (B,), the positive proxy of each anchor; chosen
      without gradient. Meaningless where every proxy is a negative.
    negatives: bool array (B, P), the negative proxies of each anchor.
  """
  assigned = dynamic_assignment(distances).astype(jnp.float32)
  group = similar | jnp.eye(similar.shape[0], dtype=bool)
  highest = jax.lax.Precision.HIGHEST  # Exact small-integer counts.
  votes = jnp.matmul(group.astype(jnp.float32), assigned, precision=highest)
  rival_votes = jnp.max(
    jnp.where(dissimilar[:, :, None], votes[None, :, :], 0.0), axis=1
  )
  claimed = votes > rival_votes  # (B, P): claimed by the group of i.
  negatives = (
    jnp.matmul(
      dissimilar.astype(jnp.float32),
      claimed.astype(jnp.float32),
      precision=highest,
    )
    > 0
  )
  free = jnp.where(negatives, jnp.inf, jax.lax.stop_gradient(distances))
  return jnp.argmin(free, axis=-1), negatives


def supervised_anchors(negatives: jax.Array) -> jax.Array:
  """The anchors that ``dynamic_targets``' ``negatives`` give a loss term.

  An anchor needs a negative proxy and a proxy left for its positive. Where
  all the images of a class-balanced batch have the same nearest proxy,
  every group gives it the same number of votes, none claims it, and no
  anchor has a negative: the dynamic losses and their gradients are 0.

  Args:
    negatives: bool array (B, P), from ``dynamic_targets``.

  Returns:
    bool array (B,).
  """
  return jnp.any(negatives, axis=1) & ~jnp.all(negatives, axis=1)


def relations_from_labels(labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Similar and dissimilar pairs of a labelled batch.

  Args:
    labels: int array (B,), any integer class ids.

  Returns:
    (similar, dissimilar), bool arrays (B, B): similar[i, j] when j != i has
    the label of i; dissimilar[i, k] when k has another label.
  """
  same = labels[:, None] == labels[None, :]
  return same & ~jnp.eye(labels.shape[0], dtype=bool), ~same


def relations_from_triplets(
  anchors: jax.Array,
  positives: jax.Array,
  negatives: jax.Array,
  batch_size: int,
) -> tuple[jax.Array, jax.Array]:
  """Similar and dissimilar pairs of the batch named by triplets.

  The paper's relaxed supervision (Sec. 3): only that anchor a is more
  similar to p than to n is known. Triplet t says similar[a_t, p_t] and
  dissimilar[a_t, n_t]; the losses then use, for every anchor, all of its
  positives against all of its negatives.

  Args:
    anchors: int array (T,), indices into the batch.
    positives: int array (T,), same shape.
    negatives: int array (T,), same shape.
    batch_size: B.

  Returns:
    (similar, dissimilar), bool arrays (B, B). A triplet with an index
    outside [0, B) (e.g. -1, to pad to a static number of triplets) is
    ignored.

  Raises:
    ValueError: the three index arrays do not have one common (T,) shape.
  """
  if not anchors.ndim == 1 or not (
    anchors.shape == positives.shape == negatives.shape
  ):
    raise errors.InvalidInputError(
      "anchors, positives and negatives must have one shape (T,), got "
      f"{anchors.shape}, {positives.shape} and {negatives.shape}."
    )
  inside = [
    (i >= 0) & (i < batch_size) for i in (anchors, positives, negatives)
  ]
  keep = inside[0] & inside[1] & inside[2]
  # Out-of-range rows are dropped by the scatter.
  rows = jnp.where(keep, anchors, batch_size)
  empty = jnp.zeros((batch_size, batch_size), bool)
  similar = empty.at[rows, positives].set(True, mode="drop")
  dissimilar = empty.at[rows, negatives].set(True, mode="drop")
  return similar, dissimilar


def padded_num_proxies(
  num_proxies: int, num_shards: int, rows_per_class: int = 1
) -> int:
  """The rows of sharded proxies: ``num_proxies`` rounded up to a multiple
  of ``num_shards`` whole classes of ``rows_per_class`` rows each (the
  centres of a class stay on one device)."""
  multiple = num_shards * rows_per_class
  return -(-num_proxies // multiple) * multiple


def pad_proxies(
  proxies: jax.Array, num_shards: int, rows_per_class: int = 1
) -> jax.Array:
  """Appends zero rows up to ``padded_num_proxies``.

  Sharded proxies (``losses.sharded``) split their rows evenly over the
  devices; the padding rows are masked out of the losses, get zero gradient
  and so stay zero.

  Args:
    proxies: float array (C, D).
    num_shards: n, the number of devices the rows are split over.
    rows_per_class: K, the consecutive rows of one class (several centres
      a class: SubCenter-ArcFace, SoftTriple).

  Returns:
    float array (R, D), R = ``padded_num_proxies(C, n, K)``; rows C..R-1
    zero.
  """
  rows = padded_num_proxies(proxies.shape[0], num_shards, rows_per_class)
  extra = rows - proxies.shape[0]
  return jnp.pad(proxies, ((0, extra), (0, 0)))


def proxy_norms(
  proxies: jax.Array, num_proxies: int | None = None
) -> dict[str, jax.Array]:
  """Summary statistics of the proxies' norms, for logging.

  Args:
    proxies: float array (R, D).
    num_proxies: the real proxies, rows [0, num_proxies) (default: all R);
      the rest is the padding of sharded proxies.
  """
  norms = jnp.linalg.norm(proxies, axis=-1)[:num_proxies]
  return {
    "proxy_norm_mean": norms.mean(),
    "proxy_norm_min": norms.min(),
    "proxy_norm_max": norms.max(),
  }
