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
"""Geometry of embeddings: normalisation, distances, masked log-sum-exp.

The shared arithmetic of the losses (proxy and pair), the models' embedding
head and the proxies: L2 normalisation (paper, Sec. 4: embeddings and
proxies are normalised), squared and plain Euclidean distances between
rows, and a log-sum-exp over a mask that stays finite when the mask is
empty.
"""

import jax
import jax.numpy as jnp

# Below every non-zero vector's squared norm after the peak division (>= 1):
# only zero vectors are clamped (see l2_normalize).
_MIN_SQ_NORM = 0.25


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
  """Scales vectors to unit norm; a zero vector stays zero (no NaN).

  Dividing by the largest absolute coordinate first keeps the squared norm
  finite for any finite input (float32 squares overflow above ~1.8e19).
  That divisor carries no gradient, which is exact: the result does not
  depend on it. It is applied as two divisions by its square root because
  XLA divides by multiplying with the reciprocal, which flushes to zero
  above ~1e38.

  A zero vector has no direction, so x / |x| has no derivative there. We
  take 2 I as its Jacobian: the gradient reaching a zero embedding or
  proxy row is passed on doubled (bounded by the upstream gradient), where
  the common x / max(|x|, eps) sends 1 / eps (1e12 for eps = 1e-12) and
  one SGD step throws the row to a norm of ~1e9. After the division by the
  peak, a non-zero vector's largest coordinate is 1 (to an ulp of the
  rounded square root), so its squared norm is >= 1 - 2^-22 and the clamp
  at 1/4 never touches it: it gets the plain x / |x| and its exact
  Jacobian; a zero vector gets x * rsqrt(1/4) = 2 x.
  """
  peak = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
  root = jax.lax.stop_gradient(jnp.sqrt(jnp.where(peak > 0, peak, 1.0)))
  x = x / root / root
  sq_norm = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq_norm, _MIN_SQ_NORM))


def squared_distances(a: jax.Array, b: jax.Array) -> jax.Array:
  """Pairwise squared Euclidean distances ||a_i - b_j||^2, shape (N, M).

  Uses the expansion |a|^2 + |b|^2 - 2 a.b (a matrix product), clamped at
  zero against rounding.
  """
  sq_a = jnp.sum(jnp.square(a), axis=-1)[:, None]
  sq_b = jnp.sum(jnp.square(b), axis=-1)[None, :]
  return jnp.maximum(sq_a + sq_b - 2.0 * a @ b.T, 0.0)


def euclidean_from_squared(sq: jax.Array) -> jax.Array:
  """sqrt(sq) with a zero (not infinite) gradient at sq = 0.

  Duplicated embeddings are at distance exactly 0, where the square root's
  derivative is infinite; the double ``where`` keeps gradients finite.
  """
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def masked_logsumexp(
  x: jax.Array, mask: jax.Array, axis: int = -1
) -> jax.Array:
  """log sum_{mask} exp(x) along ``axis``, stable, for any mask.

  Args:
    x: float array.
    mask: bool array of the shape of ``x``; False entries are left out.
    axis: the axis reduced.

  Returns:
    ``x`` reduced over ``axis``; -inf where the mask selects nothing, with a
    zero (not NaN) gradient there.
  """
  x = jnp.where(mask, x, -jnp.inf)
  peak = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
  peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
  total = jnp.sum(jnp.where(mask, jnp.exp(x - peak), 0.0), axis=axis)
  nonempty = jnp.any(mask, axis=axis)
  lse = jnp.log(jnp.where(nonempty, total, 1.0)) + jnp.squeeze(peak, axis)
  return jnp.where(nonempty, lse, -jnp.inf)
