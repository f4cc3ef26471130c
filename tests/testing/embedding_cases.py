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
"""Labelled embeddings shared by the evaluation tests."""

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
  """The rows of ``x`` scaled to unit length, in float32."""
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def overlapping_blobs(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """240 unit vectors in 16 dimensions around 6 centres, with their labels."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(6, 16))
  labels = rng.integers(0, 6, size=240)
  # Overlapping blobs, so that the metrics are far from 0 and from 1.
  return unit(centres[labels] + 0.8 * rng.normal(size=(240, 16))), labels


def separated_blobs(
  num_clusters: int = 8,
  per_cluster: int = 50,
  seed: int = 0,
  *,
  dim: int = 16,
  spread: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
  """Points ``spread`` around centres 10 apart (k-means' clusters are the
  classes unless ``spread`` is large), shuffled, with their labels."""
  rng = np.random.default_rng(seed)
  centres = 10.0 * rng.normal(size=(num_clusters, dim))
  labels = np.repeat(np.arange(num_clusters), per_cluster)
  x = centres[labels] + spread * rng.normal(size=(len(labels), dim))
  order = rng.permutation(len(labels))
  return x[order].astype(np.float32), labels[order]
