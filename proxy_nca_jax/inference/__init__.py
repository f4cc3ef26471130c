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
"""A network applied to a dataset's evaluation splits: the layer between
``data``/``models`` and ``training``.

- ``embedding``: the network jitted in inference mode over a mesh, and the
  padded evaluation batches of every process gathered into one array;
- ``split_embedding``: the one way to embed an evaluation split of a run's
  dataset (during training, the evaluate command, the research runs);
- ``split_evaluation``: the metrics of ``evaluation`` bound to a run's config
  (``evals``: Recall@K's K, block size, k-means, query/gallery protocol);
- ``trained_model``: a trained run loaded as its config and its network's
  weights (no optimiser, no proxies, no dataset), for evaluate, export,
  index and search.

Nothing here imports ``training``: a trained network is its model and its
variables (params and batch statistics), whoever restored them.
"""
