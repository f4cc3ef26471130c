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
"""Proxy-NCA's sums over the proxies, taken a block of proxies at a time.

The denominator of Proxy-NCA ([1], Eq. 4) runs over every proxy. Written
plainly, a step with C proxies forms the (B, C) matrix of logits, then its
softmax, then the softmax's product with the proxies: several passes over
B x C floats (1 GB at B = 256, C = 1,000,000), each a fresh allocation. Here
the logits of one block of proxies exist at a time:

* forward, the log-sum-exp is accumulated over the blocks with a running
  maximum (the "online softmax" of [2]): with m and s the maximum and the
  sum of exponentials so far and l the block's logits,

      m' = max(m, max_j l_j),   s' = s exp(m - m') + sum_j exp(l_j - m'),

  and logsumexp = m + log s at the end; the sum of the logits (label
  smoothing) is accumulated beside it;
* backward, each block's logits are computed again and turned into their
  gradient, g_lse * exp(l - logsumexp) + g_sum, which is multiplied into the
  embeddings' gradient and the block's rows of the proxies' gradient (the
  recomputation of [3]). Nothing of size B x C is ever stored.

The arithmetic of each logit is that of ``losses.proxy_nca_loss``
(l_z = -scale |a x - b p_z|^2 with the proxies normalised), so the two agree
to float32 rounding; only the order of the sums differs. The matrix products
are one more than the plain formulation's three (the forward product is
done again in the backward pass), and the memory is B x block floats.

On a CPU with AVX-512, where its library builds (`native_sums`), both
passes of float32 sums are native/proxy_sums.cc's: the same
arithmetic, with register-tiled products that XLA:CPU runs at about half
its peak rate in this shape; its blocks are its own (``block_size`` then
only decides that the sums are blocked). A 1M-proxy step with Adam took
1.72-2.07 s against 2.85 s with XLA's blocks on a 2-core AMD EPYC
(benchmarks/README.md).

Columns. ``first_column`` is the index of the first proxy row given (a
shard's offset when the proxies are split over devices, 0 otherwise);
columns at or past ``num_columns`` (padding rows) are left out, and so is
each sample's own column when ``exclude_positive`` (the paper form's
denominator, z != y).

References:
  [1] Y. Movshovitz-Attias, A. Toshev, T. Leung, S. Ioffe, S. Singh. No Fuss
      Distance Metric Learning using Proxies. ICCV 2017.
  [2] M. Milakov, N. Gimelshein. Online normalizer calculation for softmax.
      arXiv:1805.02867, 2018.
  [3] T. Dao, D. Y. Fu, S. Ermon, A. Rudra, C. Re. FlashAttention: Fast and
      Memory-Efficient Exact Attention with IO-Awareness. NeurIPS 2022.
"""

import dataclasses
import functools
from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp

from proxy_nca_jax import errors, geometry, native
from proxy_nca_jax.native import proxy_sums

Carry = TypeVar("Carry")

# The automatic choice (``block_size=None``): blocks of AUTO_BLOCK_SIZE
# proxies when there are more than AUTO_ABOVE of them (per device), else
# every logit at once. Measured on a 2-core AMD EPYC, B = 256, D = 128, one
# step with both gradients and Adam (benchmarks/README.md): at 11,318
# proxies 64 ms in blocks of 4,096 against 55 ms at once; at 100,000,
# 354 ms against 692 ms; at 1,000,000, 4.0 s against 16.1 s (blocks of
# 16,384 and 65,536 were slower, of 512 to 2,048 no faster).
AUTO_BLOCK_SIZE = 4_096
AUTO_ABOVE = 65_536


def chosen_block_size(block_size: int | None, num_rows: int) -> int | None:
  """The block size to use for ``num_rows`` proxy rows, or None for every
  logit at once: ``block_size`` when it is below ``num_rows``, and for
  ``block_size=None`` the automatic choice above ``AUTO_ABOVE`` rows:
  ``AUTO_BLOCK_SIZE``, or the largest divisor of ``num_rows`` above half of
  it (4,000 for 1,000,000 rows), so that no remainder block needs its
  gradient rows joined to the others' (`_map_blocks`: 0.45 GiB more
  scratch at 1M x 128).

  Raises:
    ValueError: a block size that is not a positive integer.
  """
  if block_size is None:
    if num_rows <= AUTO_ABOVE:
      return None
    divisors = (
      size
      for size in range(AUTO_BLOCK_SIZE, AUTO_BLOCK_SIZE // 2, -1)
      if num_rows % size == 0
    )
    return next(divisors, AUTO_BLOCK_SIZE)
  whole = isinstance(block_size, int) and not isinstance(block_size, bool)
  if not whole or block_size < 1:
    raise errors.InvalidInputError(
      f"block_size must be a positive integer or None, got {block_size!r}."
    )
  return block_size if block_size < num_rows else None


@dataclasses.dataclass(frozen=True)
class BlockOptions:
  """The static options of ``logsumexp_and_sum``.

  Attributes:
    block_size: proxies per block (rows of the proxy matrix).
    scale: positive multiplier of the squared distances.
    proxy_norm: b, the norm the proxies are scaled to.
    num_columns: proxies with a global index below this count; the rest
      (padding) are left out.
    exclude_positive: leave each sample's own proxy out (paper form).
  """

  block_size: int
  scale: float
  proxy_norm: float
  num_columns: int
  exclude_positive: bool


def _block_logits(
  x: jax.Array, block: jax.Array, options: BlockOptions
) -> jax.Array:
  """-scale |x - b p|^2 for a block of proxy rows, as the plain loss has it."""
  p = options.proxy_norm * geometry.l2_normalize(block.astype(jnp.float32))
  return -options.scale * geometry.squared_distances(x, p)


def _block_mask(
  labels: jax.Array, first: jax.Array, size: int, options: BlockOptions
) -> jax.Array:
  """The (B, size) columns of the block starting at global index ``first``
  that enter the sums."""
  columns = first + jnp.arange(size)
  mask = jnp.broadcast_to(
    columns < options.num_columns, (labels.shape[0], size)
  )
  if options.exclude_positive:
    mask &= columns[None, :] != labels[:, None]
  return mask


def _block_and_mask(
  proxies: jax.Array,
  labels: jax.Array,
  first_column: jax.Array,
  start: jax.Array | int,
  size: int,
  options: BlockOptions,
) -> tuple[jax.Array, jax.Array]:
  """Rows [start, start + size) of ``proxies`` and their column mask."""
  block = jax.lax.dynamic_slice_in_dim(proxies, start, size)
  return block, _block_mask(labels, first_column + start, size, options)


def _fold_blocks(
  num_rows: int,
  block_size: int,
  step: Callable[[jax.Array | int, int, Carry], Carry],
  carry: Carry,
) -> Carry:
  """``step(first row, rows, carry)`` over the blocks of ``num_rows`` rows.

  The first block runs outside the loop, so the loop's carry already has
  the type the blocks give it (inside ``jax.shard_map``: varying over the
  mesh axes of the proxies); then the other full blocks in a loop, then the
  remainder.
  """
  full, rest = divmod(num_rows, block_size)
  carry = step(0, min(block_size, num_rows), carry)
  if full > 1:
    carry = jax.lax.fori_loop(
      1, full, lambda i, c: step(i * block_size, block_size, c), carry
    )
  if full and rest:
    carry = step(full * block_size, rest, carry)
  return carry


def _map_blocks(
  num_rows: int,
  block_size: int,
  step: Callable[[jax.Array | int, int, Carry], tuple[Carry, jax.Array]],
  carry: Carry,
) -> tuple[Carry, jax.Array]:
  """`_fold_blocks` for a ``step`` that also returns its rows' output:
  (final carry, the outputs concatenated along axis 0).

  The full blocks run in a ``jax.lax.scan``, whose stacked outputs are
  written in place: a (num_rows, ...) array carried through a loop and
  updated a block at a time cost more than the blocks' own work (the
  proxies' gradient at 1M x 128: 2.61 s against 1.96 s for the backward
  pass on the 2-core AMD EPYC). The carry takes its type (inside
  ``jax.shard_map``, varying over the proxies' mesh axes) from a step over
  zero rows, which adds exact zeros.
  """
  full, rest = divmod(num_rows, block_size)
  carry, _ = step(0, 0, carry)

  def scanned(carry, i):
    return step(i * block_size, block_size, carry)

  carry, stacked = jax.lax.scan(scanned, carry, jnp.arange(full))
  outputs = [stacked.reshape(-1, *stacked.shape[2:])]
  if rest:
    carry, last = step(full * block_size, rest, carry)
    outputs.append(last)
  return carry, jnp.concatenate(outputs) if rest else outputs[0]


def native_sums(x: jax.Array, proxies: jax.Array) -> bool:
  """Whether native/proxy_sums.cc takes both passes: float32 on a CPU with
  AVX-512, where its library builds (XLA:CPU runs these products at about
  half its peak rate; benchmarks/README.md). Its 16-float vectors would be
  split in narrower registers elsewhere: 20 s instead of 0.7 s for a 1M
  proxy forward pass built for AVX2, so XLA's blocks stay there."""
  return (
    jax.default_backend() == "cpu"
    and x.dtype == proxies.dtype == jnp.float32
    and "avx512f" in native.library.cpu_flags()
    and native.available("proxy_sums")
  )


def _native_options(options: BlockOptions) -> dict[str, float | int | bool]:
  return {
    "scale": options.scale,
    "proxy_norm": options.proxy_norm,
    "num_columns": options.num_columns,
    "exclude_positive": options.exclude_positive,
  }


def _forward(
  x: jax.Array,
  proxies: jax.Array,
  labels: jax.Array,
  first_column: jax.Array,
  options: BlockOptions,
) -> tuple[jax.Array, jax.Array]:
  if native_sums(x, proxies):
    return proxy_sums.logsumexp_and_sum(
      x, proxies, labels, first_column, **_native_options(options)
    )

  def accumulate(start, size, carry):
    peak, total, logit_sum = carry
    block, mask = _block_and_mask(
      proxies, labels, first_column, start, size, options
    )
    logits = _block_logits(x, block, options)
    new_peak = jnp.maximum(
      peak, jnp.max(jnp.where(mask, logits, -jnp.inf), axis=-1)
    )
    shift = jnp.where(jnp.isfinite(new_peak), new_peak, 0.0)
    total = total * jnp.exp(peak - shift) + jnp.sum(
      jnp.where(mask, jnp.exp(logits - shift[:, None]), 0.0), axis=-1
    )
    logit_sum += jnp.sum(jnp.where(mask, logits, 0.0), axis=-1)
    return new_peak, total, logit_sum

  batch = x.shape[0]
  empty = (
    jnp.full((batch,), -jnp.inf, jnp.float32),
    jnp.zeros((batch,), jnp.float32),
    jnp.zeros((batch,), jnp.float32),
  )
  peak, total, logit_sum = _fold_blocks(
    proxies.shape[0], options.block_size, accumulate, empty
  )
  # The largest selected logit adds exp(0) = 1: total is 0 only if empty.
  nonempty = total > 0
  shift = jnp.where(jnp.isfinite(peak), peak, 0.0)
  lse = jnp.where(
    nonempty, jnp.log(jnp.where(nonempty, total, 1.0)) + shift, -jnp.inf
  )
  return lse, logit_sum


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def logsumexp_and_sum(
  x: jax.Array,
  proxies: jax.Array,
  labels: jax.Array,
  first_column: jax.Array,
  options: BlockOptions,
) -> tuple[jax.Array, jax.Array]:
  """log sum_z exp(l_z) and sum_z l_z over the selected proxies, per sample.

  Args:
    x: float32 (B, D), the embeddings normalised and scaled to norm a.
    proxies: float (R, D), raw proxy rows (normalised here, in blocks).
    labels: int (B,), global proxy index of each sample's positive.
    first_column: int scalar, the global index of ``proxies``' first row.
    options: the static options (``BlockOptions``).

  Returns:
    Two float32 (B,) arrays: the log-sum-exp of the selected logits (-inf,
    with a zero gradient, where none is selected) and their sum.
  """
  return _forward(x, proxies, labels, first_column, options)


def _logsumexp_and_sum_fwd(x, proxies, labels, first_column, options):
  lse, logit_sum = _forward(x, proxies, labels, first_column, options)
  return (lse, logit_sum), (x, proxies, labels, first_column, lse)


def _logsumexp_and_sum_bwd(options, residuals, cotangents):
  x, proxies, labels, first_column, lse = residuals
  lse_grad, sum_grad = cotangents
  if native_sums(x, proxies):
    x_grad, proxies_grad = proxy_sums.logsumexp_and_sum_grad(
      x,
      proxies,
      labels,
      first_column,
      lse,
      lse_grad,
      sum_grad,
      **_native_options(options),
    )
    return x_grad, proxies_grad, None, None
  finite_lse = jnp.where(jnp.isfinite(lse), lse, 0.0)

  def backward(start, size, x_grad):
    block, mask = _block_and_mask(
      proxies, labels, first_column, start, size, options
    )
    logits, pullback = jax.vjp(
      lambda x, b: _block_logits(x, b, options), x, block
    )
    softmax = jnp.exp(logits - finite_lse[:, None])
    logits_grad = jnp.where(
      mask, lse_grad[:, None] * softmax + sum_grad[:, None], 0.0
    )
    block_x_grad, block_grad = pullback(logits_grad)
    return x_grad + block_x_grad, block_grad.astype(proxies.dtype)

  x_grad, proxies_grad = _map_blocks(
    proxies.shape[0], options.block_size, backward, jnp.zeros_like(x)
  )
  return x_grad, proxies_grad, None, None


logsumexp_and_sum.defvjp(_logsumexp_and_sum_fwd, _logsumexp_and_sum_bwd)


def positive_logits(
  x: jax.Array,
  proxies: jax.Array,
  labels: jax.Array,
  first_column: jax.Array,
  options: BlockOptions,
) -> jax.Array:
  """l_y = -scale |x - b p_y|^2 of each sample's own proxy, gathered (no
  B x C product); 0 where the label is not a row of ``proxies``."""
  local = labels - first_column
  owned = (local >= 0) & (local < proxies.shape[0])
  rows = proxies[jnp.clip(local, 0, proxies.shape[0] - 1)]
  p = options.proxy_norm * geometry.l2_normalize(rows.astype(jnp.float32))
  distance = jnp.maximum(
    jnp.sum(jnp.square(x), -1)
    + jnp.sum(jnp.square(p), -1)
    - 2.0 * jnp.sum(x * p, -1),
    0.0,
  )
  return jnp.where(owned, -options.scale * distance, 0.0)


def nca_terms(
  embeddings: jax.Array,
  proxies: jax.Array,
  labels: jax.Array,
  first_column: jax.Array,
  *,
  block_size: int,
  scale: float,
  embedding_norm: float,
  proxy_norm: float,
  num_columns: int,
  exclude_positive: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The per-sample terms of Proxy-NCA over these proxy rows, in blocks.

  Args:
    embeddings: float (B, D), raw (normalised and scaled to norm a here).
    proxies: float (R, D), raw proxy rows whose first has global index
      ``first_column``.
    labels: int (B,), global proxy index of each sample's positive.
    first_column: int scalar.
    block_size, scale, proxy_norm, num_columns, exclude_positive: as
      ``BlockOptions``.
    embedding_norm: a.

  Returns:
    float32 (B,) each: the log-sum-exp and the sum of the selected logits
    (``logsumexp_and_sum``), and the positive logit (0 where the positive
    is not among these rows). Sharded, each is summed or combined over the
    shards by the caller.
  """
  options = BlockOptions(
    block_size=block_size,
    scale=scale,
    proxy_norm=proxy_norm,
    num_columns=num_columns,
    exclude_positive=exclude_positive,
  )
  x = embedding_norm * geometry.l2_normalize(embeddings.astype(jnp.float32))
  lse, logit_sum = logsumexp_and_sum(x, proxies, labels, first_column, options)
  positive = positive_logits(x, proxies, labels, first_column, options)
  return lse, logit_sum, positive
