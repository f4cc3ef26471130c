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
"""Tests for clustering: AMI against scikit-learn, k-means at large k.

NMI and the basic k-means properties are in evaluation_test.py; this file
covers what large-scale clustering adds: adjusted mutual information, the
batched k-means++ seeding used for thousands of clusters, segment-sum
centroid updates and early stopping.
"""

from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized
from sklearn import cluster, metrics

from proxy_nca_jax.evaluation import clustering, mutual_information


def _blobs(num_clusters: int, per_cluster: int, seed: int = 0, spread=0.3):
  rng = np.random.default_rng(seed)
  centres = 10.0 * rng.normal(size=(num_clusters, 8))
  labels = np.repeat(np.arange(num_clusters), per_cluster)
  x = centres[labels] + spread * rng.normal(size=(len(labels), 8))
  order = rng.permutation(len(labels))
  return x[order].astype(np.float32), labels[order]


def _inertia(x, centroids, assignments) -> float:
  centroids = np.asarray(centroids, np.float64)
  return float(np.sum((x - centroids[np.asarray(assignments)]) ** 2))


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


class LargeKMeansTest(parameterized.TestCase):
  """k beyond `_SEEDING_ROUNDS`: centres seeded in rounds of several."""

  def test_batched_seeding_recovers_blobs(self):
    x, labels = _blobs(num_clusters=40, per_cluster=20)
    with mock.patch.object(clustering, "_SEEDING_ROUNDS", 8):
      centroids, assignments = clustering.kmeans(
        x, 40, num_iters=30, num_restarts=2
      )
    self.assertEqual(centroids.shape, (40, 8))
    self.assertTrue(np.all(np.isfinite(centroids)))
    nmi = metrics.normalized_mutual_info_score(labels, np.asarray(assignments))
    self.assertGreater(nmi, 0.97)
    # Far better than uniformly drawn seeds (faiss's initialisation).
    uniform = cluster.KMeans(
      40, init="random", n_init=2, max_iter=30, random_state=0
    ).fit(x)
    self.assertLess(_inertia(x, centroids, assignments), 0.5 * uniform.inertia_)

  def test_seeds_are_data_points_and_drawn_by_distance(self):
    x, _ = _blobs(num_clusters=30, per_cluster=10, seed=1)
    with mock.patch.object(clustering, "_SEEDING_ROUNDS", 4):
      centroids, _ = clustering.kmeans(x, 30, num_iters=0, num_restarts=1)
    points = {tuple(row) for row in x.tolist()}
    centroids = np.asarray(centroids)
    for centroid in centroids:
      self.assertIn(tuple(centroid.tolist()), points)
    # D^2 sampling spreads the seeds: far more distinct blobs are hit than
    # the ~19 of 30 that 30 uniform draws would hit on average.
    nearest_centre = np.argmin(
      ((centroids[:, None] - x[None]) ** 2).sum(-1), axis=0
    )
    self.assertGreater(len(np.unique(nearest_centre)), 25)

  def test_tiling_does_not_change_the_batched_result(self):
    x, _ = _blobs(num_clusters=24, per_cluster=9, seed=2)
    with mock.patch.object(clustering, "_SEEDING_ROUNDS", 5):
      whole = clustering.kmeans(x, 24, seed=3, num_iters=8)
      with mock.patch.object(clustering, "_KMEANS_TILE_ELEMENTS", 7 * 24):
        tiled = clustering.kmeans(x, 24, seed=3, num_iters=8)
    np.testing.assert_array_equal(whole[1], tiled[1])
    np.testing.assert_array_equal(whole[0], tiled[0])

  def test_centroids_are_the_means_of_their_points(self):
    x, _ = _blobs(num_clusters=12, per_cluster=15, seed=4, spread=3.0)
    centroids, assignments = clustering.kmeans(x, 12, num_iters=200)
    assignments = np.asarray(assignments)
    for c in np.unique(assignments):
      np.testing.assert_allclose(
        centroids[c], x[assignments == c].mean(axis=0), rtol=1e-4, atol=1e-4
      )

  def test_tolerance_stops_early_without_changing_converged_result(self):
    x, _ = _blobs(num_clusters=6, per_cluster=30, seed=5)
    exact = clustering.kmeans(x, 6, num_iters=100, num_restarts=1)
    loose = clustering.kmeans(
      x, 6, num_iters=100, num_restarts=1, tolerance=1e-4
    )
    np.testing.assert_array_equal(exact[1], loose[1])
    with self.assertRaises(ValueError):
      clustering.kmeans(x, 6, tolerance=-1.0)

  def test_stops_once_nothing_moves(self):
    x, _ = _blobs(num_clusters=4, per_cluster=25, seed=6)
    keys = clustering.jax.random.split(clustering.jax.random.key(0), 1)
    tiles = clustering.jnp.asarray(x[None])
    valid = clustering.jnp.ones((1, len(x)), bool)
    *_, iterations = clustering._kmeans_single(
      keys[0],
      tiles,
      valid,
      clustering.jnp.float32(0.0),
      clustering.jnp.int32(1000),
      k=4,
    )
    self.assertLess(int(iterations), 50)


if __name__ == "__main__":
  absltest.main()
