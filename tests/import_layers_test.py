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
"""The layers import only downwards (docs/DESIGN.md, "Architecture").

Checked in fresh interpreters, by what ``sys.modules`` holds after the
imports:

- the ``proxy_nca_jax.evaluation`` modules: metrics only, so no
  ``training``, ``data``, ``models``, TensorFlow, matplotlib or flax;
- the ``inference`` modules: no ``training``, ``reports`` or ``deployment``;
- the ``training`` modules: no ``reports`` or ``deployment``;
- ``deployment`` and the commands that use a trained model without its
  data (export, index, search): no ``training`` (a trained model is its
  config and its weights, loaded by ``inference.trained_model``).

Each layer is imported in one interpreter, module after module (a fresh
interpreter per module costs a JAX or TensorFlow start-up each): a module
that loads a forbidden one is still caught, named as the first of its
layer to load it.
"""

import json
import pathlib
import subprocess
import sys

from absl.testing import absltest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "proxy_nca_jax"


def _modules(layer: str) -> list[str]:
  """The layer's package and each of its modules, by file name."""
  files = sorted((PACKAGE / layer).glob("*.py"))
  stems = [f.stem for f in files if f.stem != "__init__"]
  return [
    f"proxy_nca_jax.{layer}",
    *(f"proxy_nca_jax.{layer}.{s}" for s in stems),
  ]


def _forbidden_loaded(
  modules: list[str], forbidden: tuple[str, ...]
) -> dict[str, list[str]]:
  """Imports ``modules`` in order in a fresh interpreter; for each, the
  forbidden modules (or their submodules) that its import loaded."""
  code = f"""
import importlib, json, sys
forbidden = {forbidden!r}
def loaded():
  return {{m for m in sys.modules
          if any(m == f or m.startswith(f + ".") for f in forbidden)}}
found = {{}}
for name in {modules!r}:
  before = loaded()
  importlib.import_module(name)
  found[name] = sorted(loaded() - before)
print(json.dumps(found))
"""
  out = subprocess.run(
    [sys.executable, "-c", code],
    cwd=REPO,
    capture_output=True,
    text=True,
    check=False,
    env={
      "JAX_PLATFORMS": "cpu",
      "PATH": "/usr/bin:/bin",
      "TF_CPP_MIN_LOG_LEVEL": "3",
    },
  )
  if out.returncode:
    raise AssertionError(f"importing {modules} failed:\n{out.stderr}")
  return json.loads(out.stdout.strip().splitlines()[-1])


class ImportLayersTest(absltest.TestCase):
  def assert_none_loaded(self, found: dict[str, list[str]]) -> None:
    offenders = {name: mods for name, mods in found.items() if mods}
    self.assertEmpty(offenders, "modules that import against the layers")

  def test_each_evaluation_module_is_metrics_only(self):
    forbidden = (
      "proxy_nca_jax.training",
      "proxy_nca_jax.data",
      "proxy_nca_jax.models",
      "tensorflow",
      "matplotlib",
      "flax",
    )
    modules = _modules("evaluation")
    self.assertContainsSubset(
      ["proxy_nca_jax.evaluation.nearest", "proxy_nca_jax.evaluation.tables"],
      modules,
    )
    self.assert_none_loaded(_forbidden_loaded(modules, forbidden))

  def test_inference_loads_no_training_and_nothing_above(self):
    forbidden = (
      "proxy_nca_jax.training",
      "proxy_nca_jax.reports",
      "proxy_nca_jax.deployment",
    )
    modules = _modules("inference")
    self.assertContainsSubset(
      [
        "proxy_nca_jax.inference.split_embedding",
        "proxy_nca_jax.inference.trained_model",
      ],
      modules,
    )
    self.assert_none_loaded(_forbidden_loaded(modules, forbidden))

  def test_training_loads_no_reports_or_deployment(self):
    forbidden = ("proxy_nca_jax.reports", "proxy_nca_jax.deployment")
    modules = _modules("training")
    self.assertIn("proxy_nca_jax.training.trainer", modules)
    self.assert_none_loaded(_forbidden_loaded(modules, forbidden))

  def test_deployment_and_its_commands_load_no_training(self):
    forbidden = ("proxy_nca_jax.training",)
    modules = [*_modules("deployment"), "proxy_nca_jax.export"]
    self.assertIn("proxy_nca_jax.deployment.embedder", modules)
    self.assert_none_loaded(_forbidden_loaded(modules, forbidden))
    # One interpreter each: the commands define flags of the same names.
    for command in ("index", "search"):
      with self.subTest(command):
        self.assert_none_loaded(
          _forbidden_loaded([f"proxy_nca_jax.{command}"], forbidden)
        )


if __name__ == "__main__":
  absltest.main()
