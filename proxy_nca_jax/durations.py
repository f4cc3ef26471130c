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
"""Durations for people: the ETA of training and of long embedding jobs.

One format everywhere, at most two units, the coarser first:

- under a minute: seconds, ``42s``;
- under an hour: minutes and two-digit seconds, ``3m05s``;
- an hour or more: hours and two-digit minutes, ``10h00m`` (the seconds
  dropped: an estimate that long is not precise to the second).

The duration is first rounded to whole seconds; an unknown one (NaN or
infinite) is ``?``.
"""

import math


def format_duration(seconds: float) -> str:
  """``seconds`` as ``42s``, ``3m05s`` or ``10h00m`` (see the module doc).

  Args:
    seconds: a duration in seconds, >= 0; NaN or infinite when unknown.

  Returns:
    The duration as text, ``?`` when it is not finite.
  """
  if not math.isfinite(seconds):
    return "?"
  minutes, secs = divmod(round(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  if minutes:
    return f"{minutes}m{secs:02d}s"
  return f"{secs}s"
