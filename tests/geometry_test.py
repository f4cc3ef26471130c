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
"""Tests of geometry.py: the masked log-sum-exp and the normalisations
that the losses share, finite and with hand-derived gradients."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from proxy_nca_jax import geometry


class GeometryTest(parameterized.TestCase):
  def test_masked_logsumexp_matches_numpy_and_is_safe_when_empty(self):
    x = np.array([[1.0, 50.0, -3.0], [2.0, 0.0, 1.0]], np.float32)
    mask = np.array([[True, False, True], [False, False, False]])
    value, grad = jax.value_and_grad(
      lambda x: jnp.sum(
        jnp.where(
          jnp.isfinite(geometry.masked_logsumexp(x, mask)),
          geometry.masked_logsumexp(x, mask),
          0.0,
        )
      )
    )(x)
    np.testing.assert_allclose(value, np.log(np.exp(1.0) + np.exp(-3.0)))
    self.assertEqual(float(geometry.masked_logsumexp(x, mask)[1]), -np.inf)
    softmax = np.exp([1.0, -3.0]) / np.sum(np.exp([1.0, -3.0]))
    np.testing.assert_allclose(
      grad, [[softmax[0], 0.0, softmax[1]], [0.0, 0.0, 0.0]], rtol=1e-6
    )

  @parameterized.parameters(0.0, 1e-30, 1.0, 1e30, 3e38)
  def test_l2_normalize_is_finite_for_any_finite_magnitude(self, magnitude):
    x = np.array([[magnitude, -magnitude, 0.0], [0.0, 0.0, 0.0]], np.float32)
    value, grad = jax.value_and_grad(
      lambda x: jnp.sum(geometry.l2_normalize(x)[:, 0])
    )(x)
    chex.assert_tree_all_finite((value, grad))
    want = [np.sqrt(0.5), 0.0] if magnitude else [0.0, 0.0]
    np.testing.assert_allclose(geometry.l2_normalize(x)[:, 0], want, rtol=1e-6)

  def test_l2_normalize_jacobian(self):
    # Hand-derived: d(x/|x|)/dx = (I - u u^T) / |x| with u = x / |x|, also
    # for a vector with one non-zero coordinate; at a zero vector the
    # documented choice is 2 I (bounded).
    x = np.array([3.0, 0.0, -4.0], np.float32)
    u = np.float64(x) / 5.0
    jacobian = jax.jacobian(geometry.l2_normalize)(x)
    np.testing.assert_allclose(
      jacobian, (np.eye(3) - np.outer(u, u)) / 5.0, atol=1e-7
    )
    for value in (5.0, 3e-30, 7e37):
      one_hot = np.array([0.0, value, 0.0], np.float32)
      np.testing.assert_allclose(
        jax.jacobian(geometry.l2_normalize)(one_hot),
        (np.eye(3) - np.outer([0, 1, 0], [0, 1, 0])) / np.float64(value),
        rtol=1e-6,
      )
    np.testing.assert_array_equal(
      jax.jacobian(geometry.l2_normalize)(np.zeros(3, np.float32)),
      2.0 * np.eye(3),
    )

  def test_euclidean_from_squared_has_finite_gradient_at_zero(self):
    grad = jax.grad(lambda s: jnp.sum(geometry.euclidean_from_squared(s)))(
      jnp.array([0.0, 4.0])
    )
    np.testing.assert_allclose(grad, [0.0, 0.25])


if __name__ == "__main__":
  absltest.main()
