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
  config and its weights, loaded by ``inference.trained_model``), and no
  TensorFlow or TensorFlow Datasets (their images are decoded by
  ``data.image_files``; importing TensorFlow would add seconds to each
  command's start-up).

Each layer is imported module after module, and several layers one after
the other in one interpreter (a fresh interpreter costs a JAX or TensorFlow
start-up): inference then training, and deployment then the three commands
(each command's flags are removed once it is imported, as they share
names). A module that loads a forbidden one is still caught, named as the
first of its layer to load it: a layer is checked only if nothing of it or
of its forbidden modules was loaded before its first import (checked too),
so it sees what a fresh interpreter would.
"""

import functools
import json
import pathlib
import subprocess
import sys

from absl.testing import absltest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "proxy_nca_jax"
# What each layer may not load.
NOT_IN_EVALUATION = (
  "proxy_nca_jax.training",
  "proxy_nca_jax.data",
  "proxy_nca_jax.models",
  "tensorflow",
  "matplotlib",
  "flax",
)
NOT_IN_INFERENCE = (
  "proxy_nca_jax.training",
  "proxy_nca_jax.reports",
  "proxy_nca_jax.deployment",
)
NOT_IN_TRAINING = ("proxy_nca_jax.reports", "proxy_nca_jax.deployment")
NOT_IN_DEPLOYMENT = (
  "proxy_nca_jax.training",
  "tensorflow",
  "tensorflow_datasets",
)
# The commands that use a trained model without its data.
COMMANDS = (
  "proxy_nca_jax.export",
  "proxy_nca_jax.index",
  "proxy_nca_jax.search",
)


def _modules(layer: str) -> list[str]:
  """The layer's package and each of its modules, by file name."""
  files = sorted((PACKAGE / layer).glob("*.py"))
  stems = [f.stem for f in files if f.stem != "__init__"]
  return [
    f"proxy_nca_jax.{layer}",
    *(f"proxy_nca_jax.{layer}.{s}" for s in stems),
  ]


def _forbidden_loaded(
  *layers: tuple[list[str], tuple[str, ...]],
) -> list[dict]:
  """Imports each layer's modules in order, the layers one after the other,
  in one fresh interpreter.

  Args:
    *layers: (modules, the modules they may not load) per layer.

  Returns:
    Per layer, {'found': for each module, the forbidden modules (or their
    submodules) that its import loaded; 'before': the layer's own and
    forbidden modules already loaded when it started (empty: it was checked
    as in a fresh interpreter)}.
  """
  code = f"""
import importlib, json, sys
def loaded(names):
  return {{m for m in sys.modules
          if any(m == f or m.startswith(f + ".") for f in names)}}
results = []
for modules, forbidden in {[(m, f) for m, f in layers]!r}:
  found = {{}}
  start = sorted(loaded((*modules, *forbidden)))
  for name in modules:
    before = loaded(forbidden)
    importlib.import_module(name)
    found[name] = sorted(loaded(forbidden) - before)
    if name in {COMMANDS!r}:
      # The next command defines flags of the same names.
      flags = sys.modules["absl.flags"].FLAGS
      for flag in list(flags.flags_by_module_dict().get(name, [])):
        delattr(flags, flag.name)
  results.append({{"found": found, "before": start}})
print(json.dumps(results))
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
    raise AssertionError(f"importing {layers} failed:\n{out.stderr}")
  return json.loads(out.stdout.strip().splitlines()[-1])


@functools.cache
def _inference_then_training() -> list[dict]:
  return _forbidden_loaded(
    (_modules("inference"), NOT_IN_INFERENCE),
    (_modules("training"), NOT_IN_TRAINING),
  )


class ImportLayersTest(absltest.TestCase):
  def assert_none_loaded(self, layer: dict) -> None:
    self.assertEmpty(layer["before"], "loaded before the layer's imports")
    offenders = {name: mods for name, mods in layer["found"].items() if mods}
    self.assertEmpty(offenders, "modules that import against the layers")

  def test_each_evaluation_module_is_metrics_only(self):
    modules = _modules("evaluation")
    self.assertContainsSubset(
      ["proxy_nca_jax.evaluation.nearest", "proxy_nca_jax.evaluation.tables"],
      modules,
    )
    (layer,) = _forbidden_loaded((modules, NOT_IN_EVALUATION))
    self.assert_none_loaded(layer)

  def test_inference_loads_no_training_and_nothing_above(self):
    self.assertContainsSubset(
      [
        "proxy_nca_jax.inference.split_embedding",
        "proxy_nca_jax.inference.trained_model",
      ],
      _modules("inference"),
    )
    inference, _ = _inference_then_training()
    self.assertEqual(list(inference["found"]), _modules("inference"))
    self.assert_none_loaded(inference)

  def test_training_loads_no_reports_or_deployment(self):
    self.assertIn("proxy_nca_jax.training.trainer", _modules("training"))
    _, training = _inference_then_training()
    self.assertEqual(list(training["found"]), _modules("training"))
    self.assert_none_loaded(training)

  def test_deployment_and_its_commands_load_no_training_or_tensorflow(self):
    modules = _modules("deployment")
    self.assertIn("proxy_nca_jax.deployment.embedder", modules)
    deployment, *commands = _forbidden_loaded(
      (modules, NOT_IN_DEPLOYMENT),
      *(([command], NOT_IN_DEPLOYMENT) for command in COMMANDS),
    )
    self.assert_none_loaded(deployment)
    for command, layer in zip(COMMANDS, commands, strict=True):
      with self.subTest(command):
        self.assertEqual(list(layer["found"]), [command])
        self.assert_none_loaded(layer)


if __name__ == "__main__":
  absltest.main()
