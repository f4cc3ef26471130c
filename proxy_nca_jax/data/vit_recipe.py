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
"""Fine-tuning an imported Vision Transformer: the recipe, and what the
weights decide.

`apply` sets the recipe (``configs/...:recipe=vit``, and the image-folder
chooser when ``model.pretrained`` holds ViT weights): AdamW with decoupled
weight decay 0.05 on weight matrices only, layer-wise learning-rate decay
0.75 (BEiT, Bao et al., ICLR 2022; optim.py), linear warm-up over the first
5% of the steps then cosine decay, stochastic depth 0.1, the class token
read out into a 512-d embedding, proxies learning 100 times faster than the
network (Proxy-NCA [1], Sec. 4; Proxy-Anchor), Proxy-NCA's softmax form at
scale 9 (ProxyNCA++'s temperature 1/9), 224-px crops of 256-px images.
These are a starting point, not tuned on the paper datasets here.

`from_weights` makes a run agree with the weights in ``model.pretrained``
(written by ``python -m proxy_nca_jax.import_weights``): the architecture
(``model.name`` "auto"), the ``model.vit`` options that fix the network the
weights fit (layout, registers, position size, LayerScale, prefix positions,
projection) and, with ``input.color = "weights"``, the colour normalisation
their family expects. The resolved config is what the workdir records, so
evaluation, export and index use the same input.

[1] Movshovitz-Attias et al., "No Fuss Distance Metric Learning using
    Proxies", ICCV 2017.
"""

import os

import ml_collections
from absl import logging

from proxy_nca_jax import checkpointing, errors
from proxy_nca_jax.data import input_conventions
from proxy_nca_jax.models import inputs, pretrained, vit

# input.color: the convention recorded by the imported weights.
FROM_WEIGHTS = "weights"
# model.name: the architecture of the imported weights.
AUTO = "auto"
DEFAULT_MODEL = "vit_s16"
WARMUP_FRACTION = 0.05


def apply(config: ml_collections.ConfigDict) -> None:
  """Sets the ViT fine-tuning recipe on ``config`` (in place; unlocked).

  ``model.name`` is kept if it already names a ViT or is "auto", else set
  to ViT-S/16; ``schedule.num_steps`` is kept (the warm-up is 5% of it).
  """
  if config.model.name not in (*vit.MODELS, AUTO):
    config.model.name = DEFAULT_MODEL
  config.model.widths = ()
  config.model.embedding_dim = 512
  config.model.pooling = "avg"  # Of the (B, 1, 1, C) class token: itself.
  config.model.layer_norm = False
  config.model.vit.readout = "token"
  config.model.vit.drop_path = 0.1
  config.input.image_size = 224
  config.input.eval_resize = 256
  config.input.color = FROM_WEIGHTS
  config.loss.name = "proxy_nca"
  config.loss.form = "softmax"
  config.loss.scale = 9.0
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 5e-5
  config.optimizer.eps = 1e-8
  config.optimizer.weight_decay = 0.05
  config.optimizer.decay_matrices_only = True
  config.optimizer.layer_decay = 0.75
  config.optimizer.head_lr_mult = 1.0
  config.optimizer.proxy_lr_mult = 100.0
  config.schedule.decay = "cosine"
  config.schedule.warmup_steps = round(
    WARMUP_FRACTION * config.schedule.num_steps
  )


def _vit_metadata(directory: str | None) -> dict | None:
  """The import metadata of the ViT weights in ``directory``, read once;
  None for no folder (loading the weights names a missing one) or a CNN's
  weights."""
  if not directory or not os.path.isdir(directory):
    return None
  metadata = checkpointing.restore_pretrained_metadata(
    os.path.abspath(directory)
  )
  return metadata if "vit" in metadata else None


def holds_vit(directory: str | None) -> bool:
  """Whether ``directory`` (``model.pretrained``) holds imported ViT
  weights; False for None, a missing folder or a CNN's weights."""
  return _vit_metadata(directory) is not None


def from_weights(
  config: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
  """``config`` agreeing with its ViT weights (in place; see the module
  docstring). Other configs: only ``input.color = "weights"`` is resolved,
  to "imagenet" for a ViT from random weights.

  Raises:
    errors.InvalidInputError: ``input.color = "weights"`` with a CNN, or
      weights whose normalisation has no convention here.
  """
  if "color" not in config.input:  # Grey-level datasets: no convention.
    return config
  metadata = _vit_metadata(config.model.pretrained)
  with config.unlocked():
    if metadata is not None:
      options = metadata["vit"]
      if config.model.name == AUTO:
        config.model.name = metadata["arch"]
      for field in pretrained.VIT_WEIGHT_OPTIONS:
        config.model.vit[field] = options[field]
      logging.info(
        "model.vit options of the weights in %s: %s.",
        config.model.pretrained,
        ", ".join(f"{f}={options[f]}" for f in pretrained.VIT_WEIGHT_OPTIONS),
      )
    if config.input.color != FROM_WEIGHTS:
      return config
    if metadata is not None:
      config.input.color = convention_of(pretrained.preprocessing_of(metadata))
    elif config.model.name in vit.MODELS:
      config.input.color = "imagenet"
    else:
      raise errors.InvalidInputError(
        f'input.color="{FROM_WEIGHTS}" takes the normalisation of imported '
        f"ViT weights; model.name={config.model.name} with "
        f"model.pretrained={config.model.pretrained}: set input.color to "
        f"one of {', '.join(input_conventions.COLOR_CONVENTIONS)}."
      )
  logging.info(
    "input.color=%s: the normalisation the weights expect.",
    config.input.color,
  )
  return config


def convention_of(preprocessing: inputs.Preprocessing) -> str:
  """The ``input.color`` convention equal to the weights' normalisation."""
  for name, convention in input_conventions.COLOR_CONVENTIONS.items():
    order = "bgr" if convention.bgr else "rgb"
    # Conventions scale 0-255 pixels; the weights record [0, 1] ones.
    factor = convention.scale * 255.0
    same = order == preprocessing.channel_order and all(
      abs(m / factor - pm) < 1e-6 and abs(s / factor - ps) < 1e-6
      for m, s, pm, ps in zip(
        convention.mean,
        convention.std,
        preprocessing.mean,
        preprocessing.std,
        strict=True,
      )
    )
    if same:
      return name
  raise errors.InvalidInputError(
    f"The weights expect pixels in [0, 1] normalised with mean "
    f"{preprocessing.mean} and std {preprocessing.std} "
    f"({preprocessing.channel_order}), which no input.color convention "
    "has; add one to data/input_conventions.py."
  )
