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
"""The health of a training run: divergence, runaway proxies, a stalled loss.

Checked on the metrics the loop fetches anyway (at logged, saved and
evaluated steps), so watching costs no extra device-to-host transfer:

- ``first_non_finite`` tracks, on the device and every step, the first step
  with a non-finite metric; ``check_finite`` turns it (or a non-finite
  fetched metric) into a ``FloatingPointError`` that says how to restart;
- ``ProxyNormWatch`` warns once when the proxies' norms run away;
- ``StallWatch`` warns once when the loss and its gradient are exactly 0.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from proxy_nca_jax import errors

# A largest proxy norm this many times its value at the start of a run is a
# runaway: the default run's proxies stay within 2% of their start.
RUNAWAY_NORM_FACTOR = 100.0


@jax.jit
def first_non_finite(
  first: jax.Array, step: int, metrics: dict[str, jax.Array]
) -> jax.Array:
  """The first step with a non-finite metric (loss, gradient norm, proxy
  norms; -1: none yet), on the device: tracked every step without waiting
  for the step to finish."""
  finite = jnp.all(
    jnp.stack([jnp.isfinite(v).all() for v in jax.tree.leaves(metrics)])
  )
  return jnp.where((first < 0) & ~finite, step, first)


def check_finite(
  step: int, metrics: dict[str, float], last_ckpt: int | None, first_bad: int
) -> None:
  """Raises FloatingPointError when a fetched metric is not finite.

  Args:
    step: the step whose metrics were fetched.
    metrics: its metrics.
    last_ckpt: the newest checkpoint (None: none yet).
    first_bad: the first step with a non-finite metric (-1: none).
  """
  bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
  if not bad and first_bad < 0:
    return
  first = step if first_bad < 0 else first_bad
  when = f"at step {first}" + (
    f" (the first non-finite one; found at step {step})"
    if first != step
    else ""
  )
  if last_ckpt is None:
    restart = (
      "No checkpoint was saved before it: rerun the same command with, "
      "e.g., --config.optimizer.learning_rate=<smaller> to start again."
    )
  else:
    restart = (
      f"The last good checkpoint (step {last_ckpt}) is intact; rerun the "
      "same command with, e.g., --config.optimizer.learning_rate=<smaller> "
      "--accept_config_change to resume from it."
    )
  # The metrics fetched now may be finite again after a non-finite step.
  what = bad or "non-finite metrics"
  raise errors.TrainingDivergedError(
    f"Training diverged: {what} {when}. Likely "
    "causes: a learning rate too high for the loss scale "
    "(optimizer.learning_rate, optimizer.proxy_lr_mult) or loss.scale too "
    f"large. {restart}"
  )


@dataclasses.dataclass
class ProxyNormWatch:
  """Warns (once) when the proxies' norms run away.

  Proxy-NCA compares embeddings and proxies as directions (Movshovitz-Attias
  et al. 2017, Sec. 3: both on the unit sphere), so a huge proxy barely
  turns under an update of bounded size: learning stalls while the loss
  stays finite, and no divergence check fires.
  """

  start_max: float
  warned: bool = False

  def check(self, step: int, fetched: dict[str, float]) -> None:
    """Warns if ``fetched['proxy_norm_max']`` of ``step`` is a runaway."""
    norm = fetched.get("proxy_norm_max")
    if self.warned or norm is None or not np.isfinite(norm):
      return
    start = max(self.start_max, 1e-6)
    if norm > RUNAWAY_NORM_FACTOR * start:
      self.warned = True
      logging.warning(
        "Proxy norms are running away: the largest is %.3g at step %d, "
        "%.0fx its %.3g at the start of this run. Proxies are compared as "
        "directions, so such proxies barely move and learning stalls while "
        "the loss stays finite: lower optimizer.learning_rate or "
        "optimizer.proxy_lr_mult.",
        norm,
        step,
        norm / start,
        self.start_max,
      )


@dataclasses.dataclass
class StallWatch:
  """Warns (once) when the loss and its gradient are exactly 0 at two
  checked steps in a row: no example of those batches had a loss term, so
  nothing trains any more, and no divergence check fires.

  Dynamic assignment gets there when the classes of a batch share their
  nearest proxy (``proxies.supervised_anchors``; docs/README.md, RQ5 on
  GLYPHS-ZS).
  """

  assignment: str
  last_zero: int | None = None
  warned: bool = False

  def check(self, step: int, fetched: dict[str, float]) -> None:
    """Warns if ``step`` is the second checked step in a row whose loss and
    gradient norm are exactly 0."""
    zero = fetched.get("loss") == 0.0 and fetched.get("grad_norm") == 0.0
    if self.warned or not zero:
      self.last_zero = None
      return
    if self.last_zero is None:
      self.last_zero = step
      return
    self.warned = True
    if self.assignment == "dynamic":
      advice = (
        "With loss.assignment=dynamic the classes of the batches share "
        "their nearest proxy, none claims it, and no anchor gets a negative "
        "proxy; such runs did not recover on GLYPHS-ZS (docs/README.md, "
        "RQ5). Use loss.assignment=static when every image has a class."
      )
    else:
      advice = (
        "A loss over pairs or triplets needs several images of a class in "
        "each batch (input.samples_per_class)."
      )
    logging.warning(
      "The loss and its gradient are exactly 0 at steps %d and %d: no "
      "example of those batches has a loss term, so the network and the "
      "proxies no longer change. %s",
      self.last_zero,
      step,
      advice,
    )
