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
"""Tests of vit.py and the ViT models: sizes, readouts, options, training.

Parameter counts are checked against timm's published ones by tracing
only; that the layers compute what PyTorch computes is
vit_import_test.py's job. The small ``vit_test`` (2 blocks, width 64) runs.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from flax import traverse_util

from configs import fashion_mnist
from proxy_nca_jax import models
from proxy_nca_jax.models import vit


def _shapes(module, image_shape):
  """(variables, output), traced once, computing nothing."""
  out, variables = jax.eval_shape(
    lambda: module.init_with_output(
      jax.random.key(0), jnp.zeros(image_shape), train=False
    )
  )
  return variables, out


def _random_variables(module, image_shape, seed=0):
  """Variables of ``module`` drawn in NumPy: compiling ``init`` costs 5 s."""
  variables, _ = _shapes(module, image_shape)
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda s: (0.2 * rng.normal(size=s.shape)).astype(np.float32), variables
  )


def _count(tree) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


def _model_config(name, **vit_options):
  config = fashion_mnist.get_config()
  config.model.name = name
  for key, value in vit_options.items():
    config.model.vit[key] = value
  return config.model


_OPTIONS = {"registers": 2, "layer_scale": True}


def _test_vit(**options) -> vit.VisionTransformer:
  return vit.VisionTransformer(
    size=vit.SIZES[vit.TEST_MODEL], position_size=32, **options
  )


class ArchitectureTest(parameterized.TestCase):
  @parameterized.parameters(
    # timm's vit_{tiny,small,base}_patch16_224 less the classifier.
    ("vit_ti16", 5_717_416 - (192 * 1000 + 1000)),
    ("vit_s16", 22_050_664 - (384 * 1000 + 1000)),
    ("vit_b16", 86_567_656 - (768 * 1000 + 1000)),
  )
  def test_parameter_counts(self, name, expected):
    variables, out = _shapes(
      models.create_backbone(_model_config(name)), (1, 224, 224, 3)
    )
    self.assertEqual(_count(variables["params"]), expected)
    self.assertEqual(set(variables), {"params"})  # No batch statistics.
    self.assertEqual(out.shape, (1, 1, 1, vit.SIZES[name].width))

  @parameterized.parameters(
    ("token", (2, 1, 1, 384)),
    ("gap", (2, 1, 1, 384)),
    ("patches", (2, 11, 9, 384)),
  )
  def test_readouts_at_another_size(self, readout, expected):
    # 160x126 with patch 14 (floor: 11x9 patches), from DINOv2's 37x37 grid.
    module = models.create_backbone(
      _model_config(
        "vit_s14",
        layout="dinov2",
        registers=4,
        position_size=518,
        layer_scale=True,
        readout=readout,
      )
    )
    variables, out = _shapes(module, (2, 160, 126, 3))
    self.assertEqual(out.shape, expected)
    self.assertEqual(variables["params"]["pos_embed"].shape, (1, 1370, 384))
    self.assertEqual(variables["params"]["reg_token"].shape, (1, 4, 384))

  def test_clip_layout(self):
    module = models.create_backbone(
      _model_config("vit_b16", layout="clip", projection_dim=512)
    )
    variables, out = _shapes(module, (1, 224, 224, 3))
    # OpenAI CLIP ViT-B/16's visual tower: 86,192,640 parameters.
    self.assertEqual(_count(variables["params"]), 86_192_640)
    self.assertEqual(out.shape, (1, 1, 1, 512))
    self.assertNotIn("bias", variables["params"]["patch_embed"])

  @parameterized.parameters("float32", "bfloat16")
  def test_create_model(self, dtype):
    config = _model_config("vit_b32", position_size=224)
    config.dtype = dtype
    config.embedding_dim = 32
    model = models.create_model(config)
    variables, out = _shapes(model, (2, 96, 64, 3))
    self.assertEqual(out.shape, (2, 32))
    self.assertEqual(out.dtype, jnp.float32)
    self.assertEqual(
      set(variables["params"]), {models.BACKBONE_MODULE, models.HEAD_MODULE}
    )
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(variables)}
    self.assertEqual(dtypes, {jnp.dtype(jnp.float32)})

  def test_names_and_sizes(self):
    self.assertLen(vit.MODELS, 3 * 3 + 1)  # Ti/S/B x 14/16/32, vit_test.
    for name in vit.MODELS:
      self.assertIn(name, models.MODELS)
      backbone = models.create_backbone(_model_config(name))
      self.assertEqual(backbone.size, vit.SIZES[name])
    self.assertEqual(vit.SIZES["vit_b32"], vit.Size(768, 12, 12, 32))
    self.assertEqual(vit.SIZES["vit_ti14"], vit.Size(192, 12, 3, 14))

  def test_option_errors(self):
    for options, message in (
      ({"layout": "hf"}, "layout 'hf' is none of"),
      ({"readout": "cls"}, "readout 'cls' is none of"),
      ({"position_size": 36}, "position_size=36 is no multiple of the pat"),
      ({"layout": "dinov2", "prefix_positions": False}, "must be True"),
      ({"layout": "clip", "registers": 4}, "clip layout has no registers"),
      ({"drop_path": 1.0}, r"drop_path=1.0 is outside \[0, 1\)"),
    ):
      with self.assertRaisesRegex(ValueError, message):
        models.create_backbone(_model_config("vit_test", **options))
    config = _model_config("vit_test")
    config.frozen_bn = True
    with self.assertRaisesRegex(ValueError, "vit_test has no BatchNorm"):
      models.create_model(config)
    with self.assertRaisesRegex(ValueError, "smaller than one 8x8 patch"):
      _shapes(_test_vit(), (1, 7, 32, 3))


class SmallViTTest(parameterized.TestCase):
  """``vit_test`` runs: bf16, stochastic depth, gradients."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.images = jax.random.normal(jax.random.key(0), (4, 32, 24, 3))
    cls.variables = _random_variables(_test_vit(**_OPTIONS), (1, 32, 24, 3))

  def test_bfloat16_close_to_float32(self):
    @jax.jit
    def both(variables, images):
      return [
        _test_vit(**_OPTIONS, dtype=dtype).apply(variables, images, train=False)
        for dtype in (jnp.float32, jnp.bfloat16)
      ]

    outs = both(self.variables, self.images)
    self.assertEqual(outs[1].dtype, jnp.bfloat16)
    np.testing.assert_allclose(
      outs[1].astype(jnp.float32), outs[0], rtol=0, atol=0.1
    )
    self.assertGreater(np.abs(outs[1] - outs[0]).max(), 0)

  def test_drop_path_drops_whole_samples_in_training_only(self):
    x = jnp.tile(jax.random.normal(jax.random.key(2), (1, 5, 64)), (64, 1, 1))

    block = vit.Block(num_heads=2, norm_eps=1e-6, drop_path=0.5)
    params = _random_variables(block, x.shape)

    @jax.jit
    def outputs(params, x):
      kept = vit.Block(num_heads=2, norm_eps=1e-6).apply(params, x, train=True)
      return (
        block.apply(params, x, train=True, rngs={"dropout": jax.random.key(4)}),
        block.apply(params, x, train=False),
        kept,
      )

    out, evaluated, without_drop_path = outputs(params, x)
    rows = {tuple(np.round(np.asarray(row).ravel(), 5)) for row in out}
    # Each branch is kept (scaled by 2) or dropped, per sample and
    # independently: 4 outcomes, one of them the input itself.
    self.assertLen(rows, 4)
    self.assertIn(tuple(np.round(np.asarray(x[0]).ravel(), 5)), rows)
    # In evaluation, and in training at rate 0, every branch counts.
    np.testing.assert_array_equal(evaluated, without_drop_path)
    self.assertNotIn(
      tuple(np.round(np.asarray(evaluated[0]).ravel(), 5)),
      {tuple(np.round(np.asarray(x[0]).ravel(), 5))},
    )

  def test_drop_path_needs_its_rng(self):
    model = _test_vit(**_OPTIONS, drop_path=0.1)
    with self.assertRaisesRegex(ValueError, "rngs={'dropout': key}"):
      jax.eval_shape(
        lambda v: model.apply(v, self.images, train=True), self.variables
      )
    # Evaluation needs none.
    jax.eval_shape(
      lambda v: model.apply(v, self.images, train=False), self.variables
    )

  def test_every_parameter_gets_a_gradient(self):
    model = models.BackboneEmbedder(
      backbone=_test_vit(**_OPTIONS, drop_path=0.2), embedding_dim=8
    )

    params = _random_variables(model, self.images.shape)["params"]

    @jax.jit
    def grads(params, images, key):
      def loss(params):
        out = model.apply(
          {"params": params}, images, train=True, rngs={"dropout": key}
        )
        return jnp.sum(out[:, 0])

      return jax.grad(loss)(params)

    flat = traverse_util.flatten_dict(
      grads(params, self.images, jax.random.key(6))
    )
    self.assertLen(flat, 2 + 5 + 2 * 14 + 2)  # Head, embedding, blocks, norm.
    for key, grad in flat.items():
      self.assertGreater(float(jnp.abs(grad).max()), 0, msg=str(key))


if __name__ == "__main__":
  absltest.main()
