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
"""Proxies: the learned points that stand in for the data (paper, Sec. 3).

Proxies are a plain ``(num_proxies, dim)`` float32 array held in the parameter
pytree beside the network (``params['proxies']``), so they are optimised,
sharded and checkpointed like any other parameter. They are kept float32 even
when the network computes in lower precision.

Static assignment (paper, Sec. 3.1): every training class has exactly one
proxy, and the proxy of a sample is the proxy of its class,
p(x) = p_{y(x)}. The input pipeline maps training classes to 0..C-1, so a
sample's label is the row index of its proxy.
"""

import jax
import jax.numpy as jnp

PROXY_INITS = ("normal", "class_means")


def init_proxies(
  key: jax.Array, num_proxies: int, dim: int, *, scale: float = 1.0
) -> jax.Array:
  """Draws proxies from an isotropic Gaussian.

  Directions of Gaussian vectors are uniform on the sphere; the losses
  normalise proxies, so ``scale`` only changes how fast plain gradient steps
  move their directions.

  Args:
    key: PRNG key.
    num_proxies: C, the number of proxies (number of training classes).
    dim: D, the embedding dimension.
    scale: standard deviation of each coordinate.

  Returns:
    float32 array of shape (C, D).
  """
  if num_proxies < 1 or dim < 1:
    raise ValueError(
      f"Need at least one proxy of one dimension, got {num_proxies=} "
      f"and {dim=}."
    )
  return scale * jax.random.normal(key, (num_proxies, dim), jnp.float32)


def class_mean_proxies(
  embeddings: jax.Array, labels: jax.Array, num_proxies: int
) -> jax.Array:
  """Places each proxy at the mean embedding of its class.

  The paper's bound (Sec. 3.2) tightens as proxies get within epsilon of their
  samples; starting at the class means starts training near that regime. A
  class absent from ``labels`` gets a zero proxy, which the losses handle (its
  distance to every unit embedding is 1).

  Args:
    embeddings: float array (N, D) of embeddings of training images.
    labels: int array (N,) with values in [0, num_proxies).
    num_proxies: C.

  Returns:
    float32 array of shape (C, D).
  """
  embeddings = jnp.asarray(embeddings, jnp.float32)
  sums = jax.ops.segment_sum(embeddings, labels, num_segments=num_proxies)
  counts = jax.ops.segment_sum(
    jnp.ones_like(labels, jnp.float32), labels, num_segments=num_proxies
  )
  return sums / jnp.maximum(counts, 1.0)[:, None]


def static_assignment(labels: jax.Array, num_proxies: int) -> jax.Array:
  """Marks each sample's own proxy: the static assignment of Sec. 3.1.

  Args:
    labels: int array (B,), the sample's class index in [0, num_proxies).
    num_proxies: C.

  Returns:
    bool array (B, C), True exactly at (i, labels[i]). A label outside
    [0, C) gives a row of False; the losses treat such a sample as having no
    positive proxy.
  """
  return labels[:, None] == jnp.arange(num_proxies)[None, :]


def proxy_norms(proxies: jax.Array) -> dict[str, jax.Array]:
  """Summary statistics of the proxies' norms, for logging."""
  norms = jnp.linalg.norm(proxies, axis=-1)
  return {
    "proxy_norm_mean": norms.mean(),
    "proxy_norm_min": norms.min(),
    "proxy_norm_max": norms.max(),
  }
