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
"""Tests of the run report and of the scalars a run logs for TensorBoard.

The tiny run of tests/testing/tiny_run.py (``shared_run``: evaluations at
steps 0, 3 and 6) is trained in-process; ``python -m proxy_nca_jax.report``
draws its figures in a subprocess, and the PNGs are opened with PIL. The grid's
colours are checked on constructed embeddings whose neighbours are known;
the TensorBoard event files are read back with TensorFlow's reader and
compared with metrics.jsonl, the config and the checkpoint's proxies.
"""

import os
import pathlib
import sys
import tempfile

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import absltest
from PIL import Image

from proxy_nca_jax.evaluation import figures, report
from proxy_nca_jax.training import metric_writer
from tests.evaluation import figures_test
from tests.testing import references, tiny_run

EVAL_METRICS = (
  "recall@1",
  "recall@2",
  "recall@4",
  "recall@8",
  "precision@1",
  "r_precision",
  "map@r",
  "nmi",
  "ami",
)

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow


def _rgb(path: pathlib.Path) -> np.ndarray:
  """(H, W, 3) floats in [0, 1] of a PNG, after checking its mode."""
  with Image.open(path) as image:
    assert image.format == "PNG", image.format
    assert image.mode == "RGBA", image.mode
    return np.asarray(image.convert("RGB"), np.float64) / 255.0


def _tensorboard_scalars(folder: pathlib.Path) -> dict[str, dict[int, float]]:
  """tag -> {step: value} of every scalar in the event files of a folder."""
  scalars: dict[str, dict[int, float]] = {}
  for path in sorted(folder.glob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        number = float(tf.make_ndarray(value.tensor))
        scalars.setdefault(value.tag, {})[event.step] = number
  return scalars


class RunReportTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir, cls.config, cls.checkpoint = tiny_run.shared_run()
    cls.scalars = _tensorboard_scalars(cls.workdir / "tensorboard")
    cls.records = metric_writer.read_metrics(str(cls.workdir))
    cls.result = tiny_run.run_command(
      [
        sys.executable,
        "-m",
        "proxy_nca_jax.report",
        f"--workdir={cls.workdir}",
        "--max_examples=60",
      ]
    )

  def test_command_writes_the_three_figures(self):
    self.assertEqual(self.result.returncode, 0, self.result.stderr[-3000:])
    for name in ("convergence", "retrieval_grid", "embedding_projection"):
      path = self.workdir / f"{name}.png"
      self.assertIn(f"wrote {path}", self.result.stdout)
      self.assertGreater(np.std(_rgb(path)), 0.05, name)

  def test_convergence_has_loss_and_every_evaluation_metric(self):
    keys = report.convergence_keys(self.records)
    self.assertEqual(keys, ["loss", *sorted(f"test/{m}" for m in EVAL_METRICS)])
    # Ten panels, three a row: four rows of 4 x 3 inches at 100 dpi.
    with Image.open(self.workdir / "convergence.png") as png:
      self.assertEqual(png.size, (1200, 1200))

  def test_figure_sizes_and_framed_neighbours(self):
    with Image.open(self.workdir / "retrieval_grid.png") as png:
      # 6 queries x (query + 8 neighbours) at 1.1 x 1.2 inches, 100 dpi.
      self.assertEqual(png.size, (990, 720))
    with Image.open(self.workdir / "embedding_projection.png") as png:
      self.assertEqual(png.size, (600, 500))
    pixels = _rgb(self.workdir / "retrieval_grid.png")
    frames = figures_test.colour_pixels(pixels, figures.CORRECT_RGB)
    frames += figures_test.colour_pixels(pixels, figures.WRONG_RGB)
    # 48 framed neighbours, each with a frame of 2 image pixels drawn at
    # about 3 screen pixels per image pixel.
    self.assertGreater(frames, 48 * 4 * 28 * 3)

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
    report.write_retrieval_grid(
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
    green = figures_test.colour_pixels(pixels, figures.CORRECT_RGB)
    red = figures_test.colour_pixels(pixels, figures.WRONG_RGB)
    # Every thumbnail's frame has the same number of pixels: the colours
    # split in the proportion of correct to wrong neighbours.
    np.testing.assert_allclose(green / (green + red), correct.mean(), atol=0.03)

  def test_missing_workdir_or_metrics_is_a_clear_error(self):
    root = pathlib.Path(self.enterContext(tempfile.TemporaryDirectory()))
    with self.assertRaisesRegex(FileNotFoundError, "not the workdir"):
      report.write_report(str(root / "nothing_here"))
    bare = root / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(
      (self.workdir / "config.json").read_text()
    )
    with self.assertRaisesRegex(FileNotFoundError, "nothing to plot"):
      report.write_report(str(bare))
    self.assertEqual(os.listdir(bare), ["config.json"])

  def test_every_jsonl_value_is_in_tensorboard(self):
    self.assertNotEmpty(self.records)
    for record in self.records:
      step = record["step"]
      for key, value in record.items():
        if key != "step":
          self.assertIn(step, self.scalars.get(key, {}), key)
          np.testing.assert_allclose(
            self.scalars[key][step], value, rtol=1e-6, err_msg=key
          )

  def test_training_scalars_at_every_logged_step(self):
    expected = {"loss", "grad_norm", "steps_per_sec"}
    expected |= {f"proxy_norm_{s}" for s in ("mean", "min", "max")}
    expected |= {f"lr/{g}" for g in ("backbone", "head", "proxies")}
    for tag in expected:
      self.assertEqual(sorted(self.scalars[tag]), [2, 4, 6], tag)
    for step in (2, 4, 6):
      self.assertTrue(np.isfinite(self.scalars["loss"][step]))
      # Constant schedule: the config's rates and multipliers.
      np.testing.assert_allclose(self.scalars["lr/backbone"][step], 1e-3)
      np.testing.assert_allclose(self.scalars["lr/head"][step], 5e-4)
      np.testing.assert_allclose(self.scalars["lr/proxies"][step], 1e-2)

  def test_proxy_norms_are_those_of_the_checkpointed_proxies(self):
    step, state = self.checkpoint
    self.assertEqual(step, 6)
    norms = np.linalg.norm(
      np.asarray(state.params["proxies"], np.float64), axis=1
    )
    self.assertLen(norms, tiny_run.NUM_PROXIES)
    for name, value in (("mean", norms.mean()), ("min", norms.min())):
      np.testing.assert_allclose(
        self.scalars[f"proxy_norm_{name}"][6], value, rtol=1e-5
      )
    np.testing.assert_allclose(
      self.scalars["proxy_norm_max"][6], norms.max(), rtol=1e-5
    )

  def test_every_evaluation_metric_at_every_evaluation(self):
    for metric in EVAL_METRICS:
      self.assertEqual(sorted(self.scalars[f"test/{metric}"]), [0, 3, 6])


if __name__ == "__main__":
  absltest.main()
