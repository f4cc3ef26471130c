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
"""Test setup, made before JAX is imported: 8 fake CPU devices, and one
compilation cache for the whole run.

The cache is a fresh folder per run (nothing carries over between runs), set
in the environment, so the pytest-xdist workers and every command a test
launches (the CLI tests, the fault tests' restarts, the two-process run) share
it: a program compiled once in the run is loaded, not compiled again, by the
next test, worker or process that needs it. A loaded program is the one that
was compiled, so no assertion is weakened; set ``JAX_COMPILATION_CACHE_DIR``
to choose the folder yourself.
"""

import atexit
import os
import shutil
import tempfile

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  # Made by the first process (pytest, or xdist's controller); the workers
  # and launched commands inherit the variable and use the same folder.
  _cache = tempfile.mkdtemp(prefix="proxy_nca_jax_test_compilations_")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  # Programs of a tenth of a second and more: the tiny ones cost more to
  # write and read back than to compile.
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

import jax  # noqa: E402  (must follow the environment set-up above)

jax.config.update("jax_num_cpu_devices", 8)
