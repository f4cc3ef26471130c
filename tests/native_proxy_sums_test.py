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
"""Proxy-NCA's sums over the proxies in C++ (native/proxy_sums.py).

The kernel's two passes against a float64 NumPy transcription (einsum, no
BLAS) of the sums and against its central finite differences, on shapes
that leave remainders everywhere the kernel pads or splits (96-row blocks,
32-sample and 32-feature tiles, 16-lane vectors, several chunks): zero
rows, padding rows, a first column past zero, left-out positives, labels
outside the rows, arbitrary cotangents. The loss through it (and through
XLA's blocked version) is checked in tests/losses/proxy_blocks_test.py.
make test installs g++, so the kernel must build here.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from proxy_nca_jax.losses import proxy_blocks
from proxy_nca_jax.native import library, proxy_sums
from tests.testing import native_kernels, references


def _reference(x, proxies, labels, first, *, scale, b, num_columns, exclude):
  """float64 (lse, logit_sum) per sample: l_bz = -scale |x_b - b p_z/|p_z||^2
  over rows z with first + z < num_columns (and != label if exclude)."""
  norms = np.sqrt(np.einsum("rd,rd->r", proxies, proxies))
  q = b * proxies / np.where(norms > 0, norms, 1.0)[:, None]
  diff = x[:, None, :] - q[None, :, :]
  logits = -scale * np.einsum("bzd,bzd->bz", diff, diff)
  columns = first + np.arange(len(proxies))
  selected = np.broadcast_to(columns < num_columns, logits.shape).copy()
  if exclude:
    selected &= columns[None, :] != labels[:, None]
  peak = np.max(np.where(selected, logits, -np.inf), axis=1, keepdims=True)
  shift = np.where(np.isfinite(peak), peak, 0.0)
  total = np.sum(np.where(selected, np.exp(logits - shift), 0.0), axis=1)
  with np.errstate(divide="ignore"):
    lse = np.log(total) + shift[:, 0]
  return lse, np.sum(np.where(selected, logits, 0.0), axis=1)


class ProxySumsTest(parameterized.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    native_kernels.require("proxy_sums")

  # (samples, rows, features): one block and a remainder of 4 rows; 33
  # samples (a 32-sample tile and one more); 20 features (padded to 32);
  # 300 rows in 4 blocks (split over chunks), 48 features.
  @parameterized.product(
    shape=[(33, 100, 20), (7, 300, 48)],
    exclude=[False, True],
  )
  def test_passes_match_float64_reference(self, shape, exclude):
    batch, rows, dim = shape
    rng = np.random.default_rng(rows + exclude)
    x = rng.normal(size=(batch, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    proxies = rng.normal(size=(rows, dim)).astype(np.float32)
    proxies[3] = 0.0  # A zero row: it stays zero, its gradient is 2 b g.
    first = 5
    # The last 6 rows are padding (columns at or past num_columns).
    num_columns = first + rows - 6
    labels = rng.integers(first, num_columns, size=batch).astype(np.int32)
    labels[0] = first + 4  # Row 4 is sample 0's own,
    labels[2] = first  # the first row (a block's first) sample 2's.
    labels[1] = 1  # A label outside these rows.
    options = dict(scale=3.0, b=1.5, num_columns=num_columns, exclude=exclude)
    kernel_options = dict(
      scale=3.0,
      proxy_norm=1.5,
      num_columns=num_columns,
      exclude_positive=exclude,
    )
    lse_grad = rng.normal(size=batch).astype(np.float32)
    sum_grad = rng.normal(size=batch).astype(np.float32)

    lse, logit_sum = jax.jit(
      lambda x, p: proxy_sums.logsumexp_and_sum(
        x, p, jnp.asarray(labels), first, **kernel_options
      )
    )(x, proxies)
    want_lse, want_sum = _reference(
      np.float64(x), np.float64(proxies), labels, first, **options
    )
    np.testing.assert_allclose(lse, want_lse, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(logit_sum, want_sum, rtol=2e-6, atol=1e-3)

    x_grad, proxies_grad = jax.jit(
      lambda x, p: proxy_sums.logsumexp_and_sum_grad(
        x,
        p,
        jnp.asarray(labels),
        first,
        lse,
        jnp.asarray(lse_grad),
        jnp.asarray(sum_grad),
        **kernel_options,
      )
    )(x, proxies)

    def objective(x, p):
      lse, logit_sum = _reference(x, p, labels, first, **options)
      return float(np.sum(lse_grad * lse + sum_grad * logit_sum))

    x64, p64 = np.float64(x), np.float64(proxies)
    want_x = references.numerical_grad(lambda v: objective(v, p64), x64)
    np.testing.assert_allclose(x_grad, want_x, rtol=1e-4, atol=5e-4)
    # Finite differences for rows at each block's edges (the kernel's
    # blocks are 96 rows) and the last real ones; not the zero row (3),
    # where q = 2 b p (geometry.l2_normalize's Jacobian at 0): its gradient
    # is that of the logits in q, times 2 b (below).
    checked = np.array(
      sorted({0, 2, 4, 95, 96, 97, rows // 2, rows - 8, rows - 7})
    )

    def objective_of_rows(rows_value):
      p = p64.copy()
      p[checked] = rows_value
      return objective(x64, p)

    want_p = references.numerical_grad(objective_of_rows, p64[checked])
    np.testing.assert_allclose(
      proxies_grad[checked], want_p, rtol=1e-4, atol=5e-4
    )
    # Padding rows enter no sum: no gradient.
    np.testing.assert_array_equal(proxies_grad[-6:], 0.0)
    want_zero_row = self._zero_row_gradient(x64, labels, first, rows, options)
    np.testing.assert_allclose(
      proxies_grad[3],
      2 * 1.5 * want_zero_row(lse_grad, sum_grad, want_lse),
      rtol=1e-4,
      atol=5e-4,
    )

  @staticmethod
  def _zero_row_gradient(x, labels, first, rows, options):
    """d/dq of the objective at row 3's q = 0: sum_b G_b3 2 scale x_b, with
    G = lse_grad softmax + sum_grad where row 3 is selected."""
    selected = np.ones(len(x), bool)
    if options["exclude"]:
      selected &= labels != first + 3
    logit = -options["scale"] * np.einsum("bd,bd->b", x, x)

    def gradient(lse_grad, sum_grad, lse):
      g = np.where(selected, lse_grad * np.exp(logit - lse) + sum_grad, 0.0)
      return np.einsum("b,bd->d", g * 2 * options["scale"], x)

    return gradient

  def test_the_loss_takes_it_for_float32_on_avx512_cpus_only(self):
    f32, bf16 = jnp.zeros((2, 4)), jnp.zeros((2, 4), jnp.bfloat16)
    avx512 = "avx512f" in library.cpu_flags()
    self.assertEqual(proxy_blocks.native_sums(f32, f32), avx512)
    self.assertFalse(proxy_blocks.native_sums(f32, bf16))

  def test_no_selected_column_gives_minus_infinity_and_zero_gradients(self):
    x = np.eye(2, 4, dtype=np.float32)
    proxies = np.ones((5, 4), np.float32)
    options = dict(
      scale=1.0, proxy_norm=1.0, num_columns=0, exclude_positive=False
    )
    labels = jnp.zeros(2, jnp.int32)
    lse, logit_sum = proxy_sums.logsumexp_and_sum(
      x, proxies, labels, 0, **options
    )
    np.testing.assert_array_equal(lse, -np.inf)
    np.testing.assert_array_equal(logit_sum, 0.0)
    x_grad, p_grad = proxy_sums.logsumexp_and_sum_grad(
      x, proxies, labels, 0, lse, jnp.ones(2), jnp.ones(2), **options
    )
    np.testing.assert_array_equal(x_grad, 0.0)
    np.testing.assert_array_equal(p_grad, 0.0)


if __name__ == "__main__":
  absltest.main()
