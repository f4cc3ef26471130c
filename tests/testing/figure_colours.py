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
"""Colours read back from written figures (PNG pixels as floats in [0, 1])."""

import numpy as np


def colour_pixels(png: np.ndarray, rgb, tolerance: float = 0.08) -> int:
  """Pixels of an (H, W, 3 or 4) image within `tolerance` of `rgb`."""
  return int(np.sum(np.all(np.abs(png[..., :3] - rgb) < tolerance, axis=-1)))
