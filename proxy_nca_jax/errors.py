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
"""The errors this package raises for what its user can mend.

Each is a subclass of the built-in error a Python caller expects
(`ValueError` for an argument, a config field or a file's content that is
wrong; `FileNotFoundError` for what is missing, `FileExistsError` for what
would be overwritten, `FloatingPointError` for a diverged run), so library
code catching those keeps working. The commands (command_line.py) turn
exactly these into one line naming the fix; any other exception is a bug
and keeps its traceback.
"""


class Error(Exception):
  """Something the user can mend; the message says what to do."""


class InvalidInputError(Error, ValueError):
  """An argument, config field, flag or file content that is refused."""


class MissingFileError(Error, FileNotFoundError):
  """A file or folder the work needs does not exist."""


class AlreadyExistsError(Error, FileExistsError):
  """What the work would create exists already (nothing is overwritten)."""


class TrainingDivergedError(Error, FloatingPointError):
  """Training produced a non-finite loss, gradient or parameter."""
