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
"""Float64 NumPy transcriptions of the class-weight losses, and the test
cases the sharded and sampled tests share.

Written from the papers, one sample and one class at a time, independently
of losses/margin_softmax.py: Normalized Softmax (Zhai & Wu 2019), CosFace
(Wang et al. 2018, Eq. 4), ArcFace (Deng et al. 2019, Eq. 3; past
theta + m > pi the target is cos theta - m sin m, as InsightFace),
SubCenter-ArcFace (Deng et al. 2020, Eq. 1: the nearest of a class's K
centres) and SoftTriple (Qian et al. 2019, Eq. 8 and the regulariser of
Eq. 11, with the authors' 1e-5 under the square root).
"""

import math

import numpy as np

from tests.testing import loss_cases

# name: (config overrides, the reference's options, K). The config's scales
# and margins are the papers' (cosine_scale 64, arcface_margin 0.5, ...).
CASES = {
  "normalized_softmax": (
    {"softmax_temperature": 0.05},
    {"scale": 1 / 0.05},
    1,
  ),
  "cosface": (
    {"cosface_margin": 0.35, "cosine_scale": 64.0},
    {"scale": 64.0, "margin": 0.35, "target": "cosine"},
    1,
  ),
  "arcface": (
    {"arcface_margin": 0.5, "cosine_scale": 64.0},
    {"scale": 64.0, "margin": 0.5, "target": "angle"},
    1,
  ),
  "subcenter_arcface": (
    {"arcface_margin": 0.5, "cosine_scale": 64.0, "sub_centers": 3},
    {"scale": 64.0, "margin": 0.5, "target": "angle", "pooling": "max"},
    3,
  ),
  "soft_triple": (
    {
      "soft_triple_centers": 2,
      "soft_triple_la": 20.0,
      "soft_triple_gamma": 0.1,
      "soft_triple_margin": 0.01,
      "soft_triple_tau": 0.2,
    },
    {
      "scale": 20.0,
      "margin": 0.01,
      "target": "cosine",
      "pooling": "soft",
      "gamma": 0.1,
      "tau": 0.2,
    },
    2,
  ),
}


def loss_config(name, **overrides):
  """The loss section of case ``name``, with ``overrides``."""
  return loss_cases.loss_config(name, **CASES[name][0], **overrides)


def centers(name) -> int:
  return CASES[name][2]


def reference(name, x, labels, proxies) -> float:
  """Case ``name``'s loss, float64 (``margin_softmax`` below)."""
  return margin_softmax(
    x, labels, proxies, centers=centers(name), **CASES[name][1]
  )


def _unit(v):
  return v / math.sqrt(math.fsum(v * v))


def margin_softmax(
  x,
  labels,
  proxies,
  *,
  scale,
  margin=0.0,
  target="none",
  centers=1,
  pooling="max",
  gamma=0.1,
  tau=0.0,
) -> float:
  """The mean over the samples of

      -log exp(s psi(S_y)) / (exp(s psi(S_y)) + sum_{c != y} exp(s S_c))

  with S_c the (pooled) cosine to class c, whose centres are the rows
  c K .. c K + K - 1 of ``proxies``, plus tau times SoftTriple's
  regulariser. ``target``: "none" (psi(S) = S), "cosine" (S - m) or "angle"
  (cos(arccos S + m)).
  """
  x = [_unit(v) for v in np.float64(x)]
  rows = [_unit(v) for v in np.float64(proxies)]
  num_classes = len(rows) // centers
  weights = [rows[c * centers : (c + 1) * centers] for c in range(num_classes)]

  def similarity(v, c):
    cosines = [math.fsum(v * w) for w in weights[c]]
    if centers == 1:
      return cosines[0]
    if pooling == "max":
      return max(cosines)
    top = max(cosines)
    soft = [math.exp((cos - top) / gamma) for cos in cosines]
    return math.fsum(
      s * cos for s, cos in zip(soft, cosines, strict=True)
    ) / math.fsum(soft)

  def psi(s):
    if target == "cosine":
      return s - margin
    if target == "angle":
      theta = math.acos(min(max(s, -1.0), 1.0))
      if theta + margin <= math.pi:
        return math.cos(theta + margin)
      return s - margin * math.sin(margin)
    return s

  total = []
  for v, y in zip(x, labels, strict=True):
    logits = [scale * similarity(v, c) for c in range(num_classes)]
    logits[y] = scale * psi(similarity(v, y))
    peak = max(logits)
    log_sum = peak + math.log(math.fsum(math.exp(z - peak) for z in logits))
    total.append(log_sum - logits[y])
  loss = math.fsum(total) / len(total)
  if tau and centers > 1:
    pairs = [
      math.sqrt(2.0 + 1e-5 - 2.0 * math.fsum(w[k] * w[j]))
      for w in weights
      for k in range(centers)
      for j in range(k + 1, centers)
    ]
    loss += tau * math.fsum(pairs) / (num_classes * centers * (centers - 1))
  return loss
