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
"""`pip install .` is the library: the core dependencies and nothing more.

A fresh virtual environment gets the package as a user gets it (a wheel
built from this checkout, no extras, not editable), then runs the README's
library example in it, outside the checkout. TensorFlow, tfds and
matplotlib must not be installed (an import of them from the library would
fail here, not only be slow), and the example must not load orbax, which
flax installs.

The sources are copied to a temporary folder first, so the build writes
nothing into the checkout. pip reads its wheels from the local cache or
index, as `make` does.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest
from absl.testing import absltest

from tests import library_use_test

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
# The training stack: never loaded by the library. Flax itself depends on
# orbax-checkpoint, so orbax is installed (not imported); the rest is not.
HEAVY = ("tensorflow", "tensorflow_datasets", "orbax", "matplotlib")
NOT_INSTALLED = ("tensorflow", "tensorflow_datasets", "matplotlib")
# What the wheel is built from; nothing else of the checkout is needed.
SOURCES = ("setup.py", "LICENSE", "proxy_nca_jax")
# A venv, the wheels of jax, flax, optax and their dependencies, the
# example: 30-83 s on 2 shared cores with pip's wheels on the disk.
TIMEOUT_S = 600


def _clean_environment() -> dict[str, str]:
  """The environment of a user's shell: no PYTHONPATH, no test settings."""
  keep = ("PATH", "HOME", "LANG", "TMPDIR", "SSL_CERT_FILE")
  env = {k: os.environ[k] for k in keep if k in os.environ}
  # pip's configuration (local wheels, mirrors, certificates) and its cache
  # under HOME are the machine's, as for `make`.
  env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
  env.update(JAX_PLATFORMS="cpu", PYTHONNOUSERSITE="1")
  return env


class CoreInstallTest(absltest.TestCase):
  def test_core_install_runs_the_readme_example(self):
    root = pathlib.Path(tempfile.mkdtemp(prefix="proxy_nca_jax_install_"))
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
      path = REPO / name
      if path.is_dir():
        shutil.copytree(
          path,
          source / name,
          ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
      else:
        shutil.copy2(path, source / name)
    env = _clean_environment()

    def run(*args: str) -> subprocess.CompletedProcess:
      return subprocess.run(
        args,
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
      )

    venv = root / "venv"
    made = run(sys.executable, "-m", "venv", str(venv))
    self.assertEqual(made.returncode, 0, made.stderr)
    python = str(venv / "bin" / "python")
    # --no-compile: pip does not byte-compile the 4,600 installed modules
    # (22 s -> 12 s on 2 cores); the example compiles those it imports.
    installed = run(
      python,
      "-m",
      "pip",
      "install",
      "-q",
      "--no-input",
      "--no-compile",
      str(source),
    )
    self.assertEqual(installed.returncode, 0, installed.stderr)

    example = root / "readme_example.py"
    example.write_text(library_use_test.readme_example())
    # The example as a user runs it, then what it loaded and what is there.
    runner = (
      "import importlib.util, json, runpy, sys\n"
      f"runpy.run_path({str(example)!r}, run_name='__main__')\n"
      "import proxy_nca_jax, proxy_nca_jax.native\n"
      "print(json.dumps({'package': proxy_nca_jax.__file__,\n"
      "  'native': proxy_nca_jax.native.available('counting'),\n"
      f"  'loaded': [m for m in {HEAVY!r} if m in sys.modules],\n"
      f"  'installed': [m for m in {NOT_INSTALLED!r}\n"
      "                if importlib.util.find_spec(m)]}))\n"
    )
    ran = run(python, "-c", runner)
    self.assertEqual(ran.returncode, 0, ran.stderr)
    printed, _, last_line = ran.stdout.rstrip().rpartition("\n")
    self.assertIn("step 200", printed)
    self.assertIn("recall@1", printed)
    found = json.loads(last_line)
    self.assertTrue(found["package"].startswith(str(venv)), found)
    self.assertEqual(found["loaded"], [], found)
    self.assertEqual(found["installed"], [], found)
    # The wheel carries the kernels' sources, and they build there.
    self.assertTrue(found["native"], ran.stderr)


if __name__ == "__main__":
  absltest.main()
