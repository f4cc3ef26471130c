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
"""Embedding a folder of image files with a trained run, for retrieval.

Files are found recursively and taken in sorted order of their path relative
to the folder (POSIX separators); files whose extension is not one of
`IMAGE_EXTENSIONS` (case-insensitive) and hidden files and folders are left
out. Each image is decoded with Pillow (first frame). For the grayscale
datasets (Fashion-MNIST, GLYPHS-ZS) it is converted to 'L', resized to the
network's input with bilinear interpolation when its size differs, and
normalised as in training (`network_inputs.normalize_pixels`); for the
colour datasets (CUB, Cars, SOP, image folders) it is converted to 'RGB'
and prepared exactly as the evaluation prepares its images (shorter side to
``input.eval_resize``, centre crop, the backbone's colour convention:
`rgb_preprocessing.eval_rgb`). Decoding is streamed batch by batch, so
memory holds one batch of images.

A file with an image extension that Pillow cannot decode (corrupt,
truncated, not an image) is an error naming every such file
(`BadImagesError`), unless ``skip_bad_files`` is set: then those files are
left out and returned, and the caller warns.
"""

import math
import os
import pathlib
from collections.abc import Iterator, Sequence

import jax
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from proxy_nca_jax import parallel
from proxy_nca_jax.data import (
  catalog,
  network_inputs,
  pipeline,
  rgb_preprocessing,
)
from proxy_nca_jax.evaluation import embedding
from proxy_nca_jax.training import train_state, workdirs

IMAGE_EXTENSIONS = (
  ".bmp",
  ".gif",
  ".jpeg",
  ".jpg",
  ".pgm",
  ".png",
  ".ppm",
  ".tif",
  ".tiff",
  ".webp",
)
# Most bad files named in an error message (all are counted).
_MAX_NAMED = 10
# What Pillow raises on files it cannot decode.
_DECODE_ERRORS = (
  OSError,
  SyntaxError,
  ValueError,
  Image.DecompressionBombError,
)


class BadImagesError(ValueError):
  """Files with an image extension that cannot be decoded."""


def list_images(folder: str) -> list[str]:
  """Image files under ``folder``, recursively, as sorted relative paths.

  Raises:
    FileNotFoundError: ``folder`` is not a folder.
    ValueError: it holds no image file.
  """
  root = pathlib.Path(folder)
  if not root.is_dir():
    raise FileNotFoundError(f"--images={folder} is not a folder.")
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    for name in filenames:
      if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
        continue
      found.append((pathlib.Path(dirpath) / name).relative_to(root))
  if not found:
    raise ValueError(
      f"No image files under {folder} (searched recursively for "
      f"{', '.join(IMAGE_EXTENSIONS)}); point --images at a folder of images."
    )
  return sorted(path.as_posix() for path in found)


def load_image(
  path: str, input_config: ml_collections.ConfigDict
) -> np.ndarray:
  """Decodes an image file to the network's input, float32 (H, W, C).

  Raises:
    OSError, SyntaxError, ValueError: Pillow cannot decode the file.
  """
  height, width, channels = pipeline.image_shape(input_config)
  with Image.open(path) as image:
    if not catalog.traits(input_config.dataset).grey:
      rgb = tf.constant(np.asarray(image.convert("RGB")))
      return rgb_preprocessing.eval_rgb(rgb, input_config).numpy()
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (width, height):
      image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, np.float32).reshape(height, width, channels)
    return network_inputs.normalize_pixels(pixels, input_config.dataset)


def _bad_files_message(
  folder: str, bad: list[tuple[str, str]], total: int
) -> str:
  named = "; ".join(f"{name} ({reason})" for name, reason in bad[:_MAX_NAMED])
  more = f"; and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED else ""
  fix = "Remove or replace them"
  if len(bad) < total:
    fix += ", or pass --skip_bad_files to embed the others"
  return (
    f"{len(bad)} of {total} image files under {folder} cannot be decoded: "
    f"{named}{more}. {fix}."
  )


def _batches(
  folder: str,
  files: Sequence[str],
  input_config: ml_collections.ConfigDict,
  batch_size: int,
  bad: list[tuple[str, str]],
) -> Iterator[dict[str, np.ndarray]]:
  """Normalised, masked batches of the decodable files; fills ``bad``."""
  shape = pipeline.image_shape(input_config)
  for start in range(0, len(files), batch_size):
    images = np.zeros((batch_size, *shape), np.float32)
    mask = np.zeros(batch_size, bool)
    for row, name in enumerate(files[start : start + batch_size]):
      try:
        images[row] = load_image(os.path.join(folder, name), input_config)
      except _DECODE_ERRORS as error:
        bad.append((name, str(error) or type(error).__name__))
        continue
      mask[row] = True
    yield {
      "image": images,
      "label": np.full(batch_size, -1, np.int32),
      "mask": mask,
    }


def embed_folder(
  workdir: str, folder: str, *, skip_bad_files: bool = False
) -> tuple[np.ndarray, list[str], list[tuple[str, str]], int]:
  """Embeds every image file under ``folder`` with a run's latest checkpoint.

  Args:
    workdir: the workdir of a training run.
    folder: the folder of images.
    skip_bad_files: leave undecodable files out instead of failing.

  Returns:
    (embeddings float32 (N, D) unit vectors, the N files' paths relative to
    ``folder`` in the same order, the skipped (file, reason) pairs, the
    checkpoint's step).

  Raises:
    FileNotFoundError: ``folder`` or the run is missing.
    BadImagesError: undecodable files and not ``skip_bad_files``, or no file
      decodes.
    ValueError: no image file, or several processes.
  """
  if jax.process_count() > 1:
    raise ValueError("python -m proxy_nca_jax.embed runs in one process.")
  files = list_images(folder)
  mesh = parallel.create_mesh()
  config, model, state = workdirs.restore_trained(workdir, mesh)
  # Whole batches of eval_batch_size at most, split evenly over devices.
  per_device = math.ceil(
    min(config.input.eval_batch_size, len(files)) / mesh.size
  )
  bad: list[tuple[str, str]] = []
  embeddings, _ = embedding.embed_batches(
    embedding.make_embed_fn(model, mesh),
    train_state.inference_variables(state),
    _batches(folder, files, config.input, per_device * mesh.size, bad),
    mesh,
  )
  if bad and (not skip_bad_files or len(bad) == len(files)):
    raise BadImagesError(_bad_files_message(folder, bad, len(files)))
  skipped = {name for name, _ in bad}
  kept = [name for name in files if name not in skipped]
  logging.info("Embedded %d images of %s.", len(kept), folder)
  return embeddings, kept, bad, int(jax.device_get(state.step))
