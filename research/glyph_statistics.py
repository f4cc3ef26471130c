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
"""Counts and a sample sheet of a prepared GLYPHS-ZS dataset.

The library half of ``python -m research.glyph_report``: font files,
faces and face groups, classes and images per split, images per class, the
train pixel statistics, and a sheet of one row per face group and one column
per class.
"""

import numpy as np
import tensorflow_datasets as tfds


def read_split(builder: tfds.core.DatasetBuilder, split: str) -> dict:
  """All examples of `split` as NumPy arrays, in tfds order."""
  ds = builder.as_dataset(split=split, shuffle_files=False).batch(8192)
  parts = list(tfds.as_numpy(ds))
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def statistics(builder: tfds.core.DatasetBuilder, splits: dict) -> dict:
  """Counts of the dataset: faces, classes, images per class, pixels."""
  meta = builder.info.metadata
  stats = {
    "font_files": meta["font_files"],
    "faces": meta["faces"],
    "face_groups": len(meta["face_groups"]),
    "face_groups_used": len(
      set(np.concatenate([s["face"] for s in splits.values()]))
    ),
  }
  for split, data in splits.items():
    per_class = np.bincount(data["label"])
    per_class = per_class[per_class > 0]
    stats[split] = {
      "classes": len(per_class),
      "images": len(data["label"]),
      "images_per_class_min": int(per_class.min()),
      "images_per_class_median": float(np.median(per_class)),
      "images_per_class_mean": round(float(per_class.mean()), 2),
      "images_per_class_max": int(per_class.max()),
    }
  pixels = splits["train"]["image"].astype(np.float64) / 255.0
  stats["train_pixel_mean"] = round(float(pixels.mean()), 4)
  stats["train_pixel_std"] = round(float(pixels.std()), 4)
  return stats


def sample_sheet(data: dict, num_classes: int, max_faces: int) -> np.ndarray:
  """uint8 (rows * S, cols * S): row = face group, column = class.

  The columns are the first `num_classes` labels of `data`. The rows are
  the face groups drawing at least half of them, sorted by name and evenly
  thinned to at most `max_faces`; a grey cell means the group does not draw
  that class (or drew it identically to an earlier group).
  """
  labels = sorted(set(data["label"]))[:num_classes]
  chosen = np.isin(data["label"], labels)
  faces, counts = np.unique(data["face"][chosen], return_counts=True)
  frequent = faces[2 * counts >= len(labels)]
  picks = np.linspace(0, len(frequent) - 1, min(max_faces, len(frequent)))
  rows = [frequent[int(round(i))] for i in picks]
  size = data["image"].shape[1]
  sheet = np.full((len(rows) * size, len(labels) * size), 40, np.uint8)
  for image, label, face in zip(
    data["image"], data["label"], data["face"], strict=True
  ):
    if label in labels and face in rows:
      r, c = rows.index(face), labels.index(label)
      sheet[r * size : (r + 1) * size, c * size : (c + 1) * size] = image[
        ..., 0
      ]
  return sheet
