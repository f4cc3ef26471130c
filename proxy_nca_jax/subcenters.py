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
"""After SubCenter-ArcFace training: dominant sub-centres and outliers.

Sub-center ArcFace ([1], Sec. 3.2) trains K sub-centres a class so that the
clean images of a class gather at one of them, the *dominant* sub-centre,
and noisy ones at the others. After training, [1] keeps each class's
dominant sub-centre and drops the images whose angle to it exceeds a
threshold (75 degrees in [1] and in pytorch-metric-learning's
``SubCenterArcFaceLoss.get_outliers``): the images listed here, so that a
user can clean a noisy training set and train again.

The dominant sub-centre of a class is the one most of its images are
nearest to (by cosine; ties: the lower index). Computed in float64 NumPy on
whatever number of embeddings the user passes (each image compares with its
own class's K sub-centres only).

  embeddings = ...  # (N, D): the training images, embedded
  outliers = subcenters.subcenter_outliers(
      embeddings, labels, proxies, centers_per_class=3)

References:
  [1] J. Deng, J. Guo, T. Liu, M. Gong, S. Zafeiriou. Sub-center ArcFace:
      Boosting Face Recognition by Large-Scale Noisy Web Faces. ECCV 2020.
"""

import dataclasses
import math

import numpy as np

from proxy_nca_jax import errors


@dataclasses.dataclass(frozen=True)
class Outliers:
  """What ``subcenter_outliers`` finds.

  Attributes:
    indices: int64 (M,), sorted: the rows of ``embeddings`` whose angle to
      their class's dominant sub-centre exceeds the threshold.
    dominant: int64 (C,), each class's dominant sub-centre in [0, K); -1
      for a class without images.
    angles: float64 (N,), each image's angle to its class's dominant
      sub-centre, in degrees.
  """

  indices: np.ndarray
  dominant: np.ndarray
  angles: np.ndarray


def _unit(x: np.ndarray) -> np.ndarray:
  norms = np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
  return x / np.where(norms > 0, norms, 1.0)


def subcenter_outliers(
  embeddings: np.ndarray,
  labels: np.ndarray,
  proxies: np.ndarray,
  *,
  centers_per_class: int,
  threshold_degrees: float = 75.0,
) -> Outliers:
  """The images far from their class's dominant sub-centre ([1], Sec. 3.2).

  Args:
    embeddings: float (N, D), the images' embeddings (normalised here).
    labels: int (N,), classes in [0, C).
    proxies: float (C K, D), the trained sub-centres (``params['proxies']``
      of a subcenter_arcface run, without sharding padding rows): class c's
      in rows c K .. c K + K - 1.
    centers_per_class: K.
    threshold_degrees: an image is an outlier when its angle to the
      dominant sub-centre is above this (75 in [1]).

  Returns:
    ``Outliers``.

  Raises:
    ValueError: shapes that disagree, a row count that is not C K, labels
      outside [0, C), or a threshold outside [0, 180].
  """
  embeddings = np.asarray(embeddings, np.float64)
  labels = np.asarray(labels)
  proxies = np.asarray(proxies, np.float64)
  k = centers_per_class
  if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
    raise errors.InvalidInputError(
      f"embeddings must be (N, D) and labels (N,), got {embeddings.shape} "
      f"and {labels.shape}."
    )
  if (
    proxies.ndim != 2
    or proxies.shape[1] != embeddings.shape[1]
    or k < 1
    or proxies.shape[0] % k
  ):
    raise errors.InvalidInputError(
      f"proxies must be (C x {k}, {embeddings.shape[1]}), {k} sub-centres a "
      f"class, got {proxies.shape}."
    )
  num_classes = proxies.shape[0] // k
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise errors.InvalidInputError(
      f"labels must be classes in [0, {num_classes}), got values from "
      f"{labels.min()} to {labels.max()}."
    )
  if not 0 <= threshold_degrees <= 180:
    raise errors.InvalidInputError(
      f"threshold_degrees must be in [0, 180], got {threshold_degrees}."
    )
  centers = _unit(proxies).reshape(num_classes, k, -1)
  own = centers[labels]  # (N, K, D)
  cosines = np.einsum("nd,nkd->nk", _unit(embeddings), own)
  nearest = np.argmax(cosines, axis=1)
  counts = np.zeros((num_classes, k), np.int64)
  np.add.at(counts, (labels, nearest), 1)
  dominant = np.where(counts.sum(axis=1) > 0, np.argmax(counts, axis=1), -1)
  to_dominant = np.take_along_axis(cosines, dominant[labels][:, None], axis=1)[
    :, 0
  ]
  angles = np.degrees(np.arccos(np.clip(to_dominant, -1.0, 1.0)))
  outlier = to_dominant < math.cos(math.radians(threshold_degrees))
  return Outliers(
    indices=np.flatnonzero(outlier).astype(np.int64),
    dominant=dominant.astype(np.int64),
    angles=angles,
  )
