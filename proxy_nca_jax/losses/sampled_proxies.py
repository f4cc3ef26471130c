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
"""Sampled negative proxies: each step compares with a part of the proxies.

With millions of classes, the denominator of Proxy-NCA ([1], Eq. 4) over
every proxy is most of a step's work. Partial FC ([2]) keeps, at each step,
the proxies of the batch's classes (the positives) and a random part of the
others, and computes the loss over those K proxies only:

    L = -l_y + logsumexp_{z in S} l_z,   S = {y of the batch} + random others,
    |S| = K = max(ceil(fraction * C), min(B, C)) (at least room for every
    positive of the batch),

so the logits, the softmax and both products of the gradient shrink to a
fraction of C. The proxies outside S get a zero gradient at that step.

Which proxies. Every proxy gets a uniform random score in [0, 1) from a key,
the batch's positives the score 2, and S is the K best scores: the positives
always, the others uniformly without replacement. The key is drawn from the
run's seed and the step number (``sample_key``), so a resumed run samples
the same proxies at the same step as an uninterrupted one.

Sharded proxies (``losses.sharded``). As Partial FC does on each GPU, every
device samples within its own rows: its positives and a uniform part of its
other proxies, K_k = max(ceil(fraction * c), min(B, c)) of its c rows, from
the step's key folded with the device's index. The sample is then stratified
by shard rather than uniform over all C proxies, and for the same seed and
step it is another sample than the replicated one.

References:
  [1] Y. Movshovitz-Attias, A. Toshev, T. Leung, S. Ioffe, S. Singh. No Fuss
      Distance Metric Learning using Proxies. ICCV 2017.
  [2] X. An, X. Zhu, Y. Gao, Y. Xiao, Y. Zhao, Z. Feng, L. Wu, B. Qin,
      M. Zhang, D. Zhang, Y. Fu. Partial FC: Training 10 Million Identities
      on a Single Machine. ICCV Workshops 2021.
"""

import math

import jax
import jax.numpy as jnp

from proxy_nca_jax import errors


def num_sampled(fraction: float, num_proxies: int, batch_size: int) -> int:
  """K, the proxies each step uses: the fraction of C, and at least room
  for the batch's positives (min(B, C)).

  Raises:
    ValueError: a fraction outside (0, 1].
  """
  if not 0 < fraction <= 1:
    raise errors.InvalidInputError(
      f"negative_fraction must be in (0, 1], got {fraction}; 1 uses every "
      "proxy."
    )
  return min(
    num_proxies,
    max(math.ceil(fraction * num_proxies), min(batch_size, num_proxies)),
  )


# Folded into the seed's key first: the samples get a stream of their own,
# apart from the other uses of the run's seed (initialisation).
_STREAM = 0x5A3D


def sample_key(seed: int, step: jax.Array) -> jax.Array:
  """The key of step ``step``'s sample: the same on a resumed run."""
  return jax.random.fold_in(
    jax.random.fold_in(jax.random.key(seed), _STREAM), step
  )


def sample_proxies(
  key: jax.Array,
  labels: jax.Array,
  num_proxies: int,
  num_sampled: int,
  num_real: jax.Array | int | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Picks the K proxies of a step and relabels the batch for them.

  Args:
    key: the step's key (``sample_key``).
    labels: int (B,), each sample's proxy in [0, num_real); others are left
      out (they get the label -1, which the losses leave out).
    num_proxies: C, the rows to pick from.
    num_sampled: K (``num_sampled``).
    num_real: the rows below it are proxies, the others padding (a shard of
      padded proxies), picked only when fewer than K proxies exist, after
      every proxy; default C.

  Returns:
    ``rows``, int (K,): the rows used, positives first, padding last, and
    ``sampled_labels``, int (B,): each sample's position in ``rows``.
  """
  num_real = num_proxies if num_real is None else num_real
  valid = (labels >= 0) & (labels < num_real)
  scores = jax.random.uniform(key, (num_proxies,))
  scores = jnp.where(jnp.arange(num_proxies) < num_real, scores, -1.0)
  scores = scores.at[jnp.where(valid, labels, num_proxies)].set(
    2.0, mode="drop"
  )
  _, rows = jax.lax.top_k(scores, num_sampled)
  position = (
    jnp.zeros((num_proxies,), jnp.int32)
    .at[rows]
    .set(jnp.arange(num_sampled, dtype=jnp.int32))
  )
  sampled_labels = jnp.where(
    valid, position[jnp.clip(labels, 0, num_proxies - 1)], -1
  )
  return rows, sampled_labels


def class_rows(classes: jax.Array, rows_per_class: int) -> jax.Array:
  """The proxy rows of ``classes`` (int (K,)) when each class owns
  ``rows_per_class`` consecutive rows (several centres a class): int
  (K rows_per_class,), class by class."""
  if rows_per_class == 1:
    return classes
  offsets = jnp.arange(rows_per_class, dtype=classes.dtype)
  return (classes[:, None] * rows_per_class + offsets).reshape(-1)
