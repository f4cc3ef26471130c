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
"""Float64 NumPy transcriptions of the proxy losses' equations.

Written from the papers, one sample (and one proxy) at a time, independently
of the masked JAX code: Proxy-NCA (Movshovitz-Attias et al. 2017, Eq. 4, and
its softmax form), with dynamic assignment, proxy ranking and Proxy-Anchor
(Kim et al. 2020, Eq. 4). The loss tests compare the losses with them.
"""

import numpy as np


def unit(v: np.ndarray) -> np.ndarray:
  """The rows of ``v`` scaled to unit length."""
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def proxy_nca(x, labels, proxies, form, scale, smoothing=0.0, a=1.0, b=1.0):
  """Paper Eq. 4 (form='paper') or its softmax form, one sample at a time.

  With smoothing > 0 (softmax form): cross-entropy against the target
  1 - smoothing on the class proxy and smoothing / (C - 1) elsewhere.
  Distances are |a x - b p|^2 between normalised vectors.
  """
  x, p = a * unit(np.float64(x)), b * unit(np.float64(proxies))
  total = 0.0
  for xi, yi in zip(x, labels, strict=True):
    d = scale * np.sum((xi[None, :] - p) ** 2, axis=1)
    if smoothing:
      log_q = -d - np.log(np.sum(np.exp(-d)))
      target = np.full(len(p), smoothing / (len(p) - 1))
      target[yi] = 1.0 - smoothing
      total += -np.sum(target * log_q)
      continue
    others = [z for z in range(len(p)) if form == "softmax" or z != yi]
    total += -np.log(np.exp(-d[yi]) / np.sum(np.exp(-d[others])))
  return total / len(x)


def proxy_distances(x, proxies, a=1.0, b=1.0):
  """|a x - b p|^2 between the normalised rows of x and of the proxies."""
  x, p = a * unit(np.float64(x)), b * unit(np.float64(proxies))
  return np.array([[np.sum((xi - pz) ** 2) for pz in p] for xi in x])


def dynamic_targets(x, proxies, similar, dissimilar):
  """Yields (anchor, positive proxy, negative proxies) per valid anchor.

  Groups: i and the samples similar to it. A group claims proxy q when more
  of its samples have q as nearest proxy than of any group of a negative of
  i. Negatives of i: proxies claimed by its negatives' groups; positive:
  i's nearest proxy among the rest.
  """
  d = proxy_distances(x, proxies)
  nearest = [int(np.argmin(row)) for row in d]
  n, num_proxies = len(x), len(proxies)

  def votes(i, q):
    group = [i] + [j for j in range(n) if similar[i][j]]
    return sum(nearest[j] == q for j in group)

  def claims(i, q):
    rivals = [votes(k, q) for k in range(n) if dissimilar[i][k]]
    return votes(i, q) > max(rivals, default=0)

  for i in range(n):
    negatives = [
      q
      for q in range(num_proxies)
      if any(claims(k, q) for k in range(n) if dissimilar[i][k])
    ]
    free = [q for q in range(num_proxies) if q not in negatives]
    if negatives and free:
      yield i, min(free, key=lambda q: d[i, q]), negatives


def dynamic_proxy_nca(
  x, proxies, similar, dissimilar, form, scale, a=1.0, b=1.0
):
  d = scale * proxy_distances(x, proxies, a, b)
  losses_ = []
  for i, pos, negatives in dynamic_targets(x, proxies, similar, dissimilar):
    denominator = sum(np.exp(-d[i, z]) for z in negatives)
    if form == "softmax":
      denominator += np.exp(-d[i, pos])
    losses_.append(-np.log(np.exp(-d[i, pos]) / denominator))
  return float(np.mean(losses_)) if losses_ else 0.0


def proxy_ranking(x, labels, proxies, margin):
  d = proxy_distances(x, proxies)
  terms = [
    max(margin + d[i, y] - d[i, z], 0.0)
    for i, y in enumerate(labels)
    for z in range(len(proxies))
    if z != y
  ]
  return float(np.mean(terms))


def dynamic_proxy_ranking(x, proxies, similar, dissimilar, margin):
  d = proxy_distances(x, proxies)
  losses_ = []
  for i, pos, negatives in dynamic_targets(x, proxies, similar, dissimilar):
    losses_.append(
      np.mean([max(margin + d[i, pos] - d[i, z], 0.0) for z in negatives])
    )
  return float(np.mean(losses_)) if losses_ else 0.0


def proxy_anchor(x, labels, proxies, alpha, delta):
  """Kim et al. 2020, Eq. 4, one proxy at a time."""
  x, p = unit(np.float64(x)), unit(np.float64(proxies))
  pulls, pushes = [], []
  for c in range(len(p)):
    s = x @ p[c]
    members = [i for i, y in enumerate(labels) if y == c]
    others = [i for i, y in enumerate(labels) if y != c]
    if members:
      pulls.append(np.log1p(np.sum(np.exp(-alpha * (s[members] - delta)))))
    pushes.append(np.log1p(np.sum(np.exp(alpha * (s[others] + delta)))))
  return np.mean(pulls) + np.mean(pushes)
