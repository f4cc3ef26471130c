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
"""The similarity of the retrieval engines, and what they assume of it.

Both exact retrieval algorithms (`evaluation.counting`,
`evaluation.sorted_prefix`) rank by the float32 dot products of this one
function. Their results are exact only if it is *position-independent*: the
similarity of a query and a gallery item depends on the two vectors alone,
not on the rows and columns they occupy in a tile, on the tile's shape, or
on the device that computes it. Then exact copies of a vector tie with each
other, and a similarity computed twice (once per pass of the counting
algorithm, or a tile and its transpose) is the same value both times.

XLA's CPU dot (Eigen) sums each output's products over the feature axis in
one order for every output position, which gives this property; it is not
a property a BLAS promises in general (OpenBLAS's SkylakeX float64 kernels
do not have it). tests/evaluation/evaluation_test.py checks it on the
machine the tests run on: copies at every row and column of tiles of 1, 3,
7 and 2048, feature counts that leave vector remainders, 1 and 8 devices.
"""

import jax
import jax.numpy as jnp


def similarities(queries: jax.Array, gallery: jax.Array) -> jax.Array:
  """(B, D) x (G, D) -> (B, G) float32 dot products at HIGHEST precision.

  Args:
    queries: (B, D) float32.
    gallery: (G, D) float32.

  Returns:
    (B, G) float32; position-independent on the backends tested (see the
    module docstring).
  """
  return jnp.dot(queries, gallery.T, precision=jax.lax.Precision.HIGHEST)
