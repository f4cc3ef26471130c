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
"""Checkpoints: the only module that talks to orbax.

A checkpoint holds the train state (parameters, proxies, BatchNorm statistics,
optimiser state, step) and a small JSON ``signature`` of what produced it
(model, embedding size, number of proxies). Restoring into a run whose
signature differs fails with a message instead of loading mismatched arrays.
Saves are asynchronous; orbax writes into a temporary folder and renames it
when complete, so a run killed mid-save resumes from the previous checkpoint.

A trained network is restored alone (`restore_network`): its parameters and
BatchNorm statistics, without the proxies or the optimiser state, for
inference (inference/trained_model.py).

Pretrained backbones converted from PyTorch (models/pretrained.py) are saved
too, as a folder of variables and a JSON ``metadata`` (architecture, source
file and its SHA-256), read at initialisation by ``model.pretrained``.
"""

import errno
import shutil
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint.checkpoint_managers import (
  preservation_policy,
  save_decision_policy,
)

from proxy_nca_jax import errors

_STATE = "state"
_SIGNATURE = "signature"


class IncompatibleCheckpointError(errors.InvalidInputError):
  """The workdir holds a checkpoint of a differently configured run."""


class CheckpointWriteError(errors.Error, OSError):
  """A checkpoint cannot be written (no space left); the last one is kept."""


# Space asked for beyond the arrays' bytes (orbax's metadata, file slack).
_SAVE_MARGIN = 1.25
_MIN_MARGIN_BYTES = 1 << 20


def _state_bytes(state: Any) -> int:
  return sum(int(getattr(leaf, "nbytes", 0)) for leaf in jax.tree.leaves(state))


def _no_space(error: BaseException) -> bool:
  """Whether ``error`` (or an exception it came from) is ENOSPC."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
      return True
    if "No space left on device" in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


class Checkpointer:
  """Saves every ``every_steps`` steps and keeps the latest ``keep``."""

  def __init__(self, directory: str, *, every_steps: int, keep: int):
    """Opens (or creates) the checkpoint folder.

    Args:
      directory: absolute path or URL (e.g. gs://...) of the folder.
      every_steps: save interval in steps (0: only forced saves).
      keep: number of most recent checkpoints preserved.
    """
    if keep < 1:
      raise errors.InvalidInputError(
        f"ckpt.keep must be at least 1, got {keep}."
      )
    interval = (
      save_decision_policy.FixedIntervalPolicy(every_steps)
      if every_steps > 0
      else None
    )
    options = ocp.CheckpointManagerOptions(
      save_decision_policy=interval,
      preservation_policy=preservation_policy.LatestN(keep),
      create=True,
      cleanup_tmp_directories=True,
    )
    self._manager = ocp.CheckpointManager(directory, options=options)

  def latest_step(self) -> int | None:
    """The step of the newest complete checkpoint, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """The steps of every complete checkpoint kept, ascending."""
    return sorted(self._manager.all_steps())

  def save(
    self,
    step: int,
    state: Any,
    signature: dict[str, Any],
    *,
    force: bool = False,
  ) -> bool:
    """Saves ``state`` at ``step`` if the interval says so (or ``force``).

    Before a save of a local folder, the free space is checked against
    the state's size; a save that fails for want of space (now, or when
    an earlier asynchronous save is waited for) is reported the same way.

    Returns:
      Whether a save was started.

    Raises:
      CheckpointWriteError: not enough space; names the folder, the free
        and the needed space, and the last complete checkpoint (intact).
    """
    if not (force or self._manager.should_save(step)):
      return False
    directory = str(self._manager.directory)
    size = _state_bytes(state)
    needed = max(int(size * _SAVE_MARGIN), size + _MIN_MARGIN_BYTES)
    if "://" not in directory:
      free = shutil.disk_usage(directory).free
      if free < needed:
        raise self._write_error(step, free, needed)
    try:
      return self._manager.save(
        step,
        args=ocp.args.Composite(
          **{
            _STATE: ocp.args.StandardSave(state),
            _SIGNATURE: ocp.args.JsonSave(signature),
          }
        ),
        force=force,
      )
    except Exception as error:
      if _no_space(error):
        raise self._write_error(step, None, needed) from error
      raise

  def _write_error(
    self, step: int | None, free: int | None, needed: int
  ) -> CheckpointWriteError:
    """The one-line error of a save without space (``step`` None: the
    pending asynchronous save; ``needed`` 0: unknown)."""
    directory = str(self._manager.directory)
    if free is None and "://" not in directory:
      free = shutil.disk_usage(directory).free
    space = "" if free is None else f"{free / 2**20:.1f} MB free"
    if needed:
      space += f"{', ' if space else ''}about {needed / 2**20:.1f} MB needed"
    which = "a checkpoint" if step is None else f"the checkpoint of step {step}"
    latest = self._manager.latest_step()
    kept = (
      f"The last complete checkpoint (step {latest}) is intact"
      if latest is not None
      else "No earlier checkpoint exists"
    )
    return CheckpointWriteError(
      f"No space to save {which} in {directory}"
      + (f" ({space})" if space else "")
      + f". {kept}; free some space (or use a --workdir on a larger disk) "
      "and rerun the same command to resume.",
    )

  def restore(self, step: int, target: Any, signature: dict[str, Any]) -> Any:
    """Restores the state saved at ``step`` onto ``target``'s shardings.

    Args:
      step: the checkpoint's step.
      target: a state pytree of the same structure (arrays or
        jax.ShapeDtypeStruct with shardings) giving shapes and placement.
      signature: the current run's signature; must equal the saved one.

    Returns:
      The restored state.

    Raises:
      IncompatibleCheckpointError: if the saved signature differs.
    """
    directory = self._manager.directory
    saved = self._manager.restore(
      step, args=ocp.args.Composite(**{_SIGNATURE: ocp.args.JsonRestore()})
    )[_SIGNATURE]
    if saved != signature:
      differences = {
        key: (saved.get(key), signature.get(key))
        for key in sorted(set(saved) | set(signature))
        if saved.get(key) != signature.get(key)
      }
      raise IncompatibleCheckpointError(
        f"The checkpoint at step {step} in {directory} was written by a "
        f"differently configured run (saved vs now: {differences}). Use a "
        "new --workdir, or restore the original settings."
      )
    abstract = jax.tree.map(ocp.tree.to_shape_dtype_struct, target)
    return self._manager.restore(
      step,
      args=ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(abstract)}),
    )[_STATE]

  def wait_until_finished(self) -> None:
    """Blocks until any asynchronous save has been committed.

    Raises:
      CheckpointWriteError: that save ran out of space.
    """
    self._finish(self._manager.wait_until_finished)

  def close(self) -> None:
    """Waits for pending saves and releases the manager's resources.

    Raises:
      CheckpointWriteError: a pending save ran out of space.
    """
    self._finish(self._manager.close)

  def _finish(self, wait: Callable[[], None]) -> None:
    """Runs ``wait``, reporting a pending save without space as ours."""
    try:
      wait()
    except Exception as error:
      if _no_space(error):
        raise self._write_error(None, None, 0) from error
      raise


def chosen_step(checkpoints: Any, step: int | None, directory: str) -> int:
  """``step``, or the newest, of the complete checkpoints of ``directory``.

  Args:
    checkpoints: a `Checkpointer` or an orbax manager of ``directory``
      (anything with ``latest_step()`` and ``all_steps()``).
    step: the step asked for (None: the newest).
    directory: their folder, for the message.

  Raises:
    errors.MissingFileError: no checkpoint, or none at ``step``.
  """
  step = checkpoints.latest_step() if step is None else step
  if step is None or step not in checkpoints.all_steps():
    raise errors.MissingFileError(
      f"No checkpoint{'' if step is None else f' at step {step}'} in "
      f"{directory}."
    )
  return step


def restore_network(
  directory: str, step: int | None, target: Any
) -> tuple[dict[str, Any], dict[str, Any], int]:
  """The network's variables of one checkpoint, nothing else (no optimiser).

  Args:
    directory: the checkpoint folder of a run (absolute path or URL).
    step: the checkpoint (None: the newest).
    target: ``{'params': ..., 'batch_stats': ...}`` of the network, arrays
      or jax.ShapeDtypeStruct: the shapes the checkpoint must hold.

  Returns:
    (the variables as host NumPy arrays, the checkpoint's signature, its
    step).

  Raises:
    errors.MissingFileError: no checkpoint (at ``step``) in ``directory``.
    errors.InvalidInputError: the checkpoint's arrays are not ``target``'s
      shapes.
  """
  if not epath.Path(directory).is_dir():
    # Checked first: a manager may create the folder.
    raise errors.MissingFileError(f"No checkpoint in {directory}.")
  options = ocp.CheckpointManagerOptions(create=False)
  with ocp.CheckpointManager(directory, options=options) as manager:
    step = chosen_step(manager, step, directory)
    # The state holds the network as params['model'] beside the proxies.
    item = {
      "params": {"model": target["params"]},
      # A network without BatchNorm (a ViT) has none: {}.
      "batch_stats": target.get("batch_stats", {}),
    }
    restored = manager.restore(
      step,
      args=ocp.args.Composite(
        **{
          _STATE: ocp.args.PyTreeRestore(
            item=item,
            restore_args=jax.tree.map(
              lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item
            ),
            partial_restore=True,
          ),
          _SIGNATURE: ocp.args.JsonRestore(),
        }
      ),
    )
  state = restored[_STATE]
  variables = {
    "params": state["params"]["model"],
    "batch_stats": state["batch_stats"],
  }
  wrong = [
    f"{jax.tree_util.keystr(path)} {np.shape(got)} (expected {want.shape})"
    for (path, got), want in zip(
      jax.tree_util.tree_flatten_with_path(variables)[0],
      jax.tree.leaves(target),
      strict=True,
    )
    if np.shape(got) != tuple(want.shape)
  ]
  if wrong:
    raise errors.InvalidInputError(
      f"The checkpoint of step {step} in {directory} does not hold the "
      f"network its run describes: {'; '.join(wrong[:3])}."
    )
  return variables, restored[_SIGNATURE], step


_VARIABLES = "variables"
_METADATA = "metadata"


def save_pretrained(
  directory: str, variables: Any, metadata: dict[str, Any]
) -> None:
  """Writes converted pretrained weights (models.pretrained) to ``directory``.

  Args:
    directory: absolute path of a folder that does not exist yet.
    variables: ``{'params': ..., 'batch_stats': ...}`` arrays.
    metadata: JSON-serialisable facts about them (architecture, source).
  """
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
    checkpointer.save(
      directory,
      args=ocp.args.Composite(
        **{
          _VARIABLES: ocp.args.StandardSave(variables),
          _METADATA: ocp.args.JsonSave(metadata),
        }
      ),
    )


def restore_pretrained_metadata(directory: str) -> dict[str, Any]:
  """The metadata ``save_pretrained`` wrote to ``directory``."""
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
    return checkpointer.restore(
      directory, args=ocp.args.Composite(**{_METADATA: ocp.args.JsonRestore()})
    )[_METADATA]


def restore_pretrained(directory: str, target: Any) -> Any:
  """The variables ``save_pretrained`` wrote, shaped and placed as ``target``.

  Args:
    directory: absolute path written by ``save_pretrained``.
    target: pytree of arrays or jax.ShapeDtypeStruct (with shardings).
  """
  abstract = jax.tree.map(ocp.tree.to_shape_dtype_struct, target)
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
    return checkpointer.restore(
      directory,
      args=ocp.args.Composite(
        **{_VARIABLES: ocp.args.StandardRestore(abstract)}
      ),
    )[_VARIABLES]
