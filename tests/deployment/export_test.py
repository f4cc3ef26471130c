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
"""``python -m proxy_nca_jax.export``: the exported embedder equals the run.

The shared tiny FMNIST-ZS run is exported by the command (both formats).
Its test split is embedded by the evaluation path (tfds pipeline, network
in inference mode); the same images, as uint8 pixels recovered with
Fashion-MNIST's published statistics, go through the exported file loaded
by examples/embed_with_exported_model.py in a process that never imports
this package, and through the SavedModel in TensorFlow. All three must
agree within 1e-5. The file is verified on load: edited by hand, carrying
another model's function (the run's step-3 export), misdescribed by its
spec or lacking its digest, it is refused; it respects the umask.
"""

import hashlib
import json
import os
import pathlib
import stat
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import absltest

from proxy_nca_jax import errors, parallel
from proxy_nca_jax.deployment import embedder, exported_model
from tests.testing import tiny_run

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow

FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530
EXAMPLE = tiny_run.REPO / "examples" / "embed_with_exported_model.py"
# Runs the example (argv: EXAMPLE MODEL, then IMAGES OUT pairs), once per
# pair as its command line would, in one interpreter (one JAX start-up),
# and says whether it imported this package.
_RUN_EXAMPLE = (
  "import runpy, sys\n"
  "example, model, *files = sys.argv[1:]\n"
  "for images, out in zip(files[::2], files[1::2], strict=True):\n"
  "  sys.argv = [example, model, images, out]\n"
  "  runpy.run_path(example, run_name='__main__')\n"
  "print('imported proxy_nca_jax:', 'proxy_nca_jax' in sys.modules)"
)


def _export(*flags: str) -> subprocess.CompletedProcess:
  return tiny_run.run_command(
    [sys.executable, "-m", "proxy_nca_jax.export", *flags]
  )


def _rewrite(source: pathlib.Path, target: pathlib.Path, **entries) -> None:
  """``target``: ``source``'s entries, those given replaced (None: left
  out)."""
  with np.load(source) as contents:
    kept = {name: contents[name] for name in contents.files}
  kept.update(entries)
  np.savez(target, **{k: v for k, v in kept.items() if v is not None})


class ExportTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.root = pathlib.Path(cls._tmp.name)
    cls.workdir, cls.config, _ = tiny_run.shared_run()
    embedded = tiny_run.embed_test_split(
      cls.workdir,
      parallel.create_mesh(jax.devices()[:1]),
      keep_images=True,
    )
    cls.embeddings = embedded.embeddings
    pixels = (embedded.images * FMNIST_STD + FMNIST_MEAN) * 255.0
    cls.pixels = np.rint(pixels).astype(np.uint8)
    # The recovered pixels are the dataset's (integers, exactly).
    np.testing.assert_allclose(pixels, cls.pixels, atol=1e-3)
    cls.model = cls.root / "model.npz"
    cls.export_run = _export(f"--workdir={cls.workdir}", f"--out={cls.model}")
    # Another model of the same run (the step-3 checkpoint), made with a
    # umask that leaves group read: the file respects it.
    cls.other = cls.root / "other.npz"
    umask = os.umask(0o027)
    try:
      exported_model.save(
        *embedder.from_workdir(str(cls.workdir), step=3), str(cls.other)
      )
    finally:
      os.umask(umask)

  def exported_spec(self) -> dict:
    """The spec of the export (after checking the command ran)."""
    self.assertEqual(self.export_run.returncode, 0, self.export_run.stderr)
    with np.load(self.model) as contents:
      return json.loads(str(contents["spec"]))

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()

  def test_command_reports_what_it_wrote(self):
    run = self.export_run
    self.assertEqual(run.returncode, 0, run.stderr)
    self.assertIn(
      f"wrote {self.model}: uint8 images (batch, 28, 28, 1) -> 8-d unit "
      "embeddings; convnet_s 8-d, step 6",
      run.stdout,
    )

  def test_jax_only_load_equals_evaluation_path_at_any_batch_size(self):
    self.assertEqual(self.export_run.returncode, 0, self.export_run.stderr)
    counts = (1, 7, len(self.pixels))
    files = []
    for count in counts:
      images, out = self.root / f"in{count}.npy", self.root / f"out{count}.npy"
      np.save(images, self.pixels[:count])
      files += [str(images), str(out)]
    run = subprocess.run(
      [sys.executable, "-c", _RUN_EXAMPLE, str(EXAMPLE), str(self.model)]
      + files,
      cwd=self.root,
      env=tiny_run.subprocess_env(),
      capture_output=True,
      text=True,
      timeout=300,
    )
    self.assertEqual(run.returncode, 0, run.stderr)
    self.assertIn("imported proxy_nca_jax: False", run.stdout)
    for count in counts:
      self.assertIn(f"{count} images -> ({count}, 8) embeddings", run.stdout)
      np.testing.assert_allclose(
        np.load(self.root / f"out{count}.npy"),
        self.embeddings[:count],
        rtol=0,
        atol=1e-5,
      )

  def test_file_records_what_a_user_needs(self):
    with np.load(self.model) as contents:
      spec = json.loads(str(contents["spec"]))
    self.assertEqual(spec["input_shape"], [28, 28, 1])
    self.assertEqual(spec["input_dtype"], "uint8")
    self.assertEqual(spec["embedding_dim"], 8)
    self.assertEqual(spec["jax_version"], jax.__version__)
    self.assertEqual(spec["step"], 6)
    self.assertEqual(spec["config_signature"]["model"], "convnet_s")
    self.assertEqual(spec["config_signature"]["embedding_dim"], 8)
    self.assertLen(spec["weights"], 16)

  def test_saved_model_equals_evaluation_path(self):
    folder = self.root / "saved_model"
    run = _export(
      f"--workdir={self.workdir}", f"--out={folder}", "--format=saved_model"
    )
    self.assertEqual(run.returncode, 0, run.stderr)
    serving = tf.saved_model.load(str(folder)).signatures["serving_default"]
    out = serving(images=tf.constant(self.pixels[:5]))["embeddings"].numpy()
    np.testing.assert_allclose(out, self.embeddings[:5], rtol=0, atol=1e-5)

  def test_bad_flags_get_one_line(self):
    run = _export(f"--workdir={self.workdir}", f"--out={self.root}/m.bin")
    self.assertEqual(run.returncode, 1)
    self.assertEqual(
      run.stderr.strip().splitlines()[-1],
      f"error: --out={self.root}/m.bin must name a .npz file.",
    )
    run = _export(f"--workdir={self.root}/none", f"--out={self.root}/m.npz")
    self.assertEqual(run.returncode, 1)
    self.assertIn("is not the workdir of a training run", run.stderr)
    self.assertNotIn("Traceback", run.stderr)

  def test_the_export_loads(self):
    embed, spec = exported_model.load(str(self.model))
    self.assertEqual(spec.weights, self.exported_spec()["weights"])
    images = np.zeros((2, 28, 28, 1), np.uint8)
    self.assertEqual(np.asarray(embed(images)).shape, (2, 8))

  def test_file_respects_the_umask(self):
    self.exported_spec()
    self.assertEqual(stat.S_IMODE(os.stat(self.other).st_mode), 0o640)

  def test_spec_edited_by_hand_is_refused(self):
    edited = self.root / "edited.npz"
    spec = {**self.exported_spec(), "weights": "0123456789abcdef"}
    _rewrite(self.model, edited, spec=np.array(json.dumps(spec)))
    with self.assertRaisesRegex(
      errors.InvalidInputError, "was changed after it was exported"
    ):
      exported_model.load(str(edited))

  def test_another_models_function_under_this_spec_is_refused(self):
    self.exported_spec()
    swapped = self.root / "swapped.npz"
    with np.load(self.other) as contents:
      other_function = contents["exported"]
    _rewrite(self.model, swapped, exported=other_function)
    with self.assertRaisesRegex(
      errors.InvalidInputError, "was changed after it was exported"
    ):
      exported_model.load(str(swapped))

  def test_spec_that_misdescribes_its_function_is_refused(self):
    # A consistent digest over a wrong spec: only the signature check
    # can tell, before any image is embedded.
    for field, value in (("embedding_dim", 16), ("input_shape", [32, 32, 1])):
      wrong = self.root / f"wrong_{field}.npz"
      spec_json = json.dumps({**self.exported_spec(), field: value})
      with np.load(self.model) as contents:
        serialized = contents["exported"].tobytes()
      digest = hashlib.sha256(serialized + b"\0" + spec_json.encode())
      _rewrite(
        self.model,
        wrong,
        spec=np.array(spec_json),
        sha256=np.array(digest.hexdigest()),
      )
      with (
        self.subTest(field),
        self.assertRaisesRegex(errors.InvalidInputError, "its function takes"),
      ):
        exported_model.load(str(wrong))

  def test_file_without_its_digest_is_refused(self):
    self.exported_spec()
    older = self.root / "older.npz"
    _rewrite(self.model, older, sha256=None)
    with self.assertRaisesRegex(errors.InvalidInputError, "export the run"):
      exported_model.load(str(older))

  def test_jax_only_example_refuses_an_edited_file(self):
    edited = self.root / "edited_for_example.npz"
    spec = {**self.exported_spec(), "embedding_dim": 8, "step": 99}
    _rewrite(self.model, edited, spec=np.array(json.dumps(spec)))
    images = self.root / "images.npy"
    np.save(images, np.zeros((1, 28, 28, 1), np.uint8))
    run = subprocess.run(
      [sys.executable, str(EXAMPLE), str(edited), str(images)]
      + [str(self.root / "out.npy")],
      env=tiny_run.subprocess_env(),
      capture_output=True,
      text=True,
      timeout=300,
    )
    self.assertNotEqual(run.returncode, 0)
    self.assertIn("was changed after it was exported", run.stderr)


if __name__ == "__main__":
  absltest.main()
