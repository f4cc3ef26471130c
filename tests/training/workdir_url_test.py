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
"""Workdir files go through tf.io.gfile (directly on the training side,
through url_files.py elsewhere), so a gs:// workdir works.

There is no GCS here. The same code paths run on a local folder and on
TensorFlow's in-memory ``ram://`` file system, which, like ``gs://``, only
tf.io.gfile can reach: a plain ``open()`` or ``os.makedirs`` on such a URL
fails, so these tests fail if a workdir file bypasses gfile. (Checkpoints
go through orbax, whose gs:// support is orbax's and tensorstore's; they
cannot be exercised without GCS.)
"""

import json
import os
import tempfile
import uuid

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import absltest, parameterized

from configs import fashion_mnist
from proxy_nca_jax.inference import trained_model
from proxy_nca_jax.reports import figures
from proxy_nca_jax.training import metric_writer, workdirs

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class WorkdirUrlTest(parameterized.TestCase):
  def workdir(self, kind: str) -> str:
    if kind == "local":
      tmp = tempfile.TemporaryDirectory()
      self.addCleanup(tmp.cleanup)
      return os.path.join(tmp.name, "run")
    return f"ram://workdir-{uuid.uuid4().hex}/run"

  def test_absolute_keeps_urls_and_anchors_local_paths(self):
    self.assertEqual(trained_model.absolute("gs://b/run"), "gs://b/run")
    self.assertEqual(
      trained_model.absolute("runs/a"), os.path.join(os.getcwd(), "runs/a")
    )

  @parameterized.parameters("local", "ram")
  def test_config_and_model_record_round_trip(self, kind):
    workdir = self.workdir(kind)
    config = fashion_mnist.get_config()
    workdirs.save_config(config, workdir, num_proxies=5)
    with tf.io.gfile.GFile(f"{workdir}/config.json") as f:
      self.assertEqual(json.load(f)["input"]["train_classes"], [0, 1, 2, 3, 4])
    with tf.io.gfile.GFile(f"{workdir}/model.json") as f:
      record = json.load(f)
    self.assertEqual(record["input_shape"], [28, 28, 1])
    self.assertEqual(record["num_proxies"], 5)
    self.assertEqual(
      trained_model.read_config(workdir).input.train_classes, (0, 1, 2, 3, 4)
    )

  @parameterized.parameters("local", "ram")
  def test_metrics_jsonl_and_tensorboard(self, kind):
    workdir = self.workdir(kind)
    writer = metric_writer.MetricWriter(workdir)
    writer.write_scalars(2, {"loss": 1.5})
    writer.write_scalars(4, {"loss": 0.5, "test/map@r": 0.25})
    writer.close()
    self.assertEqual(
      metric_writer.read_metrics(workdir),
      [{"step": 2, "loss": 1.5}, {"step": 4, "loss": 0.5, "test/map@r": 0.25}],
    )
    events = tf.io.gfile.listdir(f"{workdir}/tensorboard")
    self.assertLen(events, 1)
    self.assertStartsWith(events[0], "events.out.tfevents.")

  @parameterized.parameters("local", "ram")
  def test_figures_are_png_files(self, kind):
    workdir = self.workdir(kind)
    tf.io.gfile.makedirs(workdir)
    rng = np.random.default_rng(0)
    images = rng.random((6, 8, 8, 1)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2, 2])
    embeddings = rng.normal(size=(6, 4)).astype(np.float32)
    paths = [f"{workdir}/{name}.png" for name in ("grid", "pca", "curve")]
    figures.retrieval_grid(
      images, labels, np.array([0, 3]), np.array([[1, 2], [2, 0]]), paths[0]
    )
    figures.embedding_projection(embeddings, labels, paths[1])
    figures.convergence_plot(
      [{"step": 1, "test/map@r": 0.2}, {"step": 2, "test/map@r": 0.3}],
      paths[2],
    )
    for path in paths:
      with tf.io.gfile.GFile(path, "rb") as f:
        self.assertEqual(f.read(len(PNG_SIGNATURE)), PNG_SIGNATURE)

  def test_plain_open_cannot_reach_ram_urls(self):
    # What makes the ram:// cases meaningful: only gfile reaches them.
    url = f"ram://probe-{uuid.uuid4().hex}/x.txt"
    with tf.io.gfile.GFile(url, "w") as f:
      f.write("x")
    with tempfile.TemporaryDirectory() as tmp:
      cwd = os.getcwd()
      os.chdir(tmp)  # A relative 'ram:' folder must not exist either.
      try:
        with self.assertRaises(FileNotFoundError):
          open(url).close()
      finally:
        os.chdir(cwd)


if __name__ == "__main__":
  absltest.main()
