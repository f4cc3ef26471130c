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

Files are listed and decoded as data/image_files.py says. For the grayscale
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
(`image_files.BadImagesError`), unless ``skip_bad_files`` is set: then
those files are left out and returned, and the caller warns.
"""

import math
import os
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
  image_files,
  network_inputs,
  pipeline,
  rgb_preprocessing,
)
from proxy_nca_jax.inference import embedding
from proxy_nca_jax.training import train_state, workdirs


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
      except image_files.DECODE_ERRORS as error:
        bad.append((name, image_files.decode_error_reason(error)))
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
  files = image_files.list_images(folder)
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
    raise image_files.BadImagesError(
      image_files.bad_files_message(folder, bad, len(files))
    )
  skipped = {name for name, _ in bad}
  kept = [name for name in files if name not in skipped]
  logging.info("Embedded %d images of %s.", len(kept), folder)
  return embeddings, kept, bad, int(jax.device_get(state.step))
