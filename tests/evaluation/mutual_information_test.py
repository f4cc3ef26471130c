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
"""Tests of evaluation/mutual_information.py: NMI and AMI.

Both against scikit-learn, on random and correlated labelings and on the
edge cases (constant, identical, independent, all singletons).
"""

import numpy as np
from absl.testing import absltest, parameterized
from sklearn import metrics

from proxy_nca_jax.evaluation import mutual_information


class NormalizedMutualInfoTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("few_classes", 300, 3, 4, 0),
    ("many_classes", 500, 40, 25, 1),
    ("tiny", 7, 2, 5, 2),
  )
  def test_matches_sklearn(self, n, num_true, num_pred, seed):
    rng = np.random.default_rng(seed)
    labels_true = rng.integers(0, num_true, size=n)
    labels_pred = rng.integers(0, num_pred, size=n) * 3 - 7
    expected = metrics.normalized_mutual_info_score(
      labels_true, labels_pred, average_method="arithmetic"
    )
    result = mutual_information.normalized_mutual_info(labels_true, labels_pred)
    self.assertIsInstance(result, float)
    self.assertAlmostEqual(result, expected, places=12)

  @parameterized.named_parameters(
    ("identical", [0, 0, 1, 1, 2], [5, 5, 3, 3, 9]),
    ("both_constant", [1, 1, 1], [4, 4, 4]),
    ("one_constant", [0, 1, 0, 1], [2, 2, 2, 2]),
    ("independent", [0, 0, 1, 1], [0, 1, 0, 1]),
  )
  def test_edge_cases_match_sklearn(self, labels_true, labels_pred):
    self.assertAlmostEqual(
      mutual_information.normalized_mutual_info(labels_true, labels_pred),
      metrics.normalized_mutual_info_score(labels_true, labels_pred),
      places=12,
    )

  def test_rejects_mismatched_lengths(self):
    with self.assertRaises(ValueError):
      mutual_information.normalized_mutual_info([0, 1, 2], [0, 1])


class AdjustedMutualInfoTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("few_classes", 300, 3, 4, 0),
    ("many_classes", 500, 40, 25, 1),
    ("tiny", 7, 2, 5, 2),
    ("sop_like_many_small_clusters", 3000, 600, 550, 3),
  )
  def test_matches_sklearn(self, n, num_true, num_pred, seed):
    rng = np.random.default_rng(seed)
    labels_true = rng.integers(0, num_true, size=n)
    # Correlated with the truth, so AMI is far from 0.
    labels_pred = np.where(
      rng.random(n) < 0.6, labels_true, rng.integers(0, num_pred, size=n)
    )
    result = mutual_information.adjusted_mutual_info(
      labels_true, labels_pred * 3 - 7
    )
    expected = metrics.adjusted_mutual_info_score(labels_true, labels_pred)
    self.assertIsInstance(result, float)
    self.assertAlmostEqual(result, expected, places=9)

  @parameterized.named_parameters(
    ("identical", [0, 0, 1, 1, 2], [5, 5, 3, 3, 9]),
    ("both_constant", [1, 1, 1], [4, 4, 4]),
    ("one_constant", [0, 1, 0, 1], [2, 2, 2, 2]),
    ("independent", [0, 0, 1, 1], [0, 1, 0, 1]),
    ("all_singletons", [0, 1, 2, 3], [3, 2, 1, 0]),
  )
  def test_edge_cases_match_sklearn(self, labels_true, labels_pred):
    self.assertAlmostEqual(
      mutual_information.adjusted_mutual_info(labels_true, labels_pred),
      metrics.adjusted_mutual_info_score(labels_true, labels_pred),
      places=12,
    )

  def test_near_zero_for_independent_labelings(self):
    rng = np.random.default_rng(0)
    labels_true = rng.integers(0, 50, size=5000)
    labels_pred = rng.integers(0, 50, size=5000)
    self.assertLess(
      abs(mutual_information.adjusted_mutual_info(labels_true, labels_pred)),
      0.01,
    )
    # NMI, by contrast, is inflated by chance with many clusters.
    self.assertGreater(
      mutual_information.normalized_mutual_info(labels_true, labels_pred), 0.05
    )

  def test_rejects_mismatched_lengths(self):
    with self.assertRaises(ValueError):
      mutual_information.adjusted_mutual_info([0, 1, 2], [0, 1])


if __name__ == "__main__":
  absltest.main()
