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
"""Tests of ``python -m proxy_nca_jax.evaluate`` and the files it writes.

The tiny run of tests/testing/tiny_run.py (``shared_run``: 6 steps,
evaluations at steps 0, 3 and 6) is trained in-process once; the command then
runs as a subprocess, and its JSON and PNGs are read back with PIL. The grid's
colours are checked on constructed embeddings whose neighbours are known.
"""

import collections
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import ml_collections
import numpy as np
import pytest
from absl.testing import absltest
from PIL import Image

from proxy_nca_jax.evaluation import query_gallery
from proxy_nca_jax.reports import figures, workdir_report
from proxy_nca_jax.training import metric_writer
from tests.testing import figure_colours, references, tiny_run

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow


def _command(module: str, *flags: str) -> subprocess.CompletedProcess:
  # On 8 devices, as the in-process run that trained and evaluated the
  # checkpoint: the same programs, so the same metrics to the last bit.
  return tiny_run.run_command(
    [sys.executable, "-m", module, *flags], num_devices=8
  )


def _rgb(path: pathlib.Path) -> np.ndarray:
  """(H, W, 3) floats in [0, 1] of a PNG, after checking its mode."""
  with Image.open(path) as image:
    assert image.format == "PNG", image.format
    assert image.mode == "RGBA", image.mode
    return np.asarray(image.convert("RGB"), np.float64) / 255.0


class EvaluateCommandTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir, _, _ = tiny_run.shared_run()
    cls.root = cls.workdir.parent
    cls.records = metric_writer.read_metrics(str(cls.workdir))
    cls.result = _command("proxy_nca_jax.evaluate", f"--workdir={cls.workdir}")

  def test_writes_metrics_json_of_the_latest_checkpoint(self):
    self.assertEqual(self.result.returncode, 0, self.result.stderr)
    with open(self.workdir / "metrics_test.json") as f:
      saved = json.load(f)
    self.assertEqual(saved["step"], 6)
    self.assertEqual(saved["split"], "test")
    # 5 test classes x (12 + 4) generated images.
    self.assertEqual(saved["num_examples"], 80)
    self.assertEqual(set(saved["metrics"]), set(tiny_run.EVAL_METRICS))
    # The trainer evaluated the same state at its last step, with the same
    # embedding and evaluation programs on as many devices.
    final = [r for r in self.records if r["step"] == 6]
    logged = {k[5:]: v for r in final for k, v in r.items() if "test/" in k}
    self.assertEqual(set(logged), set(tiny_run.EVAL_METRICS))
    for key, value in logged.items():
      self.assertEqual(saved["metrics"][key], value, msg=key)
    self.assertIn("map@r", self.result.stdout)

  def copy_of_run(self) -> pathlib.Path:
    """A copy of the shared run's workdir, removed after the test."""
    workdir = pathlib.Path(tempfile.mkdtemp()) / "run"
    self.addCleanup(shutil.rmtree, workdir.parent)
    shutil.copytree(self.workdir, workdir)
    return workdir

  def assert_metrics_match_reference(self, metrics, embeddings, labels, q, g):
    """The saved metrics are the float64 reference's of rows ``q`` against
    rows ``g`` of the embedded split, up to the order of items that float32
    cannot tell apart.

    The barely trained network's similarities are all near 1, and some
    items are 1 ulp apart: one CPU's float32 dot ties them, another's
    orders them (a Zen 5 machine moved MAP@R by 0.0005 that way). The
    reference bounds what any float32 engine may report; it must still pin
    every metric to within 0.01.
    """
    lowest, highest = references.query_gallery_metric_bounds(
      embeddings, labels, q, g, (1, 2, 4, 8)
    )
    for key in lowest:
      self.assertBetween(
        metrics[key], lowest[key] - 1e-9, highest[key] + 1e-9, msg=key
      )
      self.assertLess(highest[key] - lowest[key], 0.01, msg=key)

  def test_query_gallery_protocol_is_applied_and_recorded(self):
    workdir = self.copy_of_run()
    result = workdir_report.evaluate_workdir(
      str(workdir), query_gallery="per_class:2", max_projected=0
    )
    with open(workdir / "metrics_test.json") as f:
      saved = json.load(f)
    self.assertEqual(saved["query_gallery"], "per_class:2")
    self.assertEqual(saved["metrics"], result["metrics"])
    # Queries: the first two of each of the 5 test classes, against the
    # other 70 images, ranked by a float64 reference.
    embedded = tiny_run.embed_test_split(workdir)
    embeddings, labels = embedded.embeddings, embedded.labels
    queries, gallery = query_gallery.first_per_class(labels, 2)
    self.assertLen(queries, 10)
    self.assert_metrics_match_reference(
      saved["metrics"], embeddings, labels, queries, gallery
    )
    with self.assertRaisesRegex(ValueError, "per_class:K"):
      workdir_report.evaluate_workdir(str(workdir), query_gallery="halves")

  def test_split_query_gallery_protocol_matches_a_float64_reference(self):
    # The test classes' t10k images query their train images.
    workdir = self.copy_of_run()
    result = workdir_report.evaluate_workdir(
      str(workdir), query_gallery="splits:test/train", max_projected=0
    )
    embedded = tiny_run.embed_test_split(workdir, with_sources=True)
    embeddings, labels = embedded.embeddings, embedded.labels
    sources = embedded.source_splits
    # 5 test classes x (12 train + 4 test) images.
    self.assertEqual(collections.Counter(sources), {"train": 60, "test": 20})
    queries, gallery = sources == "test", sources == "train"
    self.assert_metrics_match_reference(
      result["metrics"], embeddings, labels, queries, gallery
    )
    with self.assertRaisesRegex(ValueError, "splits are \\['train', 'test'\\]"):
      workdir_report.evaluate_workdir(
        str(workdir), query_gallery="splits:query/gallery"
      )

  def test_writes_and_names_the_four_files(self):
    self.assertEqual(self.result.returncode, 0, self.result.stderr[-3000:])
    names = ("metrics_test.json", "retrieval_test.png", "projection_test.png")
    for name in (*names, "convergence.png"):
      self.assertIn(f"wrote {self.workdir / name}", self.result.stdout)
    for name in ("retrieval_test", "projection_test", "convergence"):
      self.assertGreater(np.std(_rgb(self.workdir / f"{name}.png")), 0.05)

  def test_convergence_has_loss_and_every_evaluation_metric(self):
    keys = workdir_report.convergence_keys(self.records)
    self.assertEqual(
      keys, ["loss", *sorted(f"test/{m}" for m in tiny_run.EVAL_METRICS)]
    )
    # Ten panels, three a row: four rows of 4 x 3 inches at 100 dpi.
    with Image.open(self.workdir / "convergence.png") as png:
      self.assertEqual(png.size, (1200, 1200))

  def test_figure_sizes_and_framed_neighbours(self):
    with Image.open(self.workdir / "retrieval_test.png") as png:
      # 6 queries x (query + 8 neighbours) at 1.1 x 1.2 inches, 100 dpi.
      self.assertEqual(png.size, (990, 720))
    with Image.open(self.workdir / "projection_test.png") as png:
      self.assertEqual(png.size, (600, 500))
    pixels = _rgb(self.workdir / "retrieval_test.png")
    green = figure_colours.colour_pixels(pixels, figures.CORRECT_RGB)
    red = figure_colours.colour_pixels(pixels, figures.WRONG_RGB)
    # 48 framed neighbours, each with a frame of 2 image pixels drawn at
    # about 3 screen pixels per image pixel.
    self.assertGreater(green + red, 48 * 4 * 28 * 3)
    # A barely trained model: both kinds of neighbour are on the grid.
    self.assertGreater(red, 100)
    self.assertGreater(green, 100)

  def test_grid_colours_follow_the_neighbours_classes(self):
    # Class c sits near axis c; items 3k and 3k + 1 of class 0 lean
    # towards class 1, so some neighbours of class-0 queries are wrong.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 12)
    x = np.eye(4)[labels] + 0.05 * rng.normal(size=(48, 4))
    x[:12:3, 1] += 0.9
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    images = rng.random((48, 28, 28, 1))
    path = pathlib.Path(
      self.enterContext(tempfile.TemporaryDirectory()), "grid.png"
    )
    workdir_report.write_retrieval_grid(
      str(path),
      x,
      labels,
      images,
      ml_collections.ConfigDict({"dataset": "fashion_mnist_idx"}),
      num_queries=6,
      seed=3,
    )
    # The same queries and neighbours, found here by brute force.
    queries = np.sort(np.random.default_rng(3).choice(48, 6, replace=False))
    sims = references.similarities(x[queries], x)
    sims[np.arange(6), queries] = -np.inf
    neighbours = np.argsort(-sims, axis=1, kind="stable")[:, :8]
    correct = labels[neighbours] == labels[queries][:, None]
    self.assertBetween(int(correct.sum()), 1, 47)
    pixels = _rgb(path)
    green = figure_colours.colour_pixels(pixels, figures.CORRECT_RGB)
    red = figure_colours.colour_pixels(pixels, figures.WRONG_RGB)
    # Every thumbnail's frame has the same number of pixels: the colours
    # split in the proportion of correct to wrong neighbours.
    np.testing.assert_allclose(green / (green + red), correct.mean(), atol=0.03)

  def test_a_workdir_without_checkpoint_is_left_as_it_was(self):
    root = pathlib.Path(self.enterContext(tempfile.TemporaryDirectory()))
    with self.assertRaisesRegex(FileNotFoundError, "not the workdir"):
      workdir_report.evaluate_workdir(str(root / "nothing_here"))
    bare = root / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(
      (self.workdir / "config.json").read_text()
    )
    with self.assertRaises(FileNotFoundError):
      workdir_report.evaluate_workdir(str(bare))
    self.assertEqual(os.listdir(bare), ["config.json"])

  def test_not_a_workdir_is_one_line_error(self):
    empty = self.root / "empty"
    empty.mkdir(exist_ok=True)
    for workdir in (empty, self.root / "missing"):
      result = _command("proxy_nca_jax.evaluate", f"--workdir={workdir}")
      self.assertEqual(result.returncode, 1)
      lines = result.stderr.strip().splitlines()
      self.assertLen(lines, 1, result.stderr)
      self.assertStartsWith(lines[0], "error: ")
      self.assertIn("is not the workdir of a training run", lines[0])

  def test_split_without_classes_is_one_line_error(self):
    result = _command(
      "proxy_nca_jax.evaluate", f"--workdir={self.workdir}", "--split=val"
    )
    self.assertEqual(result.returncode, 1)
    self.assertIn("error: ", result.stderr)
    self.assertIn(
      "val_classes is empty", result.stderr.strip().splitlines()[-1]
    )


if __name__ == "__main__":
  absltest.main()
