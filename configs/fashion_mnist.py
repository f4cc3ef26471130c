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
"""FMNIST-ZS: Proxy-NCA with convnet-S on zero-shot Fashion-MNIST.

All 70,000 Fashion-MNIST images; classes 0-4 train, classes 5-9 are the
never-seen test classes (about 35,000 images on each side).

Run (2 CPU cores, a few minutes):

  python -m proxy_nca_jax.train --config=configs/fashion_mnist.py \
      --workdir=workdirs/fashion_mnist

Variants (``--config=configs/fashion_mnist.py:VARIANT``):
  * ``paper``: the paper's loss form (positive proxy excluded from the
    denominator, Eq. 4 of Movshovitz-Attias et al. 2017).
  * ``triplet``: the triplet loss with semi-hard mining baseline.
  * ``smoke``: a few steps on a small evaluation subset, for quick checks.

Any field can be overridden, e.g. ``--config.loss.scale=12``.
"""

import ml_collections
from ml_collections import config_dict

TRAIN_CLASSES = (0, 1, 2, 3, 4)
TEST_CLASSES = (5, 6, 7, 8, 9)
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def shorten_for_smoke(
  config: ml_collections.ConfigDict, max_eval_examples: int
) -> None:
  """The ``smoke`` variant of every config: 20 steps, a small evaluation."""
  config.schedule.num_steps = 20
  config.evals.every_steps = 10
  config.ckpt.every_steps = 10
  config.log_every_steps = 5
  config.input.max_eval_examples = max_eval_examples


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the FMNIST-ZS config; ``arg`` names a variant (see above)."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.input = ml_collections.ConfigDict()
  # tfds builder registered by proxy_nca_jax.data.builders.
  config.input.dataset = "fashion_mnist_idx"
  # Where tfds keeps prepared datasets (None: tfds's default,
  # ~/tensorflow_datasets or $TFDS_DATA_DIR).
  config.input.data_dir = config_dict.placeholder(str)
  # Folder with the four IDX files (Debian package dataset-fashion-mnist).
  config.input.manual_dir = DEBIAN_FASHION_MNIST_DIR
  # Fetch the IDX files from the Fashion-MNIST site when manual_dir lacks them.
  config.input.download = False
  config.input.train_classes = TRAIN_CLASSES
  config.input.test_classes = TEST_CLASSES
  # Train classes held out of training for model selection (empty: none).
  config.input.val_classes = ()
  # Training augmentation of the grey-level datasets
  # (proxy_nca_jax/data/grey_augmentation.py): "none" or "glyphs".
  config.input.augmentation = "none"
  # Compare the images of the class split with the paper's counts (the
  # paper datasets of configs/benchmark_common.py).
  config.input.check_num_examples = False
  config.input.batch_size = 64  # Global batch, split over processes/devices.
  # Class-balanced batches: m images of each of batch_size / m classes, for
  # the losses mined in the batch and dynamic assignment. m must divide
  # batch_size, and batch_size / m be at most the number of train classes
  # (FMNIST-ZS: 5, so m = 16 or 32 with batch 64). 0: plain random batches
  # (all that Proxy-NCA needs).
  config.input.samples_per_class = 0
  config.input.eval_batch_size = 1024
  config.input.shuffle_buffer = 16_384
  config.input.prefetch = 2
  # Keep at most this many eval examples per split (None: all of them).
  config.input.max_eval_examples = config_dict.placeholder(int)

  config.model = ml_collections.ConfigDict()
  config.model.name = "convnet_s"
  config.model.embedding_dim = 64
  config.model.widths = (32, 64, 128)
  # Embedding head: global "avg" or "max" pooling, and a LayerNorm (no
  # affine parameters) on the pooled features; max + LayerNorm is
  # ProxyNCA++'s head.
  config.model.pooling = "avg"
  config.model.layer_norm = False
  # resnet50 and bn_inception only. frozen_bn: BatchNorm uses its running
  # statistics in training too and its scale/bias are not optimised (for
  # fine-tuning pretrained backbones with small batches). dtype: compute
  # dtype of the backbone ("float32" or "bfloat16"; parameters, head, proxies
  # and loss stay float32). pretrained: folder written by
  # `python -m proxy_nca_jax.import_weights` (None: random initialisation);
  # the embedding layer is always freshly initialised.
  config.model.frozen_bn = False
  config.model.dtype = "float32"
  config.model.pretrained = config_dict.placeholder(str)

  config.proxies = ml_collections.ConfigDict()
  # Number of proxies. None: one per training class (what static assignment
  # needs). With loss.assignment = "dynamic" any number, fewer or more than
  # the classes.
  config.proxies.num_proxies = config_dict.placeholder(int)
  config.proxies.init = "normal"  # "normal" or "class_means".
  config.proxies.init_scale = 1.0
  # "replicated": every device holds all proxies. "sharded": the proxies and
  # their optimiser state are split by rows (classes) over the devices, for
  # hundreds of thousands to millions of classes; losses proxy_nca (static)
  # and proxy_anchor only (proxy_nca_jax/losses/sharded.py). Same results up
  # to float32 rounding; params['proxies'] then has zero padding rows up to a
  # multiple of the device count (checkpoints too).
  config.proxies.sharding = "replicated"

  config.loss = ml_collections.ConfigDict()
  # One of proxy_nca_jax.losses.LOSSES. Proxy losses: "proxy_nca",
  # "proxy_ranking", "proxy_anchor". Data-point baselines (they need
  # several images per class in a batch: set input.samples_per_class):
  # "triplet_all", "triplet_semihard", "triplet_batch_hard",
  # "lifted_structure", "npairs", "contrastive", "nca".
  config.loss.name = "proxy_nca"
  # proxy_nca and nca. "softmax": positive proxy in the denominator (most
  # reimplementations; for nca, Goldberger et al.'s softmax over the batch);
  # "paper": positive excluded (Eq. 4 of the paper).
  config.loss.form = "softmax"
  # Multiplies squared distances between unit vectors (pytorch-metric-learning's
  # softmax_scale; 9 is the same as normalising both sides to norm 3). On
  # FMNIST-ZS, 600 steps, seed 0: scale 4 / 8 / 16 gave MAP@R 0.370 / 0.359 /
  # 0.383 and NMI 0.389 / 0.437 / 0.499 (docs/datasets.md).
  # Also read, untuned, by npairs and nca.
  config.loss.scale = 16.0
  # Margin of triplet_all / triplet_semihard / triplet_batch_hard and of
  # proxy_ranking, in squared distance between unit vectors (0 to 4).
  config.loss.margin = 0.2
  # proxy_nca and proxy_ranking: "static" (one proxy per class, the label is
  # the proxy's row) or "dynamic" (proxies are claimed by the classes of the
  # batch whose samples they are nearest to; a sample's positive is its
  # nearest proxy no other class claims; see
  # losses/dynamic.py, dynamic_proxy_nca_loss).
  # Dynamic assignment wants proxies near the data (proxies.init =
  # "class_means") and several images per class (input.samples_per_class).
  config.loss.assignment = "static"
  # proxy_nca, static softmax form: target 1 - eps on the class proxy and
  # eps / (C - 1) on the others (0: one-hot; the PyTorch Proxy-NCA uses 0.1).
  config.loss.label_smoothing = 0.0
  # proxy_nca: distances |a x - b p|^2 between embeddings scaled to norm a
  # and proxies to norm b (as in ProxyNCA++'s code). The loss depends on
  # scale * a * b only: a = b = 3 with scale 1 is scale 9.
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
  # proxy_anchor: scaling factor alpha and margin delta (Kim et al. 2020).
  config.loss.proxy_anchor_alpha = 32.0
  config.loss.proxy_anchor_delta = 0.1
  # lifted_structure: margin alpha on Euclidean distances (Song et al. 2016).
  config.loss.lifted_margin = 1.0
  # contrastive: margin m on Euclidean distances between unit vectors
  # (Hadsell et al. 2006; 1.0 as pytorch-metric-learning's neg_margin).
  config.loss.contrastive_margin = 1.0

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"  # "adam", "adamw", "rmsprop" or "sgd".
  config.optimizer.learning_rate = 1e-3  # Backbone.
  config.optimizer.head_lr_mult = 1.0  # Embedding layer.
  config.optimizer.proxy_lr_mult = 10.0  # Proxies learn faster (1e-2).
  config.optimizer.weight_decay = 0.0
  config.optimizer.proxy_weight_decay = 0.0
  config.optimizer.rmsprop_decay = 0.94
  # Epsilon of adam / adamw (m / (sqrt(v) + eps)) and rmsprop
  # (g / sqrt(v + eps), TensorFlow's form); optax's default. ProxyNCA++
  # trains with Adam eps 1.0.
  config.optimizer.eps = 1e-8
  config.optimizer.momentum = 0.9  # sgd and rmsprop.

  config.schedule = ml_collections.ConfigDict()
  config.schedule.num_steps = 600
  config.schedule.warmup_steps = 0
  config.schedule.decay = "constant"  # "constant" or "cosine".

  config.evals = ml_collections.ConfigDict()
  config.evals.every_steps = 200  # 0 disables periodic evaluation.
  config.evals.split = "test"  # Split evaluated periodically.
  config.evals.at_step_zero = True  # The untrained baseline.
  config.evals.recall_ks = (1, 2, 4, 8)
  config.evals.block_size = 2048  # Queries per block of the similarity work.
  config.evals.kmeans_restarts = 3
  config.evals.kmeans_iters = 50
  # None: every image of the split queries the others (leave-one-out);
  # "per_class:K": the first K images of each class (the split's fixed
  # order) query a gallery of the others; "splits:Q/G": images of tfds
  # split Q query those of split G (an image folder's query/ and gallery/);
  # "classes:Q/G": classes Q query classes G (evaluation/query_gallery.py).
  config.evals.query_gallery = config_dict.placeholder(str)

  config.ckpt = ml_collections.ConfigDict()
  config.ckpt.every_steps = 200
  config.ckpt.keep = 2  # Most recent checkpoints kept.

  config.log_every_steps = 50

  config.report = ml_collections.ConfigDict()
  # At the end of training, write what python -m proxy_nca_jax.evaluate
  # writes (metrics_test.json, retrieval_test.png, projection_test.png,
  # convergence.png) into the workdir. No result changes.
  config.report.at_end = True
  # Test images evaluated for those files (None: the whole split, so
  # metrics_test.json holds the final evaluation's metrics).
  config.report.max_examples = config_dict.placeholder(int)

  if arg == "paper":
    config.loss.form = "paper"
    config.loss.scale = 3.0
  elif arg == "triplet":
    config.loss.name = "triplet_semihard"
  elif arg == "smoke":
    shorten_for_smoke(config, max_eval_examples=2000)
  elif arg:
    raise ValueError(
      f"Unknown variant {arg!r} of configs/fashion_mnist.py; "
      "use one of: paper, triplet, smoke."
    )

  config.lock()
  return config
