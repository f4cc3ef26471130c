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
"""config.proxies.num_proxies (training/train_state.num_proxies, proxy_init):
defaults, dynamic assignment, clear refusals, class-mean initialisation."""

import functools

import jax
import numpy as np
import pytest
from absl.testing import absltest, parameterized

from proxy_nca_jax.data import pipeline
from proxy_nca_jax.training import (
  proxy_init,
  setup,
  train_state,
  trainer,
  workdirs,
)
from research import common
from tests.testing import tiny_run


@pytest.mark.slow
class NumProxiesTest(tiny_run.PreparedDataTest):
  def test_default_is_one_per_training_class(self):
    config = tiny_run.tiny_config(self.root)
    self.assertEqual(train_state.num_proxies(config), 5)
    config = tiny_run.tiny_config(self.root, input__val_classes=(0, 1))
    self.assertEqual(train_state.num_proxies(config), 3)

  @parameterized.parameters(
    ("subcenter_arcface", {}, 15),
    ("subcenter_arcface", {"loss__sub_centers": 2}, 10),
    ("dynamic_arcface", {}, 15),
    ("soft_triple", {}, 50),
    ("soft_triple", {"loss__soft_triple_centers": 1}, 5),
    ("cosface", {"loss__sub_centers": 2}, 5),  # One row a class.
    ("normalized_softmax", {}, 5),
  )
  def test_losses_with_k_centres_have_k_rows_a_class(self, loss, changes, want):
    # What the train command's state holds: classes x K rows, the default
    # and the only accepted count.
    config = tiny_run.tiny_config(self.root, loss__name=loss, **changes)
    self.assertEqual(train_state.num_proxies(config), want)
    config = tiny_run.tiny_config(
      self.root, loss__name=loss, proxies__num_proxies=want, **changes
    )
    self.assertEqual(train_state.num_proxies(config), want)

  @parameterized.parameters(
    ("proxy_nca", "dynamic", 3),
    ("proxy_nca", "dynamic", 12),
    ("proxy_ranking", "dynamic", 2),
    ("triplet_semihard", "static", 7),  # Ignores the proxies.
    ("proxy_nca", "static", 5),  # Equal to the classes.
  )
  def test_accepted(self, loss, assignment, requested):
    config = tiny_run.tiny_config(
      self.root,
      loss__name=loss,
      loss__assignment=assignment,
      proxies__num_proxies=requested,
    )
    self.assertEqual(train_state.num_proxies(config), requested)

  @parameterized.parameters(
    ("proxy_nca", "static", 3, "normal", "assignment=dynamic"),
    ("proxy_ranking", "static", 8, "normal", "assignment=dynamic"),
    ("proxy_anchor", "static", 4, "normal", r"needs 1 proxy row\(s\) per"),
    # The classes, where SubCenter-ArcFace needs K = 3 rows a class.
    ("subcenter_arcface", "static", 5, "normal", r"needs 3 proxy row\(s\)"),
    ("proxy_nca", "dynamic", 3, "class_means", "init=normal"),
    ("proxy_nca", "dynamic", 0, "normal", "must be positive"),
  )
  def test_refused_with_a_fix(self, loss, assignment, requested, init, fix):
    config = tiny_run.tiny_config(
      self.root,
      loss__name=loss,
      loss__assignment=assignment,
      proxies__num_proxies=requested,
      proxies__init=init,
    )
    with self.assertRaisesRegex(ValueError, fix):
      train_state.num_proxies(config)

  def test_static_mismatch_writes_nothing(self):
    workdir = self.root / "refused"
    config = tiny_run.tiny_config(self.root, proxies__num_proxies=3)
    with self.assertRaisesRegex(ValueError, "5 training classes"):
      trainer.train_and_evaluate(config, str(workdir))
    self.assertFalse(workdir.exists())

  def test_dynamic_run_trains_more_proxies_than_classes(self):
    workdir = self.root / "dynamic7"
    config = tiny_run.tiny_config(
      self.root,
      loss__assignment="dynamic",
      proxies__num_proxies=7,
      input__samples_per_class=4,
      schedule__num_steps=3,
    )
    trainer.train_and_evaluate(config, str(workdir))
    _, _, state = workdirs.restore_train_state(str(workdir))
    self.assertEqual(state.params["proxies"].shape, (7, 8))
    self.assertEqual(int(state.step), 3)

  def test_class_mean_init_is_the_mean_of_the_first_batches(self):
    # The first 16 batches of the stream seeded seed + 1, embedded in
    # training mode by flax here, averaged per class in float64 NumPy.
    config = tiny_run.tiny_config(self.root, proxies__init="class_means")
    parts = setup.assemble(config)
    state = parts.initial_state()
    batches = pipeline.create_train_iterator(
      config.input, seed=config.seed + 1, process_index=0, process_count=1
    )
    variables = {
      "params": state.params["model"],
      "batch_stats": state.batch_stats,
    }
    # Jitted flax (one compilation, not 16 batches of eager operations).
    apply = jax.jit(
      functools.partial(parts.model.apply, train=True, mutable=["batch_stats"])
    )
    embeddings, labels = [], []
    for _, batch in zip(range(16), batches, strict=False):
      out, _ = apply(variables, batch["image"])
      embeddings.append(np.float64(out))
      labels.append(np.asarray(batch["label"]))
    embeddings, labels = np.concatenate(embeddings), np.concatenate(labels)
    want = np.stack(
      [embeddings[labels == c].mean(axis=0) for c in range(parts.num_proxies)]
    )
    got = proxy_init.class_mean_proxy_init(
      config, parts.model, state, parts.num_proxies
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # research.common.initial_state (what RQ5 measures at step 0) has them.
    _, start = common.initial_state(config)
    np.testing.assert_array_equal(start.params["proxies"], got)


if __name__ == "__main__":
  absltest.main()
