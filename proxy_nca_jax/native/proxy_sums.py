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
"""Proxy-NCA's sums over the proxies and their gradients, proxy_sums.cc's.

The forward and backward passes of `losses.proxy_blocks.logsumexp_and_sum`
([1], Eq. 4's denominator over every proxy, with the sum of the logits for
label smoothing) on the CPU, once `library.available("proxy_sums")` is
True. Same arguments and results as XLA's blocked version, to float32
rounding; the kernel picks its own blocks.

References:
  [1] Y. Movshovitz-Attias, A. Toshev, T. Leung, S. Ioffe, S. Singh. No Fuss
      Distance Metric Learning using Proxies. ICCV 2017.
"""

import jax
import jax.numpy as jnp
import numpy as np


def _attributes(
  scale: float, proxy_norm: float, num_columns: int, exclude_positive: bool
) -> dict[str, object]:
  return {
    "scale": np.float32(scale),
    "proxy_norm": np.float32(proxy_norm),
    "num_columns": np.int64(num_columns),
    "exclude_positive": bool(exclude_positive),
  }


def _varying_axes(array: jax.Array) -> frozenset[str]:
  """The mesh axes ``array`` varies over (inside ``jax.shard_map``)."""
  return jax.typeof(array).manual_axis_type.varying


def _varying_like(value: jax.Array, *inputs: jax.Array) -> jax.Array:
  """``value`` typed as varying over every mesh axis some input varies over
  (an FFI call's results vary over none)."""
  axes = frozenset().union(*map(_varying_axes, inputs))
  missing = tuple(sorted(axes - _varying_axes(value)))
  return jax.lax.pcast(value, missing, to="varying") if missing else value


def logsumexp_and_sum(
  x: jax.Array,
  proxies: jax.Array,
  labels: jax.Array,
  first_column: jax.Array,
  *,
  scale: float,
  proxy_norm: float,
  num_columns: int,
  exclude_positive: bool,
) -> tuple[jax.Array, jax.Array]:
  """Per sample, log sum_z exp(l_z) and sum_z l_z over the selected proxies.

  Args:
    x: float32 (B, D), the embeddings normalised and scaled.
    proxies: float32 (R, D), raw proxy rows (normalised in the kernel).
    labels: int (B,), global index of each sample's positive.
    first_column: int scalar, global index of the first row.
    scale, proxy_norm, num_columns, exclude_positive: as
      `losses.proxy_blocks.BlockOptions`.

  Returns:
    Two float32 (B,): the log-sum-exp (-inf where no proxy is selected)
    and the sum of the selected logits.
  """
  batch = x.shape[0]
  results = (jax.ShapeDtypeStruct((batch,), jnp.float32),) * 2
  inputs = (x, proxies, labels, first_column)
  lse, logit_sum = jax.ffi.ffi_call(
    "ProxySumsForward", results, vmap_method="sequential"
  )(
    x,
    proxies,
    labels.astype(jnp.int32),
    jnp.asarray(first_column, jnp.int32),
    **_attributes(scale, proxy_norm, num_columns, exclude_positive),
  )
  return _varying_like(lse, *inputs), _varying_like(logit_sum, *inputs)


def logsumexp_and_sum_grad(
  x: jax.Array,
  proxies: jax.Array,
  labels: jax.Array,
  first_column: jax.Array,
  lse: jax.Array,
  lse_grad: jax.Array,
  sum_grad: jax.Array,
  *,
  scale: float,
  proxy_norm: float,
  num_columns: int,
  exclude_positive: bool,
) -> tuple[jax.Array, jax.Array]:
  """The gradients of `logsumexp_and_sum` with respect to x and proxies.

  Args:
    x, proxies, labels, first_column, scale, proxy_norm, num_columns,
      exclude_positive: as `logsumexp_and_sum`.
    lse: float32 (B,), its log-sum-exp.
    lse_grad, sum_grad: float32 (B,), the cotangents of its two results.

  Returns:
    float32 (B, D) and (R, D): the gradients of x and of the proxy rows.
  """
  results = (
    jax.ShapeDtypeStruct(x.shape, jnp.float32),
    jax.ShapeDtypeStruct(proxies.shape, jnp.float32),
  )
  x_grad, proxies_grad = jax.ffi.ffi_call(
    "ProxySumsBackward", results, vmap_method="sequential"
  )(
    x,
    proxies,
    labels.astype(jnp.int32),
    jnp.asarray(first_column, jnp.int32),
    lse,
    lse_grad.astype(jnp.float32),
    sum_grad.astype(jnp.float32),
    **_attributes(scale, proxy_norm, num_columns, exclude_positive),
  )
  # x_grad is this call's share of the sum over every proxy row; where x is
  # the same on every device of an axis the rows are split over, the shares
  # are summed over it.
  x_grad = _varying_like(x_grad, x, proxies)
  split = _varying_axes(proxies) - _varying_axes(x)
  if split:
    x_grad = jax.lax.psum(x_grad, tuple(sorted(split)))
  return x_grad, _varying_like(proxies_grad, proxies)
