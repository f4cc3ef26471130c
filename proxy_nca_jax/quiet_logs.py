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
"""Keeps the libraries' routine chatter out of the commands' logs.

What a user reads is ours: progress (steps/s, ETA), metrics, where files
went, warnings and errors. Dropped are only the INFO records of orbax, tfds
and JAX's backend probe (e.g. "Unable to initialize backend 'tpu'" on every
machine without a TPU) and one named warning that tfds raises against its
own code. Every other warning and error of every library still shows.
"""

import logging as std_logging

from absl import logging

# INFO records from these paths are routine (dozens per checkpoint or
# dataset, one per backend JAX looks for).
_CHATTY_INFO = ("/orbax/", "/tensorflow_datasets/", "/jax/_src/xla_bridge.py")
# tfds's PartialDecoding reads `FeatureConnector.dtype` itself and warns
# about its own deprecated field, twice per dataset opened; our code uses
# np_dtype/tf_dtype. Not ours to fix and nothing for a user to do.
_TFDS_SELF_WARNING = "`FeatureConnector.dtype` is deprecated"


class _QuietLibraries(std_logging.Filter):
  """Drops routine library INFO records and tfds's warning about itself."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if "/tensorflow_datasets/" in record.pathname and str(
      record.msg
    ).startswith(_TFDS_SELF_WARNING):
      return False
    chatty = any(lib in record.pathname for lib in _CHATTY_INFO)
    return record.levelno >= std_logging.WARNING or not chatty


def quiet_libraries() -> None:
  """Installs the filter on absl's handler (where every log record goes)."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
    handler.addFilter(_QuietLibraries())
