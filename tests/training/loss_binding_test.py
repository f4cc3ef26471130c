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
"""Tests of training/loss_binding.py: a config's loss section, bound.

``create_loss_fn`` must call the loss the config names with the options it
sets (compared with the pure loss called directly), and refuse a bad config
(sampled negatives for a loss that cannot have them included) when it is
created. The losses' own values are tested in tests/losses/, sampled
negatives in tests/losses/sampled_proxies_test.py.
"""

import numpy as np
from absl.testing import absltest, parameterized

from configs import fashion_mnist
from proxy_nca_jax import losses
from proxy_nca_jax.losses import pair
from proxy_nca_jax.training import loss_binding
from tests.testing import loss_cases


class CreateLossFnTest(parameterized.TestCase):
  def test_config_defaults(self):
    config = fashion_mnist.get_config().loss
    self.assertEqual(config.name, "proxy_nca")
    self.assertEqual(config.form, "softmax")
    self.assertEqual(config.scale, 16.0)
    self.assertEqual(config.margin, 0.2)
    self.assertEqual(config.assignment, "static")
    self.assertEqual(config.label_smoothing, 0.0)
    self.assertEqual((config.embedding_norm, config.proxy_norm), (1.0, 1.0))
    self.assertEqual(config.proxy_anchor_alpha, 32.0)
    self.assertEqual(config.proxy_anchor_delta, 0.1)
    self.assertEqual(config.lifted_margin, 1.0)
    self.assertEqual(config.contrastive_margin, 1.0)

  @parameterized.parameters(*losses.LOSSES)
  def test_every_loss_dispatches_with_its_options(self, name):
    x, labels, proxies = loss_cases.random_batch(12)
    config = loss_cases.loss_config(name)
    direct = {
      "proxy_nca": lambda: losses.proxy_nca_loss(
        x, labels, proxies, scale=16.0
      ),
      "proxy_ranking": lambda: losses.proxy_ranking_loss(
        x, labels, proxies, margin=0.2
      ),
      "proxy_anchor": lambda: losses.proxy_anchor_loss(
        x, labels, proxies, alpha=32.0, delta=0.1
      ),
      "triplet_all": lambda: pair.triplet_all_loss(x, labels),
      "triplet_semihard": lambda: pair.triplet_semihard_loss(x, labels),
      "triplet_batch_hard": lambda: pair.triplet_batch_hard_loss(x, labels),
      "lifted_structure": lambda: pair.lifted_structure_loss(
        x, labels, margin=1.0
      ),
      "npairs": lambda: pair.npairs_loss(x, labels, scale=16.0),
      "contrastive": lambda: pair.contrastive_loss(x, labels, margin=1.0),
      "nca": lambda: pair.nca_loss(x, labels, scale=16.0),
    }[name]
    got = loss_cases.create_loss_fn(config)(x, labels, proxies)
    np.testing.assert_allclose(got, direct(), rtol=1e-6)

  def test_options_reach_the_loss(self):
    x, labels, proxies = loss_cases.random_batch(13)
    config = loss_cases.loss_config(
      "proxy_nca", form="paper", scale=2.0, assignment="dynamic"
    )
    np.testing.assert_allclose(
      loss_cases.create_loss_fn(config)(x, labels, proxies),
      losses.proxy_nca_loss(
        x, labels, proxies, form="paper", scale=2.0, assignment="dynamic"
      ),
      rtol=1e-6,
    )
    config = loss_cases.loss_config("nca", form="paper", scale=2.0)
    np.testing.assert_allclose(
      loss_cases.create_loss_fn(config)(x, labels, proxies),
      pair.nca_loss(x, labels, form="paper", scale=2.0),
      rtol=1e-6,
    )

  @parameterized.named_parameters(
    ("name", dict(name="sphereface"), "loss.name must be one of"),
    ("form", dict(form="nca"), "form must be one of"),
    ("smoothing", dict(form="paper", label_smoothing=0.1), "softmax"),
    ("assignment", dict(name="proxy_ranking", assignment="x"), "assignment"),
    ("nca_scale", dict(name="nca", scale=0.0), "scale must be positive"),
  )
  def test_bad_config_raises_when_created(self, overrides, message):
    config = loss_cases.loss_config(
      overrides.pop("name", "proxy_nca"), **overrides
    )
    with self.assertRaisesRegex(ValueError, message):
      loss_cases.create_loss_fn(config)

  @parameterized.parameters(
    dict(name="proxy_anchor"),
    dict(name="triplet_semihard"),
    dict(assignment="dynamic"),
  )
  def test_sampled_negatives_need_static_proxy_nca(self, **overrides):
    config = loss_cases.loss_config(
      overrides.pop("name", "proxy_nca"),
      scale=3.0,
      negative_fraction=0.5,
      **overrides,
    )
    with self.assertRaisesRegex(ValueError, "needs loss.name='proxy_nca'"):
      loss_binding.create_loss_fn(config)


if __name__ == "__main__":
  absltest.main()
