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
"""Figures of an evaluation: retrieval grid, 2-D projection, convergence.

All figures are drawn with matplotlib's Agg backend (no display needed) and
saved as PNG through url_files.py, so a path may be a gs:// URL:

- `retrieval_grid`: a few queries with their top-8 neighbours, each
  neighbour framed green if it is of the query's class, red if not (drawn
  by `image_grid`, which the search command also uses).
- `embedding_projection`: the embeddings projected on their first two
  principal components, coloured by class (for small sets).
- `convergence_plot`: metrics against training steps from a workdir's
  ``metrics.jsonl`` (the records of `metric_writer`).
"""

import dataclasses
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

from proxy_nca_jax import errors, url_files

# Frame colours of the retrieval grid (RGB): same class / other class.
CORRECT_RGB = (0.0, 0.7, 0.0)
WRONG_RGB = (0.85, 0.0, 0.0)
# Most points `embedding_projection` draws (a random subset beyond).
_MAX_PROJECTED = 5000


def _framed(image: np.ndarray, rgb: tuple[float, ...] | None, width: int):
  """(H, W, 3) image in [0, 1] with a coloured frame of `width` pixels."""
  image = np.asarray(image, np.float32)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  low, high = float(image.min()), float(image.max())
  image = (image - low) / (high - low) if high > low else image * 0.0
  if rgb is not None:
    image[:width], image[-width:] = rgb, rgb
    image[:, :width], image[:, -width:] = rgb, rgb
  return image


@dataclasses.dataclass(frozen=True)
class Cell:
  """One image of a grid: a caption above it, a frame colour (RGB) or none."""

  image: np.ndarray
  caption: str
  frame: tuple[float, float, float] | None = None
  caption_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)


def image_grid(
  rows: Sequence[Sequence[Cell]], path: str, title: str, *, frame: int = 2
) -> None:
  """Saves a grid of framed, captioned images, one list of cells per row.

  Args:
    rows: the cells of each row (rows may be shorter than the longest).
    path: the PNG file to write.
    title: the figure's title.
    frame: frame width in image pixels.
  """
  cols = max(len(row) for row in rows)
  fig, axes = plt.subplots(
    len(rows), cols, figsize=(1.1 * cols, 1.2 * len(rows)), squeeze=False
  )
  for ax_row, cells in zip(axes, rows, strict=True):
    for ax, cell in zip(ax_row, cells, strict=False):
      ax.imshow(_framed(cell.image, cell.frame, frame))
      ax.set_title(cell.caption, fontsize=7, color=cell.caption_rgb)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
      spine.set_visible(False)
  fig.suptitle(title)
  fig.tight_layout()
  _save(fig, path)


def retrieval_grid(
  images: np.ndarray,
  labels: np.ndarray,
  queries: Sequence[int],
  neighbours: np.ndarray,
  path: str,
  *,
  frame: int = 2,
) -> None:
  """Saves a grid: one row per query, the query then its neighbours.

  Args:
    images: (N, H, W) or (N, H, W, C) images of the evaluated set (any
      range; each is rescaled to [0, 1] for display).
    labels: (N,) integer labels.
    queries: indices of the queries (rows).
    neighbours: (len(queries), K) indices of their neighbours, best first.
    path: the PNG file to write.
    frame: frame width in image pixels; green for a neighbour of the
      query's class (`CORRECT_RGB`), red otherwise (`WRONG_RGB`).
  """
  rows = []
  for query, found in zip(queries, neighbours, strict=True):
    row = [Cell(images[query], f"query {labels[query]}")]
    for item in found:
      rgb = CORRECT_RGB if labels[item] == labels[query] else WRONG_RGB
      row.append(Cell(images[item], f"{labels[item]}", rgb, rgb))
    rows.append(row)
  image_grid(
    rows,
    path,
    "queries and their nearest neighbours (green: same class)",
    frame=frame,
  )


def _save(fig: matplotlib.figure.Figure, path: str) -> None:
  """Writes ``fig`` as a PNG to ``path`` (local or gs://) and closes it."""
  with url_files.open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=100)
  plt.close(fig)


def principal_components(embeddings: np.ndarray, num: int = 2) -> np.ndarray:
  """(N, num) coordinates on the first `num` principal components."""
  x = np.asarray(embeddings, np.float64)
  x = x - x.mean(axis=0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  # Sign convention: the largest coordinate of each axis is positive.
  signs = np.sign(vt[np.arange(num), np.argmax(np.abs(vt[:num]), axis=1)])
  return x @ (vt[:num].T * signs)


def embedding_projection(
  embeddings: np.ndarray,
  labels: np.ndarray,
  path: str,
  *,
  title: str = "embeddings, first two principal components",
  seed: int = 0,
) -> None:
  """Saves a scatter plot of the embeddings' 2-D PCA, coloured by class.

  Args:
    embeddings: (N, D) float array.
    labels: (N,) integer labels.
    path: the PNG file to write.
    title: the figure title.
    seed: picks the `_MAX_PROJECTED` points drawn when N is larger.
  """
  labels = np.asarray(labels)
  keep = np.arange(len(labels))
  if len(keep) > _MAX_PROJECTED:
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(keep, _MAX_PROJECTED, replace=False))
  points = principal_components(np.asarray(embeddings)[keep])
  classes = np.unique(labels[keep])
  fig, ax = plt.subplots(figsize=(6, 5))
  colours = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
  for i, label in enumerate(classes):
    mine = labels[keep] == label
    ax.scatter(
      *points[mine].T,
      s=4,
      alpha=0.6,
      color=colours(i % colours.N),
      label=str(label),
    )
  if len(classes) <= 20:
    ax.legend(title="class", markerscale=3, fontsize=7, loc="best")
  ax.set_xlabel("PC 1")
  ax.set_ylabel("PC 2")
  ax.set_title(title)
  fig.tight_layout()
  _save(fig, path)


def evaluation_keys(records: Sequence[Mapping[str, float]]) -> list[str]:
  """The evaluation metrics in metric records ('test/map@r', ...), sorted."""
  splits = ("train", "val", "test")
  return sorted(
    {k for r in records for k in r if k.partition("/")[0] in splits}
  )


def convergence_plot(
  records: Sequence[Mapping[str, float]],
  path: str,
  *,
  keys: Sequence[str] | None = None,
  title: str = "evaluation metrics during training",
) -> list[str]:
  """Saves one panel per metric: its value against the training step.

  Args:
    records: the records of a workdir's metrics.jsonl
      (`metric_writer.read_metrics`), each {'step': ..., name: value}.
    path: the PNG file to write.
    keys: the metrics to plot; default every evaluation metric found (names
      with a split prefix, e.g. 'test/map@r'; not 'lr/proxies').
    title: the figure title.

  Returns:
    The metric names plotted.

  Raises:
    ValueError: if none of the records has one of the metrics.
  """
  if keys is None:
    keys = evaluation_keys(records)
  series = {
    key: [(r["step"], r[key]) for r in records if key in r] for key in keys
  }
  series = {key: sorted(points) for key, points in series.items() if points}
  if not series:
    raise errors.InvalidInputError(
      f"No record has any of the metrics {list(keys)}."
    )
  cols = min(3, len(series))
  rows = math.ceil(len(series) / cols)
  fig, axes = plt.subplots(
    rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False
  )
  for ax, (key, points) in zip(axes.flat, series.items(), strict=False):
    steps, values = zip(*points, strict=True)
    ax.plot(steps, values, marker="o", markersize=3)
    ax.set_title(key, fontsize=9)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(series) :]:
    ax.set_visible(False)
  fig.suptitle(title)
  fig.tight_layout()
  _save(fig, path)
  return list(series)
