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
"""What every command does around its one call.

A command module imports this module before anything that imports
TensorFlow (its C++ start-up chatter and oneDNN notice are set off here,
and its import of Keras, which nothing here uses),
defines its flags, and ends with ``command_line.run(main)``. `run` refuses
stray positional arguments, keeps the libraries' routine INFO records out
of the log (quiet_logs.py) and turns the package's own errors
(``errors.Error``: a bad flag, config or file, a missing dataset) into one
line ``error: ...`` with exit status 1. Any other exception is a bug and
keeps its traceback.

Before ``main`` runs, `run` moves everything the imports made (JAX,
TensorFlow, flax: millions of objects) out of the garbage collector's
reach (``gc.freeze``): it lives as long as the process anyway, and the
collections during the run and at exit no longer walk it (the tiny
training command of the tests, with its programs in the compilation
cache: 7.5 s instead of 9.4 s on 2 cores). What the command itself
creates is collected as usual, so its files and writers are finalised.
"""

import gc
import os
import sys
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
# TensorFlow imports all of Keras 3 at its own import unless told to use
# the legacy tf_keras (not installed: the import is skipped). Nothing here
# uses Keras; its import was 1.4 s of each command's start-up on 2 cores.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from absl import app  # noqa: E402

from proxy_nca_jax import errors, quiet_logs, terminal  # noqa: E402

# Exit statuses: a user's error (as absl's for an unexpected exception),
# and a usage error (flags, the config file; as absl's).
USER_ERROR = 1
USAGE_ERROR = 2


def fail(message: str, status: int = USER_ERROR) -> None:
  """Ends the command with ``error: message`` on stderr (control characters
  of file names in it escaped: ``terminal.printable``)."""
  shown = terminal.printable(message, keep_newlines=True)
  sys.stderr.write(f"error: {shown}\n")
  sys.exit(status)


def run(
  main: Callable[[], None],
  flags_parser: Callable[[list[str]], list[str]] | None = None,
) -> None:
  """Parses the flags (with ``flags_parser`` if given, as ``app.run``) and
  runs ``main()`` as a command (see the module)."""

  def command(argv: list[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    quiet_logs.quiet_libraries()
    try:
      main()
    except errors.Error as error:
      fail(str(error))

  gc.freeze()
  app.run(command, flags_parser=flags_parser or app.parse_flags_with_usage)
