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
"""The config shared by the image benchmarks (cub200, cars196, sop, folders).

Two recipes, chosen by the config argument ``recipe=...``:

* ``paper`` (default): Movshovitz-Attias et al. 2017: BN-Inception
  pretrained on ImageNet, 64-d embedding, batch 32, random crop 227 + flip,
  RMSprop (decay 0.94), one proxy per class, the paper's loss form.
* ``proxynca_pp``: Teh et al. 2020 (their released configs,
  github.com/euwern/proxynca_pp, config/*.json and dataset/config.json):
  ResNet-50, global max pooling + LayerNorm, 512-d, softmax with temperature
  1/9 (scale 9), Adam at 4e-3 with proxies 1e5 times faster, 4 images of
  each of 8 classes per batch of 32, crop 256 of 288.

Other argument items, comma-separated: ``val`` (hold out the last half of
the train classes for model selection, as ProxyNCA++ does, and evaluate
them periodically), ``smoke`` (a few steps on a small evaluation subset).
E.g. ``--config=configs/cub200.py:recipe=proxynca_pp,val``.

Run from the repository root (the config imports ``configs``).
"""

import ml_collections
from ml_collections import config_dict

from configs import fashion_mnist

RECIPES = ("paper", "proxynca_pp")


def parse_arg(arg: str | None, allowed_flags: tuple[str, ...]) -> dict:
  """'recipe=x,val' -> {'recipe': 'x', 'val': True}; unknown items raise."""
  options = {"recipe": "paper"}
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key == "recipe" and value in RECIPES:
      options["recipe"] = value
    elif key in allowed_flags and not value:
      options[key] = True
    else:
      raise ValueError(
        f"Unknown config argument {item!r}; use recipe={'|'.join(RECIPES)} "
        f"and/or {', '.join(allowed_flags)}, comma-separated."
      )
  return options


def get_config(
  *,
  dataset: str,
  num_train_classes: int | None,
  num_train_images: int,
  recall_ks: tuple[int, ...],
  arg: str | None,
) -> ml_collections.ConfigDict:
  """The benchmark config of one dataset.

  Args:
    dataset: `input.dataset`.
    num_train_classes: the first this many class ids train, the others
      test (None: half of the classes of an image folder, rounded down).
    num_train_images: images of the train classes, to count epochs.
    recall_ks: the K of Recall@K reported for this dataset.
    arg: the config argument (see the module docstring).

  Returns:
    The locked config.
  """
  options = parse_arg(arg, ("val", "smoke"))
  pp = options["recipe"] == "proxynca_pp"
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.input = ml_collections.ConfigDict()
  config.input.dataset = dataset
  # Where tfds keeps prepared datasets (None: $TFDS_DATA_DIR or
  # ~/tensorflow_datasets).
  config.input.data_dir = config_dict.placeholder(str)
  # Folder holding the dataset's original files (see docs/datasets.md, "Paper
  # benchmarks"); tfds takes them from here instead of downloading.
  config.input.manual_dir = config_dict.placeholder(str)
  # Let tfds fetch the files manual_dir lacks (Cars196's URLs are dead).
  config.input.download = False
  # input.dataset = "image_folder": ROOT of ROOT/[SPLIT/]CLASS/IMAGE.jpg.
  config.input.image_folder = config_dict.placeholder(str)
  # Class split (proxy_nca_jax/data/class_splits.py): explicit class ids, or,
  # when train_classes and test_classes are both empty, the first
  # num_train_classes ids train and the others test; the last
  # num_val_classes train classes are held out for validation.
  config.input.train_classes = ()
  config.input.test_classes = ()
  config.input.val_classes = ()
  config.input.num_train_classes = config_dict.placeholder(int)
  config.input.num_train_classes = num_train_classes
  config.input.num_val_classes = 0
  # Stop when the paper's split does not hold the paper's image counts.
  config.input.check_num_examples = True
  # Grey-level augmentation only (grey_augmentation.py); colour datasets
  # are augmented by rgb_preprocessing.py.
  config.input.augmentation = "none"
  config.input.batch_size = 32  # Global batch, split over processes/devices.
  # m images of each of batch_size / m classes per batch (0: random batches).
  config.input.samples_per_class = 4 if pp else 0
  config.input.eval_batch_size = 256
  config.input.shuffle_buffer = 16_384
  config.input.prefetch = 2
  config.input.max_eval_examples = config_dict.placeholder(int)
  # Preprocessing (data/rgb_preprocessing.py). Training: random resized
  # crop of crop_scale of the area and crop_ratio aspect, to image_size, and
  # a horizontal flip; evaluation: shorter side to eval_resize, centre crop
  # image_size. color: "bn_inception" (BGR, 0-255, minus 104/117/128) or
  # "imagenet" (RGB / 255, ImageNet mean/std): the backbone's convention.
  config.input.image_size = 256 if pp else 227
  config.input.eval_resize = 288 if pp else 256
  config.input.crop_scale = (0.08, 1.0)
  config.input.crop_ratio = (3 / 4, 4 / 3)
  config.input.random_flip = True
  config.input.color = "imagenet" if pp else "bn_inception"

  config.model = ml_collections.ConfigDict()
  # Registered in proxy_nca_jax.models.MODELS.
  config.model.name = "resnet50" if pp else "bn_inception"
  config.model.embedding_dim = 512 if pp else 64
  config.model.widths = ()  # convnet_s only.
  config.model.pooling = "max" if pp else "avg"
  config.model.layer_norm = pp
  # ImageNet initialisation: a folder written by
  # `python -m proxy_nca_jax.import_weights` (docs/backbones.md, "Backbones and
  # pretrained weights"); None trains from random weights.
  config.model.pretrained = config_dict.placeholder(str)
  # BatchNorm statistics and affine parameters fixed (small batches).
  config.model.frozen_bn = False
  config.model.dtype = "float32"  # Or "bfloat16" (backbone compute only).

  config.proxies = ml_collections.ConfigDict()
  config.proxies.init = "normal"  # One proxy per train class.
  # None: one per train class (static assignment needs exactly that).
  config.proxies.num_proxies = config_dict.placeholder(int)
  config.proxies.init_scale = 1.0
  # "sharded": proxies split by class over the devices (losses/sharded.py).
  config.proxies.sharding = "replicated"

  config.loss = ml_collections.ConfigDict()
  config.loss.name = "proxy_nca"
  # paper: positive proxy excluded from the denominator (Eq. 4); the paper
  # gives no scale, 9 (norm 3 on each side) is the usual choice.
  # proxynca_pp: softmax with temperature 1/9 (norm 3 on each side).
  config.loss.form = "softmax" if pp else "paper"
  config.loss.scale = 9.0
  config.loss.margin = 0.2
  config.loss.assignment = "static"
  config.loss.label_smoothing = 0.0
  config.loss.embedding_norm = 1.0
  config.loss.proxy_norm = 1.0
  # proxy_nca, static: with more proxies than this (per device when the
  # proxies are sharded), the sums over them are taken a block of this many
  # at a time (losses/proxy_blocks.py): the same loss to float32 rounding,
  # without the (batch, proxies) arrays. None: blocks of 4,096 above 65,536
  # proxies, 4x faster at a million on CPU (benchmarks/README.md).
  config.loss.proxy_block_size = config_dict.placeholder(int)
  # proxy_nca, static: each step's denominator uses the batch's positive
  # proxies and this fraction of the others, drawn from the seed and the
  # step (Partial FC; losses/sampled_proxies.py); 1 uses every proxy.
  config.loss.negative_fraction = 1.0
  config.loss.proxy_anchor_alpha = 32.0
  config.loss.proxy_anchor_delta = 0.1
  config.loss.lifted_margin = 1.0
  config.loss.contrastive_margin = 1.0

  config.optimizer = ml_collections.ConfigDict()
  # paper: RMSprop with decay 0.94 (Sec. 5); the learning rates are ours
  # (untuned starting point). proxynca_pp: Adam 4e-3, proxies 4e2, eps 1.0
  # (their released configs).
  config.optimizer.name = "adam" if pp else "rmsprop"
  config.optimizer.learning_rate = 4e-3 if pp else 1e-4
  config.optimizer.head_lr_mult = 1.0
  config.optimizer.proxy_lr_mult = 1e5 if pp else 100.0
  config.optimizer.weight_decay = 0.0
  config.optimizer.proxy_weight_decay = 0.0
  config.optimizer.rmsprop_decay = 0.94
  # adam / adamw / rmsprop epsilon (optax's default for the paper recipe).
  config.optimizer.eps = 1.0 if pp else 1e-8
  config.optimizer.momentum = 0.9

  epochs = 40 if pp else 20
  config.schedule = ml_collections.ConfigDict()
  config.schedule.num_steps = epochs * num_train_images // 32
  config.schedule.warmup_steps = 0
  config.schedule.decay = "constant"

  config.evals = ml_collections.ConfigDict()
  # About every 5 epochs.
  config.evals.every_steps = 5 * num_train_images // 32
  config.evals.split = "test"
  config.evals.at_step_zero = True
  config.evals.recall_ks = recall_ks
  config.evals.block_size = 2048
  config.evals.kmeans_restarts = 3
  config.evals.kmeans_iters = 50
  # None: every image of the split queries the others (leave-one-out);
  # "per_class:K": the first K images of each class (the split's fixed
  # order) query a gallery of the others; "splits:Q/G": images of tfds
  # split Q query those of split G (an image folder's query/ and gallery/);
  # "classes:Q/G": classes Q query classes G (evaluation/query_gallery.py).
  config.evals.query_gallery = config_dict.placeholder(str)

  config.ckpt = ml_collections.ConfigDict()
  config.ckpt.every_steps = config.evals.every_steps
  config.ckpt.keep = 2

  config.log_every_steps = 50

  config.report = ml_collections.ConfigDict()
  # python -m proxy_nca_jax.evaluate's files at the end of training, from
  # the whole test split (or its first report.max_examples images).
  config.report.at_end = True
  config.report.max_examples = config_dict.placeholder(int)

  if options.get("val"):
    if num_train_classes is None:
      raise ValueError(
        "The val argument needs input.num_train_classes; set it, and "
        "input.num_val_classes, with overrides instead."
      )
    config.input.num_val_classes = num_train_classes // 2
    config.evals.split = "val"
  if options.get("smoke"):
    fashion_mnist.shorten_for_smoke(config, max_eval_examples=512)

  config.lock()
  return config
