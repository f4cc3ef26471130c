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

With pytest-xdist's ``--dist loadscope`` (``make test``), the scopes in
``LONG_SCOPES`` are handed out first (``pytest_xdist_make_scheduler``).
"""

import atexit
import os
import shutil
import tempfile

import pytest

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# As command_line.py: TensorFlow does not import Keras (1.4 s a process).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  # Made by the first process (pytest, or xdist's controller); the workers
  # and launched commands inherit the variable and use the same folder.
  _cache = tempfile.mkdtemp(prefix="proxy_nca_jax_test_compilations_")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  # Every program, the tiny ones too: a launched command compiles dozens of
  # them, each of a few hundredths of a second, and loads them back faster
  # (a tiny training's command 1.5 s faster of about 9 s; the fault and
  # train-command tests 209 s -> 194 s on 2 cores, the loss tests the same).
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402  (must follow the environment set-up above)

jax.config.update("jax_num_cpu_devices", 8)


# The scopes (a class, or a module's functions) that take a minute or more
# of a worker on 2 cores, longest first (docs/testing.md). pytest-xdist's
# loadscope hands out the scopes with the most tests first, which leaves
# these, of one to seven tests each, to the end of the run: there one of
# them kept a worker busy for minutes after the other had run out of work.
# Started first, they are evened out by the hundreds of short scopes. A
# scope renamed or gone is only not moved.
LONG_SCOPES = (
  "tests/training/paper_configs_e2e_test.py::PaperRecipeTest",
  "tests/accelerator_benchmark_test.py::AcceleratorSmokeTest",
  "tests/training/paper_configs_e2e_test.py::ProxyNcaPlusPlusRecipeTest",
  "tests/training/faults_test.py::InterruptionsTest",
  "tests/training/train_command_test.py::TrainCommandTest",
  "tests/training/faults_test.py::FaultsTest",
  "tests/reports/workdir_report_test.py::EvaluateCommandTest",
  "tests/losses/losses_test.py::LossPropertiesTest",
  "tests/inference/trained_model_test.py::MovedImageFolderTest",
  "tests/training/vit_e2e_test.py::VitEndToEndTest",
  "tests/training/multiprocess_test.py::MultiProcessTest",
  "tests/deployment/gallery_integrity_test.py::GalleryKillTest",
  "tests/training/trainer_test.py::TrainerTest",
  "tests/deployment/export_test.py::ExportTest",
  "tests/deployment/gallery_search_test.py::GallerySearchTest",
  "tests/install_test.py::CoreInstallTest",
  "tests/data/fashion_mnist_idx_test.py::FashionMnistIdxTest",
)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  """loadscope, with ``LONG_SCOPES`` handed out before the other scopes."""
  if config.getvalue("dist") != "loadscope":
    return None
  from xdist.scheduler import LoadScopeScheduling

  class LongScopesFirst(LoadScopeScheduling):
    def _assign_work_unit(self, node):
      if not getattr(self, "_long_scopes_moved", False):
        # The first call: the queue holds every scope.
        self._long_scopes_moved = True
        for scope in reversed(LONG_SCOPES):
          if scope in self.workqueue:
            self.workqueue.move_to_end(scope, last=False)
      super()._assign_work_unit(node)

  return LongScopesFirst(config, log)
