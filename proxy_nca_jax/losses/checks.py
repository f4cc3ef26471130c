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
"""Argument checks shared by the proxy losses (losses, losses.dynamic,
losses.sharded): shapes, forms, assignments and positive options, raised as
ValueError at trace time with the expected value in the message.
"""

import jax
import jax.numpy as jnp

PROXY_NCA_FORMS = ("paper", "softmax")
ASSIGNMENTS = ("static", "dynamic")


def check_proxies(embeddings: jax.Array, proxies: jax.Array) -> None:
  """Raises ValueError unless embeddings are (B, D) and proxies (P, D)."""
  if embeddings.ndim != 2:
    raise ValueError(
      f"embeddings must have shape (batch, dim), got {embeddings.shape}."
    )
  if proxies.ndim != 2 or proxies.shape[1] != embeddings.shape[1]:
    raise ValueError(
      f"proxies must have shape (num_proxies, {embeddings.shape[1]}), "
      f"got {proxies.shape}."
    )


def check_relations(
  embeddings: jax.Array, similar: jax.Array, dissimilar: jax.Array
) -> None:
  """Raises ValueError unless similar and dissimilar are bool (B, B)."""
  size = embeddings.shape[0]
  for name, mask in (("similar", similar), ("dissimilar", dissimilar)):
    if mask.shape != (size, size) or mask.dtype != jnp.bool_:
      raise ValueError(
        f"{name} must be a bool array of shape ({size}, {size}), got "
        f"{mask.dtype} {mask.shape}."
      )


def check_proxy_nca_options(
  form: str,
  scale: float,
  label_smoothing: float,
  embedding_norm: float,
  proxy_norm: float,
  assignment: str,
) -> None:
  """Raises ValueError for an option ``proxy_nca_loss`` does not accept."""
  if form not in PROXY_NCA_FORMS:
    raise ValueError(f"form must be one of {PROXY_NCA_FORMS}, got {form!r}.")
  if assignment not in ASSIGNMENTS:
    raise ValueError(
      f"assignment must be one of {ASSIGNMENTS}, got {assignment!r}."
    )
  for name, value in (
    ("scale", scale),
    ("embedding_norm", embedding_norm),
    ("proxy_norm", proxy_norm),
  ):
    if not value > 0:
      raise ValueError(f"{name} must be positive, got {value}.")
  if not 0 <= label_smoothing < 1:
    raise ValueError(
      f"label_smoothing must be in [0, 1), got {label_smoothing}."
    )
  if label_smoothing and (form != "softmax" or assignment != "static"):
    raise ValueError(
      "label_smoothing needs form='softmax' and assignment='static' (the "
      "smoothed target is a distribution over all the class proxies)."
    )
