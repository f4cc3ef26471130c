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
"""The one image decoder (data/image_files.py) and its policy, case by case.

Every expected pixel is computed here from hand-made NumPy arrays (the
scaling, compositing and rotation written out in NumPy), never by the code
under test; the files are written with Pillow.
"""

import pathlib
import shutil
import struct
import tempfile
import warnings
import zlib

import numpy as np
import tensorflow as tf
from absl.testing import absltest, parameterized
from PIL import Image

from configs import image_folder as image_folder_config
from proxy_nca_jax.data import catalog, image_files, pipeline
from proxy_nca_jax.data.builders import image_folder

_DOCS = pathlib.Path(__file__).parents[2] / "docs"
_ORIENTATION = 0x0112  # The EXIF tag.


def _png_header(width: int, height: int) -> bytes:
  """A PNG that declares (width, height) but holds almost no pixel data:
  what Pillow reads of a huge image before decoding it."""

  def chunk(kind: bytes, data: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + data))
    return struct.pack(">I", len(data)) + kind + data + crc

  header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return (
    b"\x89PNG\r\n\x1a\n"
    + chunk(b"IHDR", header)
    + chunk(b"IDAT", zlib.compress(bytes(10)))
    + chunk(b"IEND", b"")
  )


def _over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
  """c * a / 255 + 255 * (1 - a / 255), rounded half up (never halfway)."""
  a = alpha.astype(np.float64)[..., None] / 255
  return np.floor(colour * a + 255 * (1 - a) + 0.5).astype(np.uint8)


class ImageDecodingTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    folder = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, folder)
    self.folder = pathlib.Path(folder)

  def path(self, name: str) -> str:
    return str(self.folder / name)

  def test_16_bit_grey_is_scaled_not_clipped(self):
    # A gradient over the whole 16-bit range, with the rounding edges:
    # 128 / 257 = 0.498 -> 0, 129 / 257 = 0.502 -> 1, 32767 -> 127,
    # 32768 -> 128, 65535 -> 255.
    edges = [0, 128, 129, 257, 32767, 32768, 65534, 65535]
    wide = np.concatenate([np.linspace(0, 65535, 56), edges])
    wide = wide.astype(np.uint16).reshape(8, 8)
    expected = np.floor(wide / 257 + 0.5).astype(np.uint8)
    self.assertEqual(
      expected.reshape(-1)[-8:].tolist()[:6], [0, 0, 1, 1, 127, 128]
    )
    Image.fromarray(wide).save(self.path("grey16.png"))
    big_endian = Image.frombytes("I;16B", (8, 8), wide.astype(">u2").tobytes())
    big_endian.save(self.path("grey16.tif"))
    for name in ("grey16.png", "grey16.tif"):
      with self.subTest(name):
        got = image_files.decode_image(self.path(name), channels=1)
        np.testing.assert_array_equal(got[..., 0], expected)
        rgb = image_files.decode_image(self.path(name), channels=3)
        np.testing.assert_array_equal(
          rgb, np.repeat(expected[..., None], 3, -1)
        )

  def test_32_bit_integer_grey_is_read_as_16_bit(self):
    # A 16-bit PGM, which Pillow opens as mode 'I'.
    wide = np.arange(0, 65536, 1024, dtype=np.uint16).reshape(8, 8)
    path = self.path("grey16.pgm")
    with open(path, "wb") as f:
      f.write(b"P5\n8 8\n65535\n" + wide.astype(">u2").tobytes())
    got = image_files.decode_image(path, channels=1)
    np.testing.assert_array_equal(got[..., 0], np.floor(wide / 257 + 0.5))

  def test_float_grey_is_read_from_0_to_1(self):
    values = np.array([0.0, 0.25, 0.6, 1.0, 1.5, -0.2, np.nan, 0.05])
    image = np.tile(values.astype(np.float32), (4, 1))
    Image.fromarray(image, "F").save(self.path("float.tif"))
    got = image_files.decode_image(self.path("float.tif"), channels=1)
    # By hand: 0.25 * 255 = 63.75, 0.6 * 255 = 153, 0.05 * 255 = 12.75;
    # above 1 white, below 0 and NaN black.
    expected = np.tile([0, 64, 153, 255, 255, 0, 0, 13], (4, 1))
    np.testing.assert_array_equal(got[..., 0], expected)

  @parameterized.parameters(
    # EXIF orientation -> the rotation that shows the image upright.
    (3, 2),  # 180 degrees.
    (6, -1),  # 90 degrees clockwise.
    (8, 1),  # 90 degrees counter-clockwise.
  )
  def test_exif_orientation_is_applied(self, orientation, quarter_turns):
    stored = np.random.default_rng(0).integers(0, 256, (6, 10, 3), np.uint8)
    exif = Image.Exif()
    exif[_ORIENTATION] = orientation
    Image.fromarray(stored).save(self.path("phone.png"), exif=exif)
    got = image_files.decode_image(self.path("phone.png"), channels=3)
    np.testing.assert_array_equal(got, np.rot90(stored, quarter_turns))

  def test_exif_orientation_of_a_jpeg(self):
    stored = np.random.default_rng(1).integers(0, 256, (8, 16, 3), np.uint8)
    exif = Image.Exif()
    exif[_ORIENTATION] = 6
    Image.fromarray(stored).save(self.path("phone.jpg"), exif=exif)
    Image.fromarray(stored).save(self.path("plain.jpg"))
    # The same JPEG data without the tag, decoded by Pillow, then turned
    # 90 degrees clockwise by NumPy.
    with Image.open(self.path("plain.jpg")) as plain:
      upright = np.rot90(np.asarray(plain.convert("RGB")), -1)
    got = image_files.decode_image(self.path("phone.jpg"), channels=3)
    self.assertEqual(got.shape, (16, 8, 3))
    np.testing.assert_array_equal(got, upright)

  def test_rgba_is_composited_on_white(self):
    rng = np.random.default_rng(2)
    colour = rng.integers(0, 256, (6, 8, 3), np.uint8)
    alpha = rng.integers(0, 256, (6, 8), np.uint8)
    alpha[0] = 0
    alpha[1] = 255
    rgba = np.concatenate([colour, alpha[..., None]], axis=-1)
    Image.fromarray(rgba, "RGBA").save(self.path("rgba.png"))
    expected = _over_white(colour, alpha)
    got = image_files.decode_image(self.path("rgba.png"), channels=3)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got[0], 255)  # Hidden colours gone.
    np.testing.assert_array_equal(got[1], colour[1])  # Opaque: unchanged.

  def test_fully_transparent_image_is_white(self):
    rgba = np.zeros((5, 5, 4), np.uint8)
    rgba[..., :3] = (10, 200, 30)  # Hidden under alpha 0.
    Image.fromarray(rgba, "RGBA").save(self.path("clear.png"))
    for channels in (1, 3):
      got = image_files.decode_image(self.path("clear.png"), channels)
      np.testing.assert_array_equal(got, np.full((5, 5, channels), 255))

  def test_grey_with_alpha_is_composited_on_white(self):
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (6, 8), np.uint8)
    alpha = rng.integers(0, 256, (6, 8), np.uint8)
    la = np.stack([grey, alpha], axis=-1)
    Image.fromarray(la, "LA").save(self.path("la.png"))
    expected = _over_white(grey[..., None], alpha)
    got = image_files.decode_image(self.path("la.png"), channels=1)
    np.testing.assert_array_equal(got, expected)
    rgb = image_files.decode_image(self.path("la.png"), channels=3)
    np.testing.assert_array_equal(rgb, np.repeat(expected, 3, axis=-1))

  def test_palette_transparency_is_white(self):
    indices = np.zeros((4, 6), np.uint8)
    indices[:, 3:] = 1
    image = Image.fromarray(indices, "P")
    image.putpalette([200, 100, 50, 10, 20, 30])
    image.save(self.path("palette.png"), transparency=1)
    image.save(self.path("palette.gif"), transparency=1)
    expected = np.empty((4, 6, 3), np.uint8)
    expected[:, :3] = (200, 100, 50)
    expected[:, 3:] = 255  # Index 1 is transparent.
    for name in ("palette.png", "palette.gif"):
      with self.subTest(name):
        got = image_files.decode_image(self.path(name), channels=3)
        np.testing.assert_array_equal(got, expected)

  def test_ordinary_8_bit_images_decode_as_before(self):
    # Pillow's convert('L' / 'RGB'), the decoding before the policy.
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 256, (9, 7, 3), np.uint8)).save(
      self.path("rgb.png")
    )
    Image.fromarray(rng.integers(0, 256, (9, 7), np.uint8)).save(
      self.path("grey.png")
    )
    Image.fromarray(rng.integers(0, 256, (16, 24, 3), np.uint8)).save(
      self.path("photo.jpg")
    )
    palette = Image.fromarray(rng.integers(0, 2, (5, 6), np.uint8), "P")
    palette.putpalette([1, 2, 3, 250, 251, 252])
    palette.save(self.path("palette.png"))
    for name in ("rgb.png", "grey.png", "photo.jpg", "palette.png"):
      for channels, mode in ((1, "L"), (3, "RGB")):
        with self.subTest(name=name, channels=channels):
          with Image.open(self.path(name)) as image:
            before = np.asarray(image.convert(mode))
          got = image_files.decode_image(self.path(name), channels)
          np.testing.assert_array_equal(got, before.reshape(got.shape))

  def test_tiny_images_are_refused(self):
    for height, width in ((1, 1), (3, 100)):
      path = self.path(f"tiny_{width}.png")
      Image.fromarray(np.zeros((height, width), np.uint8)).save(path)
      with self.assertRaisesRegex(
        image_files.ImageSizeError,
        f"^{width} x {height} pixels, smaller than the minimum side of 4 "
        "pixels$",
      ):
        image_files.raw_pixels(path, (28, 28, 1))
    smallest = self.path("smallest.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(smallest)
    self.assertEqual(image_files.decode_image(smallest, 1).shape, (4, 4, 1))

  def test_huge_images_are_refused_before_decoding(self):
    path = self.path("20x20.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(path)
    with self.assertRaisesRegex(
      image_files.ImageSizeError,
      r"^20 x 20 = 400 pixels, more than the limit of 399 "
      r"\(max_image_pixels\)$",
    ):
      image_files.decode_image(path, 3, max_image_pixels=399)
    got = image_files.decode_image(path, 3, max_image_pixels=400)
    self.assertEqual(got.shape, (20, 20, 3))
    # A 12,000 x 12,000 header: refused by the default limit, without
    # Pillow's decompression-bomb warning and without decoding.
    with warnings.catch_warnings():
      warnings.simplefilter("error")
      with self.assertRaisesRegex(
        image_files.ImageSizeError,
        "12000 x 12000 = 144,000,000 pixels, more than the limit of 64,000,000",
      ):
        image_files.decode_image(_png_header(12000, 12000), 3)

  def test_refusals_are_bad_files(self):
    # So index's --skip_bad_files skips them like undecodable files.
    error = image_files.ImageSizeError("1 x 1 pixels")
    self.assertIsInstance(error, image_files.DECODE_ERRORS)

  def test_documented_limits(self):
    self.assertEqual(image_files.MIN_IMAGE_SIDE, 4)
    self.assertEqual(image_files.MAX_IMAGE_PIXELS, 64_000_000)
    self.assertEqual(image_files.BACKGROUND, 255)
    datasets = (_DOCS / "datasets.md").read_text()
    self.assertIn("shorter than 4 pixels", datasets)
    self.assertIn("64,000,000 pixels", datasets)
    self.assertIn("composited on white", datasets)


class OneDecodingPathTest(absltest.TestCase):
  """Training and evaluation of an image folder see what index and search
  see (`raw_pixels`)."""

  def setUp(self):
    super().setUp()
    folder = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, folder)
    self.root = pathlib.Path(folder) / "images"

  def write(self, name: str, pixels: np.ndarray, **kwargs) -> str:
    path = self.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return str(path)

  def test_pipeline_decoder_equals_raw_pixels(self):
    rng = np.random.default_rng(5)
    wide = rng.integers(0, 65536, (6, 9), np.uint16)
    rgba = rng.integers(0, 256, (7, 5, 4), np.uint8)
    stored = rng.integers(0, 256, (6, 10, 3), np.uint8)
    exif = Image.Exif()
    exif[_ORIENTATION] = 6
    cases = {
      "grey16.png": (
        self.write("grey16.png", wide),
        np.repeat(np.floor(wide / 257 + 0.5)[..., None], 3, axis=-1),
      ),
      "rgba.png": (
        self.write("rgba.png", rgba),
        _over_white(rgba[..., :3], rgba[..., 3]),
      ),
      "phone.png": (
        self.write("phone.png", stored, exif=exif),
        np.rot90(stored, -1),
      ),
    }
    for name, (path, expected) in cases.items():
      with self.subTest(name):
        in_pipeline = image_folder.decode_rgb(tf.io.read_file(path)).numpy()
        np.testing.assert_array_equal(in_pipeline, expected)
        shown = image_files.raw_pixels(path, expected.shape)
        np.testing.assert_array_equal(shown, expected)

  def test_evaluation_of_an_image_folder_decodes_by_the_policy(self):
    # Class 'a' trains; class 'b' is evaluated: constant images whose
    # colour survives the resize and crop, and a phone photo stored on its
    # side beside the same photo stored upright.
    for i in range(3):
      self.write(f"a/{i}.png", np.full((8, 8, 3), 40 * i, np.uint8))
    self.write("b/grey16.png", np.full((8, 12), 30000, np.uint16))
    clear = np.zeros((8, 8, 4), np.uint8)
    clear[..., :3] = (10, 200, 30)
    self.write("b/clear.png", clear)
    stored = np.zeros((8, 16, 3), np.uint8)
    stored[:, :8] = (250, 0, 0)  # Left red, right blue: upright, top red.
    stored[:, 8:] = (0, 0, 250)
    exif = Image.Exif()
    exif[_ORIENTATION] = 6
    self.write("b/phone.png", stored, exif=exif)
    self.write("b/upright.png", np.rot90(stored, -1))
    config = image_folder_config.get_config().input
    config.image_folder = str(self.root)
    config.image_size = 4
    config.eval_resize = 4
    config.eval_batch_size = 8
    pipeline.prepare_dataset(config)
    (batch,) = list(pipeline.create_eval_iterator(config, "test"))
    # BN-Inception convention: BGR minus (104, 117, 128); back to RGB.
    rgb = batch["image"][batch["mask"]][..., ::-1] + (128.0, 117.0, 104.0)
    means = {tuple(np.rint(x.mean(axis=(0, 1))).astype(int)) for x in rgb}
    # round(30000 / 257) = round(116.73) = 117; transparent -> white.
    self.assertContainsSubset({(117, 117, 117), (255, 255, 255)}, means)
    # Upright (16 x 8, shorter side 8 -> 4: a 4 x 8 image cropped to its
    # middle 4 x 4): top half red, bottom half blue, for both files.
    photos = [x for x in rgb if x[..., 1].max() < 5]  # No green.
    self.assertLen(photos, 2)
    np.testing.assert_allclose(photos[0], photos[1], atol=1e-3)
    self.assertGreater(photos[0][0, :, 0].mean(), 200)  # Top row red.
    self.assertGreater(photos[0][-1, :, 2].mean(), 200)  # Bottom blue.

  def test_refused_images_are_named_before_training(self):
    for i in range(2):
      self.write(f"a/{i}.png", np.zeros((8, 8, 3), np.uint8))
      self.write(f"b/{i}.png", np.zeros((8, 8, 3), np.uint8))
    tiny = self.write("b/tiny.png", np.zeros((1, 1, 3), np.uint8))
    config = image_folder_config.get_config().input
    config.image_folder = str(self.root)
    with self.assertRaisesRegex(
      catalog.DatasetError,
      f"1 file\\(s\\) in {self.root} are not readable images or have a "
      f"refused size:\n  {tiny} \\(ImageSizeError: 1 x 1 pixels, smaller "
      "than the minimum side of 4 pixels\\)",
    ):
      pipeline.prepare_dataset(config)


if __name__ == "__main__":
  absltest.main()
