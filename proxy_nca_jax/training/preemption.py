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
"""Stopping cleanly when the job is asked to stop (SIGTERM).

Cloud TPU VMs, spot/preemptible GPUs and batch schedulers send SIGTERM some
seconds before killing a job. The train loop asks ``should_stop(step)`` after
every step; when it says yes the loop saves a checkpoint of that step and
the train command exits with status `EXIT_STATUS` (75, ``EX_TEMPFAIL`` of
sysexits.h: not finished, try again), so a scheduler or an ``&&`` chain
does not read the stop as a finished run; rerunning the same command
resumes from the checkpoint.

With one process a Python signal handler records the request. With several,
every process must stop at the same step, so JAX's preemption sync point
decides (``multihost_utils.reached_preemption_sync_point``, backed by the
coordination service that ``jax.distributed.initialize`` starts; it watches
SIGTERM itself).
"""

import signal
import types

import jax
from absl import logging
from jax.experimental import multihost_utils

# The train command's exit status after a stop on request (module doc).
EXIT_STATUS = 75


class Preempted(Exception):  # noqa: N818 (an event, not an error)
  """Training stopped at a step on request; the checkpoint is saved."""

  def __init__(self, step: int):
    super().__init__(
      f"Stopped on request (SIGTERM) at step {step}; the checkpoint of "
      "that step is saved. Rerun the same command to resume."
    )
    self.step = step


class StopWatcher:
  """Records SIGTERM and says when the train loop should stop."""

  def __init__(self):
    self._requested = False
    self._previous = None
    if jax.process_count() == 1:
      self._previous = signal.signal(signal.SIGTERM, self._on_signal)

  def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
    del frame
    logging.warning("Signal %d received: stopping after this step.", signum)
    self._requested = True

  def should_stop(self, step: int) -> bool:
    """Whether to save and stop after ``step`` (the same on all processes)."""
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._requested

  def close(self) -> None:
    """Restores the signal handler that was there before."""
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
