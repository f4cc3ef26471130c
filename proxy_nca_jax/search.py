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
r"""Searches a gallery for the nearest images of query images.

  python -m proxy_nca_jax.search --gallery=GALLERY --query=IMG_OR_DIR \
      [--k=10] [--out=results.json] [--grid=results.png] \
      [--workdir=W | --model=FILE.npz]

Prints, for each query, its k nearest gallery images with their similarity
(and class when the gallery has class folders), writes them as JSON and
draws a PNG grid (query, then its neighbours). The search is exact, with
the ranking of the evaluation metrics (deployment/neighbours.py). Queries
are embedded by the model that made the gallery (its recorded workdir or
exported file) unless --workdir or --model names another copy of it; a
different model is refused.
"""

import json
import os
import sys

import jax
from absl import flags, logging

from proxy_nca_jax import command_line, deployment, errors
from proxy_nca_jax.data import image_files
from proxy_nca_jax.deployment import gallery, neighbours

_GALLERY = flags.DEFINE_string(
  "gallery", None, "A gallery folder (python -m proxy_nca_jax.index)."
)
_QUERY = flags.DEFINE_string(
  "query", None, "An image file, or a folder of them (recursively)."
)
_K = flags.DEFINE_integer("k", 10, "Neighbours per query.")
_OUT = flags.DEFINE_string(
  "out", "search_results.json", "JSON file of the ranked lists."
)
_GRID = flags.DEFINE_string(
  "grid", "search_results.png", "PNG grid of the first queries ('' : none)."
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "The gallery's training run, if moved since indexing."
)
_MODEL = flags.DEFINE_string(
  "model", None, "The gallery's exported model, if moved since indexing."
)
_MAX_IMAGE_PIXELS = flags.DEFINE_integer(
  "max_image_pixels",
  image_files.MAX_IMAGE_PIXELS,
  "Query images with more pixels are refused instead of decoded.",
)
flags.mark_flags_as_required(["gallery", "query"])


def main() -> None:
  if _K.value < 1:
    raise errors.InvalidInputError(f"--k={_K.value} must be at least 1.")
  found = gallery.load(_GALLERY.value)
  source = {"workdir": _WORKDIR.value, "model": _MODEL.value}
  if _WORKDIR.value is None and _MODEL.value is None:
    source = {"workdir": None, "model": None, **found.record["source"]}
  embed, spec, _ = deployment.open_embedder(**source)
  k = min(_K.value, len(found.files))
  if k < _K.value:
    logging.warning(
      "--k=%d is more than the gallery's %d images: each query gets all %d.",
      _K.value,
      k,
      k,
    )
  results = neighbours.search(
    found, jax.jit(embed), spec, _QUERY.value, k, _MAX_IMAGE_PIXELS.value
  )
  sys.stdout.write(neighbours.format_results(results) + "\n")
  parent = os.path.dirname(_OUT.value)
  if parent:
    os.makedirs(parent, exist_ok=True)
  with open(_OUT.value, "w") as f:
    json.dump(
      {
        "gallery": os.path.abspath(_GALLERY.value),
        "k": k,
        "k_requested": _K.value,
        "model": spec.describe(),
        "queries": results,
      },
      f,
      indent=1,
    )
  sys.stdout.write(f"wrote {_OUT.value}\n")
  if _GRID.value:
    neighbours.draw(results, found, _GRID.value)
    sys.stdout.write(f"wrote {_GRID.value}\n")


if __name__ == "__main__":
  command_line.run(main)
