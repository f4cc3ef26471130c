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
"""Tests for figures: the PNGs are written, readable and show what they say.

Each figure is read back with matplotlib.image.imread and checked for its
size and for the colours that carry meaning (green and red frames).
"""

import json
import os
import tempfile

import numpy as np
from absl.testing import absltest
from matplotlib import image as mpimg

from proxy_nca_jax.evaluation import nearest
from proxy_nca_jax.reports import figures
from tests.testing import figure_colours


def _images_and_embeddings(seed: int = 0):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(4), 10)
  images = rng.random((40, 28, 28, 1)).astype(np.float32)
  centres = rng.normal(size=(4, 8))
  x = centres[labels] + 0.9 * rng.normal(size=(40, 8))
  return images, labels, x / np.linalg.norm(x, axis=1, keepdims=True)


class RetrievalGridTest(absltest.TestCase):
  def test_png_with_correct_and_wrong_frames(self):
    images, labels, x = _images_and_embeddings()
    queries = [0, 15, 27]
    _, neighbours = nearest.nearest_neighbours(
      x[queries], x, 8, exclude=np.array(queries)
    )
    path = os.path.join(
      self.enterContext(tempfile.TemporaryDirectory()), "grid.png"
    )
    figures.retrieval_grid(images, labels, queries, neighbours, path)
    png = mpimg.imread(path)
    self.assertEqual(png.ndim, 3)
    # 9 columns x 3 rows of thumbnails at 100 dpi: wider than tall.
    self.assertGreater(png.shape[1], 800)
    self.assertGreater(png.shape[1], png.shape[0])
    correct = labels[neighbours] == labels[queries][:, None]
    self.assertTrue(correct.any() and not correct.all())
    self.assertGreater(
      figure_colours.colour_pixels(png, figures.CORRECT_RGB), 100
    )
    self.assertGreater(
      figure_colours.colour_pixels(png, figures.WRONG_RGB), 100
    )

  def test_all_correct_has_no_red(self):
    images, labels, _ = _images_and_embeddings()
    neighbours = np.array([[1, 2, 3], [11, 12, 13]])
    path = os.path.join(
      self.enterContext(tempfile.TemporaryDirectory()), "grid.png"
    )
    figures.retrieval_grid(images, labels, [0, 10], neighbours, path)
    png = mpimg.imread(path)
    self.assertGreater(
      figure_colours.colour_pixels(png, figures.CORRECT_RGB), 100
    )
    self.assertEqual(figure_colours.colour_pixels(png, figures.WRONG_RGB), 0)


class EmbeddingProjectionTest(absltest.TestCase):
  def test_pca_matches_numpy_and_png_is_written(self):
    _, labels, x = _images_and_embeddings()
    points = figures.principal_components(x)
    centred = x - x.mean(axis=0)
    variance = np.var(points, axis=0)
    # First two components: the two largest eigenvalues of the covariance.
    eig = np.sort(np.linalg.eigvalsh(np.cov(centred.T, bias=True)))[::-1]
    np.testing.assert_allclose(variance, eig[:2], rtol=1e-6)
    path = os.path.join(
      self.enterContext(tempfile.TemporaryDirectory()), "pca.png"
    )
    figures.embedding_projection(x, labels, path)
    png = mpimg.imread(path)
    self.assertEqual(png.shape[:2], (500, 600))


class ConvergencePlotTest(absltest.TestCase):
  def test_plots_evaluation_metrics_of_metrics_jsonl(self):
    records = [
      {"step": 0, "test/recall@1": 0.5, "test/map@r": 0.1},
      {"step": 2, "loss": 3.0},
      {"step": 10, "test/recall@1": 0.7, "test/map@r": 0.2},
    ]
    workdir = self.enterContext(tempfile.TemporaryDirectory())
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in records)
    path = os.path.join(workdir, "convergence.png")
    plotted = figures.convergence_plot(records, path)
    self.assertEqual(plotted, ["test/map@r", "test/recall@1"])
    png = mpimg.imread(path)
    self.assertEqual(png.shape[:2], (300, 800))
    with self.assertRaisesRegex(ValueError, "No record"):
      figures.convergence_plot(records, path, keys=["val/nmi"])


if __name__ == "__main__":
  absltest.main()
