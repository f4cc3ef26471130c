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
"""url_files.write_atomically: whole or not at all, with open()'s modes.

The one atomic write of config.json, model.json, a trimmed metrics.jsonl
and an exported model (workdir_url_test runs the workdir records on
``ram://``; export_test the exported file).
"""

import os
import stat
import tempfile
import uuid

from absl.testing import absltest

from proxy_nca_jax import url_files


class WriteAtomicallyTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    self.folder = tempfile.mkdtemp()
    self.path = os.path.join(self.folder, "record.json")

  def test_replaces_the_file_and_leaves_nothing_beside_it(self):
    url_files.write_text(self.path, "old")
    url_files.write_text(self.path, "new ✓")
    with open(self.path, encoding="utf-8") as f:
      self.assertEqual(f.read(), "new ✓")
    self.assertEqual(os.listdir(self.folder), ["record.json"])

  def test_binary_mode(self):
    url_files.write_atomically(self.path, lambda f: f.write(b"\0\1"), "wb")
    with open(self.path, "rb") as f:
      self.assertEqual(f.read(), b"\0\1")

  def test_a_failed_write_keeps_the_old_file(self):
    url_files.write_text(self.path, "old")

    def fail(f):
      f.write("half of the new")
      raise OSError("disk full")

    with self.assertRaisesRegex(OSError, "disk full"):
      url_files.write_atomically(self.path, fail)
    with open(self.path, encoding="utf-8") as f:
      self.assertEqual(f.read(), "old")
    self.assertEqual(os.listdir(self.folder), ["record.json"])

  def test_permissions_are_those_of_open_under_the_umask(self):
    # The temporary file is created 0600; the result must be what open()
    # would have made: 0666 less the umask (here 0640).
    umask = os.umask(0o027)
    try:
      url_files.write_text(self.path, "x")
    finally:
      os.umask(umask)
    self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)

  def test_creates_the_folder(self):
    path = os.path.join(self.folder, "new", "model.npz")
    url_files.write_atomically(path, lambda f: f.write(b"x"), "wb")
    self.assertTrue(os.path.isfile(path))

  def test_url_goes_through_gfile(self):
    # ram:// is reachable by tf.io.gfile only, as gs:// is.
    path = f"ram://{uuid.uuid4().hex}/record.json"
    url_files.write_text(path, "old")
    url_files.write_text(path, "new")
    with url_files.open(path) as f:
      self.assertEqual(f.read(), "new")
    self.assertFalse(url_files.exists(f"{path}.partial"))


if __name__ == "__main__":
  absltest.main()
