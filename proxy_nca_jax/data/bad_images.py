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
"""Naming the images of a dataset that TensorFlow cannot decode.

tf.data's decoders say that an image is bad, not which: when an iterator
fails to decode, every image is decoded once more, one by one, by the
pipeline's decoder (an image folder's: data/image_files.py, which also
refuses images by size), and the error names those at fault (file name
where the dataset records it, else position, with the class).
"""

from collections.abc import Iterator

import ml_collections
import numpy as np
import tensorflow as tf

from proxy_nca_jax.data import catalog, image_files, sources

# Bad images listed in a message before "... and N more".
_MAX_LISTED = 10


def _decode_error(encoded: bytes, dataset: str) -> str | None:
  """Why the pipeline cannot decode ``encoded``, or None if it can."""
  if dataset == catalog.IMAGE_FOLDER:
    try:
      image_files.decode_image(encoded, channels=3)
    except image_files.DECODE_ERRORS as e:
      return image_files.decode_error_reason(e)
    return None
  try:
    tf.io.decode_image(encoded, expand_animations=False)
  except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
    return e.message.strip()
  return None


def undecodable_images(input_config: ml_collections.ConfigDict) -> list[str]:
  """Names (or positions) of the images that the pipeline cannot decode.

  Decodes every image once, one by one: for error messages only.
  """
  dataset_builder = sources.prepared_builder(input_config)
  ds = sources.read(input_config, dataset_builder, with_names=True)
  bad = []
  for position, example in enumerate(ds.as_numpy_iterator()):
    if reason := _decode_error(example["image"], input_config.dataset):
      name = example["name"].decode() or f"example #{position}"
      bad.append(f"{name} (class {example['label']}): {reason}")
  return bad


def undecodable_message(
  input_config: ml_collections.ConfigDict, error: tf.errors.OpError
) -> str:
  """An error message naming the images of the dataset that fail to decode."""
  bad = undecodable_images(input_config)
  where = input_config.get("image_folder") or input_config.dataset
  if not bad:
    return f"Reading {where} failed: {error.message}"
  shown = "\n  ".join(bad[:_MAX_LISTED])
  more = len(bad) - _MAX_LISTED
  return (
    f"{len(bad)} image(s) of {where} cannot be decoded:\n  {shown}"
    + (f"\n  ... and {more} more" if more > 0 else "")
    + "\nReplace or remove them (then prepare the dataset again)."
  )


def naming_bad_images(
  batches: Iterator[dict[str, np.ndarray]],
  input_config: ml_collections.ConfigDict,
) -> Iterator[dict[str, np.ndarray]]:
  """Yields `batches`; a decoding failure becomes an error naming the files.

  tf.data's decoders say that an image is bad, not which: on failure, every
  image is decoded once more, one by one, to name those at fault.
  """
  try:
    yield from batches
  except tf.errors.InvalidArgumentError as e:
    raise catalog.DatasetError(undecodable_message(input_config, e)) from None
