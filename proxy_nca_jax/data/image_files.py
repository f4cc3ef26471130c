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
"""Folders of image files: listing, and the one way images are decoded.

Files are found recursively and taken in sorted order of their path relative
to the folder (POSIX separators); files whose extension is not one of
`IMAGE_EXTENSIONS` (case-insensitive) and hidden files and folders are left
out. A file with an image extension that cannot be decoded (corrupt,
truncated, not an image, or refused by the size policy) is reported with
its reason (`DECODE_ERRORS`, `bad_files_message`).

`decode_image` is the one decoder of image files: training and evaluation
of an image folder (data/builders/image_folder.py), `index` and `search`
(`raw_pixels`) all see the pixels it gives. Its policy, so that the pixels
are those a person sees:

* the first frame, with its EXIF orientation applied (a phone photo is
  upright);
* 16-bit grey ('I;16', 'I;16B', 'I;16L') scaled to 8 bits as
  round(x * 255 / 65535) = round(x / 257), not clipped; 32-bit integer grey
  ('I', e.g. a 16-bit PGM) read the same way after clipping to [0, 65535];
  float grey ('F') read as 0.0 = black to 1.0 = white, round(x * 255) after
  clipping to [0, 1] (NaN is black). 16-bit colour files are read by
  Pillow as 8 bits (the high byte of each sample);
* transparency of an 8-bit image (RGBA, LA, a palette, a grey level or a
  colour marked transparent) composited on white (`BACKGROUND`):
  round(c * a / 255 + 255 * (1 - a / 255)) per channel, so a fully
  transparent pixel is white;
* an image with a side shorter than `MIN_IMAGE_SIDE` or more than
  `MAX_IMAGE_PIXELS` pixels (width x height; a `max_image_pixels` argument)
  is refused (`ImageSizeError`) before its pixels are decoded;
* then grey ('L', ITU-R 601 luma for colour) for one channel, RGB for
  three (grey repeated). Ordinary 8-bit images decode as Pillow's
  `convert('L')` / `convert('RGB')`.
"""

import io
import os
import pathlib
import typing
import warnings

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
# The shortest side an image may have, in pixels: a smaller one (a 1 x 1
# tracking pixel, a placeholder) shows nothing to embed.
MIN_IMAGE_SIDE = 4
# The most pixels (width x height) an image may have by default: 64
# megapixels (e.g. 8000 x 8000, 192 MB as RGB), below Pillow's
# decompression-bomb warning (89,478,485), which the size policy replaces.
# Pillow itself refuses images above twice its warning (178,956,970 pixels)
# whatever this limit.
MAX_IMAGE_PIXELS = 64_000_000
# The grey level transparency is composited on: white.
BACKGROUND = 255
# Single-channel modes of more than 8 bits (scaled, not clipped).
_WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
# Modes with an alpha channel (premultiplied 'La', 'RGBa' included).
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
# What decoding raises for files it cannot or will not decode: Pillow's
# errors, and `ImageSizeError` (a ValueError) for the size policy.
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


class ImageSizeError(errors.InvalidInputError):
  """An image smaller or larger than the decoding policy accepts."""


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
  """Why a file could not be decoded, for a message naming the file."""
  return str(error) or type(error).__name__


def check_image_size(
  size: tuple[int, int], max_image_pixels: int = MAX_IMAGE_PIXELS
) -> None:
  """Refuses an image of ``size`` (width, height) that the policy refuses.

  Raises:
    ImageSizeError: a side shorter than `MIN_IMAGE_SIDE`, or more than
      ``max_image_pixels`` pixels.
  """
  width, height = size
  if min(width, height) < MIN_IMAGE_SIDE:
    raise ImageSizeError(
      f"{width} x {height} pixels, smaller than the minimum side of "
      f"{MIN_IMAGE_SIDE} pixels"
    )
  if width * height > max_image_pixels:
    raise ImageSizeError(
      f"{width} x {height} = {width * height:,} pixels, more than the limit "
      f"of {max_image_pixels:,} (max_image_pixels)"
    )


def open_image(
  source: str | os.PathLike | bytes | typing.BinaryIO,
) -> Image.Image:
  """Pillow's image of a file, open file or bytes: header read, not decoded.

  Pillow's decompression-bomb warning is silenced: `check_image_size` is
  the policy.
  """
  file = io.BytesIO(source) if isinstance(source, bytes) else source
  # The filters are process-wide: in tf.data's threads the worst case is
  # this one warning ignored a little longer or shown once.
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    return Image.open(file)


def _wide_grey_to_8_bits(image: Image.Image) -> Image.Image:
  """'I;16*', 'I' or 'F' -> 'L', by the scaling of the module docstring."""
  values = np.asarray(image)
  if image.mode == "F":
    unit = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0)
    grey = np.rint(unit * 255)
  else:
    # round(x / 257) in integers: x / 257 is never halfway.
    wide = np.clip(values, 0, 65535).astype(np.int32)
    grey = (2 * wide + 257) // 514
  return Image.fromarray(grey.astype(np.uint8), "L")


def _on_background(image: Image.Image) -> Image.Image:
  """An image with transparency -> 'RGB' composited on `BACKGROUND`."""
  rgba = np.asarray(image.convert("RGBA"), np.uint16)
  alpha = rgba[..., 3:]
  # (c * a + B * (255 - a)) / 255 rounded (never halfway); fits in uint16.
  mixed = (rgba[..., :3] * alpha + BACKGROUND * (255 - alpha) + 127) // 255
  return Image.fromarray(mixed.astype(np.uint8), "RGB")


def _decoded_image(
  source: str | os.PathLike | bytes,
  channels: int,
  max_image_pixels: int = MAX_IMAGE_PIXELS,
) -> Image.Image:
  """`decode_image`'s pixels as a Pillow image ('L' or 'RGB')."""
  if channels not in (1, 3):
    raise errors.InvalidInputError(f"channels={channels} must be 1 or 3.")
  with open_image(source) as opened:
    check_image_size(opened.size, max_image_pixels)
    image = ImageOps.exif_transpose(opened)
  if image.mode in _WIDE_GREY_MODES:
    image = _wide_grey_to_8_bits(image)
  elif image.mode in _ALPHA_MODES or "transparency" in image.info:
    image = _on_background(image)
  mode = "L" if channels == 1 else "RGB"
  return image if image.mode == mode else image.convert(mode)


def decode_image(
  source: str | os.PathLike | bytes,
  channels: int,
  max_image_pixels: int = MAX_IMAGE_PIXELS,
) -> np.ndarray:
  """An image file (or its bytes) as the uint8 (H, W, ``channels``) pixels
  a person sees, by the policy of the module docstring.

  Args:
    source: a file path, or the file's bytes.
    channels: 1 (grey) or 3 (RGB).
    max_image_pixels: the most pixels (width x height) accepted.

  Raises:
    DECODE_ERRORS: Pillow cannot decode the file, or the size policy
      refuses it (`ImageSizeError`); the message does not name the file,
      which callers do.
  """
  image = _decoded_image(source, channels, max_image_pixels)
  height, width = image.height, image.width
  return np.asarray(image, np.uint8).reshape(height, width, channels)


def raw_pixels(
  path: str,
  input_shape: tuple[int, int, int],
  max_image_pixels: int = MAX_IMAGE_PIXELS,
) -> np.ndarray:
  """An image file as uint8 (H, W, C) pixels of ``input_shape``.

  Decoded by `decode_image` with C channels; when its size differs it is
  resized to cover (H, W) keeping its aspect ratio and the centre cropped
  (``ImageOps.fit``, bilinear, antialiased): for a square input this is
  the evaluation recipe's shorter-side resize and centre crop
  (rgb_preprocessing.py), up to rounding to uint8.

  Raises:
    DECODE_ERRORS: the file cannot be decoded or is refused.
  """
  height, width, channels = input_shape
  image = _decoded_image(path, channels, max_image_pixels)
  if image.size != (width, height):
    image = ImageOps.fit(
      image, (width, height), method=Image.Resampling.BILINEAR
    )
  return np.asarray(image, np.uint8).reshape(height, width, channels)
