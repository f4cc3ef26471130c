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

import jax
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
    self.assertEqual(config.negative_fraction, 1.0)
    # The class-weight losses: the papers' and pytorch-metric-learning's
    # defaults (ArcFace margins in radians).
    self.assertEqual(config.softmax_temperature, 0.05)
    self.assertEqual(config.cosine_scale, 64.0)
    self.assertEqual(config.cosface_margin, 0.35)
    self.assertEqual(config.arcface_margin, 0.5)
    self.assertEqual(config.sub_centers, 3)
    self.assertEqual(tuple(config.dynamic_margin_bounds), (0.05, 0.5))
    self.assertEqual(config.dynamic_margin_power, 0.25)
    self.assertEqual(config.soft_triple_centers, 10)
    self.assertEqual(config.soft_triple_la, 20.0)
    self.assertEqual(config.soft_triple_gamma, 0.1)
    self.assertEqual(config.soft_triple_margin, 0.01)
    self.assertEqual(config.soft_triple_tau, 0.2)

  @parameterized.parameters(*losses.LOSSES)
  def test_every_loss_dispatches_with_its_options(self, name):
    # The config's defaults (test_config_defaults), written out; the losses
    # with K centres a class get 4 K proxy rows.
    counts = np.array([5, 1, 2, 8])  # dynamic_arcface's class sizes.
    direct = {
      "proxy_nca": lambda x, y, p: losses.proxy_nca_loss(x, y, p, scale=16.0),
      "proxy_ranking": lambda x, y, p: losses.proxy_ranking_loss(
        x, y, p, margin=0.2
      ),
      "proxy_anchor": lambda x, y, p: losses.proxy_anchor_loss(
        x, y, p, alpha=32.0, delta=0.1
      ),
      "normalized_softmax": lambda x, y, p: losses.normalized_softmax_loss(
        x, y, p, temperature=0.05
      ),
      "cosface": lambda x, y, p: losses.cosface_loss(
        x, y, p, margin=0.35, scale=64.0
      ),
      "arcface": lambda x, y, p: losses.arcface_loss(
        x, y, p, margin=0.5, scale=64.0
      ),
      "subcenter_arcface": lambda x, y, p: losses.subcenter_arcface_loss(
        x, y, p, margin=0.5, scale=64.0, centers_per_class=3
      ),
      "dynamic_arcface": lambda x, y, p: losses.dynamic_arcface_loss(
        x,
        y,
        p,
        class_counts=counts,
        margin_bounds=(0.05, 0.5),
        power=0.25,
        scale=64.0,
        centers_per_class=3,
      ),
      "soft_triple": lambda x, y, p: losses.soft_triple_loss(
        x, y, p, centers_per_class=10, la=20.0, gamma=0.1, margin=0.01, tau=0.2
      ),
      "triplet_all": lambda x, y, p: pair.triplet_all_loss(x, y),
      "triplet_semihard": lambda x, y, p: pair.triplet_semihard_loss(x, y),
      "triplet_batch_hard": lambda x, y, p: pair.triplet_batch_hard_loss(x, y),
      "lifted_structure": lambda x, y, p: pair.lifted_structure_loss(
        x, y, margin=1.0
      ),
      "npairs": lambda x, y, p: pair.npairs_loss(x, y, scale=16.0),
      "contrastive": lambda x, y, p: pair.contrastive_loss(x, y, margin=1.0),
      "nca": lambda x, y, p: pair.nca_loss(x, y, scale=16.0),
    }[name]
    k = {"subcenter_arcface": 3, "dynamic_arcface": 3, "soft_triple": 10}
    x, labels, proxies = loss_cases.random_batch(
      12, num_proxies=4 * k.get(name, 1)
    )
    config = loss_cases.loss_config(name)
    got = jax.jit(loss_cases.create_loss_fn(config, class_counts=counts))
    np.testing.assert_allclose(
      got(x, labels, proxies), jax.jit(direct)(x, labels, proxies), rtol=1e-6
    )

  @parameterized.named_parameters(
    (
      "normalized_softmax",
      "normalized_softmax",
      dict(softmax_temperature=0.5),
      lambda x, y, p: losses.normalized_softmax_loss(x, y, p, temperature=0.5),
      1,
    ),
    (
      "cosface",
      "cosface",
      dict(cosface_margin=0.1, cosine_scale=8.0),
      lambda x, y, p: losses.cosface_loss(x, y, p, margin=0.1, scale=8.0),
      1,
    ),
    (
      "arcface",
      "arcface",
      dict(arcface_margin=1.0, cosine_scale=8.0),
      lambda x, y, p: losses.arcface_loss(x, y, p, margin=1.0, scale=8.0),
      1,
    ),
    (
      "subcenter_arcface",
      "subcenter_arcface",
      dict(arcface_margin=1.0, cosine_scale=8.0, sub_centers=2),
      lambda x, y, p: losses.subcenter_arcface_loss(
        x, y, p, margin=1.0, scale=8.0, centers_per_class=2
      ),
      2,
    ),
    (
      "dynamic_arcface",
      "dynamic_arcface",
      dict(
        dynamic_margin_bounds=(0.2, 1.0),
        dynamic_margin_power=0.5,
        cosine_scale=8.0,
        sub_centers=2,
      ),
      lambda x, y, p: losses.dynamic_arcface_loss(
        x,
        y,
        p,
        class_counts=np.array([5, 1, 2, 8]),
        margin_bounds=(0.2, 1.0),
        power=0.5,
        scale=8.0,
        centers_per_class=2,
      ),
      2,
    ),
    (
      "soft_triple",
      "soft_triple",
      dict(
        soft_triple_centers=2,
        soft_triple_la=5.0,
        soft_triple_gamma=0.5,
        soft_triple_margin=0.2,
        soft_triple_tau=0.1,
      ),
      lambda x, y, p: losses.soft_triple_loss(
        x, y, p, centers_per_class=2, la=5.0, gamma=0.5, margin=0.2, tau=0.1
      ),
      2,
    ),
  )
  def test_class_weight_options_reach_the_loss(
    self, name, overrides, direct, k
  ):
    x, labels, proxies = loss_cases.random_batch(13, num_proxies=4 * k)
    config = loss_cases.loss_config(name, **overrides)
    got = jax.jit(
      loss_cases.create_loss_fn(config, class_counts=np.array([5, 1, 2, 8]))
    )
    np.testing.assert_allclose(
      got(x, labels, proxies), jax.jit(direct)(x, labels, proxies), rtol=1e-6
    )

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
    dict(name="proxy_ranking"),
    dict(name="proxy_ranking", assignment="dynamic"),
    dict(name="triplet_semihard"),
    dict(name="nca"),
    dict(assignment="dynamic"),
  )
  def test_sampled_negatives_need_class_weights(self, **overrides):
    config = loss_cases.loss_config(
      overrides.pop("name", "proxy_nca"),
      scale=3.0,
      negative_fraction=0.5,
      **overrides,
    )
    with self.assertRaisesRegex(
      ValueError, r"needs a loss with one proxy \(or K centres\) per class"
    ):
      loss_binding.create_loss_fn(config)

  # dynamic_arcface: the sampled labels are positions among the sampled
  # classes, and each sample must still get its own class's margin.
  @parameterized.parameters(
    "proxy_nca", "normalized_softmax", *losses.CLASS_WEIGHT_LOSSES
  )
  def test_sampled_negatives_of_class_weight_losses(self, name):
    self._check_sampled_negatives(name)

  def _check_sampled_negatives(self, name):
    """Two samples of classes 2 and 3 of 4, fraction 0.5: the step's
    classes are exactly the batch's (max(ceil(0.5 C), min(B, C)) = 2), so
    the loss is the loss over classes 2 and 3 alone."""
    k = {"subcenter_arcface": 3, "dynamic_arcface": 3, "soft_triple": 10}
    k = k.get(name, 1)
    x, _, proxies = loss_cases.random_batch(14, num_proxies=4 * k)
    x, labels = x[:2], np.array([2, 3], np.int32)
    # dynamic_arcface: classes 2 and 3 are the smallest and the largest,
    # with the bounds as margins, alone or among the four.
    counts = np.array([10, 10, 1, 100])
    config = loss_cases.loss_config(name, negative_fraction=0.5)
    fn = loss_binding.create_loss_fn(config, class_counts=counts)
    full = loss_cases.create_loss_fn(
      loss_cases.loss_config(name), class_counts=counts[2:]
    )
    for step in (0, 1):
      np.testing.assert_allclose(
        jax.jit(fn)(x, labels, proxies, step),
        jax.jit(full)(x, labels - 2, proxies[2 * k :]),
        rtol=1e-5,
      )


if __name__ == "__main__":
  absltest.main()
