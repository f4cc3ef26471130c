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
"""Proxy losses with the proxies sharded over the classes (millions of them).

The same functions as ``losses.proxy_nca_loss`` (static assignment, both
forms) and ``losses.proxy_anchor_loss``, computed with ``jax.shard_map`` over
the mesh's ``data`` axis (parallel.py) while the proxy matrix (R, D) stays
split along its rows: device k of n holds rows [k c, (k + 1) c), c = R / n.
No device ever holds more than its c proxies; the embeddings and labels
(B x D, small) are all-gathered.

Padding. R is the number of classes C rounded up to a multiple of n
(``proxies.padded_num_proxies``); rows C..R-1 are padding. Their logits are
masked out of every sum, so they never change the loss and get exactly zero
gradient (with Adam and zero-initialised rows they stay zero). The loss
functions take the padded (R, D) matrix and C (``num_proxies``).

Proxy-NCA ([1], Eq. 4). With l_z = -scale |a x - b p_z|^2 the logit of
proxy z (as in ``losses.proxy_nca_loss``), a sample of class y costs

    paper:   L = -l_y + logsumexp_{z != y, z < C} l_z
    softmax: L = -l_y + logsumexp_{z < C} l_z

(the softmax form is Eq. 4 with the positive proxy kept in the
denominator). The log-sum-exp over a set Z split into the shards' parts
Z_k is

    logsumexp_{z in Z} l_z = m + log sum_k s_k,
    m_k = max_{z in Z_k} l_z,  m = max_k m_k,
    s_k = sum_{z in Z_k} exp(l_z - m),

so each device computes m_k, one ``pmax`` gives m (without gradient: the
result does not depend on it), each device computes s_k and one ``psum``
gives the sum. The positive logit l_y is non-zero on the one shard that owns
row y; a ``psum`` of the masked local sums brings it to every device. Label
smoothing (softmax form, target 1 - eps on y and eps / (C - 1) elsewhere):

    L = logsumexp_{z < C} l_z - (1 - eps) l_y - eps / (C - 1) sum_{z != y} l_z

with sum_{z != y} l_z = psum(local sums) - l_y. Communication per step: the
all-gather of the B x D embeddings and labels, and three or four
all-reduces of B numbers (the max, the sums of exponentials, the positive
logits, the logit sums); the gradient adds a psum of the embeddings'.

The class-weight losses (``losses.margin_softmax``: CosFace, ArcFace,
SubCenter-ArcFace, SoftTriple; Normalized Softmax is Proxy-NCA's softmax
form): a class's K rows lie on one device (the rows are padded by whole
classes, ``proxies.padded_num_proxies(C K, n K)``), so each device computes
the class similarities S_c of its classes; the cross-entropy needs

    logaddexp( logsumexp_{c != y} s S_c,  s psi(S_y) ) - s psi(S_y),

whose log-sum-exp over the classes is combined over the shards as above and
whose S_y is a ``psum`` of the masked local values; SoftTriple's
regulariser is a ``psum`` of each device's sum over its classes.

Proxy-Anchor ([2], Eq. 4):

    L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p^+} exp(-a (s(x,p) - d)))
      + 1/|P|  sum_{p in P}  log(1 + sum_{x in X_p^-} exp(a (s(x,p) + d)))

(a = alpha, d = delta, s the cosine similarity, X_p^+ / X_p^- the samples of
proxy p's class / of the others, P+ the proxies with a sample in the batch).

Its log-sum-exps run over the batch for each proxy, so they are local to the
shard that owns the proxy; only the two means over proxies need a ``psum``
of the local sums (and of |P+|); |P| = C.

Gradients. Every proxy's logits live on its own shard, so its gradient is
computed there and stays sharded like the proxies (and so do the optimiser's
moments). The embeddings enter every shard: the transpose of their implicit
broadcast to the shards sums their per-shard gradients.

References:
  [1] Y. Movshovitz-Attias, A. Toshev, T. Leung, S. Ioffe, S. Singh. No Fuss
      Distance Metric Learning using Proxies. ICCV 2017.
  [2] S. Kim, D. Kim, M. Cho, S. Kwak. Proxy Anchor Loss for Deep Metric
      Learning. CVPR 2020.
"""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from proxy_nca_jax import errors, geometry, parallel
from proxy_nca_jax import proxies as proxies_lib
from proxy_nca_jax.losses import (
  _checks,
  margin_softmax,
  pair,
  proxy_blocks,
  proxy_nca,
  sampled_proxies,
)

SHARDED_LOSSES = (
  "proxy_nca",
  "proxy_anchor",
  "normalized_softmax",
  "cosface",
  "arcface",
  "subcenter_arcface",
  "dynamic_arcface",
  "soft_triple",
)
_AXIS = parallel.DATA_AXIS


def _check_sharded(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  mesh: jax.sharding.Mesh,
  num_proxies: int,
) -> None:
  _checks.check_batch(embeddings, labels)
  _checks.check_proxies(embeddings, proxies)
  shards = mesh.shape[_AXIS]
  rows = proxies.shape[0]
  if rows % shards or not 1 <= num_proxies <= rows:
    raise errors.InvalidInputError(
      f"Sharded proxies need a row count divisible by the {shards} devices "
      f"of the mesh's {_AXIS!r} axis and at least num_proxies={num_proxies} "
      f"rows, got {rows}; pad them with proxies.pad_proxies."
    )


def _local_columns(
  labels: jax.Array, num_local: int, num_proxies: int
) -> tuple[jax.Array, jax.Array]:
  """This shard's positive mask (B, c) and its real (unpadded) rows (c,)."""
  offset = jax.lax.axis_index(_AXIS) * num_local
  real = offset + jnp.arange(num_local) < num_proxies
  positive = proxies_lib.static_assignment(labels - offset, num_local) & real
  return positive, real


def distributed_logsumexp(logits: jax.Array, mask: jax.Array) -> jax.Array:
  """log sum exp over the masked columns of every shard (inside shard_map).

  Args:
    logits: float array (B, c), this shard's columns.
    mask: bool array (B, c); False entries are left out.

  Returns:
    float32 (B,), the same on every shard; -inf where no shard selects a
    column, with a zero (not NaN) gradient there.
  """
  logits = jnp.where(mask, logits, -jnp.inf)
  local_peak = jax.lax.stop_gradient(jnp.max(logits, axis=-1))
  peak = jax.lax.pmax(local_peak, _AXIS)
  peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
  local_sum = jnp.sum(
    jnp.where(mask, jnp.exp(logits - peak[:, None]), 0.0), axis=-1
  )
  total = jax.lax.psum(local_sum, _AXIS)
  # The largest selected logit adds exp(0) = 1: total is 0 only if empty.
  nonempty = total > 0
  lse = jnp.log(jnp.where(nonempty, total, 1.0)) + peak
  return jnp.where(nonempty, lse, -jnp.inf)


def _sharded(fn, mesh: jax.sharding.Mesh, with_key: bool = False):
  """shard_map of ``fn(embeddings, labels, proxies[, key])``: the proxies
  row-split, the rest (and the scalar result) replicated."""
  key_spec = (PartitionSpec(),) if with_key else ()
  return jax.shard_map(
    fn,
    mesh=mesh,
    in_specs=(
      PartitionSpec(),
      PartitionSpec(),
      PartitionSpec(_AXIS),
      *key_spec,
    ),
    out_specs=PartitionSpec(),
  )


def sharded_proxy_nca_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  mesh: jax.sharding.Mesh,
  num_proxies: int,
  form: str = "softmax",
  scale: float = 1.0,
  label_smoothing: float = 0.0,
  embedding_norm: float = 1.0,
  proxy_norm: float = 1.0,
  block_size: int | None = None,
  negative_fraction: float = 1.0,
  key: jax.Array | None = None,
) -> jax.Array:
  """``losses.proxy_nca_loss`` (static) with proxies sharded by rows.

  With more rows per device than ``block_size`` (None: the automatic choice
  of ``losses.proxy_nca_loss``, per device), each device takes its sums a
  block of rows at a time (``losses.proxy_blocks``), so no (B, c) array is
  formed; the shards' log-sum-exps are then combined as above.

  With ``negative_fraction`` < 1, each device keeps its positives and a
  uniform sample of its other rows (``losses.sampled_proxies``: K_k of its c
  rows, drawn from ``key`` folded with the device index) and the loss runs
  over the union of the shards' samples (n K_k columns less the padding
  rows drawn), in blocks of ``block_size`` of them as above.

  Args:
    embeddings: float array (B, D), any sharding. Normalised here.
    labels: int array (B,), values in [0, num_proxies) (others are left out
      of the mean, as in ``losses.proxy_nca_loss``).
    proxies: float array (R, D), R a multiple of the mesh's ``data`` size,
      sharded (or shardable) by rows; rows num_proxies..R-1 are padding.
    mesh: the device mesh (parallel.create_mesh).
    num_proxies: C, the number of real proxies (classes).
    form: "paper" or "softmax".
    scale: positive multiplier of the squared distances.
    label_smoothing: eps in [0, 1); softmax form only.
    embedding_norm: a, the norm embeddings are scaled to.
    proxy_norm: b, the norm proxies are scaled to.
    block_size: proxy rows (sampled rows) per block on each device, or None
      for the automatic choice.
    negative_fraction: in (0, 1]; below 1, the part of each device's other
      proxies sampled.
    key: the step's sample key (``sampled_proxies.sample_key``), needed when
      ``negative_fraction`` < 1.

  Returns:
    float32 scalar, replicated: the mean loss over the batch.

  Raises:
    ValueError: as ``losses.proxy_nca_loss``, or for a row count that the
      mesh does not divide or below ``num_proxies``, or a sample without its
      key.
  """
  _check_sharded(embeddings, labels, proxies, mesh, num_proxies)
  _checks.check_proxy_nca_options(
    form, scale, label_smoothing, embedding_norm, proxy_norm, "static"
  )
  if (form == "paper" or label_smoothing) and num_proxies < 2:
    raise errors.InvalidInputError(
      "The paper form and label smoothing need at least two proxies."
    )
  local_rows = proxies.shape[0] // mesh.shape[_AXIS]
  sampled = sampled_proxies.num_sampled(
    negative_fraction, local_rows, labels.shape[0]
  )
  if negative_fraction < 1 and key is None:
    raise errors.InvalidInputError(
      "Sampled negative proxies need the step's key: key=."
    )
  width = sampled if negative_fraction < 1 else local_rows
  block_size = proxy_blocks.chosen_block_size(block_size, width)
  norms = dict(embedding_norm=embedding_norm, proxy_norm=proxy_norm)

  def every_row(labels, local_proxies, key):
    """This device's columns: its rows, numbered globally."""
    del key
    first = jax.lax.axis_index(_AXIS) * local_rows
    return local_proxies, labels, first, num_proxies, num_proxies

  def sampled_rows(labels, local_proxies, key):
    """This device's columns: its sampled rows (positives first, padding
    last). The n real ones are numbered K - n .. K - 1, so that the padding
    falls past K, the columns' bound, as padding rows do in ``every_row``."""
    offset = jax.lax.axis_index(_AXIS) * local_rows
    num_real = jnp.clip(num_proxies - offset, 0, local_rows)
    rows, sampled_labels = sampled_proxies.sample_proxies(
      jax.random.fold_in(key, jax.lax.axis_index(_AXIS)),
      labels - offset,
      local_rows,
      sampled,
      num_real,
    )
    drawn = jnp.minimum(num_real, sampled)
    first = sampled - drawn
    # -1 (the positive is on another device) stays -1: no column.
    labels = jnp.where(sampled_labels >= 0, sampled_labels + first, -1)
    total = jax.lax.psum(drawn, _AXIS)
    return local_proxies[rows], labels, first, sampled, total

  columns_of = sampled_rows if negative_fraction < 1 else every_row

  def local_loss(embeddings, labels, local_proxies, key):
    columns, column_labels, first, bound, total = columns_of(
      labels, local_proxies, key
    )
    if block_size is None:
      logits = -scale * proxies_lib.proxy_distances(
        embeddings, columns, **norms
      )  # (B, c)
      index = first + jnp.arange(columns.shape[0])
      real = index < bound
      positive = (column_labels[:, None] == index[None, :]) & real
      positive_logit = jax.lax.psum(
        jnp.sum(jnp.where(positive, logits, 0.0), axis=-1), _AXIS
      )
      if form == "paper":
        lse = distributed_logsumexp(logits, real & ~positive)
      else:
        lse = distributed_logsumexp(
          logits, jnp.broadcast_to(real, logits.shape)
        )
      local_sum = jnp.sum(jnp.where(real, logits, 0.0), axis=-1)
    else:
      local_lse, local_sum, local_positive = proxy_blocks.nca_terms(
        embeddings,
        columns,
        column_labels,
        first,
        block_size=block_size,
        scale=scale,
        num_columns=bound,
        exclude_positive=form == "paper",
        **norms,
      )
      lse = distributed_logsumexp(
        local_lse[:, None], jnp.isfinite(local_lse)[:, None]
      )
      positive_logit = jax.lax.psum(local_positive, _AXIS)
    logit_sum = jax.lax.psum(local_sum, _AXIS) if label_smoothing else None
    per_sample = proxy_nca.smoothed_nca(
      lse, positive_logit, logit_sum, label_smoothing, total
    )
    return pair.masked_mean(per_sample, (labels >= 0) & (labels < num_proxies))

  return _sharded(local_loss, mesh, with_key=True)(
    embeddings, labels, proxies, key
  )


def sharded_proxy_anchor_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  *,
  mesh: jax.sharding.Mesh,
  num_proxies: int,
  alpha: float = 32.0,
  delta: float = 0.1,
) -> jax.Array:
  """``losses.proxy_anchor_loss`` with proxies sharded by rows.

  Args:
    embeddings: float array (B, D), any sharding. Normalised here.
    labels: int array (B,), values in [0, num_proxies).
    proxies: float array (R, D), R a multiple of the mesh's ``data`` size;
      rows num_proxies..R-1 are padding.
    mesh: the device mesh.
    num_proxies: C, the number of real proxies.
    alpha: scaling factor (32 in [2]).
    delta: margin (0.1 in [2]).

  Returns:
    float32 scalar, replicated.

  Raises:
    ValueError: for wrong shapes, or a row count that the mesh does not
      divide or below ``num_proxies``.
  """
  _check_sharded(embeddings, labels, proxies, mesh, num_proxies)

  def local_loss(embeddings, labels, local_proxies):
    x = geometry.l2_normalize(embeddings.astype(jnp.float32))
    p = geometry.l2_normalize(local_proxies.astype(jnp.float32))
    cos = x @ p.T  # (B, c)
    positive, real = _local_columns(labels, local_proxies.shape[0], num_proxies)
    negative = ~positive & real
    pull = proxy_nca._log1p_sum_exp(
      geometry.masked_logsumexp(-alpha * (cos - delta), positive, axis=0)
    )
    push = proxy_nca._log1p_sum_exp(
      geometry.masked_logsumexp(alpha * (cos + delta), negative, axis=0)
    )
    with_positive = jnp.any(positive, axis=0)
    pull_sum = jax.lax.psum(jnp.sum(jnp.where(with_positive, pull, 0.0)), _AXIS)
    pull_count = jax.lax.psum(jnp.sum(with_positive), _AXIS)
    push_sum = jax.lax.psum(jnp.sum(jnp.where(real, push, 0.0)), _AXIS)
    return pull_sum / jnp.maximum(pull_count, 1) + push_sum / num_proxies

  return _sharded(local_loss, mesh)(embeddings, labels, proxies)


def sharded_margin_softmax_loss(
  embeddings: jax.Array,
  labels: jax.Array,
  proxies: jax.Array,
  spec: margin_softmax.MarginSoftmax,
  *,
  mesh: jax.sharding.Mesh,
  num_classes: int,
  negative_fraction: float = 1.0,
  key: jax.Array | None = None,
  block_size: int | None = None,
) -> jax.Array:
  """``losses.margin_softmax.margin_softmax_loss`` with the class weights
  sharded by classes.

  With one centre a class and more classes per device than ``block_size``
  (None: the automatic choice, per device), each device takes its sums a
  block of classes at a time (``margin_softmax.blocked_terms``).

  With ``negative_fraction`` < 1, each device keeps the classes of the
  batch it owns and a uniform sample of its other classes (K_k of its c
  classes, ``losses.sampled_proxies``, from ``key`` folded with the device
  index), and the loss (and SoftTriple's regulariser, over the sampled
  classes) runs over the union of the shards' samples.

  Args:
    embeddings: float (B, D), any sharding. Normalised here.
    labels: int (B,), classes in [0, num_classes) (others are left out).
    proxies: float (R, D), R = K times a multiple of the mesh's ``data``
      size, sharded by rows; class c in rows c K .. c K + K - 1, rows from
      num_classes K on are padding.
    spec: the loss and its options.
    mesh: the device mesh.
    num_classes: C, the real classes.
    negative_fraction: in (0, 1]; below 1, the part of each device's other
      classes sampled.
    key: the step's sample key, needed when ``negative_fraction`` < 1.
    block_size: classes per block on each device (one centre a class), or
      None for the automatic choice.

  Returns:
    float32 scalar, replicated.

  Raises:
    ValueError: wrong shapes, rows that are not whole classes on every
      device, or a sample without its key.
  """
  k = spec.centers_per_class
  _checks.check_batch(embeddings, labels)
  _checks.check_proxies(embeddings, proxies)
  shards = mesh.shape[_AXIS]
  rows = proxies.shape[0]
  if rows % (shards * k) or not 1 <= num_classes * k <= rows:
    raise errors.InvalidInputError(
      f"Sharded class weights need a row count divisible by {shards} "
      f"devices x {k} centres a class and at least num_classes x {k} = "
      f"{num_classes * k} rows, got {rows}; pad them with "
      "proxies.pad_proxies(proxies, num_shards, rows_per_class=K)."
    )
  local_classes = rows // shards // k
  sampled = sampled_proxies.num_sampled(
    negative_fraction, local_classes, labels.shape[0]
  )
  if negative_fraction < 1 and key is None:
    raise errors.InvalidInputError(
      "Sampled negative classes need the step's key: key=."
    )
  width = sampled if negative_fraction < 1 else local_classes
  block_size = margin_softmax.uses_blocks(spec, block_size, width)

  def local_loss(embeddings, labels, local_proxies, key):
    offset = jax.lax.axis_index(_AXIS) * local_classes
    num_real = jnp.clip(num_classes - offset, 0, local_classes)
    local_labels = labels - offset
    if negative_fraction < 1:
      classes, local_labels = sampled_proxies.sample_proxies(
        jax.random.fold_in(key, jax.lax.axis_index(_AXIS)),
        local_labels,
        local_classes,
        sampled,
        num_real,
      )
      local_proxies = local_proxies[sampled_proxies.class_rows(classes, k)]
      num_real = jnp.minimum(num_real, sampled)
    columns = local_proxies.shape[0] // k
    if block_size is not None:
      # The blocks' column bound is static: number the columns so that the
      # real ones lie below it (as sharded_proxy_nca_loss does).
      if negative_fraction < 1:
        first = sampled - num_real
        column_labels = jnp.where(local_labels >= 0, local_labels + first, -1)
        bound = sampled
      else:
        first, column_labels, bound = offset, labels, num_classes
      local_lse, shifted = margin_softmax.blocked_terms(
        embeddings,
        local_proxies,
        column_labels,
        first,
        scale=spec.scale,
        num_columns=bound,
        block_size=block_size,
      )
      negative_lse = distributed_logsumexp(
        local_lse[:, None], jnp.isfinite(local_lse)[:, None]
      )
      target = jax.lax.psum(shifted, _AXIS) / spec.scale + 1
    else:
      dtype = margin_softmax.compute_dtype(embeddings, local_proxies)
      x = geometry.l2_normalize(embeddings.astype(dtype))
      similarity = spec.class_similarities(x, local_proxies.astype(dtype))
      real = jnp.arange(columns) < num_real
      positive = proxies_lib.static_assignment(local_labels, columns) & real
      target = jax.lax.psum(
        jnp.sum(jnp.where(positive, similarity, 0.0), axis=-1), _AXIS
      )
      negative_lse = distributed_logsumexp(
        spec.scale * similarity, real & ~positive
      )
    valid = (labels >= 0) & (labels < num_classes)
    per_sample = spec.per_sample(negative_lse, target, labels)
    loss = pair.masked_mean(per_sample, valid)
    if spec.has_regulariser():
      real = jnp.arange(columns) < num_real
      pair_sum = jax.lax.psum(spec.center_pair_sum(local_proxies, real), _AXIS)
      classes_used = jax.lax.psum(num_real, _AXIS)
      loss += spec.regulariser_scale(classes_used) * pair_sum
    return loss

  return _sharded(local_loss, mesh, with_key=True)(
    embeddings, labels, proxies, key
  )
