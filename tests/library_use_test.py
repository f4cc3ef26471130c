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
"""The library surface: the README's example runs, imports stay light.

`from proxy_nca_jax import losses, evaluation, proxies` is what a user puts
in their own training loop; it must not pull in TensorFlow, tfds, orbax or
matplotlib (checked in a fresh interpreter), and the README's example must
run as printed and learn.
"""

import contextlib
import io
import pathlib
import re
import subprocess
import sys

import jax
from absl.testing import absltest

from proxy_nca_jax import evaluation, losses, proxies

REPO = pathlib.Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "tensorflow_datasets", "orbax", "matplotlib")


def readme_example() -> str:
  """The Python block between the README's library-example markers."""
  text = (REPO / "README.md").read_text()
  block = re.search(
    r"<!-- library example: begin -->\s*```python\n(.*?)```\s*"
    r"<!-- library example: end -->",
    text,
    re.S,
  )
  if block is None:
    raise AssertionError("README.md has no library example block")
  return block.group(1)


class LibraryUseTest(absltest.TestCase):
  def test_readme_example_runs_and_learns(self):
    namespace = {"__name__": "readme_example"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
      exec(compile(readme_example(), "README.md", "exec"), namespace)  # noqa: S102
    self.assertIn("step 200", printed.getvalue())
    trained = namespace["metrics"]
    # The same network untrained, on the same unseen classes.
    model, points, labels = (
      namespace[k] for k in ("model", "points", "labels")
    )
    test = namespace["test"]
    untrained_params = model.init(jax.random.key(1), points[:1])
    untrained = evaluation.retrieval_metrics(
      model.apply(untrained_params, points[test]), labels[test]
    )
    self.assertGreater(trained["map@r"], untrained["map@r"] + 0.05)
    self.assertLess(float(namespace["loss"]), 2.0)

  def test_public_modules_load_no_heavy_library(self):
    code = (
      "import sys\n"
      "from proxy_nca_jax import evaluation, losses, proxies\n"
      f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run(
      [sys.executable, "-c", code],
      cwd=REPO,
      capture_output=True,
      text=True,
      check=True,
      env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
    )
    self.assertEqual(out.stdout.strip(), "[]", out.stderr)

  def test_all_lists_documented_public_functions(self):
    for module in (losses, evaluation, proxies):
      with self.subTest(module.__name__):
        self.assertNotEmpty(module.__all__)
        for name in module.__all__:
          self.assertFalse(name.startswith("_"), name)
          value = getattr(module, name)
          if callable(value):
            self.assertTrue(value.__doc__, f"{module.__name__}.{name}")
    loss_functions = [n for n in losses.__all__ if n.endswith("_loss")]
    # Proxy-NCA, proxy ranking, Proxy-Anchor, their dynamic forms where they
    # have one, and the seven pair baselines.
    for name in losses.LOSSES:
      self.assertIn(f"{name}_loss", loss_functions)


if __name__ == "__main__":
  absltest.main()
