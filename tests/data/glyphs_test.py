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
"""Tests of the GLYPHS-ZS builder, its honesty rules and the augmentation.

Three generated fonts (tests/testing/fake_fonts.py) draw 24 characters in three
styles; font B lacks one character in its cmap, maps one to a blank glyph
and draws one as its .notdef box; font C lacks another; a byte copy of font
A under another name must merge with A. Expectations are derived from the
font definitions and fontTools, not from the code under test.
"""

import json
import os
import pathlib
import shutil
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from absl.testing import absltest
from fontTools import ttLib
from PIL import Image

from configs import glyphs as glyphs_config
from proxy_nca_jax.data import grey_augmentation, pipeline, sources
from proxy_nca_jax.data.builders import glyph_faces, glyphs
from research import glyph_statistics
from tests.testing import fake_fonts, tiny_run

FIRST = 0x4E00
CODE_POINTS = tuple(range(FIRST, FIRST + 24))
LAST = FIRST + 29  # Six code points no font covers.
NOT_IN_B = CODE_POINTS[3]
BLANK_IN_B = CODE_POINTS[5]
NOTDEF_IN_B = CODE_POINTS[7]
NOT_IN_C = CODE_POINTS[9]
SIZE, MARGIN = 48, 4


def write_fonts(folder: pathlib.Path) -> dict[str, str]:
  """Writes fonts A, B, C and a copy of A; returns name -> path."""
  folder.mkdir(parents=True)
  a = fake_fonts.write_font(
    folder / "a.ttf",
    "FakeA",
    {cp: fake_fonts.pattern(cp, 0) for cp in CODE_POINTS},
  )
  b_glyphs = {cp: fake_fonts.pattern(cp, 1) for cp in CODE_POINTS}
  del b_glyphs[NOT_IN_B]
  b_glyphs[BLANK_IN_B] = ()
  b_glyphs[NOTDEF_IN_B] = fake_fonts.NOTDEF
  b = fake_fonts.write_font(folder / "b.ttf", "FakeB", b_glyphs)
  c = fake_fonts.write_font(
    folder / "c.ttf",
    "FakeC",
    {cp: fake_fonts.pattern(cp, 2) for cp in CODE_POINTS if cp != NOT_IN_C},
  )
  copy = folder / "a_copy.ttf"
  shutil.copyfile(a, copy)
  return {"a": str(a), "b": str(b), "c": str(c), "a_copy": str(copy)}


def make_config(data_dir: str, fonts: dict[str, str], num_classes: int = 20):
  config = glyphs_config.get_config()
  config.unlock()
  config.input.data_dir = data_dir
  g = config.input.glyphs
  g.font_files = (fonts["a"], fonts["b"], fonts["a_copy"], fonts["c"])
  g.first_code_point, g.last_code_point = FIRST, LAST
  g.min_faces = 3
  g.num_classes = num_classes
  g.probe_stride = 1
  g.min_common_probes = 3
  config.input.train_classes = tuple(range(10))
  config.input.test_classes = tuple(range(10, 20))
  config.input.val_classes = (9,)
  config.input.batch_size = 8
  config.input.shuffle_buffer = 1000
  config.lock()
  return config


def read_all(config) -> dict[str, dict[str, np.ndarray]]:
  builder = sources.prepared_builder(config.input)
  records = {}
  for split in ("train", "test"):
    ds = builder.as_dataset(split=split, shuffle_files=False).batch(10_000)
    (batch,) = list(tfds.as_numpy(ds))
    order = np.lexsort((batch["face"], batch["code_point"]))
    records[split] = {k: v[order] for k, v in batch.items()}
  return records


def ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
  """(top, bottom, left, right), inclusive, of the non-zero pixels."""
  rows = np.flatnonzero(image.max(axis=1))
  cols = np.flatnonzero(image.max(axis=0))
  return rows[0], rows[-1], cols[0], cols[-1]


def face_file(face: str, fonts: dict[str, str]) -> str:
  (name,) = [
    k for k, path in fonts.items() if f"({os.path.basename(path)}#0)" in face
  ]
  return name


class GlyphsBuilderTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = pathlib.Path(tempfile.mkdtemp())
    cls.fonts = write_fonts(cls.root / "fonts")
    cls.config = make_config(str(cls.root / "data"), cls.fonts)
    pipeline.prepare_dataset(cls.config.input)
    cls.records = read_all(cls.config)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root)
    super().tearDownClass()

  def all_records(self):
    return {
      k: np.concatenate([self.records[s][k] for s in ("train", "test")])
      for k in self.records["train"]
    }

  def test_classes_are_the_characters_three_faces_draw(self):
    excluded = {NOT_IN_B, BLANK_IN_B, NOTDEF_IN_B, NOT_IN_C}
    expected = sorted(set(CODE_POINTS) - excluded)
    self.assertLen(expected, 20)
    train = sorted(set(self.records["train"]["code_point"]))
    test = sorted(set(self.records["test"]["code_point"]))
    self.assertEqual(train, expected[0::2])
    self.assertEqual(test, expected[1::2])
    # One label per character: train labels 0..9, test 10..19, in code
    # point order.
    for split, chars, first in (("train", train, 0), ("test", test, 10)):
      r = self.records[split]
      for label, cp in enumerate(chars, first):
        np.testing.assert_array_equal(r["label"][r["code_point"] == cp], label)

  def test_every_image_honours_cmap_ink_and_notdef(self):
    r = self.all_records()
    cmaps = {
      name: ttLib.TTFont(path).getBestCmap()
      for name, path in self.fonts.items()
    }
    for cp, face, image in zip(
      r["code_point"], r["face"], r["image"], strict=True
    ):
      name = face_file(face.decode(), self.fonts)
      self.assertIn(int(cp), cmaps[name])
      self.assertGreaterEqual(image.max(), 128)
    faces_of = {}
    for cp, face in zip(r["code_point"], r["face"], strict=True):
      faces_of.setdefault(int(cp), set()).add(
        face_file(face.decode(), self.fonts)
      )
    # The byte copy of A is merged with A: never a face of its own.
    for cp, names in faces_of.items():
      self.assertEqual(names, {"a", "b", "c"}, f"U+{cp:04X}")

  def test_identical_faces_are_merged(self):
    order = ("a", "b", "a_copy", "c")
    faces = glyph_faces.read_faces([self.fonts[k] for k in order], FIRST, LAST)
    groups = glyph_faces.group_faces(
      faces,
      probes=CODE_POINTS,
      min_common_probes=3,
      size=SIZE,
      margin=MARGIN,
      render_size=64,
    )
    members = [
      [face_file(r.face.name, self.fonts) for r, _ in g.members] for g in groups
    ]
    self.assertEqual(members, [["a", "a_copy"], ["b"], ["c"]])

  def test_no_class_holds_duplicate_images(self):
    r = self.all_records()
    for cp in set(r["code_point"]):
      images = r["image"][r["code_point"] == cp]
      keys = {image.tobytes() for image in images}
      self.assertLen(keys, len(images))

  def test_images_are_centred_with_the_margin(self):
    r = self.all_records()
    styles = {"a": 0, "b": 1, "c": 2}
    for cp, face, image in zip(
      r["code_point"], r["face"], r["image"][..., 0], strict=True
    ):
      rects = np.array(
        fake_fonts.pattern(
          int(cp), styles[face_file(face.decode(), self.fonts)]
        )
      )
      width = rects[:, 2].max() - rects[:, 0].min()
      height = rects[:, 3].max() - rects[:, 1].min()  # Taller than wide.
      self.assertGreater(height, width)
      top, bottom, left, right = ink_box(image)
      # The longer (vertical) side spans the inner box exactly, up to the
      # faint anti-aliased edge rows.
      self.assertLessEqual(abs(top - MARGIN), 1)
      self.assertLessEqual(abs(bottom - (SIZE - MARGIN - 1)), 1)
      inner = SIZE - 2 * MARGIN
      self.assertLessEqual(abs((right - left + 1) - inner * width / height), 2)
      self.assertLessEqual(abs((left + right) / 2 - (SIZE - 1) / 2), 1)

  def test_report_counts_and_sheet(self):
    builder = sources.prepared_builder(self.config.input)
    splits = {
      s: glyph_statistics.read_split(builder, s) for s in ("train", "test")
    }
    stats = glyph_statistics.statistics(builder, splits)
    self.assertEqual((stats["font_files"], stats["faces"]), (4, 4))
    self.assertEqual((stats["face_groups"], stats["face_groups_used"]), (3, 3))
    for split in ("train", "test"):
      self.assertEqual(stats[split]["classes"], 10)
      self.assertEqual(stats[split]["images"], 30)
      self.assertEqual(stats[split]["images_per_class_min"], 3)
      self.assertEqual(stats[split]["images_per_class_max"], 3)
    pixels = self.records["train"]["image"] / 255.0
    self.assertAlmostEqual(stats["train_pixel_mean"], pixels.mean(), places=4)
    sheet = glyph_statistics.sample_sheet(splits["train"], 4, 10)
    self.assertEqual(sheet.shape, (3 * SIZE, 4 * SIZE))
    # Row 0 is face A, column 0 the first train class.
    r = self.records["train"]
    first = (r["label"] == 0) & np.char.startswith(
      r["face"].astype(str), "FakeA"
    )
    np.testing.assert_array_equal(
      sheet[:SIZE, :SIZE], r["image"][first][0, ..., 0]
    )

  @pytest.mark.slow
  def test_report_command_prints_counts_and_writes_the_sheet(self):
    g = self.config.input.glyphs
    sheet = self.root / "sheet.png"
    fonts = tuple(g.font_files)
    result = tiny_run.run_command(
      [
        sys.executable,
        "-m",
        "research.glyph_report",
        "--config=configs/glyphs.py",
        # A fresh folder: the command builds the dataset, and its JSON must
        # still be all of stdout.
        f"--config.input.data_dir={self.root / 'data_cli'}",
        f"--config.input.glyphs.font_files={fonts!r}",
        f"--config.input.glyphs.first_code_point={FIRST}",
        f"--config.input.glyphs.last_code_point={LAST}",
        "--config.input.glyphs.min_faces=3",
        "--config.input.glyphs.num_classes=20",
        "--config.input.glyphs.probe_stride=1",
        "--config.input.glyphs.min_common_probes=3",
        f"--sheet={sheet}",
        "--sheet_classes=4",
      ]
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    stats = json.loads(result.stdout)
    # The same four fonts (one a byte copy): 4 files and faces, 3 groups.
    self.assertEqual((stats["font_files"], stats["faces"]), (4, 4))
    self.assertEqual(stats["face_groups"], 3)
    self.assertEqual(stats["test"]["images"], 30)
    with Image.open(sheet) as png:
      self.assertEqual(png.size, (4 * SIZE, 3 * SIZE))

  def test_rebuild_gives_identical_records(self):
    config = make_config(str(self.root / "data2"), self.fonts)
    pipeline.prepare_dataset(config.input)
    again = read_all(config)
    for split in ("train", "test"):
      for key, value in self.records[split].items():
        np.testing.assert_array_equal(again[split][key], value, err_msg=key)

  def test_too_many_classes_says_how_many_exist(self):
    config = make_config(str(self.root / "data3"), self.fonts, num_classes=22)
    with self.assertRaisesRegex(ValueError, "Only 20 characters"):
      pipeline.prepare_dataset(config.input)
    self.assertFalse((self.root / "data3").exists())

  def test_missing_font_file_is_a_clear_error(self):
    fonts = dict(self.fonts, a=str(self.root / "nowhere.ttf"))
    with self.assertRaisesRegex(
      glyphs.NoFontsError, "nowhere.ttf.*glyphs-fonts"
    ):
      make_config(str(self.root / "data4"), fonts)
      pipeline.prepare_dataset(
        make_config(str(self.root / "data4"), fonts).input
      )

  def test_train_batches_resume_and_have_the_dataset_shape(self):
    config = self.config.input
    it = pipeline.create_train_iterator(config, seed=1)
    batches = [next(it) for _ in range(5)]
    self.assertEqual(batches[0]["image"].shape, (8, SIZE, SIZE, 1))
    self.assertEqual(pipeline.image_shape(config), (SIZE, SIZE, 1))
    labels = np.concatenate([b["label"] for b in batches])
    self.assertTrue(np.all((labels >= 0) & (labels < 9)))
    resumed = pipeline.create_train_iterator(config, seed=1, start_step=3)
    for want in batches[3:]:
      got = next(resumed)
      np.testing.assert_array_equal(got["image"], want["image"])
      np.testing.assert_array_equal(got["label"], want["label"])


class GlyphAugmentTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    # An asymmetric glyph: a bar on the left, an L foot, squares.
    self.image = np.zeros((SIZE, SIZE, 1), np.float32)
    self.image[6:42, 8:12] = 1.0
    self.image[38:42, 8:36] = 1.0
    self.image[10:16, 20:26] = 1.0
    self.augment = glyphs_config.get_config().input.augment

  def run_augment(self, seed, augment=None, background=0.0):
    return grey_augmentation.glyph_augment(
      tf.constant(self.image),
      tf.constant([7, seed], tf.int64),
      augment or self.augment,
      background,
    ).numpy()

  def test_zero_parameters_are_the_identity(self):
    augment = glyphs_config.get_config().input.augment
    for field in (
      "rotation_deg",
      "shear_deg",
      "scale",
      "translation",
      "stroke",
    ):
      augment[field] = 0.0
    np.testing.assert_allclose(
      self.run_augment(3, augment), self.image, atol=1e-6
    )

  def test_shape_range_and_no_flip(self):
    def centroid_x(image):
      mass = image[..., 0].sum(axis=0)
      return (mass * np.arange(SIZE)).sum() / mass.sum() - (SIZE - 1) / 2

    # The ink leans left by about 8 pixels; a mirror image leans right. The
    # largest shift (6% of 48) and scale (10%) move it by under 4.
    self.assertLess(centroid_x(self.image), -7)
    self.assertGreater(centroid_x(self.image[:, ::-1]), 7)
    outputs = [self.run_augment(seed) for seed in range(20)]
    for out in outputs:
      self.assertEqual(out.shape, self.image.shape)
      self.assertGreaterEqual(out.min(), -1e-6)
      self.assertLessEqual(out.max(), 1 + 1e-6)
      self.assertLess(centroid_x(out), -3)
    # The draws differ between examples and repeat for the same seed.
    self.assertFalse(np.allclose(outputs[0], outputs[1]))
    np.testing.assert_array_equal(self.run_augment(0), outputs[0])

  def test_background_fills_the_borders(self):
    augment = glyphs_config.get_config().input.augment
    augment.translation = 0.3
    image = self.image * 5.0 - 1.0  # Background -1, ink 4.
    self.image = image
    outs = [self.run_augment(s, augment, background=-1.0) for s in range(10)]
    for out in outs:
      self.assertGreaterEqual(out.min(), -1.0 - 1e-6)
      self.assertLessEqual(out.max(), 4.0 + 1e-6)
      # Corners are far from the ink: background, not zeros.
      np.testing.assert_allclose(out[0, -1], -1.0, atol=1e-6)

  def test_stroke_jitter_stays_between_erosion_and_dilation(self):
    augment = glyphs_config.get_config().input.augment
    for field in ("rotation_deg", "shear_deg", "scale", "translation"):
      augment[field] = 0.0
    augment.stroke = 0.9
    padded = np.pad(self.image[..., 0], 1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    dilated, eroded = windows.max(axis=(2, 3)), windows.min(axis=(2, 3))
    changed = 0
    for seed in range(10):
      out = self.run_augment(seed, augment)[..., 0]
      self.assertTrue(np.all(out <= dilated + 1e-6))
      self.assertTrue(np.all(out >= eroded - 1e-6))
      changed += not np.allclose(out, self.image[..., 0])
    self.assertGreater(changed, 5)

  def test_bad_augmentation_name_is_rejected(self):
    config = glyphs_config.get_config()
    config.unlock()
    config.input.augmentation = "flip"
    ds = tf.data.Dataset.from_tensors({"image": tf.zeros((4, 4, 1))})
    with self.assertRaisesRegex(ValueError, "input.augmentation='flip'"):
      grey_augmentation.augment_training_images(
        ds, config.input, background=0.0, seed=0, first_example=0, rows=(1, 1)
      )


if __name__ == "__main__":
  absltest.main()
