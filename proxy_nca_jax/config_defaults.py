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
"""Completes configs saved before some of the schema's fields existed.

Every config built on `config_schema.base_config` has every field. Configs
written before a field existed (a workdir's saved ``config.json``, a user's
own config file) may lack it; `with_defaults` adds each missing field of
`OPTIONAL_FIELDS` (dotted paths; a missing subsection such as ``model.vit``
is added) with its default in the schema, which is the behaviour
from before the field, so the code below reads every field directly instead
of guessing at each use.
"""

import ml_collections

from proxy_nca_jax import config_schema

# Dotted fields whose schema default keeps the behaviour of configs without
# them: why, for each.
OPTIONAL_FIELDS = (
  # Added with sharded proxies: before, every device held every proxy.
  "proxies.sharding",
  # Grey-level augmentation (grey_augmentation.py): none before GLYPHS-ZS.
  "input.augmentation",
  # The paper datasets' image-count check: off before it, for every dataset
  # (the benchmark configs turn it on).
  "input.check_num_examples",
  # Query/gallery evaluation: before it, always leave-one-out.
  "evals.query_gallery",
  # Proxy-NCA in blocks of proxies: before it, all the logits at once; the
  # same up to 65,536 proxies, and to float32 rounding above.
  "loss.proxy_block_size",
  # Sampled negative proxies: before them, every proxy at every step.
  "loss.negative_fraction",
  # The class-weight losses (losses/margin_softmax.py): read by them alone,
  # so a config from before them trained another loss.
  "loss.softmax_temperature",
  "loss.cosine_scale",
  "loss.cosface_margin",
  "loss.arcface_margin",
  "loss.sub_centers",
  "loss.dynamic_margin_bounds",
  "loss.dynamic_margin_power",
  "loss.soft_triple_centers",
  "loss.soft_triple_la",
  "loss.soft_triple_gamma",
  "loss.soft_triple_margin",
  "loss.soft_triple_tau",
  # convnet-S's convolutions through oneDNN: XLA's before.
  "model.conv",
  # The ViT fine-tuning options of the optimiser: off before them.
  "optimizer.layer_decay",
  "optimizer.decay_matrices_only",
  # The ViT backbones' options: read by them alone, so a config from before
  # them trained another network.
  *(f"model.vit.{field}" for field in config_schema.base_config().model.vit),
)


def with_defaults(
  config: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
  """``config`` with every missing `OPTIONAL_FIELDS` field added (in place).

  Args:
    config: a full run config, maybe older than some fields.

  Returns:
    The same config, completed.
  """
  defaults = config_schema.base_config()
  with config.unlocked():
    for key in OPTIONAL_FIELDS:
      *sections, field = key.split(".")
      if sections[0] not in config:
        continue  # Not a run config's section: nothing to complete.
      section, default = config, defaults
      for name in sections:
        if name not in section:  # A subsection added with its fields.
          section[name] = ml_collections.ConfigDict()
        section, default = section[name], default[name]
      if field not in section:
        section[field] = default[field]
  return config
