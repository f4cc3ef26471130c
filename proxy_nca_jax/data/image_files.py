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
"""Folders of image files given on the command line: listing and decoding.

Files are found recursively and taken in sorted order of their path relative
to the folder (POSIX separators); files whose extension is not one of
`IMAGE_EXTENSIONS` (case-insensitive) and hidden files and folders are left
out. Files are decoded with Pillow (first frame). A file with an image
extension that Pillow cannot decode (corrupt, truncated, not an image) is
reported with its reason (`DECODE_ERRORS`, `bad_files_message`).
"""

import os
import pathlib

import numpy as np
from PIL import Image, ImageOps

from proxy_nca_jax import errors

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
# What Pillow raises on files it cannot decode.
DECODE_ERRORS = (
  OSError,
  SyntaxError,
  ValueError,
  Image.DecompressionBombError,
)
# Most bad files named in an error message (all are counted).
_MAX_NAMED = 10


class BadImagesError(errors.InvalidInputError):
  """Files with an image extension that cannot be decoded."""


def is_image_file(name: str) -> bool:
  """Whether a file name has an image extension and is not hidden."""
  return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: str, flag: str = "--images") -> list[str]:
  """Image files under ``folder``, recursively, as sorted relative paths.

  Raises:
    FileNotFoundError: ``folder`` is not a folder.
    ValueError: it holds no image file.
  """
  root = pathlib.Path(folder)
  if not root.is_dir():
    raise errors.MissingFileError(f"{flag}={folder} is not a folder.")
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    for name in filenames:
      if is_image_file(name):
        found.append((pathlib.Path(dirpath) / name).relative_to(root))
  if not found:
    raise errors.InvalidInputError(
      f"No image files under {folder} (searched recursively for "
      f"{', '.join(IMAGE_EXTENSIONS)}); point {flag} at a folder of images."
    )
  return sorted(path.as_posix() for path in found)


def bad_files_message(
  folder: str, bad: list[tuple[str, str]], total: int
) -> str:
  """One message naming the undecodable files (the first few) and the fix."""
  named = "; ".join(f"{name} ({reason})" for name, reason in bad[:_MAX_NAMED])
  more = f"; and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED else ""
  fix = "Remove or replace them"
  if len(bad) < total:
    fix += ", or pass --skip_bad_files to embed the others"
  return (
    f"{len(bad)} of {total} image files under {folder} cannot be decoded: "
    f"{named}{more}. {fix}."
  )


def decode_error_reason(error: Exception) -> str:
  return str(error) or type(error).__name__


def raw_pixels(path: str, input_shape: tuple[int, int, int]) -> np.ndarray:
  """An image file as uint8 (H, W, C) pixels of ``input_shape``.

  Converted to grey ('L') for one channel and to RGB for three; when its
  size differs it is resized to cover (H, W) keeping its aspect ratio and
  the centre cropped (``ImageOps.fit``, bilinear, antialiased): for a
  square input this is the evaluation recipe's shorter-side resize and
  centre crop (rgb_preprocessing.py), up to rounding to uint8.

  Raises:
    DECODE_ERRORS: Pillow cannot decode the file.
  """
  height, width, channels = input_shape
  with Image.open(path) as image:
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (width, height):
      image = ImageOps.fit(
        image, (width, height), method=Image.Resampling.BILINEAR
      )
    return np.asarray(image, np.uint8).reshape(height, width, channels)
