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
"""Tests of models/__init__.py: convnet-S and the embedding head."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl.testing import absltest, parameterized

from configs import fashion_mnist
from proxy_nca_jax import models


class ConvNetSTest(absltest.TestCase):
  def test_output_is_unit_norm_embedding(self):
    model = models.create_model(fashion_mnist.get_config().model)
    images = jax.random.normal(jax.random.key(0), (4, 28, 28, 1))
    # Jitted: one compilation each instead of one per operation.
    variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.key(1), images
    )
    out, _ = jax.jit(
      functools.partial(model.apply, train=True, mutable=["batch_stats"])
    )(variables, images)
    chex.assert_shape(out, (4, 64))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)

  def test_layers_match_the_design(self):
    model = models.ConvNetS(embedding_dim=16, widths=(8, 16, 32))
    # The layers' shapes, without computing them.
    variables = jax.eval_shape(
      functools.partial(model.init, train=False),
      jax.random.key(0),
      jnp.zeros((1, 28, 28, 1)),
    )
    kernels = [
      leaf.shape
      for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])
      if path[-1].key == "kernel"
    ]
    # Five 3x3 convolutions (no bias, BN follows) and the embedding layer.
    self.assertEqual(
      kernels,
      [
        (3, 3, 1, 8),
        (3, 3, 8, 8),
        (3, 3, 8, 16),
        (3, 3, 16, 16),
        (3, 3, 16, 32),
        (32, 16),
      ],
    )
    self.assertIn(models.HEAD_MODULE, variables["params"])
    self.assertLen(variables["batch_stats"], 5)

  def test_unknown_model_is_a_clear_error(self):
    config = ml_collections.ConfigDict(
      {"name": "resnet", "embedding_dim": 8, "widths": (1, 2, 3)}
    )
    with self.assertRaisesRegex(ValueError, "Unknown model 'resnet'"):
      models.create_model(config)


class _Head(nn.Module):
  pooling: str
  layer_norm: bool

  @nn.compact
  def __call__(self, features):
    return models.embedding_head(
      features,
      embedding_dim=3,
      pooling=self.pooling,
      layer_norm=self.layer_norm,
    )


class EmbeddingHeadTest(parameterized.TestCase):
  @parameterized.product(pooling=("avg", "max"), layer_norm=(False, True))
  def test_against_numpy(self, pooling, layer_norm):
    features = np.random.default_rng(0).normal(size=(5, 4, 3, 6))
    head = _Head(pooling, layer_norm)
    variables = head.init(jax.random.key(0), jnp.float32(features))
    # The head's only parameters are the embedding layer's, at the same
    # path for every pooling and normalisation.
    self.assertEqual(list(variables["params"]), [models.HEAD_MODULE])
    out = head.apply(variables, jnp.float32(features))
    dense = variables["params"][models.HEAD_MODULE]
    pooled = (features.max if pooling == "max" else features.mean)((1, 2))
    if layer_norm:
      centred = pooled - pooled.mean(1, keepdims=True)
      pooled = centred / np.sqrt(np.mean(centred**2, 1, keepdims=True) + 1e-6)
    y = pooled @ np.float64(dense["kernel"]) + np.float64(dense["bias"])
    expected = y / np.linalg.norm(y, axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, atol=1e-5)

  def test_unknown_pooling_is_a_clear_error(self):
    config = fashion_mnist.get_config().model.copy_and_resolve_references()
    config.pooling = "sum"
    with self.assertRaisesRegex(ValueError, "Unknown model.pooling 'sum'"):
      models.create_model(config)


if __name__ == "__main__":
  absltest.main()
