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
"""Tests of evaluation/clustering.py: k-means.

Against scikit-learn's KMeans (inertia) and NMI on separated blobs, and
checked by property: nearest-centroid assignments, tiling, empty clusters,
seeding in proportion to weight, determinism, the best of the restarts;
for k beyond ``_SEEDING_ROUNDS``, the batched k-means++ seeding,
segment-sum centroid updates and early stopping.
"""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from sklearn import cluster, metrics

from proxy_nca_jax import evaluation, native
from proxy_nca_jax.evaluation import clustering
from tests.testing import embedding_cases, native_kernels


def _inertia(x, centroids, assignments) -> float:
  centroids = np.asarray(centroids, np.float64)
  return float(np.sum((x - centroids[np.asarray(assignments)]) ** 2))


class KMeansTest(parameterized.TestCase):
  def test_recovers_separated_blobs(self):
    x, labels = embedding_cases.separated_blobs()
    centroids, assignments = clustering.kmeans(x, 8, seed=0)
    self.assertIsInstance(centroids, jax.Array)
    self.assertEqual(centroids.shape, (8, 16))
    self.assertEqual(assignments.shape, (400,))
    self.assertEqual(assignments.dtype, jnp.int32)
    self.assertEqual(
      metrics.normalized_mutual_info_score(labels, np.asarray(assignments)),
      1.0,
    )
    reference = cluster.KMeans(8, n_init=10, random_state=0).fit(x)
    self.assertLessEqual(
      _inertia(x, centroids, assignments), reference.inertia_ * 1.01
    )

  def test_assignments_are_nearest_centroids(self):
    x, _ = embedding_cases.overlapping_blobs()
    centroids, assignments = clustering.kmeans(x, 6, num_iters=5)
    distances = np.sum((x[:, None] - np.asarray(centroids)[None]) ** 2, -1)
    np.testing.assert_array_equal(assignments, np.argmin(distances, axis=1))

  def test_tiling_does_not_change_the_result(self):
    x, _ = embedding_cases.separated_blobs(num_clusters=5, per_cluster=41)
    whole = clustering.kmeans(x, 5, seed=3)
    # Tiles of 7 points: 30 tiles, the last one padded.
    with mock.patch.object(clustering, "_KMEANS_TILE_ELEMENTS", 7 * 5):
      tiled = clustering.kmeans(x, 5, seed=3)
    np.testing.assert_array_equal(whole[1], tiled[1])
    np.testing.assert_allclose(whole[0], tiled[0], rtol=1e-5, atol=1e-5)

  def test_no_nan_with_k_close_to_n(self):
    rng = np.random.default_rng(0)
    # 6 distinct points, each 4 times: k = 18 > 6 forces empty clusters.
    # Integer coordinates make the distances exact, so once the 6 points are
    # centres every seeding weight is exactly 0; none is the origin (padding).
    points = np.arange(1, 25).reshape(6, 4) % 7 + 1
    x = np.repeat(points, 4, axis=0).astype(np.float32)
    # Tiles of 5 points: the last tile is padding but for 4 points.
    with mock.patch.object(clustering, "_KMEANS_TILE_ELEMENTS", 5 * 18):
      centroids, assignments = clustering.kmeans(x, 18, num_iters=10)
    self.assertTrue(np.all(np.isfinite(centroids)))
    self.assertEqual(_inertia(x, centroids, assignments), 0.0)
    # Every centroid, empty cluster or not, is a data point, never padding.
    for centroid in np.asarray(centroids):
      self.assertIn(centroid.tolist(), x.tolist())
    x = rng.normal(size=(20, 4)).astype(np.float32)
    centroids, assignments = clustering.kmeans(x, 19)
    self.assertTrue(np.all(np.isfinite(centroids)))
    self.assertLen(np.unique(assignments), 19)

  def test_seeding_draws_in_proportion_to_weight(self):
    # Trailing zeros stand for padding.
    weight = jnp.array([0.0, 1.0, 3.0, 0.0, 4.0, 0.0, 0.0])
    draws = clustering._draw(jax.random.key(0), weight, 40_000)
    frequency = np.bincount(np.asarray(draws), minlength=7) / 40_000
    np.testing.assert_allclose(frequency, weight / 8.0, atol=0.01)
    np.testing.assert_array_equal(frequency[weight == 0], 0.0)

  def test_deterministic_for_a_seed(self):
    x, _ = embedding_cases.overlapping_blobs()
    first = clustering.kmeans(x, 6, seed=7)
    second = clustering.kmeans(x, 6, seed=7)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    self.assertEqual(
      evaluation.clustering_metrics(x, np.arange(240) % 6, seed=7),
      evaluation.clustering_metrics(x, np.arange(240) % 6, seed=7),
    )

  def test_keeps_the_restart_with_the_lowest_inertia(self):
    x, _ = embedding_cases.overlapping_blobs()
    # Without Lloyd iterations the inertia is that of the seeding, which
    # varies between restarts. Restart keys are split from one seed, so the
    # first R restarts of R + 1 are those of R: inertia can only fall.
    inertia = [
      _inertia(x, *clustering.kmeans(x, 6, num_iters=0, num_restarts=r))
      for r in range(1, 7)
    ]
    self.assertTrue(np.all(np.diff(inertia) <= 0.0), inertia)
    self.assertLess(inertia[-1], inertia[0])

  @parameterized.named_parameters(
    ("k_zero", 0, {}),
    ("k_above_n", 11, {}),
    ("no_restart", 2, {"num_restarts": 0}),
  )
  def test_rejects_bad_arguments(self, k, kwargs):
    with self.assertRaises(ValueError):
      clustering.kmeans(np.zeros((10, 2)), k, **kwargs)


class LargeKMeansTest(parameterized.TestCase):
  """k beyond `_SEEDING_ROUNDS`: centres seeded in rounds of several."""

  def test_batched_seeding_recovers_blobs(self):
    x, labels = embedding_cases.separated_blobs(
      num_clusters=40, per_cluster=20, dim=8
    )
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
    x, _ = embedding_cases.separated_blobs(
      num_clusters=30, per_cluster=10, seed=1, dim=8
    )
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
    x, _ = embedding_cases.separated_blobs(
      num_clusters=24, per_cluster=9, seed=2, dim=8
    )
    with mock.patch.object(clustering, "_SEEDING_ROUNDS", 5):
      whole = clustering.kmeans(x, 24, seed=3, num_iters=8)
      with mock.patch.object(clustering, "_KMEANS_TILE_ELEMENTS", 7 * 24):
        tiled = clustering.kmeans(x, 24, seed=3, num_iters=8)
    np.testing.assert_array_equal(whole[1], tiled[1])
    np.testing.assert_array_equal(whole[0], tiled[0])

  def test_centroids_are_the_means_of_their_points(self):
    x, _ = embedding_cases.separated_blobs(
      num_clusters=12, per_cluster=15, seed=4, spread=3.0, dim=8
    )
    centroids, assignments = clustering.kmeans(x, 12, num_iters=200)
    assignments = np.asarray(assignments)
    for c in np.unique(assignments):
      np.testing.assert_allclose(
        centroids[c], x[assignments == c].mean(axis=0), rtol=1e-4, atol=1e-4
      )

  def test_tolerance_stops_early_without_changing_converged_result(self):
    x, _ = embedding_cases.separated_blobs(
      num_clusters=6, per_cluster=30, seed=5, dim=8
    )
    exact = clustering.kmeans(x, 6, num_iters=100, num_restarts=1)
    loose = clustering.kmeans(
      x, 6, num_iters=100, num_restarts=1, tolerance=1e-4
    )
    np.testing.assert_array_equal(exact[1], loose[1])
    with self.assertRaises(ValueError):
      clustering.kmeans(x, 6, tolerance=-1.0)

  @parameterized.parameters(False, True)
  def test_stops_once_nothing_moves(self, screened):
    if screened:  # `_kmeans_single` takes the kernel registered.
      native_kernels.require("nearest_centroid")
    x, _ = embedding_cases.separated_blobs(
      num_clusters=4, per_cluster=25, seed=6, dim=8
    )
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
      screened=screened,
    )
    self.assertLess(int(iterations), 50)


class EmptyClusterTest(absltest.TestCase):
  def test_empty_clusters_take_the_farthest_points(self):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 3)).astype(np.float32)
    centroids = rng.standard_normal((5, 3)).astype(np.float32)
    assigned = rng.choice([0, 2, 3], 20)  # Clusters 1 and 4 are empty.
    sums = np.zeros((5, 3), np.float32)
    np.add.at(sums, assigned, x)
    counts = np.bincount(assigned, minlength=5).astype(np.float32)
    # Padding (the last 4 of 24) never moves, however far.
    tiles = np.concatenate([x, np.full((4, 3), 99.0, np.float32)])
    valid = np.arange(24) < 20
    got_sums, got_counts = jax.jit(clustering._relocate_to_empty_clusters)(
      jnp.asarray(sums),
      jnp.asarray(counts),
      jnp.asarray(tiles.reshape(2, 12, 3)),
      jnp.asarray(valid.reshape(2, 12)),
      jnp.asarray(np.append(assigned, [0] * 4).reshape(2, 12)),
      jnp.asarray(centroids),
    )
    # In float64: the farthest point goes to cluster 1, the next to 4.
    distances = np.sum((x - centroids[assigned]).astype(np.float64) ** 2, 1)
    first, second = np.argsort(-distances)[:2]
    want_sums, want_counts = sums.copy(), counts.copy()
    for point, cluster_id in ((first, 1), (second, 4)):
      want_sums[assigned[point]] -= x[point]
      want_counts[assigned[point]] -= 1
      want_sums[cluster_id] = x[point]
      want_counts[cluster_id] = 1
    np.testing.assert_allclose(got_sums, want_sums, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got_counts, want_counts)

  def test_seeds_drawn_twice_do_not_leave_clusters_empty(self):
    # Seeding in 2 rounds of 75 draws with replacement repeats points: a
    # repeated seed's cluster is empty (ties go to the lower index) until
    # it is given a point.
    x = np.random.default_rng(5).standard_normal((200, 4)).astype(np.float32)
    with mock.patch.object(clustering, "_SEEDING_ROUNDS", 2):
      seeds, _ = clustering.kmeans(x, 150, num_iters=0, num_restarts=1)
      _, assignments = clustering.kmeans(x, 150, num_iters=5, num_restarts=1)
    self.assertLess(len(np.unique(np.asarray(seeds), axis=0)), 150)
    self.assertLen(np.unique(np.asarray(assignments)), 150)


class ScreenedKMeansTest(parameterized.TestCase):
  """The assignments screened in bfloat16 (native/nearest_centroid.py)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    native_kernels.require("nearest_centroid")

  def test_equals_xlas_float32_assignments_away_from_ties(self):
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((50, 32))
    x = centres[rng.integers(0, 50, 1500)] + 0.7 * rng.standard_normal(
      (1500, 32)
    )
    x = x.astype(np.float32)
    screened = clustering.kmeans(x, 60, num_iters=6, screening=True)
    unscreened = clustering.kmeans(x, 60, num_iters=6, screening=False)
    np.testing.assert_array_equal(screened[1], unscreened[1])
    np.testing.assert_array_equal(screened[0], unscreened[0])
    # The float64 nearest centroids (no BLAS), ties by the lowest index.
    centroids = np.asarray(screened[0], np.float64)
    diff = x.astype(np.float64)[:, None, :] - centroids[None]
    nearest = np.argmin(np.sum(diff * diff, axis=-1), axis=1)
    np.testing.assert_array_equal(screened[1], nearest)

  def test_where_it_screens(self):
    x = np.random.default_rng(0).standard_normal((2000, 8)).astype(np.float32)
    bf16 = "avx512_bf16" in native.library.cpu_flags()
    self.assertEqual(clustering._screened(x, 1024, None), bf16)
    self.assertFalse(clustering._screened(x, 1023, None))
    self.assertFalse(clustering._screened(x, 1024, False))
    self.assertTrue(clustering._screened(x, 3, True))
    x[5, 2] = np.nan
    self.assertFalse(clustering._screened(x, 1024, None))
    with self.assertRaisesRegex(ValueError, "screening=None"):
      clustering.kmeans(x, 3, screening=True)


if __name__ == "__main__":
  absltest.main()
