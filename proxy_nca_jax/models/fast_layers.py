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
"""Layers of convnet-S written by hand for speed on CPU.

Measurements in benchmarks/README.md. Each is the same function and
gradient as the stock Flax layers to float32 rounding
(tests/models/models_speed_formulation_test.py checks both):

* ``max_pool_2x2`` replaces ``flax.linen.max_pool(x, (2, 2), strides=(2,
  2))``. XLA CPU lowers the stock gradient (select-and-scatter) to a
  scatter which, with the page faults its buffers caused, was half of the
  2-device train step on 2 cores (73 -> 35 ms); here the forward pass keeps
  the index of each window's maximum (int8) and the backward pass is four
  element-wise selects.
* ``BatchNormReLU`` replaces ``flax.linen.BatchNorm`` followed by
  ``flax.linen.relu`` (same variables, same names: ``BatchNorm_0/scale``,
  ``bias``; batch_stats ``mean``, ``var``). Its backward pass is the
  closed-form BatchNorm gradient with the ReLU mask folded in: one
  reduction pass and one element-wise pass over the activations.

On CPU the larger gain is outside this file: XLA runs a one-device program
almost single-threaded, so shard the batch over one CPU device per core
(``jax_num_cpu_devices``), as the benchmarks do.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


def _window_members(x: jax.Array) -> list[jax.Array]:
  """The four members of each 2x2 window, row-major, each (B, H/2, W/2, C)."""
  b, h, w, c = x.shape
  window = x.reshape(b, h // 2, 2, w // 2, 2, c)
  return [window[:, :, i, :, j] for i in (0, 1) for j in (0, 1)]


@jax.custom_vjp
def _max_pool_2x2_even(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _max_pool_2x2_fwd(
  x: jax.Array,
) -> tuple[jax.Array, tuple[jax.Array, tuple[int, ...]]]:
  members = _window_members(x)
  y = jnp.maximum(
    jnp.maximum(members[0], members[1]), jnp.maximum(members[2], members[3])
  )
  # Like XLA's select-and-scatter (the stock gradient), the whole gradient
  # of a window goes to its first maximum in row-major order.
  first = jnp.full(y.shape, 3, jnp.int8)
  for i in (2, 1, 0):
    first = jnp.where(members[i] == y, jnp.int8(i), first)
  return y, (first, x.shape)


def _max_pool_2x2_bwd(
  residuals: tuple[jax.Array, tuple[int, ...]], g: jax.Array
) -> tuple[jax.Array]:
  first, shape = residuals
  zero = jnp.zeros_like(g)
  grads = [jnp.where(first == i, g, zero) for i in range(4)]
  top = jnp.stack(grads[:2], axis=3)
  bottom = jnp.stack(grads[2:], axis=3)
  return (jnp.stack([top, bottom], axis=2).reshape(shape),)


_max_pool_2x2_even.defvjp(_max_pool_2x2_fwd, _max_pool_2x2_bwd)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max pooling with stride 2 and VALID padding, NHWC.

  The same values and gradient as ``flax.linen.max_pool(x, (2, 2),
  strides=(2, 2))``, including ties (the first maximum of a window in
  row-major order gets the gradient), but several times faster to
  differentiate on CPU.

  Args:
    x: float array (B, H, W, C); an odd last row or column is dropped.

  Returns:
    Array (B, H // 2, W // 2, C) of the same dtype.
  """
  _, h, w, _ = x.shape
  return _max_pool_2x2_even(x[:, : h - h % 2, : w - w % 2])


def _batch_stats(z: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-channel mean and biased variance, as flax.linen.BatchNorm.

  Flax's default (``use_fast_variance=True``): var = E[z^2] - E[z]^2,
  clipped at 0.
  """
  axes = tuple(range(z.ndim - 1))
  mean = jnp.mean(z, axes)
  mean2 = jnp.mean(jnp.square(z), axes)
  return mean, jnp.maximum(0.0, mean2 - jnp.square(mean))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_relu(
  z: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """relu(BatchNorm(z)) with batch statistics (training mode).

  Args:
    z: float32 (..., C) pre-activations; statistics over all but the last
      axis (under sharded ``jit``, over the global batch).
    scale: (C,) BatchNorm scale (gamma).
    bias: (C,) BatchNorm bias (beta).
    epsilon: added to the variance.

  Returns:
    (activations like z, batch mean (C,), biased batch variance (C,)).
  """
  out, _ = _batch_norm_relu_fwd(z, scale, bias, epsilon)
  return out


def _batch_norm_relu_fwd(z, scale, bias, epsilon):
  mean, var = _batch_stats(z)
  inv_std = jax.lax.rsqrt(var + epsilon)
  # The operation order of flax.linen.BatchNorm, then relu.
  y = (z - mean) * (inv_std * scale) + bias
  return (jax.nn.relu(y), mean, var), (z, scale, bias, mean, inv_std)


def _batch_norm_relu_bwd(epsilon, residuals, cotangents):
  del epsilon  # Folded into inv_std.
  z, scale, bias, mean, inv_std = residuals
  g, g_mean, g_var = cotangents
  axes = tuple(range(z.ndim - 1))
  count = z.size // z.shape[-1]
  centred = z - mean
  x_hat = centred * inv_std
  # The forward pass's expression, so the ReLU mask is exactly its own;
  # relu'(0) = 0, as jax.nn.relu.
  active = centred * (inv_std * scale) + bias > 0
  g = jnp.where(active, g, jnp.zeros_like(g))
  g_bias = jnp.sum(g, axes)
  g_scale = jnp.sum(g * x_hat, axes)
  g_z = (scale * inv_std) * (g - g_bias / count - x_hat * (g_scale / count))
  # The batch mean and variance are outputs too (for the running averages);
  # their cotangents are zero in training, where XLA drops these terms.
  g_z = g_z + (g_mean + 2.0 * g_var * centred) / count
  return g_z, g_scale, g_bias


batch_norm_relu.defvjp(_batch_norm_relu_fwd, _batch_norm_relu_bwd)


class BatchNormReLU(nn.Module):
  """``flax.linen.BatchNorm`` followed by ReLU, with a fused gradient.

  The same variables as ``nn.BatchNorm`` (params ``scale`` and ``bias``,
  batch_stats ``mean`` and ``var``), the same initialisation, statistics,
  running-average update and numerics; only the backward pass is written
  by hand (``batch_norm_relu``).

  Attributes:
    use_running_average: normalise with the running statistics (inference)
      instead of the batch's.
    momentum: decay of the running averages.
    epsilon: added to the variance.
  """

  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """(..., C) pre-activations -> relu(BatchNorm(z)) of the same shape."""
    features = z.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    ra_mean = self.variable(
      "batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32)
    )
    ra_var = self.variable(
      "batch_stats", "var", lambda: jnp.ones((features,), jnp.float32)
    )
    if self.use_running_average:
      mul = jax.lax.rsqrt(ra_var.value + self.epsilon) * scale
      return jax.nn.relu((z - ra_mean.value) * mul + bias)
    out, mean, var = batch_norm_relu(z, scale, bias, self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return out
