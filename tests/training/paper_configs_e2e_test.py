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
"""End to end per benchmark config: real backbone, mocked dataset, on CPU.

Each recipe once, on two of the three dataset configs: configs/cars196.py
with the paper recipe (BN-Inception), configs/cub200.py with the ProxyNCA++
recipe (ResNet-50). (CUB or SOP with the paper recipe would compile
BN-Inception's train step again, 38 s for SOP, for nothing the other cases
do not check: their recipe is the Cars196 case's; SOP's dataset parts,
11,318 train classes included, are tests/data/paper_datasets_test.py's, and
its Recall@K columns tests/configs_test.py's.) Each trains two steps on
`tfds.testing.mock_data`-style generated images served under the real tfds
name, evaluates the test classes, writes a checkpoint and runs the evaluate
command's code (its metrics must equal the training evaluation's);
the checkpoint is read back and checked against published numbers
(parameter counts of the networks, the paper's class splits and embedding
sizes, each dataset's Recall@K columns), and its retrieval grid
must show the test images in their true colours (BN-Inception sees BGR).
For Cars196 the embedder is also exported (jax.export, 40 x 48 inputs) and
must embed images as the evaluation recipe and the checkpoint's network do.
Images are 32 px (BN-Inception's smallest input, 1x1 before pooling) to
keep the CPU cost to the compiles.
"""

import functools
import json
import math
import pathlib
import shutil
import tempfile

import flax
import jax
import numpy as np
import pytest
from absl.testing import absltest, parameterized
from PIL import Image

from proxy_nca_jax import models, parallel
from proxy_nca_jax.data import rgb_preprocessing
from proxy_nca_jax.deployment import embedder, exported_model
from proxy_nca_jax.reports import workdir_report
from proxy_nca_jax.training import trainer, workdirs
from tests.data import paper_datasets_test
from tests.testing import fake_images

# Real runs and subprocesses: left out of make test-fast.
pytestmark = pytest.mark.slow

# Published parameter counts without the 1000-way classifier:
# torchvision ResNet-50 25,557,032 - 2,049,000; BN-Inception (Ioffe &
# Szegedy 2015, the Caffe/PyTorch port) 11,295,240 - 1,025,000.
BACKBONE_PARAMS = {"resnet50": 23_508_032, "bn_inception": 10_270_240}
# Recall@K columns of each dataset's table in the paper.
RECALL_KS = {
  "caltech_birds2011": (1, 2, 4, 8),
  "cars196": (1, 2, 4, 8),
}
STEPS = 2
ORANGE = (255, 160, 0)


def _mock_labels(num_train: int) -> np.ndarray:
  """4 images of each of 3 train and 3 test classes (ids at the edges)."""
  classes = [0, 1, num_train - 1, num_train, num_train + 1, num_train + 7]
  return np.repeat(np.array(classes), 4)


# Two classes, one per recipe, so that pytest-xdist (--dist loadscope)
# runs them on both workers.
# The last field: also export the embedder and check it (one case: the
# export of a colour backbone, the grey one is tests/deployment/).
PAPER_RECIPE_CASES = (("cars196", None, "bn_inception", 64, True),)
PROXYNCA_PP_RECIPE_CASE = (
  "caltech_birds2011",
  "recipe=proxynca_pp",
  "resnet50",
  512,
  False,
)


class _EndToEnd(parameterized.TestCase):
  def check_config(self, name, arg, backbone, embedding_dim, export):
    module, _, _, num_train, _ = paper_datasets_test.PAPER[name]
    tmp = pathlib.Path(tempfile.mkdtemp())
    self.addCleanup(shutil.rmtree, tmp)
    config = module.get_config(",".join(filter(None, [arg, "smoke"])))
    with config.unlocked():
      config.input.data_dir = str(tmp / "data")
      config.input.check_num_examples = False
      config.input.image_size = 32
      config.input.eval_resize = 36
      config.input.batch_size = 8
      config.input.eval_batch_size = 16
      config.schedule.num_steps = STEPS
      config.log_every_steps = 1
      config.evals.every_steps = 0
      config.evals.at_step_zero = False
      config.evals.kmeans_iters = 5
      config.ckpt.every_steps = 0  # Saved once, at the end.
    labels = _mock_labels(num_train)
    rng = np.random.default_rng(0)
    # Train images are noise; every test image is orange, so the
    # grid must show orange, not the blue of swapped R and B channels.
    images = [
      fake_images.encode(
        np.broadcast_to(np.array(ORANGE, np.uint8), (40, 48, 3)).copy()
        if label >= num_train
        else rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
      )
      for label in labels
    ]
    splits = paper_datasets_test.tfds_splits(name, labels, images)
    workdir = tmp / "workdir"
    # One device: the large backbones compile ~40% faster than for 8, and
    # sharding is tested elsewhere (trainer_test, multiprocess_test).
    mesh = parallel.create_mesh(jax.devices()[:1])
    with (
      fake_images.mocked_dataset(name, tmp / "data", splits),
      self.assertLogs(level="WARNING") as logs,
    ):
      results = trainer.train_and_evaluate(config, str(workdir), mesh)
      evaluated = workdir_report.evaluate_workdir(str(workdir), mesh=mesh)
    restored, model, state = workdirs.restore_train_state(str(workdir), mesh)
    if export:
      self.check_export(workdir, tmp, rng, restored, model, state)

    # No pretrained weights here: the run says what that means.
    self.assertTrue(
      any(f"model.name={backbone} starts from random" in r for r in logs.output)
    )
    self.assertEqual(list(results), [STEPS])
    self.assertEqual(
      {k for k in results[STEPS] if k.startswith("recall@")},
      {f"recall@{k}" for k in RECALL_KS[name]},
    )
    # 12 test images: Recall@1 is a multiple of 1/12 in [0, 1].
    recall = results[STEPS]["recall@1"] * 12
    self.assertAlmostEqual(recall, round(recall), places=4)
    self.assertBetween(recall, 0, 12)
    # The evaluate command's code, on the same state, gives the same row.
    self.assertEqual(evaluated["step"], STEPS)
    for key, value in results[STEPS].items():
      self.assertAlmostEqual(evaluated["metrics"][key], value, places=5)
    with open(workdir / "metrics.jsonl") as f:
      losses = [r["loss"] for r in map(json.loads, f) if "loss" in r]
    self.assertLen(losses, STEPS)
    self.assertTrue(all(math.isfinite(x) for x in losses), losses)

    self.assertEqual(restored.model.name, backbone)
    self.assertEqual(int(state.step), STEPS)
    self.assertEqual(state.params["proxies"].shape, (num_train, embedding_dim))
    backbone_params = flax.traverse_util.flatten_dict(
      state.params["model"][models.BACKBONE_MODULE]
    )
    self.assertEqual(
      sum(v.size for v in backbone_params.values()), BACKBONE_PARAMS[backbone]
    )

    with Image.open(
      workdir / workdir_report.RETRIEVAL.format(split="test")
    ) as png:
      pixels = np.asarray(png.convert("RGB"), np.int32)
    near = lambda rgb: np.all(np.abs(pixels - rgb) <= 8, axis=-1).sum()  # noqa: E731
    # 6 queries and 8 neighbours among 12 images: 54 cells of 32 x 32.
    self.assertGreater(near(ORANGE), 54 * 16 * 16)
    self.assertEqual(near(ORANGE[::-1]), 0)

  def check_export(self, workdir, tmp, rng, config, model, state):
    """The exported embedder (40 x 48 inputs, resized inside) equals the
    evaluation recipe (TF resize, crop, colours) and the checkpoint's
    network (``config``, ``model`` and ``state`` restored on the run's one
    device) within 1e-5."""
    pixels = rng.integers(0, 256, (5, 40, 48, 3), dtype=np.uint8)
    prepared = np.stack(
      [rgb_preprocessing.eval_rgb(image, config.input) for image in pixels]
    )
    # Jitted: one compilation instead of one per operation of BN-Inception
    # (op by op, this reference took 14 of the export check's 17 s).
    want = jax.jit(functools.partial(model.apply, train=False))(
      {"params": state.params["model"], "batch_stats": state.batch_stats},
      prepared,
    )
    embed, spec = embedder.from_workdir(str(workdir), (40, 48, 3))
    exported_model.save(embed, spec, str(tmp / "model.npz"))
    loaded, loaded_spec = exported_model.load(str(tmp / "model.npz"))
    self.assertEqual(loaded_spec, spec)
    np.testing.assert_allclose(loaded(pixels), want, rtol=0, atol=1e-5)


class PaperRecipeTest(_EndToEnd):
  @parameterized.parameters(*PAPER_RECIPE_CASES)
  def test_trains_evaluates_and_checkpoints(self, *case):
    self.check_config(*case)


class ProxyNcaPlusPlusRecipeTest(_EndToEnd):
  def test_trains_evaluates_and_checkpoints(self):
    self.check_config(*PROXYNCA_PP_RECIPE_CASE)


if __name__ == "__main__":
  absltest.main()
