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
"""A resumed run's config against the one it was trained with.

A workdir's results mean one training recipe, one class split and one
evaluation protocol. Re-running the train command in a workdir that holds a
checkpoint compares the new config with the recorded ``config.json``: a
change to any field that can change the trained weights or the meaning of
the metrics is refused (`ConfigChangeError`, listing each field old -> new
and the two ways forward) unless the user accepts it; an accepted change is
recorded as a new *segment* (``config.json``'s ``"_segments"``: the step it
starts at, the changes and the whole config of the segment it ends, so
``config.json`` keeps every segment's config, the newest at its top level)
and as a ``config_segment`` scalar in the metrics at that step; the final
results table names the steps where the config changed.

Free fields (`FREE_FIELDS`) cannot change results: logging and checkpoint
cadence, report options, the evaluation batch and tile sizes, where data is
read from, the Recall@K columns reported, and ``schedule.num_steps`` when the
learning rate is constant (training longer continues the same recipe). The
size of Proxy-NCA's blocks of proxies changes only the float32 rounding of
the loss, as the number of devices does, and is free too.
"""

from collections.abc import Mapping
from typing import Any

import ml_collections

from proxy_nca_jax import errors
from proxy_nca_jax.inference import trained_model

# Dotted fields (or sections, ending in ".") whose change cannot change the
# trained weights (beyond float32 rounding) or any metric's value.
FREE_FIELDS = (
  "log_every_steps",
  "report.",
  "ckpt.every_steps",
  "ckpt.keep",
  "evals.every_steps",
  "evals.at_step_zero",
  "evals.block_size",
  "loss.proxy_block_size",
  "model.conv",
  "evals.recall_ks",
  "input.eval_batch_size",
  "input.data_dir",
  "input.manual_dir",
  "input.download",
  "input.prefetch",
)
_ACCEPT_FLAG = "--accept_config_change"


class ConfigChangeError(errors.InvalidInputError):
  """A resume whose config changes results, not accepted."""


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in record.items():
    if key == trained_model.SEGMENTS_KEY:
      continue
    if isinstance(value, Mapping):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = (
        list(value) if isinstance(value, tuple) else value
      )
  return flat


def _is_free(field: str, new: Mapping[str, Any]) -> bool:
  if field == "schedule.num_steps":
    return new.get("schedule.decay") == "constant"
  return any(
    field == free or (free.endswith(".") and field.startswith(free))
    for free in FREE_FIELDS
  )


def result_changes(
  recorded: Mapping[str, Any], config: ml_collections.ConfigDict
) -> dict[str, tuple[Any, Any]]:
  """{dotted field: (recorded value, new value)} of the result-affecting
  fields that differ (a field missing on one side shows as None)."""
  old = _flatten(recorded)
  new = _flatten(config.to_dict())
  return {
    field: (old.get(field), new.get(field))
    for field in sorted(set(old) | set(new))
    if old.get(field) != new.get(field) and not _is_free(field, new)
  }


def check_resume(
  recorded: Mapping[str, Any],
  config: ml_collections.ConfigDict,
  workdir: str,
  step: int,
  accept: bool,
) -> dict[str, tuple[Any, Any]]:
  """The accepted result-affecting changes of a resume (empty: none).

  Raises:
    ConfigChangeError: changes and not ``accept``; the message lists them.
  """
  changes = result_changes(recorded, config)
  if changes and not accept:
    listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in _rows(changes))
    raise ConfigChangeError(
      f"{workdir} holds a run trained to step {step} with another config "
      f"({len(changes)} change(s) that affect results: {listed}). Either "
      "train in a new --workdir, or rerun with "
      f"{_ACCEPT_FLAG} to continue from step {step} with the new config "
      "(recorded as a new segment in config.json and the metrics)."
    )
  return changes


def _rows(changes: Mapping[str, tuple[Any, Any]]):
  return [(k, a, b) for k, (a, b) in changes.items()]


def segments_after(
  segments: list[dict[str, Any]],
  changes: Mapping[str, tuple[Any, Any]],
  step: int,
  previous_config: Mapping[str, Any],
) -> list[dict[str, Any]]:
  """The recorded segments, plus one starting at ``step`` if ``changes``;
  it keeps ``previous_config``, the config trained until ``step``."""
  segments = list(segments)
  if changes:
    segments.append(
      {
        "from_step": step,
        "changes": {k: [a, b] for k, (a, b) in changes.items()},
        "config_before": dict(previous_config),
      }
    )
  return segments
