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
"""The run config's schema: every field, its default and what it means.

`base_config` is the one place a field of a run config is declared. Each
config file in the repository's ``configs/`` starts from it and overrides
only what its dataset or recipe changes (``configs/fashion_mnist.py`` sets
the dataset and its classes; ``configs/benchmark_common.py`` the paper's
and ProxyNCA++'s recipes); a user's own config file can do the same.
`config_defaults.with_defaults` takes from it the values that complete
configs saved before a field existed.

It lives in the package, not in ``configs/``: a pip install ships only
``proxy_nca_jax/``, and the commands that load a workdir's saved config
(``evaluate``, ``embed``, ``export``) need the defaults without a checkout.
The config files import it like any other user of the library; they are
loaded by path (``--config=configs/fashion_mnist.py``) from the repository
root.

The defaults are the small-image recipe (convnet-S, Adam, one proxy per
train class, Proxy-NCA in its softmax form) tuned on FMNIST-ZS. A new
field gets the default that keeps the behaviour from before it, so that
older configs mean what they meant.
"""

import ml_collections
from ml_collections import config_dict


def base_config(*, rgb_input: bool = False) -> ml_collections.ConfigDict:
  """Every field of a run config, with its default; unlocked.

  Args:
    rgb_input: add the input fields of colour image datasets (the paper
      benchmarks and image folders): the class split by counts, the image
      folder and the preprocessing of data/rgb_preprocessing.py.

  Returns:
    The config; a config file overrides fields, then locks it.
  """
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.input = ml_collections.ConfigDict()
  # tfds builder: "fashion_mnist_idx", "glyphs" and "image_folder"
  # (registered by proxy_nca_jax.data.builders) or a paper dataset's tfds
  # name (data/catalog.py).
  config.input.dataset = config_dict.placeholder(str)
  # Where tfds keeps prepared datasets (None: tfds's default,
  # ~/tensorflow_datasets or $TFDS_DATA_DIR).
  config.input.data_dir = config_dict.placeholder(str)
  # Folder holding the dataset's original files (docs/datasets.md); tfds
  # takes them from here instead of downloading.
  config.input.manual_dir = config_dict.placeholder(str)
  # Let tfds fetch the files manual_dir lacks (Cars196's URLs are dead).
  config.input.download = False
  # Class split (proxy_nca_jax/data/class_splits.py): explicit class ids;
  # with rgb_input, train_classes and test_classes may both stay empty for
  # a split by counts (input.num_train_classes, input.num_val_classes).
  config.input.train_classes = ()
  config.input.test_classes = ()
  # Train classes held out of training for model selection (empty: none).
  config.input.val_classes = ()
  # Training augmentation of the grey-level datasets
  # (proxy_nca_jax/data/grey_augmentation.py): "none" or "glyphs" (its
  # parameters in input.augment, configs/glyphs.py). Colour datasets are
  # augmented by data/rgb_preprocessing.py.
  config.input.augmentation = "none"
  # Stop when the images of the class split differ from the paper's counts
  # (the paper datasets of configs/benchmark_common.py).
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
  if rgb_input:
    _add_rgb_input(config.input)

  config.model = ml_collections.ConfigDict()
  config.model.name = "convnet_s"  # In proxy_nca_jax.models.MODELS.
  config.model.embedding_dim = 64
  config.model.widths = (32, 64, 128)  # convnet_s only.
  # convnet_s only: its convolutions in training, "xla" or "onednn"
  # (oneDNN's through XLA's FFI, proxy_nca_jax/native: faster on CPU, the
  # same function to float32 rounding; needs g++ and libdnnl-dev, else
  # XLA's with a warning). Evaluation, embedding and export use XLA's.
  config.model.conv = "xla"
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
  # `python -m proxy_nca_jax.import_weights` (docs/backbones.md; None: random
  # initialisation); the embedding layer is always freshly initialised.
  config.model.frozen_bn = False
  config.model.dtype = "float32"
  config.model.pretrained = config_dict.placeholder(str)
  # The Vision Transformers (model.name vit_ti16 ... vit_b32, vit_test;
  # models/vit.py, docs/backbones.md); model.dtype applies to them too.
  # layout: the weights' family, "timm", "dinov2" or "clip" (LayerNorm eps,
  # activation, how position embeddings are resized). registers: register
  # tokens. position_size: the image side in pixels the position embeddings
  # were learned at (timm and CLIP 224, DINOv2's hub models 518); other
  # sizes resize them. layer_scale: LayerScale (DINOv2, DeiT III).
  # prefix_positions: the class (and in timm's layout register) tokens have
  # position embeddings (False: timm's no_embed_class). projection_dim:
  # CLIP's final projection (None: none). These six must be those of the
  # weights in model.pretrained: python -m proxy_nca_jax.import_weights
  # prints them. readout: the feature map the head pools: "token" (the
  # class token), "patches" (the patch tokens, pooled by model.pooling) or
  # "gap" (the normed mean of the patch tokens, timm's fc_norm models).
  # drop_path: stochastic depth rate of the last block (0: none; > 0 needs
  # the 'dropout' rng in training).
  config.model.vit = ml_collections.ConfigDict()
  config.model.vit.layout = "timm"
  config.model.vit.registers = 0
  config.model.vit.position_size = 224
  config.model.vit.layer_scale = False
  config.model.vit.prefix_positions = True
  config.model.vit.projection_dim = config_dict.placeholder(int)
  config.model.vit.readout = "token"
  config.model.vit.drop_path = 0.0

  config.proxies = ml_collections.ConfigDict()
  # Number of proxies. None: one per training class (what static assignment
  # needs). With loss.assignment = "dynamic" any number, fewer or more than
  # the classes.
  config.proxies.num_proxies = config_dict.placeholder(int)
  config.proxies.init = "normal"  # "normal" or "class_means".
  config.proxies.init_scale = 1.0
  # "replicated": every device holds all proxies. "sharded": the proxies and
  # their optimiser state are split by rows (classes) over the devices, for
  # hundreds of thousands to millions of classes; losses proxy_nca (static),
  # proxy_anchor and the class-weight losses (losses/sharded.py). Same
  # results up to float32 rounding; params['proxies'] then has zero padding
  # rows up to a multiple of the device count (of whole classes when a class
  # has several centres; checkpoints too).
  config.proxies.sharding = "replicated"

  config.loss = ml_collections.ConfigDict()
  # One of proxy_nca_jax.losses.LOSSES. Proxy losses: "proxy_nca",
  # "proxy_ranking", "proxy_anchor"; class-weight losses (docs/losses.md):
  # "normalized_softmax", "cosface", "arcface", "subcenter_arcface",
  # "soft_triple". Data-point baselines (they need
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
  # without the (batch, proxies) arrays. None: blocks of about 4,096 above
  # 65,536 proxies (a divisor of the rows where one lies in
  # (2,048, 4,096]), 4x faster at a million on CPU (benchmarks/README.md).
  config.loss.proxy_block_size = config_dict.placeholder(int)
  # proxy_nca (static), normalized_softmax and the class-weight losses:
  # each step's denominator uses the batch's classes and this fraction of
  # the others, drawn from the seed and the step (Partial FC;
  # losses/sampled_proxies.py); 1 uses every class.
  config.loss.negative_fraction = 1.0
  # proxy_anchor: scaling factor alpha and margin delta (Kim et al. 2020).
  config.loss.proxy_anchor_alpha = 32.0
  config.loss.proxy_anchor_delta = 0.1
  # normalized_softmax: temperature T of the logits cos / T (Zhai & Wu 2019;
  # pytorch-metric-learning's 0.05). It is proxy_nca's softmax form at
  # scale 1 / (2 T).
  config.loss.softmax_temperature = 0.05
  # cosface, arcface, subcenter_arcface: the logits' scale s (64 in the
  # papers and pytorch-metric-learning).
  config.loss.cosine_scale = 64.0
  # cosface: additive cosine margin m (Wang et al. 2018; 0.35).
  config.loss.cosface_margin = 0.35
  # arcface, subcenter_arcface: additive angular margin m in RADIANS (Deng
  # et al. 2019: 0.5; pytorch-metric-learning 2.x's 28.6 is degrees, 0.499
  # radians).
  config.loss.arcface_margin = 0.5
  # subcenter_arcface and dynamic_arcface: sub-centres K per class (3 in
  # Deng et al. 2020); the proxies then have K rows a class.
  config.loss.sub_centers = 3
  # dynamic_arcface (Ha et al. 2020; pytorch-metric-learning 3.0's
  # DynamicArcFaceLoss): a margin per class m_c = a n_c^-power + b, in
  # RADIANS, from the upper bound (smallest class) to the lower (largest);
  # with cosine_scale and sub_centers.
  config.loss.dynamic_margin_bounds = (0.05, 0.5)
  config.loss.dynamic_margin_power = 0.25
  # soft_triple (Qian et al. 2019): centres K per class, scale lambda,
  # centre softmax temperature gamma, margin delta, and the weight tau of the
  # centre-merging regulariser (pytorch-metric-learning has no regulariser:
  # tau 0).
  config.loss.soft_triple_centers = 10
  config.loss.soft_triple_la = 20.0
  config.loss.soft_triple_gamma = 0.1
  config.loss.soft_triple_margin = 0.01
  config.loss.soft_triple_tau = 0.2
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
  # ViT backbones (training/optim.py): layer-wise learning-rate decay d,
  # block i of L learning at d^(L - i) times the backbone rate (1: off).
  config.optimizer.layer_decay = 1.0
  # Weight decay on weight matrices and kernels only, not on biases, norms,
  # LayerScale gains, tokens or position embeddings (timm's fine-tuning).
  config.optimizer.decay_matrices_only = False

  config.schedule = ml_collections.ConfigDict()
  config.schedule.num_steps = 600
  config.schedule.warmup_steps = 0
  config.schedule.decay = "constant"  # "constant" or "cosine".

  config.evals = ml_collections.ConfigDict()
  config.evals.every_steps = 200  # 0 disables periodic evaluation.
  config.evals.split = "test"  # Split evaluated periodically.
  config.evals.at_step_zero = True  # The untrained baseline.
  config.evals.recall_ks = (1, 2, 4, 8)
  config.evals.block_size = 1024  # Queries per block of the similarity work.
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
  return config


def _add_rgb_input(input_config: ml_collections.ConfigDict) -> None:
  """The input fields of colour image datasets; defaults: the paper's."""
  # input.dataset = "image_folder": ROOT of ROOT/[SPLIT/]CLASS/IMAGE.jpg.
  input_config.image_folder = config_dict.placeholder(str)
  # With train_classes and test_classes both empty, the first
  # num_train_classes class ids train (None: half, rounded down) and the
  # others test; the last num_val_classes train classes validate.
  input_config.num_train_classes = config_dict.placeholder(int)
  input_config.num_val_classes = 0
  # Preprocessing (data/rgb_preprocessing.py). Training: random resized
  # crop of crop_scale of the area and crop_ratio aspect, to image_size, and
  # a horizontal flip; evaluation: shorter side to eval_resize, centre crop
  # image_size. color: the backbone's convention: "bn_inception" (BGR,
  # 0-255, minus 104/117/128), "imagenet" (RGB / 255, ImageNet mean/std),
  # "inception" (RGB / 127.5 - 1), "clip" (OpenAI CLIP's mean/std), or
  # "weights": the one imported ViT weights record (data/vit_recipe.py).
  input_config.image_size = 227
  input_config.eval_resize = 256
  input_config.crop_scale = (0.08, 1.0)
  input_config.crop_ratio = (3 / 4, 4 / 3)
  input_config.random_flip = True
  input_config.color = "bn_inception"


def shorten_for_smoke(
  config: ml_collections.ConfigDict, max_eval_examples: int
) -> None:
  """The ``smoke`` variant of every config: 20 steps, a small evaluation."""
  config.schedule.num_steps = 20
  config.evals.every_steps = 10
  config.ckpt.every_steps = 10
  config.log_every_steps = 5
  config.input.max_eval_examples = max_eval_examples
