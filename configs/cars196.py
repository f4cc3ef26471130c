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
"""Cars196 (tfds cars196): the paper's zero-shot protocol.

All 16,185 images pooled, classes 0-97 (8,054 images) train and 98-195
(8,131 images) test, Recall@1/2/4/8, NMI, MAP@R. Recipes and argument
items: configs/benchmark_common.py (`recipe=proxynca_pp`, `val`, `smoke`).

Needs (docs/datasets.md): cars_train.tgz, cars_test.tgz,
cars_test_annos_withlabels.mat and car_devkit.tgz in a folder DIR (the
Stanford URLs are gone: download=True cannot fetch them), scipy, and the
backbone's ImageNet weights:

  python -m proxy_nca_jax.train --config=configs/cars196.py \
      --workdir=workdirs/cars196 --config.input.manual_dir=DIR

  python -m proxy_nca_jax.train \
      --config=configs/cars196.py:recipe=proxynca_pp \
      --workdir=workdirs/cars196_pp --config.input.manual_dir=DIR

Published Recall@1: the paper 73.22 (NMI 64.90); ProxyNCA++ 90.1 (2048-d
embedding: --config.model.embedding_dim=2048). Designed for one GPU (or a
TPU VM): 5,033 steps of batch 32 (20 epochs; proxynca_pp 10,067, 40
epochs); we have not measured it end to end here.
"""

import ml_collections

from configs import benchmark_common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the Cars196 config; `arg`: see benchmark_common."""
  return benchmark_common.get_config(
    dataset="cars196",
    num_train_classes=98,
    num_train_images=8_054,
    recall_ks=(1, 2, 4, 8),
    arg=arg,
  )
