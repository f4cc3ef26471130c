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
"""Tests of training/optim.py: parameter groups, their learning rates and
schedules, and the optimisers' update rules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

from configs import fashion_mnist
from proxy_nca_jax import models
from proxy_nca_jax.training import optim


class OptimTest(absltest.TestCase):
  def _config(self, name="sgd"):
    config = fashion_mnist.get_config()
    with config.unlocked():
      config.optimizer.name = name
      config.optimizer.momentum = 0.0
      config.optimizer.learning_rate = 0.1
      config.optimizer.head_lr_mult = 2.0
      config.optimizer.proxy_lr_mult = 30.0
    return config

  def _params(self):
    return {
      "model": {
        "ConvBNReLU_0": {"Conv_0": {"kernel": jnp.ones((2,))}},
        models.HEAD_MODULE: {"kernel": jnp.ones((2,))},
      },
      "proxies": jnp.ones((3, 2)),
    }

  def test_groups(self):
    labels = optim.param_groups(self._params())
    self.assertEqual(labels["proxies"], "proxies")
    self.assertEqual(labels["model"][models.HEAD_MODULE]["kernel"], "head")
    self.assertEqual(
      labels["model"]["ConvBNReLU_0"]["Conv_0"]["kernel"], "backbone"
    )

  def test_each_group_gets_its_learning_rate(self):
    tx, _ = optim.create_optimizer(self._config())
    params = self._params()
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    # Plain SGD: update = -lr * mult * grad, by hand.
    np.testing.assert_allclose(
      updates["model"]["ConvBNReLU_0"]["Conv_0"]["kernel"], -0.1
    )
    np.testing.assert_allclose(
      updates["model"][models.HEAD_MODULE]["kernel"], -0.2
    )
    np.testing.assert_allclose(updates["proxies"], -3.0, rtol=1e-6)

  def test_cosine_schedule_with_warmup(self):
    config = self._config()
    with config.unlocked():
      config.schedule.num_steps = 110
      config.schedule.warmup_steps = 10
      config.schedule.decay = "cosine"
    schedules = optim.group_schedules(config)
    np.testing.assert_allclose(schedules["backbone"](5), 0.05, rtol=1e-6)
    np.testing.assert_allclose(schedules["backbone"](10), 0.1, rtol=1e-6)
    np.testing.assert_allclose(schedules["backbone"](60), 0.05, rtol=1e-5)
    np.testing.assert_allclose(schedules["proxies"](110), 0.0, atol=1e-7)

  def test_adam_epsilon_against_float64_formula(self):
    # ProxyNCA++'s eps 1.0 damps small gradients: check the update rule by
    # hand, m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps), two steps.
    config = self._config("adam")
    with config.unlocked():
      config.optimizer.eps = 1.0
    tx, _ = optim.create_optimizer(config)
    params = self._params()
    state = tx.init(params)
    grad_values = np.array([[0.5, -2.0], [1e-3, 3.0]])
    m = v = np.zeros(2)
    for t, g in enumerate(grad_values, start=1):
      grads = jax.tree.map(lambda x, g=g: jnp.broadcast_to(g, x.shape), params)
      updates, state = tx.update(grads, state, params)
      m = 0.9 * m + 0.1 * g
      v = 0.999 * v + 0.001 * g**2
      expected = -0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1)
      np.testing.assert_allclose(
        updates["model"]["ConvBNReLU_0"]["Conv_0"]["kernel"],
        expected,
        rtol=1e-5,
      )
      np.testing.assert_allclose(
        updates["proxies"], np.broadcast_to(30 * expected, (3, 2)), rtol=1e-5
      )

  def _vit_config(self, name="sgd", **optimizer):
    config = self._config(name)
    with config.unlocked():
      config.model.name = "vit_test"  # Two blocks: layers 0 to 3.
      config.model.widths = ()
      for field, value in optimizer.items():
        setattr(config.optimizer, field, value)
    return config

  def _vit_params(self, config):
    model = models.create_model(config.model)
    variables = jax.eval_shape(
      lambda: model.init(
        jax.random.key(0), jnp.zeros((1, 16, 16, 3)), train=False
      )
    )
    params = {"model": variables["params"], "proxies": jnp.ones((3, 2))}
    return jax.tree.map(lambda x: jnp.ones(x.shape, x.dtype), params)

  def test_layer_decay_scales_each_vit_layer_by_hand(self):
    # SGD 0.1, d = 0.5, L = 2: layer l learns at 0.1 * 0.5^(3 - l).
    config = self._vit_config(layer_decay=0.5)
    tx, _ = optim.create_optimizer(config)
    params = self._vit_params(config)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    backbone = updates["model"][models.BACKBONE_MODULE]
    expected = {
      "patch_embed": -0.1 * 0.5**3,
      "cls_token": -0.1 * 0.5**3,
      "pos_embed": -0.1 * 0.5**3,
      "blocks_0": -0.1 * 0.5**2,
      "blocks_1": -0.1 * 0.5,
      "norm": -0.1,
    }
    self.assertEqual(set(backbone), set(expected))
    for module, value in expected.items():
      for leaf in jax.tree.leaves(backbone[module]):
        np.testing.assert_allclose(leaf, value, rtol=1e-6, err_msg=module)
    np.testing.assert_allclose(
      updates["model"][models.HEAD_MODULE]["kernel"], -0.2, rtol=1e-6
    )
    np.testing.assert_allclose(updates["proxies"], -3.0, rtol=1e-6)

  def test_layer_decay_one_changes_nothing(self):
    config = self._vit_config("adamw", weight_decay=0.05)
    params = self._vit_params(config)
    grads = jax.tree.map(lambda x: 0.3 * jnp.ones_like(x), params)
    tx_off, _ = optim.create_optimizer(config)
    with config.unlocked():
      config.optimizer.layer_decay = 1.0
    tx_one, _ = optim.create_optimizer(config)
    off, _ = tx_off.update(grads, tx_off.init(params), params)
    one, _ = tx_one.update(grads, tx_one.init(params), params)
    jax.tree.map(np.testing.assert_array_equal, off, one)

  def test_decay_matrices_only_spares_vectors_tokens_and_positions(self):
    # AdamW, zero gradients: the update is the decoupled decay alone,
    # -lr * wd * p = -0.1 * 0.5 * 1 on the backbone's kernels (the head's
    # learning rate is twice), 0 elsewhere.
    config = self._vit_config(
      "adamw", weight_decay=0.5, decay_matrices_only=True
    )
    tx, _ = optim.create_optimizer(config)
    params = self._vit_params(config)
    grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    flat = {
      "/".join(str(getattr(k, "key", k)) for k in path): leaf
      for path, leaf in jax.tree_util.tree_leaves_with_path(updates["model"])
    }
    decayed = {path for path, leaf in flat.items() if np.any(leaf != 0)}
    for path, leaf in flat.items():
      if path.endswith("kernel"):
        want = -0.1 if path.startswith(models.HEAD_MODULE) else -0.05
        np.testing.assert_allclose(leaf, want, rtol=1e-6, err_msg=path)
      else:
        self.assertNotIn(path, decayed)
    self.assertIn("backbone/blocks_1/attn/qkv/kernel", decayed)
    self.assertIn("backbone/patch_embed/kernel", decayed)
    self.assertNotIn("backbone/pos_embed", decayed)
    self.assertNotIn("backbone/cls_token", decayed)

  def test_layer_decay_refusals(self):
    config = self._config()
    with config.unlocked():
      config.optimizer.layer_decay = 0.7
    with self.assertRaisesRegex(ValueError, "applies to the ViT backbones"):
      optim.create_optimizer(config)
    with self.assertRaisesRegex(ValueError, r"must be in \(0, 1\]"):
      optim.create_optimizer(self._vit_config(layer_decay=1.5))

  def test_all_optimizers_build_and_bad_name_errors(self):
    for name in optim.OPTIMIZERS:
      tx, _ = optim.create_optimizer(self._config(name))
      self.assertIsInstance(tx, optax.GradientTransformation)
    with self.assertRaisesRegex(ValueError, "optimizer.name must be one of"):
      optim.create_optimizer(self._config("lamb"))


if __name__ == "__main__":
  absltest.main()
