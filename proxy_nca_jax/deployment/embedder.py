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
"""The trained embedder as one function of raw pixels: what export ships.

``embed(images)``: uint8 images (B, H, W, C) of the model's *input size*
-> float32 (B, D) unit-norm embeddings, in inference mode. It holds, in
JAX, everything between a decoded image and the embedding:

- grey-level datasets (Fashion-MNIST, GLYPHS-ZS): the input size is the
  dataset's image size, and pixels are normalised by the dataset's
  statistics (``input_conventions.normalize_pixels``);
- colour datasets: the evaluation recipe (rgb_preprocessing.py): the
  shorter side resized to ``input.eval_resize`` (antialiased bilinear,
  ``jax.image.resize``, which matches ``tf.image.resize`` to 6e-5 of a
  grey level), the central ``input.image_size`` square, the backbone's
  colour convention. The input size defaults to ``eval_resize`` square,
  where the resize is the identity; another size can be chosen at export.

then the network and its L2-normalised embedding head (Movshovitz-Attias et
al. 2017, Sec. 3: embeddings and proxies live on the unit sphere).

`EmbedderSpec` describes it: input shape and dtype, embedding size, the
run's config signature, a fingerprint of the weights (what a gallery is
checked against) and where it came from.
"""

import dataclasses
import hashlib
import json
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from proxy_nca_jax import errors
from proxy_nca_jax.data import (
  catalog,
  input_conventions,
)
from proxy_nca_jax.inference import trained_model

EmbedFn = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class EmbedderSpec:
  """What an embedder takes and gives, and which trained weights it is.

  Attributes:
    input_shape: (H, W, C) of one input image, uint8 values 0-255.
    embedding_dim: D, the size of the unit-norm embeddings.
    dataset: the ``input.dataset`` it was trained on.
    config_signature: the run's signature (model, sizes, proxies, optimiser;
      ``train_state.run_signature``).
    weights: hex fingerprint of the network's variables (`fingerprint`).
    step: the training step of the checkpoint.
    workdir: the training run's workdir.
    jax_version: the JAX that built it.
  """

  input_shape: tuple[int, int, int]
  embedding_dim: int
  dataset: str
  config_signature: dict[str, Any]
  weights: str
  step: int
  workdir: str
  jax_version: str = jax.__version__
  input_dtype: str = "uint8"

  def describe(self) -> str:
    """One line naming the model, for messages."""
    return (
      f"{self.config_signature.get('model')} {self.embedding_dim}-d, step "
      f"{self.step} of {self.workdir}, weights {self.weights}"
    )

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "EmbedderSpec":
    record = json.loads(text)
    record["input_shape"] = tuple(record["input_shape"])
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in record.items() if k in known})


def fingerprint(variables: Any) -> str:
  """16 hex digits of SHA-256 over the variables' paths, dtypes and bytes."""
  digest = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(variables))[0]
  for path, leaf in leaves:
    leaf = np.ascontiguousarray(leaf)
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(f"{leaf.dtype}{leaf.shape}".encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()[:16]


def default_input_shape(
  input_config: ml_collections.ConfigDict,
) -> tuple[int, int, int]:
  """The dataset's image size (grey) or eval_resize square (colour)."""
  if catalog.traits(input_config.dataset).grey:
    return trained_model.config_input_shape(input_config)
  return (input_config.eval_resize, input_config.eval_resize, 3)


def preprocessing(
  input_config: ml_collections.ConfigDict,
  input_shape: tuple[int, int, int],
) -> Callable[[jax.Array], jax.Array]:
  """uint8 (B, H, W, C) of ``input_shape`` -> the network's float32 inputs.

  Raises:
    ValueError: an input shape the recipe cannot take (a grey-level
      dataset's other than its own, or a colour one smaller than the crop).
  """
  height, width, channels = input_shape
  if catalog.traits(input_config.dataset).grey:
    expected = trained_model.config_input_shape(input_config)
    if tuple(input_shape) != expected:
      raise errors.InvalidInputError(
        f"{input_config.dataset} images are {expected}; an input size of "
        f"{tuple(input_shape)} is not supported: resize images to "
        f"{expected[:2]} before embedding."
      )

    def grey(images: jax.Array) -> jax.Array:
      pixels = images.astype(jnp.float32)
      return input_conventions.normalize_pixels(pixels, input_config.dataset)

    return grey

  crop, side = input_config.image_size, input_config.eval_resize
  if channels != 3 or min(height, width) < 1:
    raise errors.InvalidInputError(
      f"Colour inputs must be (H, W, 3), got {input_shape}."
    )
  resized = input_conventions.shorter_side_shape(height, width, side)
  top, left = (resized[0] - crop) // 2, (resized[1] - crop) // 2

  def colour(images: jax.Array) -> jax.Array:
    pixels = images.astype(jnp.float32)
    if resized != (height, width):
      pixels = jax.image.resize(
        pixels,
        (pixels.shape[0], *resized, 3),
        method="linear",
        antialias=True,
      )
    pixels = pixels[:, top : top + crop, left : left + crop]
    return input_conventions.normalize_colors(pixels, input_config.color)

  return colour


def embedding_function(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  variables: Any,
  input_shape: tuple[int, int, int],
) -> EmbedFn:
  """uint8 images of ``input_shape`` -> unit embeddings; weights closed over.

  Pure and jit-able, with any batch size; `jax.export` serialises it.
  """
  prepare = preprocessing(config.input, input_shape)

  def embed(images: jax.Array) -> jax.Array:
    return model.apply(variables, prepare(images), train=False)

  return embed


def from_workdir(
  workdir: str,
  input_shape: tuple[int, int, int] | None = None,
  step: int | None = None,
) -> tuple[EmbedFn, EmbedderSpec]:
  """A trained run's embedder (newest checkpoint unless ``step``).

  Reads the run's config and network weights only
  (``trained_model.load``): the dataset need not be there.

  Returns:
    (embed function, its spec); the weights live on the host, and the
    function runs on the default device.
  """
  trained = trained_model.load(workdir, step)
  shape = tuple(input_shape or default_input_shape(trained.config.input))
  embed = embedding_function(
    trained.config, trained.model, trained.variables, shape
  )
  spec = EmbedderSpec(
    input_shape=shape,
    embedding_dim=trained.config.model.embedding_dim,
    dataset=trained.config.input.dataset,
    config_signature=trained.signature,
    weights=fingerprint(trained.variables),
    step=trained.step,
    workdir=trained.workdir,
  )
  return embed, spec
