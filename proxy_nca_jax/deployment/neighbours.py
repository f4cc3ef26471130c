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
"""Queries searched against a gallery: ranked lists, JSON and a picture.

Each query image is embedded by the gallery's model (the same preprocessing
as the gallery's images: data/image_files.py `raw_pixels`, then the
embedder), and its k nearest gallery items are found exactly by
evaluation/nearest.py: (similarity descending, gallery index ascending), the
ranking of the metrics. A query that is a gallery image finds itself first.

A query's class is the name of the folder holding it when that is one of
the gallery's classes; then the picture frames each neighbour green (same
class) or red. Otherwise neighbours are framed in their class's colour.
"""

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from proxy_nca_jax import errors, terminal
from proxy_nca_jax.data import image_files
from proxy_nca_jax.deployment import embedder, gallery
from proxy_nca_jax.evaluation import nearest


def query_files(query: str) -> tuple[str, list[str]]:
  """(folder, relative paths) of the query images: one file, or a folder's.

  Raises:
    FileNotFoundError: ``query`` is neither a file nor a folder.
    ValueError: a folder without images.
  """
  if os.path.isfile(query):
    return os.path.dirname(query) or ".", [os.path.basename(query)]
  if not os.path.isdir(query):
    raise errors.MissingFileError(f"--query={query}: no such file or folder.")
  return query, image_files.list_images(query, flag="--query")


def _class_of(name: str, classes: Sequence[str] | None) -> str | None:
  folder = os.path.basename(os.path.dirname(name))
  return folder if classes and folder in classes else None


def search(
  found: gallery.Gallery,
  embed: Callable[[np.ndarray], Any],
  spec: embedder.EmbedderSpec,
  query: str,
  k: int,
  max_image_pixels: int = image_files.MAX_IMAGE_PIXELS,
) -> list[dict[str, Any]]:
  """The k nearest gallery items of each query image.

  Args:
    found: the gallery.
    embed: its model (checked against the gallery's spec).
    spec: the model's spec.
    query: an image file or a folder of them.
    k: neighbours per query, 1 to the gallery's size.
    max_image_pixels: larger query images are refused (``image_files``).

  Returns:
    One record per query: ``query`` (path), ``class`` (or None) and
    ``neighbours``: [{"rank", "index", "file", "similarity", "class"}].

  Raises:
    gallery.ModelMismatchError: the model is not the gallery's.
    errors.InvalidInputError: ``k`` out of range.
  """
  size = found.embeddings.shape[0]
  if not 1 <= k <= size:
    raise errors.InvalidInputError(
      f"k={k}: the gallery holds {size} images; ask for 1 to {size}."
    )
  found.check_model(spec)
  folder, names = query_files(query)
  queries, _, bad = gallery.embed_files(
    embed, spec, folder, names, max_image_pixels=max_image_pixels
  )
  if bad:
    raise image_files.BadImagesError(
      image_files.bad_files_message(folder, bad, len(names))
    )
  engine = nearest.DeviceGallery.from_array(found.embeddings)
  sims, rows = engine.search(queries, k)
  classes, labels = found.classes, found.labels
  results = []
  for name, query_sims, query_rows in zip(names, sims, rows, strict=True):
    neighbours = [
      {
        "rank": rank,
        "index": int(row),
        "file": found.files[row],
        "similarity": float(sim),
        "class": None if labels is None else classes[labels[row]],
      }
      for rank, (sim, row) in enumerate(
        zip(query_sims, query_rows, strict=True), start=1
      )
    ]
    results.append(
      {
        "query": os.path.join(folder, name),
        "class": _class_of(os.path.join(folder, name), classes),
        "neighbours": neighbours,
      }
    )
  return results


def format_results(results: Sequence[dict[str, Any]]) -> str:
  """The ranked lists as text, one block per query; names escaped for the
  terminal (``terminal.printable``)."""
  show = terminal.printable
  lines = []
  for result in results:
    known = f" (class {show(result['class'])})" if result["class"] else ""
    lines.append(f"{show(result['query'])}{known}")
    for item in result["neighbours"]:
      label = f"  [{show(item['class'])}]" if item["class"] is not None else ""
      lines.append(
        f"  {item['rank']:>3}. {item['similarity']:.4f}  "
        f"{show(item['file'])}{label}"
      )
  return "\n".join(lines)


def _thumbnail(path: str, shape: tuple[int, int, int]) -> np.ndarray:
  try:
    return image_files.raw_pixels(path, shape)
  except image_files.DECODE_ERRORS + (FileNotFoundError,):
    return np.zeros(shape, np.uint8)  # Moved or unreadable since indexed.


def draw(
  results: Sequence[dict[str, Any]],
  found: gallery.Gallery,
  path: str,
  max_queries: int = 8,
) -> None:
  """A PNG grid: each query, then its neighbours with class and similarity.

  Frames: green/red for a neighbour of the query's class or not when the
  query's class is known, else the neighbour's class colour (tab20), none
  without labels.
  """
  # matplotlib (0.3 s to import) only for a search that draws.
  from matplotlib import colormaps

  from proxy_nca_jax.reports import figures

  shape = found.spec.input_shape
  images = found.record["images"]
  palette = colormaps["tab20"]
  rows = []
  for result in results[:max_queries]:
    row = [
      figures.Cell(
        _thumbnail(result["query"], shape),
        f"query {result['class'] or ''}".strip(),
      )
    ]
    for item in result["neighbours"]:
      rgb = None
      if item["class"] is not None and result["class"] is not None:
        same = item["class"] == result["class"]
        rgb = figures.CORRECT_RGB if same else figures.WRONG_RGB
      elif item["class"] is not None:
        rgb = palette(found.classes.index(item["class"]) % 20)[:3]
      caption = f"{item['similarity']:.3f}"
      if item["class"] is not None:
        caption = f"{item['class'][:12]}\n{caption}"
      row.append(
        figures.Cell(
          _thumbnail(os.path.join(images, item["file"]), shape),
          caption,
          rgb,
          rgb or (0.0, 0.0, 0.0),
        )
      )
    rows.append(row)
  figures.image_grid(
    rows, path, "queries and their nearest gallery images (similarity)"
  )
