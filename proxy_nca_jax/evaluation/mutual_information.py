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
"""Normalised and adjusted mutual information (NMI, AMI) of two labelings.

NMI between k-means clusters (clustering.py) and class labels is the
clustering metric of the paper (Sec. 5, following Song et al. 2016); AMI
(Vinh et al. 2010) corrects it for chance, which matters with thousands of
small clusters. Both average the two entropies arithmetically
(scikit-learn's default) and are computed in float64 NumPy from the sparse
contingency table.
"""

import jax
import numpy as np

from proxy_nca_jax import errors


def _information(
  labels_true: np.ndarray | jax.Array, labels_pred: np.ndarray | jax.Array
) -> tuple[float, float, float, np.ndarray, np.ndarray] | None:
  """MI, both entropies and both cluster sizes; None if both are 1 cluster.

  Natural logarithms, float64 NumPy, from the sparse contingency table:
  O(N) memory even with thousands of classes and clusters (a dense table
  would be |U| x |V|).

  Raises:
    ValueError: if the two label vectors are not 1-D of the same length.
  """
  u = np.asarray(labels_true)
  v = np.asarray(labels_pred)
  if u.ndim != 1 or u.shape != v.shape:
    raise errors.InvalidInputError(
      f"Need two 1-D label vectors of equal length, got "
      f"{np.shape(labels_true)} and {np.shape(labels_pred)}."
    )
  u_values, u_index = np.unique(u, return_inverse=True)
  v_values, v_index = np.unique(v, return_inverse=True)
  if len(u_values) == len(v_values) <= 1:
    return None
  cells, counts = np.unique(
    u_index.astype(np.int64) * len(v_values) + v_index, return_counts=True
  )
  n = float(u.shape[0])
  a = np.bincount(u_index.reshape(-1))
  b = np.bincount(v_index.reshape(-1))
  p_uv = counts / n
  outer = (a[cells // len(v_values)] / n) * (b[cells % len(v_values)] / n)
  mi = max(float(np.sum(p_uv * np.log(p_uv / outer))), 0.0)
  h_u = -float(np.sum(a / n * np.log(a / n)))
  h_v = -float(np.sum(b / n * np.log(b / n)))
  return mi, h_u, h_v, a, b


def normalized_mutual_info(
  labels_true: np.ndarray | jax.Array, labels_pred: np.ndarray | jax.Array
) -> float:
  """Normalised mutual information with arithmetic averaging.

  NMI = MI(U, V) / ((H(U) + H(V)) / 2), natural logarithms, computed in
  float64 NumPy from the (sparse) contingency table; the same as scikit-learn's
  `normalized_mutual_info_score` with its default
  ``average_method='arithmetic'``, including its convention of 1.0 when both
  labelings are a single cluster.

  Args:
    labels_true: (N,) integer labels.
    labels_pred: (N,) integer labels (e.g. cluster assignments).

  Returns:
    NMI in [0, 1], a Python float.

  Raises:
    ValueError: if the two label vectors are not 1-D of the same length.
  """
  info = _information(labels_true, labels_pred)
  if info is None:
    return 1.0
  mi, h_u, h_v, _, _ = info
  return mi / ((h_u + h_v) / 2.0)


def _expected_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
  """E[MI] of two random labelings with cluster sizes `a` and `b`.

  The hypergeometric model of Vinh et al. (2010), Eq. 24a. The sum depends
  on the sizes only, so it runs over distinct sizes (weighted by how often
  each occurs): a few dozen even with 11,316 clusters.
  """
  n = int(a.sum())
  log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1.0, n + 1)))])
  a_sizes, a_times = np.unique(a, return_counts=True)
  b_sizes, b_times = np.unique(b, return_counts=True)
  total = 0.0
  for size_a, times_a in zip(a_sizes, a_times, strict=True):
    bs = b_sizes[:, None]
    nij = np.arange(1, min(size_a, b_sizes.max()) + 1)[None, :]
    valid = (nij >= size_a + bs - n) & (nij <= bs)
    nij_v = np.where(valid, nij, 1)
    log_p = (
      log_fact[size_a]
      + log_fact[bs]
      + log_fact[n - size_a]
      + log_fact[n - bs]
      - log_fact[n]
      - log_fact[nij_v]
      - log_fact[size_a - nij_v]
      - log_fact[np.maximum(bs - nij_v, 0)]
      - log_fact[np.maximum(n - size_a - bs + nij_v, 0)]
    )
    term = nij_v / n * np.log(n * nij_v / (size_a * bs)) * np.exp(log_p)
    total += times_a * float(
      np.sum(b_times[:, None] * np.where(valid, term, 0))
    )
  return total


def adjusted_mutual_info(
  labels_true: np.ndarray | jax.Array, labels_pred: np.ndarray | jax.Array
) -> float:
  """Adjusted mutual information with arithmetic averaging.

  AMI = (MI - E[MI]) / ((H(U) + H(V)) / 2 - E[MI]) (Vinh et al. 2010),
  natural logarithms, float64; the same as scikit-learn's
  `adjusted_mutual_info_score` with its default
  ``average_method='arithmetic'``, including its conventions (1.0 when both
  labelings are one cluster, 0.0 when only one is, and its guard against
  0 / 0). 0 is the expected value for independent labelings, 1 a perfect
  match; unlike NMI it does not grow with the number of clusters.

  Args:
    labels_true: (N,) integer labels.
    labels_pred: (N,) integer labels (e.g. cluster assignments).

  Returns:
    AMI, at most 1, a Python float.

  Raises:
    ValueError: if the two label vectors are not 1-D of the same length.
  """
  info = _information(labels_true, labels_pred)
  if info is None:
    return 1.0
  mi, h_u, h_v, a, b = info
  if len(a) == 1 or len(b) == 1:
    return 0.0
  emi = _expected_mutual_info(a, b)
  eps = np.finfo(np.float64).eps
  denominator = (h_u + h_v) / 2.0 - emi
  numerator = mi - emi
  # As scikit-learn: keep the sign, avoid 0 / 0 for a perfect match.
  denominator = (
    min(denominator, -eps) if denominator < 0 else max(denominator, eps)
  )
  numerator = min(numerator, -eps) if numerator < 0 else max(numerator, eps)
  return float(numerator / denominator)
