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
"""A gallery is one consistent thing: damage is refused, kills lose nothing.

In-process: each way a gallery's files can disagree (rows and files, an
edited record, a truncated or replaced embeddings file, an older format) is
refused by `gallery.load` with one message naming the file and the command
that rebuilds it, and that command rebuilds it; a second index into a
gallery is refused naming the holder; dangling and looping symbolic links
are named, or skipped with --skip_bad_files; progress is kept every
``part_seconds`` too. As subprocesses: ``index`` killed with SIGKILL at
several steps of its writing (the test hook
``PROXY_NCA_JAX_TEST_KILL_AFTER_WRITES``), including between the new
embeddings file and the new record, leaves the old gallery or the new one
(or, before the first, none), and a re-run finishes the same gallery as an
uninterrupted index. The expected rows are the test's own: each PNG decoded
with Pillow and embedded by the exported model in one batch.
"""

import functools
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest
from absl.testing import absltest
from PIL import Image

from proxy_nca_jax import errors
from proxy_nca_jax.data import image_files
from proxy_nca_jax.deployment import (
  embedder,
  exported_model,
  gallery,
  gallery_files,
)
from tests.deployment import gallery_search_test
from tests.testing import tiny_run

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow

CLASSES = gallery_search_test.CLASSES
BATCH = 4  # Images per call, and files per part: many steps of writing.


@functools.cache
def _exported_model() -> pathlib.Path:
  """The shared tiny run, exported once per test process."""
  workdir, _, _ = tiny_run.shared_run()
  path = pathlib.Path(tempfile.mkdtemp(prefix="gallery_model_")) / "m.npz"
  exported_model.save(*embedder.from_workdir(str(workdir)), str(path))
  return path


class _GalleryTestCase(absltest.TestCase):
  """A folder of 30 images and the exported model, with its own rows."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.root = pathlib.Path(cls._tmp.name)
    cls.model = _exported_model()
    embed, cls.spec = exported_model.load(str(cls.model))
    cls.jitted = staticmethod(jax.jit(embed))  # A function, not a method.
    cls.images = cls.root / "images"
    gallery_search_test.write_images(cls.images, per_class=10, seed=1)

  @classmethod
  def tearDownClass(cls):
    cls._tmp.cleanup()
    super().tearDownClass()

  def expected(self, folder: pathlib.Path) -> dict[str, np.ndarray]:
    """Each PNG under ``folder`` (28 x 28 grey, the model's input size)
    embedded in one batch: file -> float64 row."""
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    names = [name for name in names if name.endswith(".png")]
    pixels = np.stack(
      [np.asarray(Image.open(folder / name))[..., None] for name in names]
    )
    rows = np.asarray(self.jitted(pixels), np.float64)
    return dict(zip(names, rows, strict=True))

  def assert_gallery(self, found: gallery.Gallery, want: dict) -> None:
    """``found`` holds exactly ``want``'s files, in order, with its rows."""
    self.assertEqual(found.files, sorted(want))
    np.testing.assert_allclose(
      found.embeddings, [want[name] for name in found.files], atol=1e-5
    )
    self.assertEqual(found.classes, list(CLASSES))
    np.testing.assert_array_equal(
      found.labels, [CLASSES.index(name.split("/")[0]) for name in found.files]
    )

  @classmethod
  def build(cls, folder, out, **kwargs) -> gallery.Gallery:
    return gallery.build(
      cls.jitted,
      cls.spec,
      {"model": str(cls.model)},
      str(folder),
      str(out),
      batch_size=BATCH,
      part_size=BATCH,
      log=lambda line: None,
      **kwargs,
    )


class GalleryChecksTest(_GalleryTestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.good = cls.root / "good"
    cls.built = cls.build(cls.images, cls.good)

  def damaged_copy(self, name: str) -> tuple[pathlib.Path, pathlib.Path]:
    """(a copy of the good gallery, its embeddings file)."""
    out = self.root / name
    shutil.copytree(self.good, out)
    return out, out / self.built.record["embeddings"]["file"]

  def assert_refused(self, out: pathlib.Path, what: str) -> None:
    """load refuses ``out`` naming ``what`` (a regex) and the rebuild."""
    with self.assertRaises(gallery_files.DamagedGalleryError) as caught:
      gallery.load(str(out))
    model, images, out = map(
      re.escape, map(str, (self.model, self.images, out))
    )
    self.assertRegex(
      str(caught.exception),
      rf"^The gallery {out} is damaged: {what}\. Rebuild it: run python -m "
      rf"proxy_nca_jax\.index --model={model} --images={images} "
      rf"--out={out} again \(or delete {out} and index anew\)\.$",
    )

  def test_the_good_gallery_is_the_expected_one(self):
    self.assert_gallery(
      gallery.load(str(self.good)), self.expected(self.images)
    )
    self.assertEqual(
      sorted(os.listdir(self.good)),
      [self.built.record["embeddings"]["file"], "gallery.json"],
    )
    # Readable by another account, as files open() creates (not mkstemp's
    # 0600): open()'s mode under this process's umask.
    umask = os.umask(0o022)
    os.umask(umask)
    for name in os.listdir(self.good):
      mode = stat.S_IMODE(os.stat(self.good / name).st_mode)
      self.assertEqual(mode, 0o666 & ~umask, name)

  def test_rows_and_files_that_disagree_are_refused(self):
    record = json.loads((self.good / "gallery.json").read_text())
    name = record["embeddings"]["file"]
    for count, removed in ((29, 3), (29, -1)):
      with self.subTest(removed=removed):
        out, _ = self.damaged_copy(f"files_{removed}")
        edited = dict(record, files=list(record["files"]))
        del edited["files"][removed]
        (out / "gallery.json").write_text(json.dumps(edited))
        self.assert_refused(
          out,
          rf"{out}/gallery\.json lists {count} files for the 30 rows of "
          rf"{name}",
        )
    for rows in (29, 31):
      with self.subTest(rows=rows):
        out, embeddings = self.damaged_copy(f"rows_{rows}")
        np.save(embeddings, np.resize(self.built.embeddings, (rows, 8)))
        self.assert_refused(
          out,
          rf"{embeddings} holds {128 + rows * 8 * 4} bytes, gallery\.json "
          rf"records {128 + 30 * 8 * 4} \(truncated or replaced\)",
        )

  def test_edited_record_and_embeddings_are_refused(self):
    out, _ = self.damaged_copy("label")
    record = json.loads((out / "gallery.json").read_text())
    record["labels"][0] = 2
    (out / "gallery.json").write_text(json.dumps(record))
    self.assert_refused(
      out, rf"{out}/gallery\.json does not match its sha256 \(edited\?\)"
    )
    out, embeddings = self.damaged_copy("value")
    changed = np.array(self.built.embeddings)
    changed[0, 0] = -changed[0, 0]
    np.save(embeddings, changed)
    self.assert_refused(
      out, rf"{embeddings} does not match its sha256 in gallery\.json"
    )
    out, embeddings = self.damaged_copy("missing")
    embeddings.unlink()
    self.assert_refused(out, rf"{embeddings} is missing")

  def test_damaged_galleries_are_rebuilt_by_index(self):
    want = self.expected(self.images)
    out, embeddings = self.damaged_copy("truncated")
    embeddings.write_bytes(embeddings.read_bytes()[:500])
    self.assert_refused(
      out,
      rf"{embeddings} holds 500 bytes, gallery\.json records 1088 "
      r"\(truncated or replaced\)",
    )
    with self.assertLogs(level="WARNING") as logs:
      self.assert_gallery(self.build(self.images, out), want)
    self.assertIn(
      f"The gallery {out} is damaged ({embeddings} holds 500 bytes, "
      "gallery.json records 1088 (truncated or replaced)): embedding every "
      "file again.",
      logs.output[0],
    )
    # The older gallery: 29 rows for 30 files, no checksums.
    out = self.root / "format_1"
    out.mkdir()
    np.save(out / "embeddings.npy", self.built.embeddings[:29])
    record = {**self.built.record, "format": 1, "source": {"model": "x"}}
    (out / "gallery.json").write_text(json.dumps(record))
    with self.assertRaisesRegex(
      gallery_files.DamagedGalleryError,
      rf"^The gallery {out} is damaged: {out}/gallery\.json is not of "
      r"format 2 \(an older index wrote it, without checksums\)\. Rebuild "
      rf"it: run python -m proxy_nca_jax\.index --model=x --images=",
    ):
      gallery.load(str(out))
    rebuilt = self.build(self.images, out)
    self.assert_gallery(rebuilt, want)
    self.assertEqual(
      sorted(os.listdir(out)),
      [rebuilt.record["embeddings"]["file"], "gallery.json"],
    )

  def test_a_second_index_is_refused_naming_the_holder(self):
    out, _ = self.damaged_copy("locked")
    before = sorted(os.listdir(out))
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}
    (out / ".lock").write_text(json.dumps(lock))
    with self.assertRaises(errors.InvalidInputError) as caught:
      self.build(self.images, out)
    self.assertEqual(
      str(caught.exception),
      f"Another run (pid {os.getpid()} on host {socket.gethostname()}, "
      f"started now) is indexing into {out}. Wait for it to finish or use "
      f"another --out; if no such run is alive, delete {out}/.lock.",
    )
    self.assertEqual(sorted(os.listdir(out)), sorted([*before, ".lock"]))
    # A killed index's lock (its pid gone) is taken over, then released.
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock["pid"] = dead.pid
    (out / ".lock").write_text(json.dumps(lock))
    self.build(self.images, out)
    self.assertEqual(sorted(os.listdir(out)), before)

  def test_dangling_and_looping_links_are_named_or_skipped(self):
    folder = self.root / "with_links"
    shutil.copytree(self.images, folder)
    (folder / "coat" / "gone.png").symlink_to("nowhere.png")
    (folder / "dress" / "loop.png").symlink_to("loop.png")
    out = self.root / "links_gallery"
    with self.assertRaises(image_files.BadImagesError) as caught:
      self.build(folder, out)
    self.assertEqual(
      str(caught.exception),
      f"2 of 32 image files under {folder} cannot be decoded: coat/gone.png "
      "(dangling symbolic link to nowhere.png); dress/loop.png ([Errno 40] "
      f"Too many levels of symbolic links: '{folder}/dress/loop.png'). "
      "Remove or replace them, or pass --skip_bad_files to embed the others.",
    )
    skipped = self.build(folder, out, skip_bad_files=True)
    self.assert_gallery(skipped, self.expected(self.images))
    self.assertEqual(
      [item["file"] for item in skipped.record["skipped"]],
      ["coat/gone.png", "dress/loop.png"],
    )
    # The link mended: its image is embedded at the next index.
    shutil.copy(folder / "coat" / "1_010.png", folder / "coat" / "nowhere.png")
    (folder / "dress" / "loop.png").unlink()
    self.assert_gallery(self.build(folder, out), self.expected(folder))

  def test_progress_is_kept_every_part_seconds(self):
    calls = []

    def embed_three_batches(images):
      if len(calls) == 3:
        raise KeyboardInterrupt("interrupted")
      calls.append(len(images))
      return self.jitted(images)

    for seconds, parts in ((1e9, 0), (0.0, 3)):
      with self.subTest(part_seconds=seconds):
        calls.clear()
        out = self.root / f"seconds_{seconds}"
        with self.assertRaises(KeyboardInterrupt):
          gallery.build(
            embed_three_batches,
            self.spec,
            {"model": str(self.model)},
            str(self.images),
            str(out),
            batch_size=BATCH,
            part_size=1000,
            part_seconds=seconds,
            log=lambda line: None,
          )
        progress = out / gallery_files.PROGRESS
        found = sorted(os.listdir(progress)) if progress.exists() else []
        self.assertEqual(found, [f"part-{i:06d}.npz" for i in range(parts)])


class GalleryKillTest(_GalleryTestCase):
  """``index`` killed at steps of its writing, as the tests' hook allows."""

  def index(self, out: pathlib.Path, kill_after: int | None = None):
    env = tiny_run.subprocess_env()
    if kill_after is not None:
      env[gallery_files.KILL_AFTER_WRITES_ENV] = str(kill_after)
    return subprocess.run(
      [
        sys.executable,
        "-m",
        "proxy_nca_jax.index",
        f"--model={self.model}",
        f"--images={self.folder}",
        f"--out={out}",
        f"--batch_size={BATCH}",
        f"--part_size={BATCH}",
      ],
      cwd=tiny_run.REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
    )

  def killed(self, out: pathlib.Path, kill_after: int) -> str:
    """Runs index into ``out``, killed by the hook; its stderr."""
    run = self.index(out, kill_after)
    self.assertEqual(run.returncode, -signal.SIGKILL, run.stderr[-3000:])
    return run.stderr

  def state(self, out: pathlib.Path, old: dict, new: dict) -> str:
    """'refused', 'old' or 'new': what a search of ``out`` would use."""
    try:
      found = gallery.load(str(out))
    except errors.Error:
      return "refused"
    for name, want in (("old", old), ("new", new)):
      if found.files == sorted(want):
        self.assert_gallery(found, want)
        return name
    self.fail(f"a gallery that is neither: {found.files}")

  def test_kill_9_leaves_the_old_or_the_new_gallery(self):
    self.folder = self.root / "changing"
    shutil.copytree(self.images, self.folder)
    old, out = self.expected(self.folder), self.root / "killed"
    # A first index: 8 parts of 4 files (each written, then renamed), the
    # embeddings file, the record (each written, renamed), the progress
    # removed. Killed after its third part is written, before its rename.
    self.killed(out, kill_after=5)
    self.assertEqual(self.state(out, old, {}), "refused")
    # Resumed (6 parts left), killed once the record is in place, before
    # the progress is removed.
    stderr = self.killed(out, kill_after=16)
    self.assertIn("8 already embedded or skipped, 22 to embed", stderr)
    self.assertEqual(self.state(out, old, {}), "old")
    straight = self.build(self.folder, self.root / "straight_old")
    np.testing.assert_array_equal(
      gallery.load(str(out)).embeddings, straight.embeddings
    )

    # An update: 3 files new, 1 changed, 1 gone; 4 to embed (one part).
    (self.folder / "boot" / "1_000.png").unlink()
    gallery_search_test.write_images(self.folder, per_class=1, seed=2)
    changed = self.folder / "coat" / "1_011.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(changed)
    new = self.expected(self.folder)
    # Steps: the part (written, renamed), the new embeddings file (written,
    # renamed), ... Killed between the two files: the old gallery.
    self.killed(out, kill_after=4)
    self.assertEqual(self.state(out, old, new), "old")
    query = self.folder / "dress" / "1_025.png"
    results = self.root / "found.json"
    run = tiny_run.run_command(
      [
        sys.executable,
        "-m",
        "proxy_nca_jax.search",
        f"--gallery={out}",
        f"--query={query}",
        "--k=5",
        f"--out={results}",
        "--grid=",
      ]
    )
    self.assertEqual(run.returncode, 0, run.stderr[-3000:])
    names = sorted(old)
    sims = np.array([old[name] for name in names]) @ old["dress/1_025.png"]
    top = np.argsort(-sims, kind="stable")[:5]
    found = json.loads(results.read_text())["queries"][0]["neighbours"]
    self.assertEqual([n["file"] for n in found], [names[i] for i in top])
    np.testing.assert_allclose(
      [n["similarity"] for n in found], sims[top], atol=1e-5
    )
    # Re-run: the part is kept, and the gallery published.
    run = self.index(out)
    self.assertEqual(run.returncode, 0, run.stderr[-3000:])
    self.assertEqual(self.state(out, old, new), "new")
    straight = self.build(self.folder, self.root / "straight_new")
    done = gallery.load(str(out))
    np.testing.assert_allclose(
      done.embeddings, straight.embeddings, rtol=0, atol=1e-6
    )
    self.assertEqual(
      sorted(os.listdir(out)),
      [done.record["embeddings"]["file"], "gallery.json"],
    )


if __name__ == "__main__":
  absltest.main()
