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
"""A resume with a changed config: refused, or accepted as a new segment.

A tiny run trains 6 steps; re-running it in the same workdir with another
class split, loss scale or seed must be refused with each change listed and
nothing in the workdir touched; changes that cannot affect results pass;
an accepted change trains on and is recorded in config.json and the metrics.
"""

import json
import pathlib
import shutil

import jax
import pytest
from absl.testing import absltest

from proxy_nca_jax import parallel
from proxy_nca_jax.inference import trained_model
from proxy_nca_jax.training import (
  config_changes,
  metric_writer,
  trainer,
)
from tests.testing import tiny_run

# Real runs: left out of make test-fast.
pytestmark = pytest.mark.slow


def _snapshot(workdir: pathlib.Path) -> dict[str, bytes]:
  return {
    name: (workdir / name).read_bytes()
    for name in ("config.json", "metrics.jsonl")
  }


class ConfigChangesTest(tiny_run.PreparedDataTest):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.mesh = parallel.create_mesh(jax.devices()[:2])
    cls.trained = cls.root / "trained"
    trainer.train_and_evaluate(
      tiny_run.tiny_config(cls.root), str(cls.trained), cls.mesh
    )

  def workdir(self, name: str) -> pathlib.Path:
    copy = self.root / name
    shutil.copytree(self.trained, copy)
    return copy

  def test_result_changes_are_refused_and_listed(self):
    workdir = self.workdir("refused")
    before = _snapshot(workdir)
    config = tiny_run.tiny_config(
      self.root,
      input__test_classes=(5, 6, 7),
      loss__scale=4.0,
      seed=3,
      schedule__num_steps=9,
    )
    with self.assertRaises(config_changes.ConfigChangeError) as caught:
      trainer.train_and_evaluate(config, str(workdir), self.mesh)
    message = str(caught.exception)
    self.assertIn(f"{workdir} holds a run trained to step 6", message)
    self.assertIn("(3 change(s) that affect results:", message)
    self.assertIn("input.test_classes: [5, 6, 7, 8, 9] -> [5, 6, 7]", message)
    self.assertIn("loss.scale: 16.0 -> 4.0", message)
    self.assertIn("seed: 0 -> 3", message)
    self.assertIn("train in a new --workdir", message)
    self.assertIn("--accept_config_change", message)
    self.assertEqual(_snapshot(workdir), before)

  def test_free_changes_pass(self):
    workdir = self.workdir("free")
    config = tiny_run.tiny_config(
      self.root,
      input__eval_batch_size=16,
      log_every_steps=3,
      evals__block_size=64,
      report__max_examples=10,
      schedule__num_steps=8,  # A constant learning rate: training longer.
    )
    results = trainer.train_and_evaluate(config, str(workdir), self.mesh)
    self.assertIn(8, results)
    self.assertEqual(
      trained_model.read_config(str(workdir)).schedule.num_steps, 8
    )

  def test_accepted_change_is_a_recorded_segment(self):
    workdir = self.workdir("accepted")
    config = tiny_run.tiny_config(
      self.root, loss__scale=4.0, schedule__num_steps=9
    )
    results = trainer.train_and_evaluate(
      config, str(workdir), self.mesh, accept_config_change=True
    )
    self.assertIn(9, results)
    with open(workdir / "config.json") as f:
      saved = json.load(f)
    [segment] = saved["_segments"]
    self.assertEqual(segment["from_step"], 6)
    self.assertEqual(segment["changes"], {"loss.scale": [16.0, 4.0]})
    # Every segment's whole config is kept: the first one's in the segment
    # that ends it, the newest at the top level.
    before = json.loads(tiny_run.tiny_config(self.root).to_json())
    self.assertEqual(segment["config_before"], before)
    self.assertEqual(saved["loss"]["scale"], 4.0)
    # Tools still read the config; the metrics mark the segment's start.
    self.assertEqual(trained_model.read_config(str(workdir)).loss.scale, 4.0)
    rows = metric_writer.read_metrics(str(workdir))
    marks = [
      (r["step"], r["config_segment"]) for r in rows if "config_segment" in r
    ]
    self.assertEqual(marks, [(6, 1.0)])
    # Resuming again with the same (new) config needs no flag.
    config = tiny_run.tiny_config(
      self.root, loss__scale=4.0, schedule__num_steps=10
    )
    trainer.train_and_evaluate(config, str(workdir), self.mesh)
    with open(workdir / "config.json") as f:
      self.assertLen(json.load(f)["_segments"], 1)


class ResultChangesTest(absltest.TestCase):
  def test_num_steps_is_free_only_with_a_constant_learning_rate(self):
    root = pathlib.Path("/nonexistent")
    recorded = tiny_run.tiny_config(root).to_dict()
    longer = tiny_run.tiny_config(root, schedule__num_steps=60)
    self.assertEqual(config_changes.result_changes(recorded, longer), {})
    cosine = tiny_run.tiny_config(root, schedule__decay="cosine")
    recorded = cosine.to_dict()
    longer = tiny_run.tiny_config(
      root, schedule__decay="cosine", schedule__num_steps=60
    )
    self.assertEqual(
      config_changes.result_changes(recorded, longer),
      {"schedule.num_steps": (6, 60)},
    )


if __name__ == "__main__":
  absltest.main()
