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
"""Native CPU kernels, called through XLA's FFI, compiled on first use.

Where XLA:CPU's code for a step is measurably slow, a C++ kernel beside
this file does it instead: library.py compiles each library of
`library.KERNELS` with the machine's g++ for the machine's CPU the first
time a process asks for it, keeps it in a cache folder (one per source,
compiler, jaxlib and CPU) and registers its FFI targets. Where a library
cannot be built (no g++, no oneDNN, or ``PROXY_NCA_JAX_NATIVE=0``) its
callers keep XLA's version. Each kernel is tested against a float64 NumPy
reference.

- count_before.cc (counting.py; library "counting"): the counting pass of
  the exact retrieval metrics (evaluation/counting_tiles.py); the same
  integers as XLA's.
- screened_search.cc (screening.py; library "screening"): the bfloat16
  screening of the exact top-k search (evaluation/nearest.py); it lists a
  superset of each query's top k, proven by an error bound.
- nearest_centroid.cc (nearest_centroid.py; library "nearest_centroid"):
  k-means' nearest centroids (evaluation/clustering.py, from 1,024
  clusters on CPUs with AVX-512 BF16), screened in bfloat16 and decided in
  float64; its micro-tiles are screened_search.cc's (bf16_tile.h).
- screened_counting.cc (screened_counting.py; library
  "screened_counting"): the counting of the exact retrieval metrics for a
  set that is its own gallery (evaluation/counting.py, from 16,384 items on
  CPUs with AVX-512 BF16), screened in bfloat16, each pair near a
  threshold decided in float64; bf16_tile.h's micro-tiles.
- proxy_sums.cc (proxy_sums.py; library "proxy_sums"): Proxy-NCA's sums
  over the proxies and both gradients (losses/proxy_blocks.py, the blocked
  form used above 65,536 proxies a device, on CPUs with AVX-512); XLA's
  blocks to float32 rounding.
- onednn_conv.cc (convolution.py; library "onednn_conv"): convnet-S's
  convolutions through oneDNN, for training (``model.conv = "onednn"``);
  XLA's function to float32 rounding.
"""

from proxy_nca_jax.native.counting import count_before
from proxy_nca_jax.native.library import available

__all__ = ["available", "count_before"]
