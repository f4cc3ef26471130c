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
"""The losses of proxy_nca_jax: pure functions of arrays.

Every loss is ``fn(embeddings, labels[, proxies], *, options) -> scalar``
(float32), jit-able with static shapes, and normalises embeddings and
proxies itself (paper, Sec. 4). Modules:

- ``proxy_nca``: Proxy-NCA ([1], Eq. 4, paper and softmax forms), proxy
  ranking ([1], Eq. 5) and Proxy-Anchor ([4]), with static assignment (one
  proxy per class) or, for the first two, dynamic assignment;
- ``margin_softmax``: the class-weight losses, a softmax over cosine
  similarities with a margin on the target class: Normalized Softmax ([5];
  Proxy-NCA's softmax form at scale 1 / (2 T)), CosFace ([6]), ArcFace
  ([7]), SubCenter-ArcFace ([8]) and SoftTriple ([9]), whose class weights
  are the proxies (K rows a class for the last two);
- ``dynamic``: dynamic assignment from similar/dissimilar relations;
- ``pair``: the data-point baselines (triplet all / semi-hard / batch-hard,
  lifted structure, N-pairs, contrastive, NCA);
- ``sharded``: Proxy-NCA and Proxy-Anchor with the proxies split over
  devices (imported on its own: it needs a mesh).

Binding a config to a loss lives in ``training.loss_binding``.

Example::

  from proxy_nca_jax import losses, proxies
  p = proxies.init_proxies(key, num_proxies=100, dim=64)
  loss = losses.proxy_nca_loss(embeddings, labels, p, scale=8.0)

References:
  [1] Y. Movshovitz-Attias, A. Toshev, T. Leung, S. Ioffe, S. Singh. No Fuss
      Distance Metric Learning using Proxies. ICCV 2017.
  [4] S. Kim, D. Kim, M. Cho, S. Kwak. Proxy Anchor Loss for Deep Metric
      Learning. CVPR 2020.
  [5] A. Zhai, H.-Y. Wu. Classification is a Strong Baseline for Deep Metric
      Learning. BMVC 2019.
  [6] H. Wang et al. CosFace: Large Margin Cosine Loss for Deep Face
      Recognition. CVPR 2018.
  [7] J. Deng, J. Guo, N. Xue, S. Zafeiriou. ArcFace: Additive Angular Margin
      Loss for Deep Face Recognition. CVPR 2019.
  [8] J. Deng, J. Guo, T. Liu, M. Gong, S. Zafeiriou. Sub-center ArcFace.
      ECCV 2020.
  [9] Q. Qian et al. SoftTriple Loss: Deep Metric Learning Without Triplet
      Sampling. ICCV 2019.
"""

from proxy_nca_jax.losses._checks import ASSIGNMENTS, PROXY_NCA_FORMS
from proxy_nca_jax.losses.dynamic import (
  dynamic_proxy_nca_loss,
  dynamic_proxy_ranking_loss,
)
from proxy_nca_jax.losses.margin_softmax import (
  arcface_loss,
  cosface_loss,
  dynamic_arcface_loss,
  normalized_softmax_loss,
  soft_triple_loss,
  subcenter_arcface_loss,
)
from proxy_nca_jax.losses.pair import (
  NCA_FORMS,
  contrastive_loss,
  lifted_structure_loss,
  nca_loss,
  npairs_loss,
  triplet_all_loss,
  triplet_batch_hard_loss,
  triplet_semihard_loss,
)
from proxy_nca_jax.losses.proxy_nca import (
  proxy_anchor_loss,
  proxy_nca_loss,
  proxy_ranking_loss,
)

# The class-weight losses of ``margin_softmax`` with their own cross-entropy
# (Normalized Softmax is Proxy-NCA's).
CLASS_WEIGHT_LOSSES = (
  "cosface",
  "arcface",
  "subcenter_arcface",
  "dynamic_arcface",
  "soft_triple",
)
# The losses of learned proxies (class weights).
PROXY_LOSSES = (
  "proxy_nca",
  "proxy_ranking",
  "proxy_anchor",
  "normalized_softmax",
  *CLASS_WEIGHT_LOSSES,
)
PAIR_LOSSES = (
  "triplet_all",
  "triplet_semihard",
  "triplet_batch_hard",
  "lifted_structure",
  "npairs",
  "contrastive",
  "nca",
)
# Every loss by the name ``config.loss.name`` gives it (``{name}_loss``).
LOSSES = PROXY_LOSSES + PAIR_LOSSES

__all__ = [
  "ASSIGNMENTS",
  "CLASS_WEIGHT_LOSSES",
  "LOSSES",
  "NCA_FORMS",
  "PAIR_LOSSES",
  "PROXY_LOSSES",
  "PROXY_NCA_FORMS",
  "arcface_loss",
  "contrastive_loss",
  "cosface_loss",
  "dynamic_arcface_loss",
  "dynamic_proxy_nca_loss",
  "dynamic_proxy_ranking_loss",
  "lifted_structure_loss",
  "nca_loss",
  "normalized_softmax_loss",
  "npairs_loss",
  "proxy_anchor_loss",
  "proxy_nca_loss",
  "proxy_ranking_loss",
  "soft_triple_loss",
  "subcenter_arcface_loss",
  "triplet_all_loss",
  "triplet_batch_hard_loss",
  "triplet_semihard_loss",
]
