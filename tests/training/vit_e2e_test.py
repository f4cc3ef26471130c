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
"""A tiny Vision Transformer end to end: train, export, index, search.

``vit_test`` (two blocks of width 64, patches of 8 px) with stochastic
depth trains on the tiny generated FMNIST-ZS data through the trainer; its
test metrics beat the untrained network's. Its export (``jax.export``,
symbolic batch), loaded back, equals the evaluation path within 1e-5 at two
batch sizes; a gallery of images indexed with it finds each query image
first among its neighbours; a config.json edited to another readout is
refused by the loader. Eight fake devices train it as one device does,
stochastic depth included (the 'dropout' key does not depend on the
sharding). The model refuses stochastic depth without a 'dropout' key
(tests/models/vit_test.py), so these runs also show the step passes one.
"""

import json
import pathlib
import shutil
import tempfile

import chex
import jax
import numpy as np
import pytest
from absl.testing import absltest

from proxy_nca_jax import errors, parallel
from proxy_nca_jax.deployment import (
  embedder,
  exported_model,
  gallery,
  neighbours,
)
from proxy_nca_jax.inference import trained_model
from proxy_nca_jax.training import trainer
from tests.deployment import gallery_search_test
from tests.testing import tiny_run

# Real runs: left out of make test-fast.
pytestmark = pytest.mark.slow

FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530
VIT = {
  "model__name": "vit_test",
  "model__widths": (),
  "model__vit__drop_path": 0.1,
  "optimizer__learning_rate": 1e-3,
  "optimizer__layer_decay": 0.9,
}


class VitEndToEndTest(tiny_run.PreparedDataTest):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = tiny_run.tiny_config(
      cls.root,
      schedule__num_steps=30,
      ckpt__every_steps=30,
      evals__at_step_zero=True,
      **VIT,
    )
    cls.workdir = cls.root / "vit_run"
    cls.results = trainer.train_and_evaluate(cls.config, str(cls.workdir))
    cls._out = tempfile.TemporaryDirectory()  # cls._tmp holds the data.
    cls.out = pathlib.Path(cls._out.name)

  @classmethod
  def tearDownClass(cls):
    cls._out.cleanup()
    super().tearDownClass()

  def test_training_beats_the_untrained_network(self):
    self.assertEqual(sorted(self.results), [0, 30])
    untrained, trained = self.results[0], self.results[30]
    self.assertGreater(trained["map@r"], untrained["map@r"] + 0.05)
    self.assertGreater(trained["recall@1"], untrained["recall@1"])

  def test_export_equals_the_evaluation_path(self):
    mesh = parallel.create_mesh(jax.devices()[:1])
    embedded = tiny_run.embed_test_split(self.workdir, mesh, keep_images=True)
    pixels = (embedded.images * FMNIST_STD + FMNIST_MEAN) * 255.0
    pixels = np.rint(pixels).astype(np.uint8)
    path = self.out / "vit.npz"
    exported_model.save(*embedder.from_workdir(str(self.workdir)), str(path))
    embed, spec = exported_model.load(str(path))
    self.assertEqual(spec.config_signature["model"], "vit_test")
    for count in (3, len(pixels)):  # One export, two batch sizes.
      np.testing.assert_allclose(
        np.asarray(embed(pixels[:count])),
        embedded.embeddings[:count],
        rtol=0,
        atol=1e-5,
      )

  def test_index_and_search_find_each_query_first(self):
    images = self.out / "images"
    gallery_search_test.write_images(images, per_class=4, seed=3)
    embed, spec = embedder.from_workdir(str(self.workdir))
    built = gallery.build(
      embed,
      spec,
      {"workdir": str(self.workdir)},
      str(images),
      str(self.out / "gallery"),
      batch_size=4,
      log=lambda line: None,
    )
    self.assertEqual(built.embeddings.shape, (12, 8))
    results = neighbours.search(built, jax.jit(embed), spec, str(images), k=3)
    self.assertLen(results, 12)
    for i, result in enumerate(results):
      first = result["neighbours"][0]
      self.assertEqual(first["index"], i)
      self.assertAlmostEqual(first["similarity"], 1.0, places=5)
    self.assertEqual(gallery.load(str(self.out / "gallery")).spec, spec)

  def test_a_config_json_with_other_vit_options_is_refused(self):
    copy = self.out / "edited_run"
    shutil.copytree(self.workdir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["model"]["vit"]["readout"] = "patches"
    (copy / "config.json").write_text(json.dumps(config))
    with self.assertRaisesRegex(errors.InvalidInputError, "'vit'"):
      trained_model.load(str(copy))

  def test_eight_devices_match_one_device(self):
    # SGD: the key bias's gradient is exactly zero in theory (attention is
    # invariant to it), float rounding in practice, which Adam would scale
    # up to the learning rate whatever its size.
    sgd = {"optimizer__name": "sgd", "optimizer__learning_rate": 0.1}
    config = tiny_run.tiny_config(self.root, **{**VIT, **sgd})
    losses_1, state_1 = tiny_run.train_steps(
      config, parallel.create_mesh(jax.devices()[:1]), 4
    )
    losses_8, state_8 = tiny_run.train_steps(config, parallel.create_mesh(), 4)
    self.assertEqual(jax.device_count(), 8)
    np.testing.assert_allclose(losses_8, losses_1, rtol=1e-5)
    chex.assert_trees_all_close(state_8.params, state_1.params, atol=2e-5)


if __name__ == "__main__":
  absltest.main()
