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
"""The counting pass of the exact retrieval metrics, count_before.cc's."""

import jax
import jax.numpy as jnp


def count_before(
  sims: jax.Array,
  thresholds: jax.Array,
  threshold_index: jax.Array,
  item_index: jax.Array,
  num: jax.Array,
  *,
  columns: bool,
) -> jax.Array:
  """Items ranked before each threshold: (similarity, index) order.

  For query a and threshold m, the items x with sim(a, x) > t[a, m], or
  equal and index(x) < threshold_index[a, m]. CPU only, once
  `library.available("counting")` is True.

  Args:
    sims: (R, C) float32 similarity tile.
    thresholds: (Q, M) float32, similarity of each query's positives; the
      queries are the tile's rows (Q = R) or, with `columns`, its columns
      (Q = C).
    threshold_index: (Q, M) int32, the positives' gallery indices.
    item_index: int32 gallery index of each item: (C,), or (R,) with
      `columns`.
    num: int32 scalar, thresholds to count (the rest stay 0).
    columns: the queries are the tile's columns.

  Returns:
    (Q, M) int32 counts.
  """
  result = jax.ShapeDtypeStruct(thresholds.shape, jnp.int32)
  return jax.ffi.ffi_call("CountBefore", result)(
    sims,
    thresholds,
    threshold_index,
    item_index,
    jnp.asarray(num, jnp.int32),
    columns=columns,
  )
