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
import numpy as np

from proxy_nca_jax import errors

PROXY_NCA_FORMS = ("paper", "softmax")
ASSIGNMENTS = ("static", "dynamic")


def _check_embeddings(embeddings: jax.Array) -> None:
  """(B, D) with B >= 1: every loss raises the same error on an empty batch."""
  if embeddings.ndim != 2:
    raise errors.InvalidInputError(
      f"embeddings must have shape (batch, dim), got {embeddings.shape}."
    )
  if embeddings.shape[0] == 0:
    raise errors.InvalidInputError(
      f"The batch is empty (embeddings of shape {embeddings.shape}): a "
      "loss needs at least one sample."
    )


def check_batch(embeddings: jax.Array, labels: jax.Array) -> None:
  """Raises ValueError unless embeddings are (B, D), B >= 1, labels (B,)."""
  _check_embeddings(embeddings)
  if labels.shape != embeddings.shape[:1]:
    raise errors.InvalidInputError(
      f"labels must have shape ({embeddings.shape[0]},) to match the "
      f"embeddings, got {labels.shape}."
    )


def check_static_labels(labels: jax.Array, num_proxies: int) -> None:
  """Concrete labels must be proxy rows, [0, num_proxies).

  With static assignment a label is the row of its class's proxy. Labels
  known here (NumPy or concrete JAX arrays) outside that range are a
  mistake and raise, naming them. Inside ``jit`` the labels are traced
  and cannot be read: there, as documented by each loss, samples with
  such labels are left out of the loss (the sharded training relies on
  it for the padding rows).
  """
  if isinstance(labels, jax.core.Tracer):
    return
  values = np.asarray(labels)
  bad = np.unique(values[(values < 0) | (values >= num_proxies)])
  if bad.size:
    shown = ", ".join(str(v) for v in bad[:10])
    more = f" (and {bad.size - 10} more)" if bad.size > 10 else ""
    raise errors.InvalidInputError(
      f"labels {shown}{more} are not proxy rows [0, {num_proxies}): with "
      "static assignment a label is its class's proxy row. Map classes to "
      "0..C-1, give as many proxies as classes, or use "
      "assignment='dynamic'."
    )


def check_proxies(embeddings: jax.Array, proxies: jax.Array) -> None:
  """Raises ValueError unless embeddings are (B, D), B >= 1, proxies (P, D)."""
  _check_embeddings(embeddings)
  if proxies.ndim != 2 or proxies.shape[1] != embeddings.shape[1]:
    raise errors.InvalidInputError(
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
      raise errors.InvalidInputError(
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
    raise errors.InvalidInputError(
      f"form must be one of {PROXY_NCA_FORMS}, got {form!r}."
    )
  if assignment not in ASSIGNMENTS:
    raise errors.InvalidInputError(
      f"assignment must be one of {ASSIGNMENTS}, got {assignment!r}."
    )
  for name, value in (
    ("scale", scale),
    ("embedding_norm", embedding_norm),
    ("proxy_norm", proxy_norm),
  ):
    if not value > 0:
      raise errors.InvalidInputError(f"{name} must be positive, got {value}.")
  if not 0 <= label_smoothing < 1:
    raise errors.InvalidInputError(
      f"label_smoothing must be in [0, 1), got {label_smoothing}."
    )
  if label_smoothing and (form != "softmax" or assignment != "static"):
    raise errors.InvalidInputError(
      "label_smoothing needs form='softmax' and assignment='static' (the "
      "smoothed target is a distribution over all the class proxies)."
    )
