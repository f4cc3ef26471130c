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
"""Tests of interpolation.py against torch.nn.functional.interpolate.

Random grids in float64, resized up and down, square and not, by size (timm,
open_clip, DINOv2 with registers) and by scale factor (DINOv2's +0.1 offset),
with and without antialiasing: the matrices must give torch's numbers to
float64 rounding; the float32 resize to float32 rounding.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from absl.testing import absltest, parameterized

from proxy_nca_jax.models import interpolation

# (input grid, output grid): up, down, one axis each way, unchanged.
_SIZES = (
  ((4, 4), (6, 6)),
  ((14, 14), (20, 15)),
  ((37, 37), (16, 16)),
  ((37, 37), (46, 30)),
  ((7, 5), (3, 11)),
  ((5, 5), (5, 5)),
  ((3, 3), (13, 2)),
)


def _torch(grid: np.ndarray, **kwargs) -> np.ndarray:
  """``interpolate`` of an (H, W, C) grid, bicubic, align_corners=False."""
  nchw = torch.from_numpy(grid).permute(2, 0, 1)[None]
  out = F.interpolate(nchw, mode="bicubic", align_corners=False, **kwargs)
  return out[0].permute(1, 2, 0).numpy()


def _numpy(grid: np.ndarray, size, **kwargs) -> np.ndarray:
  scale_factor = kwargs.pop("scale_factor", (None, None))
  rows, cols = (
    interpolation.bicubic_weights(n, m, scale_factor=f, **kwargs)
    for n, m, f in zip(grid.shape[:2], size, scale_factor, strict=True)
  )
  return np.einsum("ih,jw,hwc->ijc", rows, cols, grid)


class BicubicTest(parameterized.TestCase):
  @parameterized.product(sizes=_SIZES, antialias=(False, True))
  def test_by_size_matches_torch_float64(self, sizes, antialias):
    (h, w), size = sizes
    grid = np.random.default_rng(h * w).normal(size=(h, w, 3))
    expected = _torch(grid, size=size, antialias=antialias)
    got = _numpy(grid, size, antialias=antialias)
    self.assertEqual(got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)

  @parameterized.product(sizes=_SIZES, antialias=(False, True))
  def test_by_scale_factor_matches_torch_float64(self, sizes, antialias):
    # DINOv2's form: scale (n + 0.1) / grid, torch's output floor(grid *
    # scale) = n, and the sampling positions from the scale, not from n.
    (h, w), size = sizes
    factors = tuple((n + 0.1) / m for n, m in zip(size, (h, w), strict=True))
    grid = np.random.default_rng(h + w).normal(size=(h, w, 3))
    expected = _torch(grid, scale_factor=factors, antialias=antialias)
    self.assertEqual(expected.shape[:2], size)
    got = _numpy(grid, size, antialias=antialias, scale_factor=factors)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)

  def test_differs_from_jax_image_resize_and_between_modes(self):
    # What the matrices are for: neither other kernel gives torch's values.
    grid = np.random.default_rng(0).normal(size=(6, 6, 2))
    plain = _numpy(grid, (9, 9), antialias=False)
    smooth = _numpy(grid, (9, 9), antialias=True)
    keys = np.asarray(jax.image.resize(grid, (9, 9, 2), "cubic"))
    self.assertGreater(np.abs(plain - smooth).max(), 1e-3)
    self.assertGreater(np.abs(plain - keys).max(), 1e-3)

  @parameterized.parameters(False, True)
  def test_float32_resize_matches_torch_float32(self, antialias):
    grid = np.random.default_rng(1).normal(size=(14, 14, 8))
    grid = grid.astype(np.float32)
    expected = _torch(grid, size=(9, 17), antialias=antialias)
    got = interpolation.resize_bicubic(
      jnp.asarray(grid), (9, 17), antialias=antialias
    )
    self.assertEqual(got.dtype, jnp.float32)
    # A few float32 ulps of values up to ~3 (torch sums 16 taps at once).
    np.testing.assert_allclose(got, expected, rtol=0, atol=5e-6)

  def test_weights_rows_sum_to_one(self):
    for antialias in (False, True):
      for n, m in ((5, 17), (17, 5), (37, 16)):
        weights = interpolation.bicubic_weights(n, m, antialias=antialias)
        np.testing.assert_allclose(weights.sum(1), 1, atol=1e-12)


if __name__ == "__main__":
  absltest.main()
