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

  def test_all_optimizers_build_and_bad_name_errors(self):
    for name in optim.OPTIMIZERS:
      tx, _ = optim.create_optimizer(self._config(name))
      self.assertIsInstance(tx, optax.GradientTransformation)
    with self.assertRaisesRegex(ValueError, "optimizer.name must be one of"):
      optim.create_optimizer(self._config("lamb"))


if __name__ == "__main__":
  absltest.main()
