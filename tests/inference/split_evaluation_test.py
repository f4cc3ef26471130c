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
"""Tests of inference/split_evaluation.py: the metrics under a run's config.

``evals.query_gallery``'s protocols are checked against the brute-force
float64 reference of tests/testing/references.py on exactly representable
unit vectors (every dot product exact, so ties are real ties).
"""

import ml_collections
import numpy as np
from absl.testing import absltest

from proxy_nca_jax import evaluation
from proxy_nca_jax.inference import split_evaluation
from tests.testing import references


def _exact_unit_vectors(rng, n: int, dim: int = 8) -> np.ndarray:
  """Unit vectors of four entries +-1/2: exact float32 dot products."""
  x = np.zeros((n, dim), np.float32)
  for row in x:
    row[rng.choice(dim, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
  return x


def _query_gallery_config(spec: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    {
      "seed": 0,
      "evals": {
        "recall_ks": (1, 2, 8),
        "block_size": 16,
        "kmeans_restarts": 1,
        "kmeans_iters": 5,
        "query_gallery": spec,
      },
    }
  )


class EvaluateWithConfigQueryGalleryTest(absltest.TestCase):
  """``evals.query_gallery``: separate query and gallery sets."""

  def test_only_the_splits_protocol_needs_source_splits(self):
    for spec, needed in (
      (None, False),
      ("per_class:3", False),
      ("classes:1,3/0-3", False),
      ("splits:query/gallery", True),
    ):
      with self.subTest(spec):
        config = _query_gallery_config(spec)
        self.assertEqual(split_evaluation.needs_source_splits(config), needed)

  def assert_queries_against_gallery(self, got, x, labels, queries, gallery):
    """Retrieval metrics equal the float64 reference's of the queries
    against the gallery; NMI still clusters the whole set."""
    want = references.query_gallery_metrics(
      x, labels, queries, gallery, (1, 2, 8)
    )
    for key, value in want.items():
      self.assertEqual(got[key], value, key)
    whole = evaluation.clustering_metrics(
      x, labels, num_iters=5, num_restarts=1
    )
    self.assertEqual(got["nmi"], whole["nmi"])

  def test_per_class_equals_brute_force_queries_against_gallery(self):
    rng = np.random.default_rng(5)
    x = _exact_unit_vectors(rng, 90)
    x[60:] = x[:30]  # Exact copies: ties across queries and gallery.
    labels = rng.integers(0, 7, 90)
    got = split_evaluation.evaluate_with_config(
      x, labels, _query_gallery_config("per_class:3")
    )
    queries = [i for i in range(90) if np.sum(labels[:i] == labels[i]) < 3]
    gallery = sorted(set(range(90)) - set(queries))
    self.assert_queries_against_gallery(got, x, labels, queries, gallery)

  def test_splits_equal_brute_force_queries_against_gallery(self):
    # Images of three tfds splits, interleaved as tfds reads pooled files;
    # 'query' images query the 'gallery' ones, 'train' ones take no part.
    rng = np.random.default_rng(6)
    x = _exact_unit_vectors(rng, 120)
    x[80:100] = x[:20]  # Copies across the splits: ties.
    labels = rng.integers(0, 6, 120)
    source = rng.choice(["gallery", "query", "train"], 120)
    got = split_evaluation.evaluate_with_config(
      x,
      labels,
      _query_gallery_config("splits:query/gallery"),
      source_splits=source,
    )
    queries, gallery = source == "query", source == "gallery"
    self.assert_queries_against_gallery(got, x, labels, queries, gallery)

  def test_classes_equal_brute_force_with_each_query_left_out(self):
    # Classes 1 and 3 query a gallery of classes 0-3 (0 and 2 distract);
    # class 4 takes no part. Each query's gallery is the others, one query at
    # a time, in float64.
    rng = np.random.default_rng(7)
    x = _exact_unit_vectors(rng, 100)
    x[50:70] = x[:20]
    labels = rng.integers(0, 5, 100)
    got = split_evaluation.evaluate_with_config(
      x, labels, _query_gallery_config("classes:1,3/0-3")
    )
    in_gallery = np.flatnonzero(labels <= 3)
    per_query = []
    for i in np.flatnonzero(np.isin(labels, [1, 3])):
      others = in_gallery[in_gallery != i]
      per_query.append(
        references.retrieval_per_query(
          x[[i]], labels[[i]], gallery=x[others], gallery_labels=labels[others]
        )
      )
    scores = {
      key: np.concatenate([one[key] for one in per_query])
      for key in per_query[0]
    }
    want = references.summarize(scores, (1, 2, 8))
    for key, value in want.items():
      self.assertAlmostEqual(got[key], value, places=12, msg=key)

  def test_a_protocol_that_leaves_no_query_or_no_gallery_is_named(self):
    labels = np.array([5, 5, 6, 6])
    with self.assertRaisesRegex(ValueError, "leaves 0 queries.*train"):
      split_evaluation.evaluate_with_config(
        np.eye(4, dtype=np.float32),
        labels,
        _query_gallery_config("splits:test/train"),
        source_splits=np.array(["train"] * 4),
      )
    with self.assertRaisesRegex(ValueError, "leaves no gallery|gallery of 0"):
      split_evaluation.evaluate_with_config(
        np.eye(4, dtype=np.float32),
        labels,
        _query_gallery_config("per_class:2"),
      )


if __name__ == "__main__":
  absltest.main()
