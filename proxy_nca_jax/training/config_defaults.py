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
"""The one place where fields a config may lack get their defaults.

The configs in ``configs/`` define every field. Configs written before a
field existed (a workdir's saved ``config.json``, a user's own config file)
may lack it; `with_defaults` adds each missing field of `OPTIONAL_FIELDS`
with the value that reproduces the behaviour from before the field, so the
code below reads every field directly instead of guessing at each use.
"""

import ml_collections

# Dotted field -> the value that keeps the behaviour of configs without it.
OPTIONAL_FIELDS: dict[str, object] = {
  # Added with sharded proxies: before, every device held every proxy.
  "proxies.sharding": "replicated",
  # Grey-level augmentation (grey_augmentation.py): none before GLYPHS-ZS.
  "input.augmentation": "none",
  # The paper datasets' image-count check: off for the other datasets.
  "input.check_num_examples": False,
  # Query/gallery evaluation: before it, always leave-one-out.
  "evals.query_gallery": None,
  # Proxy-NCA in blocks of proxies: before it, all the logits at once; the
  # same up to 65,536 proxies, and to float32 rounding above.
  "loss.proxy_block_size": None,
  # Sampled negative proxies: before them, every proxy at every step.
  "loss.negative_fraction": 1.0,
}


def with_defaults(
  config: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
  """``config`` with every missing `OPTIONAL_FIELDS` field added (in place).

  Args:
    config: a full run config, maybe older than some fields.

  Returns:
    The same config, completed.
  """
  with config.unlocked():
    for key, value in OPTIONAL_FIELDS.items():
      section_name, field = key.split(".")
      if section_name not in config:
        continue  # Not a run config's section: nothing to complete.
      section = config[section_name]
      if field not in section:
        section[field] = value
  return config
