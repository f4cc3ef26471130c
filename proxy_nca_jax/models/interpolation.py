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
"""PyTorch's bicubic resize, exactly: position embeddings of other sizes.

A ViT checkpoint's position embeddings are a grid learned at one input size;
timm, DINOv2 and open_clip resize that grid with
``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`` to
run at another. ``jax.image.resize``'s cubic kernel is Keys' with a = -0.5,
so it gives other numbers; here is torch's, as one matrix per axis, built in
NumPy (float64) from the static sizes and applied with two matrix products:

* ``antialias=False``: Keys' kernel with a = -0.75 at the four neighbours of
  ``scale * (i + 0.5) - 0.5``, the neighbours' indices clamped to the grid
  (``upsample_bicubic2d``).
* ``antialias=True``: Pillow's filter (a = -0.5) stretched by the scale when
  shrinking, taps outside the grid dropped and the weights renormalised to
  sum 1 (``_upsample_bicubic2d_aa``); an axis whose size does not change is
  copied.

``scale`` is ``in / out``, or ``1 / scale_factor`` when the caller passes
``interpolate`` a scale factor (DINOv2 does). tests/models/
interpolation_test.py compares both forms with torch in float64.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np


def _keys_cubic(x: np.ndarray, a: float) -> np.ndarray:
  """Keys' cubic convolution kernel (1981) with parameter ``a``."""
  x = np.abs(x)
  near = ((a + 2) * x - (a + 3)) * x * x + 1
  far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
  return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def bicubic_weights(
  size_in: int,
  size_out: int,
  *,
  antialias: bool,
  scale_factor: float | None = None,
) -> np.ndarray:
  """The matrix of torch's bicubic resize along one axis.

  Args:
    size_in: length of the axis before.
    size_out: length after.
    antialias: torch's ``antialias`` argument.
    scale_factor: the ``scale_factor`` torch was given (then ``size_out``
      is ``floor(size_in * scale_factor)``), or None for ``size=``.

  Returns:
    float64 array (size_out, size_in): output = weights @ input.
  """
  scale = 1.0 / scale_factor if scale_factor else size_in / size_out
  weights = np.zeros((size_out, size_in))
  if not antialias:
    for i in range(size_out):
      source = scale * (i + 0.5) - 0.5
      # torch's guard_index_and_lambda.
      index = min(math.floor(source), size_in - 1)
      t = min(max(source - index, 0.0), 1.0)
      taps = _keys_cubic(np.array([t + 1, t, 1 - t, 2 - t]), -0.75)
      for k, weight in enumerate(taps):
        weights[i, min(max(index - 1 + k, 0), size_in - 1)] += weight
    return weights
  if size_in == size_out:
    return np.eye(size_in)
  support = 2.0 * max(scale, 1.0)
  stretch = min(1.0 / scale, 1.0)
  for i in range(size_out):
    center = scale * (i + 0.5)
    # int() truncates as torch's static_cast does; then clipped to the grid.
    start = max(int(center - support + 0.5), 0)
    stop = min(int(center + support + 0.5), size_in)
    taps = _keys_cubic((np.arange(start, stop) - center + 0.5) * stretch, -0.5)
    total = taps.sum()
    weights[i, start:stop] = taps / total if total else taps
  return weights


def resize_bicubic(
  grid: jax.Array,
  size: tuple[int, int],
  *,
  antialias: bool,
  scale_factor: tuple[float, float] | None = None,
) -> jax.Array:
  """``grid`` resized as torch's bicubic ``interpolate`` resizes it.

  Args:
    grid: float array (H, W, C).
    size: (H', W'), the output's spatial size.
    antialias: torch's ``antialias`` argument.
    scale_factor: the (height, width) scale factors torch was given, which
      then set the sampling positions; None when torch was given ``size``.

  Returns:
    Array (H', W', C) of ``grid``'s dtype, computed in float32 (or wider).
  """
  factors = scale_factor or (None, None)
  rows, cols = (
    bicubic_weights(n_in, n_out, antialias=antialias, scale_factor=factor)
    for n_in, n_out, factor in zip(grid.shape[:2], size, factors, strict=True)
  )
  dtype = jnp.promote_types(grid.dtype, jnp.float32)
  out = jnp.einsum(
    "ih,jw,hwc->ijc",
    rows.astype(dtype),
    cols.astype(dtype),
    grid.astype(dtype),
    # Full float32 products also where the default would be TF32 or bf16.
    precision=jax.lax.Precision.HIGHEST,
  )
  return out.astype(grid.dtype)
