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
"""CUB-200-2011 (tfds caltech_birds2011): the paper's zero-shot protocol.

All 11,788 images pooled, classes 0-99 (5,864 images) train and 100-199
(5,924 images) test, Recall@1/2/4/8, NMI, MAP@R. Recipes and argument
items: configs/benchmark_common.py (`recipe=proxynca_pp`, `val`, `smoke`).

Needs (docs/datasets.md): CUB_200_2011.tgz and segmentations.tgz
in a folder DIR, `pip install opencv-python-headless` (tfds's builder
reads the segmentation masks with OpenCV), and the backbone's ImageNet
weights. Prepared once into TFDS_DATA_DIR (about 1.2 GB), then reused:

  python -m proxy_nca_jax.train --config=configs/cub200.py \
      --workdir=workdirs/cub200 --config.input.manual_dir=DIR

  python -m proxy_nca_jax.train \
      --config=configs/cub200.py:recipe=proxynca_pp \
      --workdir=workdirs/cub200_pp --config.input.manual_dir=DIR

Published Recall@1: the paper 49.21 (NMI 59.53); ProxyNCA++ 72.2 (with a
2048-d embedding: --config.model.embedding_dim=2048). Designed for one
GPU (or a TPU VM): 3,665 steps of batch 32 (20 epochs; proxynca_pp 7,330,
40 epochs); we have not measured it end to end here.
"""

import ml_collections

from configs import benchmark_common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the CUB-200-2011 config; `arg`: see benchmark_common."""
  return benchmark_common.get_config(
    dataset="caltech_birds2011",
    num_train_classes=100,
    num_train_images=5_864,
    recall_ks=(1, 2, 4, 8),
    arg=arg,
  )
