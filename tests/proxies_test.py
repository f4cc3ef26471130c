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
"""Tests of proxies.py: class means, static assignment, initialisation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from proxy_nca_jax import proxies as proxies_lib


class ProxiesTest(absltest.TestCase):
  def test_class_means_against_numpy(self):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=50)
    labels[labels == 2] = 1  # Class 2 absent: its proxy is zero.
    got = proxies_lib.class_mean_proxies(emb, labels, 3)
    want = np.stack(
      [emb[labels == 0].mean(0), emb[labels == 1].mean(0), np.zeros(3)]
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  def test_static_assignment_is_one_hot_of_label(self):
    mask = proxies_lib.static_assignment(jnp.array([2, 0, 2]), 3)
    np.testing.assert_array_equal(
      mask, [[False, False, True], [True, False, False], [False, False, True]]
    )

  def test_init_shape_dtype_and_errors(self):
    p = proxies_lib.init_proxies(jax.random.key(0), 5, 7, scale=2.0)
    chex.assert_shape(p, (5, 7))
    chex.assert_type(p, jnp.float32)
    with self.assertRaisesRegex(ValueError, "at least one proxy"):
      proxies_lib.init_proxies(jax.random.key(0), 0, 7)


if __name__ == "__main__":
  absltest.main()
