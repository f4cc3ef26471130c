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
"""Tests of resnet.py, bn_inception.py, their models, frozen BatchNorm, bf16.

Shapes and parameter counts are checked against the published networks
(torchvision's ResNet-50: 25,557,032 parameters with its classifier;
pretrainedmodels' BN-Inception: 11,295,240) by tracing only; that the
layers compute what PyTorch computes is weight_import_test.py's job.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized

from configs import fashion_mnist
from proxy_nca_jax import models
from proxy_nca_jax.models import bn_inception, resnet
from proxy_nca_jax.training import loss_binding, optim, train_state
from proxy_nca_jax.training import step as step_lib


def _shapes(module, image_shape, **kwargs):
  images = jnp.zeros(image_shape)
  variables = jax.eval_shape(
    lambda: module.init(jax.random.key(0), images, train=False, **kwargs)
  )
  out = jax.eval_shape(
    lambda v: module.apply(v, images, train=False, **kwargs), variables
  )
  return variables, out


def _count(tree) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


def _model_config(name, **overrides):
  config = fashion_mnist.get_config()
  config.model.name = name
  for key, value in overrides.items():
    config.model[key] = value
  return config


class ArchitectureTest(parameterized.TestCase):
  def test_resnet50_layout(self):
    variables, out = _shapes(resnet.ResNet(), (1, 224, 224, 3))
    self.assertEqual(out.shape, (1, 7, 7, 2048))
    # torchvision's count less the classifier (2048 x 1000 + 1000).
    self.assertEqual(_count(variables["params"]), 25_557_032 - 2_049_000)
    self.assertLen(optim.batch_norm_modules(variables["params"]), 53)
    _, out = _shapes(resnet.ResNet(), (2, 65, 48, 3))
    self.assertEqual(out.shape, (2, 3, 2, 2048))

  @parameterized.parameters((224, 7), (227, 7), (32, 1), (99, 3))
  def test_bn_inception_sizes(self, size, expected):
    variables, out = _shapes(bn_inception.BNInception(), (1, size, size, 3))
    self.assertEqual(out.shape, (1, expected, expected, 1024))
    # pretrainedmodels' count less last_linear (1024 x 1000 + 1000).
    self.assertEqual(_count(variables["params"]), 11_295_240 - 1_025_000)

  def test_bn_inception_too_small(self):
    with self.assertRaisesRegex(ValueError, "32 is the smallest"):
      _shapes(bn_inception.BNInception(), (1, 30, 30, 3))

  @parameterized.product(
    name=("resnet50", "bn_inception"), dtype=("float32", "bfloat16")
  )
  def test_create_model(self, name, dtype):
    config = _model_config(name, dtype=dtype, embedding_dim=32)
    model = models.create_model(config.model)
    variables, out = _shapes(model, (2, 64, 64, 3))
    self.assertEqual(out.shape, (2, 32))
    self.assertEqual(out.dtype, jnp.float32)
    self.assertEqual(
      set(variables["params"]), {models.BACKBONE_MODULE, models.HEAD_MODULE}
    )
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(variables)}
    self.assertEqual(dtypes, {jnp.dtype(jnp.float32)})

  @parameterized.parameters("convnet_s", "resnet50", "bn_inception")
  def test_batch_norm_modules_are_those_with_statistics(self, name):
    model = models.create_model(_model_config(name).model)
    size = (1, 28, 28, 1) if name == "convnet_s" else (1, 32, 32, 3)
    variables, _ = _shapes(model, size)
    with_stats = {
      path[:-1]
      for path in flax.traverse_util.flatten_dict(variables["batch_stats"])
    }
    self.assertNotEmpty(with_stats)
    self.assertEqual(optim.batch_norm_modules(variables["params"]), with_stats)

  def test_config_errors(self):
    with self.assertRaisesRegex(ValueError, "apply to resnet50 and bn_"):
      models.create_model(_model_config("convnet_s", frozen_bn=True).model)
    with self.assertRaisesRegex(ValueError, "Unknown model.dtype"):
      models.create_model(_model_config("resnet50", dtype="float16").model)


def _tiny_model(*, frozen_bn=False, dtype=jnp.float32):
  return models.BackboneEmbedder(
    backbone=resnet.ResNet(
      stage_sizes=(1, 1), width=4, frozen_bn=frozen_bn, dtype=dtype
    ),
    embedding_dim=8,
  )


@pytest.mark.slow
class SmallResNetTest(parameterized.TestCase):
  """A small ResNet: frozen BatchNorm in a train step, and bfloat16."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.images = jax.random.normal(jax.random.key(0), (6, 16, 16, 3))
    variables = jax.jit(
      lambda x: _tiny_model().init(jax.random.key(1), x, train=False)
    )(cls.images[:1])
    cls.params = {
      "model": variables["params"],
      "proxies": jax.random.normal(jax.random.key(2), (3, 8)),
    }
    # Statistics away from their initial 0 and 1, so "unchanged" is not
    # "still at init"; small enough that the ReLUs stay alive.
    rng = np.random.default_rng(0)
    cls.batch_stats = {
      "backbone": jax.tree.map(
        lambda s: (
          rng.uniform(0.5, 1.5, s.shape).astype(np.float32)
          if s.mean() == 1  # var
          else rng.normal(0.0, 0.1, s.shape).astype(np.float32)
        ),
        variables["batch_stats"]["backbone"],
      )
    }
    cls.steps = {frozen: cls._step(frozen) for frozen in (True, False)}

  @classmethod
  def _step(cls, frozen_bn: bool):
    config = _model_config("resnet50", frozen_bn=frozen_bn, embedding_dim=8)
    config.optimizer.name = "adamw"
    config.optimizer.weight_decay = 0.1  # Must not reach frozen BN either.
    tx, _ = optim.create_optimizer(config)
    model = _tiny_model(frozen_bn=frozen_bn)
    state = train_state.TrainState(
      step=jnp.zeros((), jnp.int32),
      params=cls.params,
      batch_stats=cls.batch_stats,
      opt_state=tx.init(cls.params),
    )
    batch = {"image": cls.images, "label": jnp.array([0, 1, 2, 0, 1, 2])}
    loss_fn = loss_binding.create_loss_fn(config.loss)
    step = jax.jit(
      lambda s, b: step_lib.train_step(
        s, b, model=model, tx=tx, loss_fn=loss_fn
      )
    )
    new_state, metrics = step(state, batch)
    assert metrics["grad_norm"] > 0, "the small ResNet must get gradients"
    return state, new_state

  def _split(self, state):
    params = flax.traverse_util.flatten_dict(state.params["model"])
    bn = optim.batch_norm_modules(state.params["model"])
    bn_params = {k: v for k, v in params.items() if k[:-1] in bn}
    other = {k: v for k, v in params.items() if k[:-1] not in bn}
    stats = flax.traverse_util.flatten_dict(state.batch_stats)
    return bn_params, other, stats

  @parameterized.parameters(True, False)
  def test_train_step_with_frozen_bn(self, frozen_bn):
    before, after = self.steps[frozen_bn]
    bn_before, other_before, stats_before = self._split(before)
    bn_after, other_after, stats_after = self._split(after)
    # Scale and bias of 9 BatchNorms: the stem's, 4 in each block.
    self.assertLen(bn_before, 2 * 9)
    for key in other_before:
      self.assertFalse(
        np.array_equal(other_before[key], other_after[key]), msg=str(key)
      )
    self.assertFalse(
      np.array_equal(before.params["proxies"], after.params["proxies"])
    )
    for old, new in ((bn_before, bn_after), (stats_before, stats_after)):
      for key in old:
        if frozen_bn:
          np.testing.assert_array_equal(old[key], new[key], err_msg=str(key))
        else:
          self.assertFalse(np.array_equal(old[key], new[key]), msg=str(key))

  def test_frozen_bn_trains_with_running_statistics(self):
    frozen = _tiny_model(frozen_bn=True)
    variables = {
      "params": self.params["model"],
      "batch_stats": self.batch_stats,
    }

    @jax.jit
    def embeddings(variables, images):
      train_out, _ = frozen.apply(
        variables, images, train=True, mutable=["batch_stats"]
      )
      eval_out = _tiny_model().apply(variables, images, train=False)
      bf16_out = _tiny_model(dtype=jnp.bfloat16).apply(
        variables, images, train=False
      )
      return train_out, eval_out, bf16_out

    train_out, eval_out, bf16_out = embeddings(variables, self.images)
    np.testing.assert_allclose(np.linalg.norm(eval_out, axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(train_out, eval_out)
    # bfloat16 compute (8-bit mantissa), float32 head: close, unit norm.
    self.assertEqual(bf16_out.dtype, jnp.float32)
    np.testing.assert_allclose(np.linalg.norm(bf16_out, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(bf16_out, eval_out, atol=3e-2)
    self.assertGreater(np.abs(bf16_out - eval_out).max(), 0)


if __name__ == "__main__":
  absltest.main()
