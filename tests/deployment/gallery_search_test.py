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
"""``index`` and ``search``: galleries that resume and update, exact search.

End to end (the shared tiny FMNIST-ZS run): export -> index of a folder of
generated images with the exported model -> search -> JSON and PNG, and a
gallery image queried against the gallery finds itself first. In-process:
an index interrupted mid-way resumes to the same gallery as one made in one
go, a rebuild embeds only new or changed files and drops removed ones, bad
files are named or skipped, class labels come from folders, and another
model's gallery is refused naming both models.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest
from absl.testing import absltest
from matplotlib import image as mpimg
from PIL import Image

from proxy_nca_jax.data import image_files
from proxy_nca_jax.deployment import (
  embedder,
  exported_model,
  gallery,
  gallery_files,
  neighbours,
)
from tests.testing import fake_fashion_mnist, tiny_run

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow

CLASSES = ("boot", "coat", "dress")


def _command(name: str, *flags: str):
  return tiny_run.run_command(
    [sys.executable, "-m", f"proxy_nca_jax.{name}", *flags]
  )


def write_images(folder: pathlib.Path, per_class: int, seed: int) -> None:
  """per_class 28 x 28 PNGs in each of three class folders."""
  labels = np.repeat(np.arange(len(CLASSES)) + 5, per_class)
  pixels = fake_fashion_mnist.class_images(labels, seed=seed)
  for i, (label, image) in enumerate(zip(labels, pixels, strict=True)):
    path = folder / CLASSES[label - 5] / f"{seed}_{i:03d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


class _Counting:
  """The embedder, counting the images it is given; raises after a budget."""

  def __init__(self, embed, fail_after_calls: int | None = None):
    self.embed, self.calls, self.fail_after = jax.jit(embed), 0, None
    self.fail_after = fail_after_calls

  def __call__(self, images):
    if self.fail_after is not None and self.calls >= self.fail_after:
      raise KeyboardInterrupt("interrupted")
    self.calls += 1
    return self.embed(images)


class GallerySearchTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.root = pathlib.Path(cls._tmp.name)
    cls.workdir, _, _ = tiny_run.shared_run()
    embed, cls.spec = embedder.from_workdir(str(cls.workdir))
    cls.embed = staticmethod(embed)  # A plain function, not a method.
    cls.images = cls.root / "images"
    write_images(cls.images, per_class=6, seed=1)

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()

  def build(self, folder, out, embed=None, **kwargs):
    return gallery.build(
      embed or _Counting(self.embed),
      self.spec,
      {"workdir": str(self.workdir)},
      str(folder),
      str(out),
      batch_size=4,
      log=lambda line: None,
      **kwargs,
    )

  def test_export_index_search_end_to_end(self):
    model, out = self.root / "e2e.npz", self.root / "e2e_gallery"
    run = _command("export", f"--workdir={self.workdir}", f"--out={model}")
    self.assertEqual(run.returncode, 0, run.stderr)
    run = _command(
      "index", f"--model={model}", f"--images={self.images}", f"--out={out}"
    )
    self.assertEqual(run.returncode, 0, run.stderr)
    self.assertIn("18 images x 8-d, 3 classes", run.stdout)
    self.assertIn("embedded 18/18 images", run.stderr)
    query = self.images / "coat" / "1_007.png"
    results, grid = self.root / "found.json", self.root / "found.png"
    run = _command(
      "search",
      f"--gallery={out}",
      f"--query={query}",
      "--k=5",
      f"--out={results}",
      f"--grid={grid}",
    )
    self.assertEqual(run.returncode, 0, run.stderr)
    with open(results) as f:
      found = json.load(f)["queries"]
    self.assertLen(found, 1)
    self.assertEqual(found[0]["class"], "coat")
    first = found[0]["neighbours"][0]
    self.assertEqual(first["file"], "coat/1_007.png")
    self.assertAlmostEqual(first["similarity"], 1.0, places=5)
    self.assertLen(found[0]["neighbours"], 5)
    self.assertIn("    1. 1.0000  coat/1_007.png  [coat]", run.stdout)
    png = mpimg.imread(grid)
    self.assertEqual(png.ndim, 3)
    self.assertGreater(png.shape[1], png.shape[0])  # 1 row of 6 cells.

  def test_search_matches_brute_force_on_the_gallery(self):
    built = self.build(self.images, self.root / "brute")
    results = neighbours.search(
      built, jax.jit(self.embed), self.spec, str(self.images), k=18
    )
    embeddings = np.asarray(built.embeddings, np.float64)
    for i, result in enumerate(results):
      self.assertEqual(result["query"], str(self.images / built.files[i]))
      self.assertEqual(result["class"], CLASSES[built.labels[i]])
      # Each query is a gallery image: itself first; then the rest by
      # float64 similarity (ties are not expected among distinct images).
      rows = [item["index"] for item in result["neighbours"]]
      self.assertEqual(rows[0], i)
      sims = embeddings @ embeddings[i]
      want = np.argsort(-sims, kind="stable")
      want = [i] + [r for r in want if r != i]
      self.assertEqual(rows, want)

  def test_query_of_another_size_and_mode_is_prepared_as_the_gallery(self):
    built = self.build(self.images, self.root / "sizes")
    with Image.open(self.images / "dress" / "1_013.png") as image:
      big = image.convert("RGB").resize((56, 56), Image.Resampling.NEAREST)
    query = self.root / "big_dress.png"
    big.save(query)
    results = neighbours.search(
      built, jax.jit(self.embed), self.spec, str(query), k=18
    )
    # Reference preparation: grey, then resized (the aspect ratio is the
    # input's, so nothing is cropped).
    reference = big.convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    pixels = np.zeros((4, 28, 28, 1), np.uint8)
    pixels[0, ..., 0] = np.asarray(reference)
    want = np.asarray(jax.jit(self.embed)(pixels))[0].astype(np.float64)
    sims = np.asarray(built.embeddings, np.float64) @ want
    got = results[0]["neighbours"]
    self.assertEqual([n["index"] for n in got], list(np.argsort(-sims)))
    np.testing.assert_allclose(
      [n["similarity"] for n in got], np.sort(sims)[::-1], rtol=0, atol=1e-5
    )

  def test_interrupted_index_resumes_to_the_same_gallery(self):
    whole = self.build(self.images, self.root / "whole")
    out = self.root / "resumed"
    interrupted = _Counting(self.embed, fail_after_calls=3)
    with self.assertRaises(KeyboardInterrupt):
      self.build(self.images, out, interrupted, part_size=4)
    # Three parts of 4 files were written before the fourth call failed.
    parts = sorted(os.listdir(out / gallery_files.PROGRESS))
    self.assertEqual(
      parts, ["part-000000.npz", "part-000001.npz", "part-000002.npz"]
    )
    with self.assertRaisesRegex(FileNotFoundError, "run the same index"):
      gallery.load(str(out))
    resumed = _Counting(self.embed)
    done = self.build(self.images, out, resumed, part_size=4)
    self.assertEqual(resumed.calls, 2)  # 6 files left, batches of 4.
    self.assertEqual(done.files, whole.files)
    np.testing.assert_array_equal(done.embeddings, whole.embeddings)
    self.assertFalse((out / gallery_files.PROGRESS).exists())

  def test_rebuild_embeds_only_new_and_changed_files(self):
    folder = self.root / "growing"
    shutil.copytree(self.images, folder)
    out = self.root / "growing_gallery"
    self.build(folder, out)
    os.remove(folder / "boot" / "1_000.png")
    write_images(folder, per_class=1, seed=2)  # 3 new files.
    changed = folder / "coat" / "1_006.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(changed)
    again = _Counting(self.embed)
    updated = self.build(folder, out, again)
    self.assertEqual(again.calls, 1)  # 3 new + 1 changed: one batch of 4.
    fresh = self.build(folder, self.root / "fresh_gallery")
    self.assertEqual(updated.files, fresh.files)
    self.assertNotIn("boot/1_000.png", updated.files)
    # Equal up to the last bits that depend on the other images of a batch
    # (XLA's CPU convolutions): the kept rows come from other batches.
    np.testing.assert_allclose(
      updated.embeddings, fresh.embeddings, rtol=0, atol=1e-6
    )
    np.testing.assert_array_equal(updated.labels, fresh.labels)

  def test_bad_files_are_named_or_skipped(self):
    folder = self.root / "with_bad"
    shutil.copytree(self.images, folder)
    (folder / "coat" / "broken.png").write_bytes(b"not a png")
    with self.assertRaisesRegex(
      image_files.BadImagesError, r"1 of 19 image files .* coat/broken.png"
    ):
      self.build(folder, self.root / "bad_gallery")
    kept = self.build(folder, self.root / "bad_gallery", skip_bad_files=True)
    self.assertLen(kept.files, 18)
    self.assertEqual(
      [s["file"] for s in kept.record["skipped"]], ["coat/broken.png"]
    )

  def test_labels_from_class_folders_only(self):
    built = self.build(self.images, self.root / "labelled")
    self.assertEqual(built.classes, list(CLASSES))
    np.testing.assert_array_equal(built.labels, np.repeat(np.arange(3), 6))
    flat = self.root / "flat"
    flat.mkdir()
    shutil.copy(self.images / "boot" / "1_000.png", flat / "a.png")
    shutil.copy(self.images / "coat" / "1_006.png", flat / "b.png")
    unlabelled = self.build(flat, self.root / "flat_gallery")
    self.assertIsNone(unlabelled.labels)
    self.assertIsNone(unlabelled.classes)

  def test_gallery_of_another_model_is_refused(self):
    out = self.root / "step6_gallery"
    self.build(self.images, out)
    older = self.root / "step3.npz"
    embed, spec = embedder.from_workdir(str(self.workdir), step=3)
    exported_model.save(embed, spec, str(older))
    run = _command(
      "search",
      f"--gallery={out}",
      f"--query={self.images}",
      f"--model={older}",
      f"--out={self.root}/x.json",
    )
    self.assertEqual(run.returncode, 1)
    message = run.stderr.strip().splitlines()[-1]
    self.assertIn(
      f"error: The gallery {out} was made by another model", message
    )
    self.assertIn(f"weights {self.spec.weights}", message)
    self.assertIn(f"weights {spec.weights}", message)
    self.assertNotEqual(spec.weights, self.spec.weights)
    with self.assertRaisesRegex(gallery.ModelMismatchError, "another model"):
      gallery.build(
        jax.jit(embed), spec, {"model": str(older)}, str(self.images), str(out)
      )


class SearchStartTest(absltest.TestCase):
  def test_search_loads_matplotlib_only_to_draw(self):
    # A fresh interpreter: this one has loaded matplotlib already.
    loaded = subprocess.run(
      [
        sys.executable,
        "-c",
        "import sys, proxy_nca_jax.search; print('matplotlib' in sys.modules)",
      ],
      capture_output=True,
      text=True,
      check=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    self.assertEqual(loaded.stdout.strip(), "False", loaded.stderr)


if __name__ == "__main__":
  absltest.main()
