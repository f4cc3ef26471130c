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

Any field can be overridden, e.g. ``--config.loss.scale=12``; what each
field means: proxy_nca_jax/config_schema.py.
"""

import ml_collections

from proxy_nca_jax import config_schema

TRAIN_CLASSES = (0, 1, 2, 3, 4)
TEST_CLASSES = (5, 6, 7, 8, 9)
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the FMNIST-ZS config; ``arg`` names a variant (see above)."""
  # The schema's defaults are this dataset's recipe.
  config = config_schema.base_config()
  # tfds builder registered by proxy_nca_jax.data.builders.
  config.input.dataset = "fashion_mnist_idx"
  # Folder with the four IDX files (Debian package dataset-fashion-mnist);
  # with input.download, missing files come from the Fashion-MNIST site.
  config.input.manual_dir = DEBIAN_FASHION_MNIST_DIR
  config.input.train_classes = TRAIN_CLASSES
  config.input.test_classes = TEST_CLASSES

  if arg == "paper":
    config.loss.form = "paper"
    config.loss.scale = 3.0
  elif arg == "triplet":
    config.loss.name = "triplet_semihard"
  elif arg == "smoke":
    config_schema.shorten_for_smoke(config, max_eval_examples=2000)
  elif arg:
    raise ValueError(
      f"Unknown variant {arg!r} of configs/fashion_mnist.py; "
      "use one of: paper, triplet, smoke."
    )

  config.lock()
  return config
