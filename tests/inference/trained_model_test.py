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
"""A trained model is its config and its weights (inference/trained_model.py).

The loader's network variables must equal those of a full restore of the
train state (orbax, with the optimiser: the independent reference), with or
without the ``model.json`` that training writes; files that disagree are
refused. End to end: a run trained on an image folder exports, indexes and
searches after the folder has moved, through the commands.
"""

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest
from absl.testing import absltest
from PIL import Image

from proxy_nca_jax import errors
from proxy_nca_jax.deployment import embedder, exported_model
from proxy_nca_jax.inference import trained_model
from tests.testing import tiny_run


class LoadTest(absltest.TestCase):
  def temporary_folder(self) -> pathlib.Path:
    folder = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, folder)
    return pathlib.Path(folder)

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir, cls.config, (cls.step, cls.state) = tiny_run.shared_run()

  def copy_of_run(self) -> pathlib.Path:
    copy = self.temporary_folder() / "run"
    shutil.copytree(self.workdir, copy)
    return copy

  def check_equals_full_restore(self, loaded):
    self.assertEqual(loaded.step, self.step)
    self.assertEqual(loaded.num_proxies, tiny_run.NUM_PROXIES)
    self.assertEqual(loaded.input_shape, (28, 28, 1))
    want = {
      "params": self.state.params["model"],
      "batch_stats": self.state.batch_stats,
    }
    jax.tree.map(np.testing.assert_array_equal, loaded.variables, want)

  def test_network_equals_the_full_restore(self):
    self.check_equals_full_restore(trained_model.load(str(self.workdir)))

  def test_training_wrote_the_model_record(self):
    record = json.loads((self.workdir / "model.json").read_text())
    self.assertEqual(record["input_shape"], [28, 28, 1])
    self.assertEqual(record["num_proxies"], tiny_run.NUM_PROXIES)

  def test_older_workdir_without_model_record(self):
    run = self.copy_of_run()
    (run / "model.json").unlink()
    self.check_equals_full_restore(trained_model.load(str(run)))

  def test_needs_no_dataset(self):
    run = self.copy_of_run()
    config = json.loads((run / "config.json").read_text())
    config["input"]["data_dir"] = str(run / "no_such_folder")
    config["input"]["manual_dir"] = str(run / "no_such_folder")
    (run / "config.json").write_text(json.dumps(config))
    self.check_equals_full_restore(trained_model.load(str(run)))

  def test_earlier_step(self):
    loaded = trained_model.load(str(self.workdir), step=3)
    self.assertEqual(loaded.step, 3)
    with self.assertRaisesRegex(errors.MissingFileError, "at step 4"):
      trained_model.load(str(self.workdir), step=4)

  def test_edited_model_record_is_refused(self):
    run = self.copy_of_run()
    record = json.loads((run / "model.json").read_text())
    record["num_proxies"] = 7
    (run / "model.json").write_text(json.dumps(record))
    with self.assertRaisesRegex(errors.InvalidInputError, "7 proxies"):
      trained_model.load(str(run))

  def test_edited_config_is_refused(self):
    for field, value in (("embedding_dim", 16), ("pooling", "max")):
      run = self.copy_of_run()
      config = json.loads((run / "config.json").read_text())
      config["model"][field] = value
      (run / "config.json").write_text(json.dumps(config))
      with self.subTest(field), self.assertRaises(errors.InvalidInputError):
        trained_model.load(str(run))

  def test_config_cut_short_is_refused(self):
    run = self.copy_of_run()
    text = (run / "config.json").read_text()
    (run / "config.json").write_text(text[: len(text) // 2])
    with self.assertRaisesRegex(errors.InvalidInputError, "is not the JSON"):
      trained_model.load(str(run))

  def test_missing_files(self):
    empty = self.temporary_folder()
    with self.assertRaisesRegex(errors.MissingFileError, "not the workdir"):
      trained_model.load(str(empty))
    run = self.copy_of_run()
    shutil.rmtree(run / "checkpoints")
    with self.assertRaisesRegex(errors.MissingFileError, "No checkpoint"):
      trained_model.load(str(run))
    self.assertFalse((run / "checkpoints").exists())


def _write_image_folder(root: pathlib.Path) -> None:
  """4 classes of 6 colour images, 16 x 16: a mean colour per class."""
  rng = np.random.default_rng(0)
  for label in range(4):
    colour = rng.integers(40, 216, 3)
    (root / f"class_{label}").mkdir(parents=True)
    for i in range(6):
      noise = rng.integers(-30, 31, (16, 16, 3))
      pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
      Image.fromarray(pixels).save(root / f"class_{label}" / f"{i}.png")


def _command(*argv: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", *argv],
    cwd=tiny_run.REPO,
    env=tiny_run.subprocess_env(),
    capture_output=True,
    text=True,
    timeout=600,
  )


@pytest.mark.slow
class MovedImageFolderTest(absltest.TestCase):
  def test_exports_indexes_and_searches_after_the_folder_moved(self):
    tmp = pathlib.Path(tempfile.mkdtemp())
    self.addCleanup(shutil.rmtree, tmp)
    images, workdir = tmp / "digits", tmp / "run"
    _write_image_folder(images)
    overrides = {
      "input.image_folder": images,
      "input.data_dir": tmp / "tfds",
      "input.batch_size": 8,
      "input.eval_batch_size": 8,
      "schedule.num_steps": 4,
      "evals.every_steps": 0,
      "evals.at_step_zero": False,
      "report.at_end": False,
    }
    trained = _command(
      "proxy_nca_jax.train",
      "--config=configs/image_folder.py",
      f"--workdir={workdir}",
      "--num_cpu_devices=1",
      *(f"--config.{k}={v}" for k, v in overrides.items()),
    )
    self.assertEqual(trained.returncode, 0, trained.stderr[-3000:])
    # In-process before the move (where the old loading path also worked).
    before = tmp / "before.npz"
    exported_model.save(*embedder.from_workdir(str(workdir)), str(before))

    moved = tmp / "moved"
    images.rename(moved)
    after = tmp / "after.npz"
    exported = _command(
      "proxy_nca_jax.export", f"--workdir={workdir}", f"--out={after}"
    )
    self.assertEqual(exported.returncode, 0, exported.stderr[-3000:])
    # The same network: the same weights and the same embeddings.
    (old_embed, old_spec), (new_embed, new_spec) = (
      exported_model.load(str(before)),
      exported_model.load(str(after)),
    )
    self.assertEqual(old_spec.weights, new_spec.weights)
    pixels = np.random.default_rng(1).integers(
      0, 256, (5, *new_spec.input_shape), np.uint8
    )
    np.testing.assert_array_equal(old_embed(pixels), new_embed(pixels))

    gallery = tmp / "gallery"
    indexed = _command(
      "proxy_nca_jax.index",
      f"--workdir={workdir}",
      f"--images={moved}",
      f"--out={gallery}",
    )
    self.assertEqual(indexed.returncode, 0, indexed.stderr[-3000:])
    dim = json.loads((workdir / "config.json").read_text())["model"][
      "embedding_dim"
    ]
    self.assertIn(f"24 images x {dim}-d, 4 classes", indexed.stdout)
    query = moved / "class_2" / "3.png"
    found = _command(
      "proxy_nca_jax.search",
      f"--gallery={gallery}",
      f"--query={query}",
      f"--out={tmp / 'found.json'}",
      f"--grid={tmp / 'found.png'}",
      "--k=3",
    )
    self.assertEqual(found.returncode, 0, found.stderr[-3000:])
    results = json.loads((tmp / "found.json").read_text())["queries"]
    # The query is in the gallery: its own file is its nearest neighbour.
    first = results[0]["neighbours"][0]
    self.assertEqual(first["file"], "class_2/3.png")
    self.assertAlmostEqual(first["similarity"], 1.0, places=5)


if __name__ == "__main__":
  absltest.main()
