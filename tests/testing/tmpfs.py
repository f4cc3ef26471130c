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
"""A small real filesystem for fault tests: a tmpfs, mounted for one test."""

import pathlib
import subprocess
import tempfile

from absl.testing import absltest


def mount(test: absltest.TestCase, options: str) -> pathlib.Path:
  """Mounts a tmpfs with ``options`` (e.g. "size=8M,ro") for ``test``.

  Unmounted at the test's cleanup; the test is skipped where mounting is
  not allowed (it needs root).
  """
  folder = pathlib.Path(tempfile.mkdtemp(prefix="tmpfs_"))
  mounted = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
    capture_output=True,
    text=True,
  )
  if mounted.returncode != 0:
    test.skipTest(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
  test.addCleanup(subprocess.run, ["umount", str(folder)], check=False)
  return folder
