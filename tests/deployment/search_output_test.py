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
"""What ``search`` prints and records: escaped names, the k it used.

A gallery of four generated images, two with names that hold a newline and
an escape sequence, is indexed in-process with the shared tiny run's model;
``search`` runs as a command. On the terminal every name shows as text
(its control characters escaped); the JSON keeps the exact names. A ``--k``
above the gallery's size is warned about and the k used is recorded.
"""

import json
import pathlib
import shutil
import sys
import tempfile

import numpy as np
import pytest
from absl.testing import absltest
from PIL import Image

from proxy_nca_jax import terminal
from proxy_nca_jax.data import image_files
from proxy_nca_jax.deployment import embedder, gallery, neighbours
from tests.testing import fake_fashion_mnist, tiny_run

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow

NAMES = ("plain.png", "two\nlines.png", "red\x1b[31m.png", "tab\there.png")


class PrintableTest(absltest.TestCase):
  def test_control_and_format_characters_are_escaped(self):
    cases = {
      "plain name.png": "plain name.png",
      "a\nb": "a\\nb",
      "\x1b[2J": "\\x1b[2J",
      "tab\t": "tab\\t",
      "zero\u200bwidth": "zero\\u200bwidth",
      "café": "café",
    }
    for text, shown in cases.items():
      with self.subTest(repr(text)):
        self.assertEqual(terminal.printable(text), shown)

  def test_newlines_kept_on_request(self):
    self.assertEqual(
      terminal.printable("one\x07\ntwo", keep_newlines=True), "one\\x07\ntwo"
    )


class SearchOutputTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = pathlib.Path(tempfile.mkdtemp())
    workdir, _, _ = tiny_run.shared_run()
    images = cls.root / "images"
    images.mkdir()
    labels = np.array([5, 6, 7, 8])
    pixels = fake_fashion_mnist.class_images(labels, seed=3)
    for name, image in zip(NAMES, pixels, strict=True):
      Image.fromarray(image).save(images / name, format="PNG")
    embed, spec = embedder.from_workdir(str(workdir))
    gallery.build(
      embed,
      spec,
      {"workdir": str(workdir)},
      str(images),
      str(cls.root / "gallery"),
      log=lambda line: None,
    )
    cls.out = cls.root / "found.json"
    cls.search = tiny_run.run_command(
      [sys.executable, "-m", "proxy_nca_jax.search"]
      + [f"--gallery={cls.root / 'gallery'}", f"--query={images}"]
      + [f"--out={cls.out}", "--grid=", "--k=10"]
    )

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root)
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    self.assertEqual(self.search.returncode, 0, self.search.stderr[-3000:])

  def test_names_are_escaped_on_the_terminal(self):
    printed = self.search.stdout
    self.assertNotIn("\x1b", printed)
    self.assertNotIn("\t", printed)
    for shown in ("two\\nlines.png", "red\\x1b[31m.png", "tab\\there.png"):
      self.assertIn(shown, printed)
    # One header line per query, four neighbours each: no forged lines.
    self.assertLen(printed.strip().splitlines(), 4 * (1 + 4) + 1)

  def test_json_keeps_the_exact_names(self):
    record = json.loads(self.out.read_text())
    files = {n["file"] for q in record["queries"] for n in q["neighbours"]}
    self.assertEqual(files, set(NAMES))

  def test_k_above_the_gallery_is_warned_about_and_recorded(self):
    record = json.loads(self.out.read_text())
    self.assertEqual(record["k"], 4)
    self.assertEqual(record["k_requested"], 10)
    self.assertTrue(
      all(len(q["neighbours"]) == 4 for q in record["queries"]), record
    )
    self.assertIn(
      "--k=10 is more than the gallery's 4 images: each query gets all 4.",
      self.search.stderr,
    )


class PixelLimitTest(absltest.TestCase):
  """--max_image_pixels reaches the decoding of index and search."""

  def test_larger_images_are_refused_by_index_and_search(self):
    root = pathlib.Path(tempfile.mkdtemp())
    self.addCleanup(shutil.rmtree, root)
    workdir, _, _ = tiny_run.shared_run()
    embed, spec = embedder.from_workdir(str(workdir))
    pixels = fake_fashion_mnist.class_images(np.array([5, 6, 7]), seed=4)
    images = root / "images"
    images.mkdir()
    for i, image in enumerate(pixels[:2]):
      Image.fromarray(image).save(images / f"small{i}.png")
    big = np.kron(pixels[2], np.ones((2, 2), np.uint8))  # 56 x 56 = 3,136.
    Image.fromarray(big).save(images / "big.png")

    def index(**options) -> gallery.Gallery:
      return gallery.build(
        embed,
        spec,
        {"workdir": str(workdir)},
        str(images),
        str(root / "gallery"),
        log=lambda line: None,
        **options,
      )

    # 28 x 28 = 784 pixels pass.
    done = index(skip_bad_files=True, max_image_pixels=1000)
    self.assertEqual(done.files, ["small0.png", "small1.png"])
    [skipped] = done.record["skipped"]
    self.assertEqual(skipped["file"], "big.png")
    self.assertIn("more than the limit of 1,000", skipped["reason"])
    with self.assertRaisesRegex(
      image_files.BadImagesError, "more than the limit of 1,000"
    ):
      neighbours.search(
        done, embed, spec, str(images / "big.png"), 1, max_image_pixels=1000
      )
    # Indexed again under the default limit, the skipped image is tried
    # again and embedded.
    again = index()
    self.assertEqual(again.files, ["big.png", "small0.png", "small1.png"])
    self.assertEqual(again.record["skipped"], [])


if __name__ == "__main__":
  absltest.main()
