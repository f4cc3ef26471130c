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
"""Exact k-NN search (evaluation/nearest.py) against a float64 reference.

Vectors have entries on a grid of 1/4, so every float32 dot product is
exact: the float32 engine and the float64 reference (tests/testing/
references.py, no BLAS) must give the same lists, ties included. Each case
runs with and without bfloat16 screening (native/screening.py; here for
batches of any size); off the grid, the screened search must give the
unscreened one's lists and similarities exactly.
"""

from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized

from proxy_nca_jax.evaluation import nearest
from tests.testing import references


def _grid_vectors(rng, num: int, dim: int) -> np.ndarray:
  return (rng.integers(-4, 5, (num, dim)) / 4).astype(np.float32)


def _reference(queries, gallery, k, exclude=None):
  """(similarities, indices) by (similarity desc, index asc) in float64."""
  sims = references.similarities(queries, gallery)
  if exclude is not None:
    sims[np.arange(len(queries)), exclude] = -np.inf
  order = np.lexsort(
    (np.broadcast_to(np.arange(sims.shape[1]), sims.shape), -sims)
  )
  order = order[:, :k]
  return np.take_along_axis(sims, order, axis=1), order


class NearestTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    # Screen one-query batches too (the engine screens 2 queries or more).
    patch = mock.patch.object(nearest, "_SCREENED_QUERIES", 1)
    patch.start()
    self.addCleanup(patch.stop)

  @parameterized.product(
    # Chunks of one group, several groups with a padded last chunk, one
    # chunk; k below, at and above the groups per chunk.
    shape=[(64, 5, 7), (192, 3, 130), (128, 40, 5), (4096, 10, 3)],
    screened=[False, True],
  )
  def test_same_lists_as_reference_with_ties(self, shape, screened):
    chunk_rows, k, block = shape
    rng = np.random.default_rng(chunk_rows + k)
    gallery = _grid_vectors(rng, 500, 6)
    # Copies of gallery rows spread over every chunk: exact ties.
    gallery[rng.permutation(500)[:120]] = gallery[rng.integers(0, 20, 120)]
    queries = np.concatenate([gallery[:10], _grid_vectors(rng, 9, 6)])
    engine = nearest.DeviceGallery.from_array(
      gallery, chunk_rows, screened=screened
    )
    self.assertEqual(engine.screened, screened)
    sims, rows = engine.search(queries, k, block_rows=block)
    want_sims, want_rows = _reference(queries, gallery, k)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(sims, want_sims)

  @parameterized.parameters(False, True)
  def test_exclude_leaves_each_query_out(self, screened):
    rng = np.random.default_rng(3)
    gallery = _grid_vectors(rng, 300, 5)
    gallery[150:] = gallery[:150]  # Each item has one copy.
    exclude = np.arange(0, 300, 7)
    engine = nearest.DeviceGallery.from_array(gallery, screened=screened)
    sims, rows = engine.search(gallery[exclude], 4, exclude=exclude)
    want_sims, want_rows = _reference(gallery[exclude], gallery, 4, exclude)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(sims, want_sims)
    self.assertFalse((rows == exclude[:, None]).any())
    # Its copy (similarity |q|^2) is still there: the best is at least that.
    norms = (gallery[exclude].astype(np.float64) ** 2).sum(axis=1)
    self.assertTrue((sims[:, 0] >= norms).all())

  def test_screening_changes_nothing_off_the_grid(self):
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((30, 48))
    gallery = centres[rng.integers(0, 30, 3000)]
    gallery += 0.2 * rng.standard_normal(gallery.shape)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    gallery = gallery.astype(np.float32)
    queries = gallery[rng.integers(0, 3000, 70)] + np.float32(1e-3)
    # Near copies (below bfloat16's resolution) and exact copies of the
    # first queries; a query of zeros ties with everything and one with a
    # NaN cannot be screened: both are searched in full.
    gallery[:40] = queries[:40] * np.float32(1 + 1e-6)
    gallery[40:50] = queries[:10]
    queries[60] = 0.0
    queries[61, 3] = np.nan
    exclude = rng.integers(-1, 3000, 70)
    screened = nearest.DeviceGallery.from_array(gallery, 1000, screened=True)
    full = nearest.DeviceGallery.from_array(gallery, 1000, screened=False)
    for k, left_out in ((1, exclude), (7, None), (64, exclude)):
      want = full.search(queries, k, exclude=left_out)
      got = screened.search(queries, k, exclude=left_out)
      np.testing.assert_array_equal(got[1], want[1])
      np.testing.assert_array_equal(got[0], want[0])
    # And the full search against float64 (einsum: no BLAS), to float32's
    # rounding.
    sims = np.einsum(
      "qd,gd->qg", *(x.astype(np.float64) for x in (queries, gallery))
    )
    left_out = np.flatnonzero(exclude >= 0)
    sims[left_out, exclude[left_out]] = -np.inf
    np.testing.assert_allclose(
      want[0][:60], -np.sort(-sims[:60], axis=1)[:, :64], atol=1e-6
    )

  def test_a_gallery_with_a_nan_is_searched_in_full(self):
    rng = np.random.default_rng(6)
    gallery = _grid_vectors(rng, 200, 8)
    gallery[17, 2] = np.nan
    queries = _grid_vectors(rng, 40, 8)
    engine = nearest.DeviceGallery.from_array(gallery, screened=True)
    sims, rows = engine.search(queries, 3)
    self.assertFalse(engine.screened)
    want = nearest.DeviceGallery.from_array(gallery, screened=False)
    np.testing.assert_array_equal(rows, want.search(queries, 3)[1])

  def test_small_galleries_are_not_screened_by_default(self):
    # Below nearest._SCREENED_ITEMS float32 is quick: no kernel is built.
    gallery = _grid_vectors(np.random.default_rng(7), 1000, 8)
    self.assertFalse(nearest.DeviceGallery.from_array(gallery).screened)

  def test_k_is_checked(self):
    engine = nearest.DeviceGallery.from_array(np.eye(4, dtype=np.float32))
    with self.assertRaisesRegex(ValueError, "k=5 must be between 1 and 4"):
      engine.search(np.eye(4, dtype=np.float32), 5)
    with self.assertRaisesRegex(ValueError, "between 1 and 3"):
      engine.search(np.eye(4, dtype=np.float32), 4, exclude=np.arange(4))
    with self.assertRaisesRegex(ValueError, "embed them with the gallery"):
      engine.search(np.ones((2, 3), np.float32), 1)


if __name__ == "__main__":
  absltest.main()
