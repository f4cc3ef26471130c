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
"""Metrics written once: JSON lines and TensorBoard, from process 0 only.

``metrics.jsonl`` in the workdir gets one JSON object per call,
``{"step": ..., "<name>": value, ...}``; TensorBoard event files go to
``workdir/tensorboard``. Other processes get a writer that does nothing, so
callers need no ``if jax.process_index() == 0``.

A run resumed from the checkpoint at step S first drops the rows of steps
after S (`keep_until`): they came from the interrupted segment, which the
resumed run trains again, so the file keeps one history, one row per step and
kind. TensorBoard's event files are append-only, so the resumed writer
also appends a ``SessionLog.START`` event at step S + 1 (`restart_after`):
TensorBoard's reader then drops the interrupted segment's events from that
step on, and shows one value per step as well.
"""

import json
import os
import time
from collections.abc import Mapping

import jax
import tensorflow as tf
from tensorboard.compat.proto import event_pb2

from proxy_nca_jax import url_files


def _jsonl(workdir: str) -> str:
  return os.path.join(workdir, "metrics.jsonl")


class MetricWriter:
  """Appends scalar metrics to metrics.jsonl and TensorBoard."""

  def __init__(self, workdir: str, resumed_from: int | None = None):
    """Opens the writers; ``resumed_from``: the step of the checkpoint a
    resumed run restarts from, when the metrics went further
    (`restart_after`)."""
    self._enabled = jax.process_index() == 0
    if not self._enabled:
      return
    tf.io.gfile.makedirs(workdir)
    self._jsonl_path = _jsonl(workdir)
    self._tensorboard = os.path.join(workdir, "tensorboard")
    if resumed_from is not None:
      # Before this writer's own file exists: the mark sorts before it.
      self.restart_after(resumed_from)
      self._wait_for_a_later_second()
    self._summary = tf.summary.create_file_writer(self._tensorboard)

  def _wait_for_a_later_second(self) -> None:
    """Sleeps (at most a second) until the clock is past the second of the
    newest event file, so that this writer's file sorts after it and after
    the restart mark.

    TensorFlow names a file events.out.tfevents.<second>.<host>.<pid>.
    <count>.v2 and TensorBoard reads them in name order: within one second
    the pid and the process's writer count decide, compared as text ("10"
    before "9"), and a resumed run's events could be read before the ones
    they replace.
    """
    names = _event_files(self._tensorboard)
    if not names:
      return
    newest = max(int(name.split(".")[3]) for name in names)
    while time.time() < newest + 1:
      time.sleep(newest + 1 - time.time())

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Records ``scalars`` (name -> number) at ``step``."""
    if not self._enabled:
      return
    values = {name: float(value) for name, value in scalars.items()}
    with tf.io.gfile.GFile(self._jsonl_path, "a") as f:
      f.write(json.dumps({"step": int(step), **values}) + "\n")
    with self._summary.as_default(step=int(step)):
      for name, value in values.items():
        tf.summary.scalar(name, value)

  def restart_after(self, step: int) -> None:
    """Marks a resume from the checkpoint at ``step`` in TensorBoard.

    A ``SessionLog.START`` event at step + 1, in a file named to sort right
    after the newest existing event file and before the files written next
    (TensorBoard reads them in name order): its reader then purges the
    earlier-written events of later steps.
    """
    if not self._enabled:
      return
    names = sorted(_event_files(self._tensorboard))
    if not names:
      return
    event = event_pb2.Event(
      step=int(step) + 1,
      wall_time=time.time(),
      session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START),
    )
    path = os.path.join(self._tensorboard, f"{names[-1]}.restart{step}")
    with tf.io.TFRecordWriter(path) as f:
      # TensorBoard takes the first START it reads as the run's beginning,
      # not a restart; runs write none at their beginning, so the mark is
      # written twice (a second copy purges nothing more).
      f.write(event.SerializeToString())
      f.write(event.SerializeToString())

  def close(self) -> None:
    """Flushes the TensorBoard writer."""
    if self._enabled:
      self._summary.flush()
      self._summary.close()


def _event_files(tensorboard: str) -> list[str]:
  """The TensorBoard event files (and restart marks) in ``tensorboard``."""
  if not tf.io.gfile.isdir(tensorboard):
    return []
  return [
    name
    for name in tf.io.gfile.listdir(tensorboard)
    if name.startswith("events.out.tfevents")
  ]


def keep_until(workdir: str, step: int) -> int:
  """Drops the rows of ``workdir/metrics.jsonl`` after ``step`` (process 0).

  Returns:
    How many rows were dropped (0 when the file does not exist).
  """
  if jax.process_index() != 0:
    return 0
  records = read_metrics_if_any(workdir)
  kept = [r for r in records if r["step"] <= step]
  if len(kept) < len(records):
    url_files.write_text(
      _jsonl(workdir), "".join(json.dumps(r) + "\n" for r in kept)
    )
  return len(records) - len(kept)


def read_metrics_if_any(workdir: str) -> list[dict[str, float]]:
  """`read_metrics`, or [] when the file does not exist yet."""
  if not tf.io.gfile.exists(_jsonl(workdir)):
    return []
  return read_metrics(workdir)


def read_metrics(workdir: str) -> list[dict[str, float]]:
  """Reads back every record of ``workdir/metrics.jsonl``, in order."""
  path = _jsonl(workdir)
  with tf.io.gfile.GFile(path) as f:
    return [json.loads(line) for line in f if line.strip()]
