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
"""Tests of subcenters.py: dominant sub-centres and outliers.

Against pytorch-metric-learning 2.9.0's
``SubCenterArcFaceLoss.get_outliers(embeddings, labels, threshold)``
(threshold in degrees, as ours), whose weight matrix ``W`` is
(embedding_size, num_classes * K), our proxies transposed in the same
class-major order, and which returns the outliers' indices (in class
order: compared as sets) and the dominant centres as VECTORS, (D, C): our
``dominant`` indices are mapped to their proxy rows to compare. Then a
2-D case whose angles are chosen by hand, and the input errors.
"""

import math

import numpy as np
import torch
from absl.testing import absltest, parameterized
from pytorch_metric_learning import losses as pml_losses

from proxy_nca_jax import subcenters


def _at(*degrees):
  """2-D unit vectors at ``degrees``, (len(degrees), 2) float64."""
  radians = np.radians(np.float64(degrees))
  return np.stack([np.cos(radians), np.sin(radians)], axis=-1)


def _noisy_classes(seed, classes, k, dim, per_class):
  """Embeddings, labels and proxies where each class's images mostly sit
  near one sub-centre (a clear majority), some near another sub-centre and
  some anywhere (outliers); the last class has no image."""
  rng = np.random.default_rng(seed)
  proxies = rng.normal(size=(classes * k, dim))
  embeddings, labels = [], []
  for c in range(classes - 1):
    dominant = rng.integers(k)
    for i in range(per_class):
      if i < per_class * 6 // 10:
        center = proxies[c * k + dominant]
        embeddings.append(center + 0.4 * rng.normal(size=dim))
      elif i < per_class * 8 // 10:
        center = proxies[c * k + (dominant + 1) % k]
        embeddings.append(center + 0.4 * rng.normal(size=dim))
      else:
        embeddings.append(rng.normal(size=dim))
      labels.append(c)
  order = rng.permutation(len(labels))
  return np.array(embeddings)[order], np.array(labels)[order], proxies


class PmlParityTest(parameterized.TestCase):
  @parameterized.parameters(
    (0, 5, 3, 8, 75.0),
    (1, 4, 2, 6, 75.0),
    (2, 3, 4, 16, 60.0),
    (3, 6, 3, 4, 85.0),
  )
  def test_matches_pml_get_outliers(self, seed, classes, k, dim, threshold):
    x, labels, proxies = _noisy_classes(seed, classes, k, dim, per_class=20)
    got = subcenters.subcenter_outliers(
      x, labels, proxies, centers_per_class=k, threshold_degrees=threshold
    )
    module = pml_losses.SubCenterArcFaceLoss(
      num_classes=classes, embedding_size=dim, sub_centers=k
    ).double()
    module.W.data = torch.tensor(proxies.T, dtype=torch.float64)
    outliers, dominant_vectors = module.get_outliers(
      torch.tensor(x), torch.tensor(labels), threshold=threshold
    )
    want = set(outliers.tolist())
    self.assertNotEmpty(want)  # The case has outliers, and inliers:
    self.assertLess(len(want), len(x) // 2)
    self.assertEqual(set(got.indices.tolist()), want)
    np.testing.assert_array_equal(got.indices, np.sort(got.indices))
    self.assertEqual(got.indices.dtype, np.int64)
    # PML leaves an image-less class's column unset; ours is -1.
    dominant_vectors = dominant_vectors.numpy().T
    for c in range(classes - 1):
      self.assertBetween(got.dominant[c], 0, k - 1)
      np.testing.assert_array_equal(
        proxies[c * k + got.dominant[c]], dominant_vectors[c]
      )
    self.assertEqual(got.dominant[classes - 1], -1)
    # Angles in degrees to the dominant sub-centre, one image at a time.
    for i, (xi, yi) in enumerate(zip(x, labels, strict=True)):
      w = proxies[yi * k + got.dominant[yi]]
      cosine = math.fsum(xi * w) / math.sqrt(
        math.fsum(xi * xi) * math.fsum(w * w)
      )
      np.testing.assert_allclose(
        got.angles[i], math.degrees(math.acos(cosine)), rtol=1e-9
      )


class HandCaseTest(parameterized.TestCase):
  # K = 2. Class 0's sub-centres at 0 and 180 degrees; class 1's at 90 and
  # 270; class 2's at 45 and 225 (no image); class 3's at 0 and 90.
  PROXIES = _at(0, 180, 90, 270, 45, 225, 0, 90)
  # Class 0: 10, -20, 30, 80 degrees nearest 0 (dominant), 170 nearest 180.
  # Class 1: 260, 280, 300 nearest 270 (dominant), 100 nearest 90.
  # Class 3: 10 nearest 0, 80 nearest 90: a tie, the lower index dominates.
  DEGREES = (10, -20, 30, 80, 170, 260, 280, 100, 300, 10, 80)
  LABELS = (0, 0, 0, 0, 0, 1, 1, 1, 1, 3, 3)
  ANGLES = (10, 20, 30, 80, 170, 10, 10, 170, 30, 10, 80)

  @parameterized.parameters((75.0, [3, 4, 7, 10]), (85.0, [4, 7]))
  def test_outliers_beyond_the_threshold(self, threshold, want):
    # Norms other than 1: the embeddings and proxies are normalised.
    norms = np.linspace(0.5, 3.0, len(self.DEGREES))[:, None]
    got = subcenters.subcenter_outliers(
      norms * _at(*self.DEGREES),
      np.array(self.LABELS),
      2.0 * self.PROXIES,
      centers_per_class=2,
      threshold_degrees=threshold,
    )
    np.testing.assert_array_equal(got.indices, want)
    np.testing.assert_array_equal(got.dominant, [0, 1, -1, 0])
    np.testing.assert_allclose(got.angles, self.ANGLES, rtol=1e-9)

  def test_default_threshold_is_75_degrees(self):
    got = subcenters.subcenter_outliers(
      _at(*self.DEGREES),
      np.array(self.LABELS),
      self.PROXIES,
      centers_per_class=2,
    )
    np.testing.assert_array_equal(got.indices, [3, 4, 7, 10])


class InputErrorsTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("embeddings_1d", dict(embeddings=np.zeros(4)), "must be \\(N, D\\)"),
    ("labels_shape", dict(labels=np.zeros(3, int)), "labels \\(N,\\)"),
    (
      "proxies_dim",
      dict(proxies=np.ones((4, 3))),
      r"proxies must be \(C x 2, 2\)",
    ),
    ("rows", dict(proxies=np.ones((5, 2))), r"2 sub-centres a class"),
    ("zero_k", dict(centers_per_class=0), "proxies must be"),
    ("label_high", dict(labels=np.array([0, 1, 2, 1])), r"\[0, 2\)"),
    ("label_negative", dict(labels=np.array([0, -1, 1, 1])), r"\[0, 2\)"),
    ("threshold_low", dict(threshold_degrees=-1.0), r"\[0, 180\]"),
    ("threshold_high", dict(threshold_degrees=181.0), r"\[0, 180\]"),
  )
  def test_bad_input_raises(self, changes, message):
    args = dict(
      embeddings=np.ones((4, 2)),
      labels=np.array([0, 1, 1, 0]),
      proxies=np.ones((4, 2)),
      centers_per_class=2,
    )
    args.update(changes)
    with self.assertRaisesRegex(ValueError, message):
      subcenters.subcenter_outliers(
        args.pop("embeddings"), args.pop("labels"), args.pop("proxies"), **args
      )


if __name__ == "__main__":
  absltest.main()
