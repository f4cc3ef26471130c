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
"""Tests of training/metric_writer.py: metrics.jsonl and TensorBoard agree.

Scalars written by hand, and those of the tiny run of tests/testing/
tiny_run.py (``shared_run``: evaluations at steps 0, 3 and 6, trained
in-process), are read back with TensorFlow's reader and compared with
metrics.jsonl, the config and the checkpoint's proxies; after a resume,
TensorBoard's own reader must show one value per step.
"""

import os
import pathlib
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import absltest
from tensorboard.backend.event_processing import plugin_event_accumulator

from proxy_nca_jax.training import metric_writer
from tests.testing import tiny_run


def _tensorboard_scalars(folder: pathlib.Path) -> dict[str, dict[int, float]]:
  """tag -> {step: value} of every scalar in the event files of a folder."""
  scalars: dict[str, dict[int, float]] = {}
  for path in sorted(folder.glob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        number = float(tf.make_ndarray(value.tensor))
        scalars.setdefault(value.tag, {})[event.step] = number
  return scalars


class MetricWriterTest(absltest.TestCase):
  def test_jsonl_and_tensorboard_hold_the_scalars(self):
    with tempfile.TemporaryDirectory() as workdir:
      writer = metric_writer.MetricWriter(workdir)
      writer.write_scalars(10, {"loss": 1.5, "lr/proxies": 0.01})
      writer.write_scalars(20, {"loss": np.float32(0.25)})
      writer.close()
      self.assertEqual(
        metric_writer.read_metrics(workdir),
        [
          {"step": 10, "loss": 1.5, "lr/proxies": 0.01},
          {"step": 20, "loss": 0.25},
        ],
      )
      # Read the event files back with TensorFlow's own reader.
      seen = _tensorboard_scalars(pathlib.Path(workdir) / "tensorboard")
      self.assertAlmostEqual(seen["loss"][10], 1.5)
      self.assertAlmostEqual(seen["loss"][20], 0.25)
      self.assertAlmostEqual(seen["lr/proxies"][10], 0.01, places=6)


# A real run: left out of make test-fast.
@pytest.mark.slow
class LoggedScalarsTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir, cls.config, cls.checkpoint = tiny_run.shared_run()
    cls.scalars = _tensorboard_scalars(cls.workdir / "tensorboard")
    cls.records = metric_writer.read_metrics(str(cls.workdir))

  def test_every_jsonl_value_is_in_tensorboard(self):
    self.assertNotEmpty(self.records)
    for record in self.records:
      step = record["step"]
      for key, value in record.items():
        if key != "step":
          self.assertIn(step, self.scalars.get(key, {}), key)
          np.testing.assert_allclose(
            self.scalars[key][step], value, rtol=1e-6, err_msg=key
          )

  def test_training_scalars_at_every_logged_step(self):
    expected = {"loss", "grad_norm", "steps_per_sec"}
    expected |= {f"proxy_norm_{s}" for s in ("mean", "min", "max")}
    expected |= {f"lr/{g}" for g in ("backbone", "head", "proxies")}
    for tag in expected:
      self.assertEqual(sorted(self.scalars[tag]), [2, 4, 6], tag)
    for step in (2, 4, 6):
      self.assertTrue(np.isfinite(self.scalars["loss"][step]))
      # Constant schedule: the config's rates and multipliers.
      np.testing.assert_allclose(self.scalars["lr/backbone"][step], 1e-3)
      np.testing.assert_allclose(self.scalars["lr/head"][step], 5e-4)
      np.testing.assert_allclose(self.scalars["lr/proxies"][step], 1e-2)

  def test_proxy_norms_are_those_of_the_checkpointed_proxies(self):
    step, state = self.checkpoint
    self.assertEqual(step, 6)
    norms = np.linalg.norm(
      np.asarray(state.params["proxies"], np.float64), axis=1
    )
    self.assertLen(norms, tiny_run.NUM_PROXIES)
    for name, value in (("mean", norms.mean()), ("min", norms.min())):
      np.testing.assert_allclose(
        self.scalars[f"proxy_norm_{name}"][6], value, rtol=1e-5
      )
    np.testing.assert_allclose(
      self.scalars["proxy_norm_max"][6], norms.max(), rtol=1e-5
    )

  def test_every_evaluation_metric_at_every_evaluation(self):
    for metric in tiny_run.EVAL_METRICS:
      self.assertEqual(sorted(self.scalars[f"test/{metric}"]), [0, 3, 6])


@pytest.mark.slow
class ResumedTensorBoardTest(absltest.TestCase):
  """After a resume, TensorBoard's own reader shows one value per step."""

  def test_interrupted_segment_is_purged(self):
    self._check_resumes_are_purged()

  def test_purged_when_the_writer_count_gains_a_digit(self):
    # TensorFlow numbers the writers of a process in the event file's name
    # (...<pid>.<count>.v2), compared as text: with the first writer at
    # count 9 (or 99, ...), the resumed one's "10" sorts before it unless
    # its file falls in a later second. Throw-away writers bring the
    # process's count to 8 (or 98, ...).
    scratch = tempfile.TemporaryDirectory()
    self.addCleanup(scratch.cleanup)
    while True:
      tf.summary.create_file_writer(scratch.name).close()
      count = max(int(name.split(".")[-2]) for name in os.listdir(scratch.name))
      if set(str(count + 1)) == {"9"}:
        break
    self._check_resumes_are_purged()

  def _check_resumes_are_purged(self):
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    workdir = pathlib.Path(tmp.name)
    first = metric_writer.MetricWriter(str(workdir))
    for step in range(1, 7):
      first.write_scalars(step, {"loss": float(step)})
    first.close()
    # Resumed from the checkpoint at step 3: steps 4-6 are trained again.
    metric_writer.keep_until(str(workdir), 3)
    second = metric_writer.MetricWriter(str(workdir), resumed_from=3)
    for step in range(4, 7):
      second.write_scalars(step, {"loss": 10.0 * step})
    second.close()
    # And once more, from the checkpoint at step 5.
    metric_writer.keep_until(str(workdir), 5)
    third = metric_writer.MetricWriter(str(workdir), resumed_from=5)
    third.write_scalars(6, {"loss": 600.0})
    third.close()
    accumulator = plugin_event_accumulator.EventAccumulator(
      str(workdir / "tensorboard")
    )
    accumulator.Reload()
    events = accumulator.Tensors("loss")
    got = [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events]
    self.assertEqual(
      got, [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 600.0)]
    )
    rows = metric_writer.read_metrics(str(workdir))
    self.assertEqual([r["step"] for r in rows], [1, 2, 3, 4, 5, 6])


if __name__ == "__main__":
  absltest.main()
