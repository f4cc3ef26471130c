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
"""Text shown on a terminal: what a file name holds, not what it does.

File names may hold newlines, tabs or escape sequences (``\x1b[2J`` clears
the screen). Printed raw they would forge lines of output or drive the
terminal; `printable` escapes each such character as Python writes it in a
string literal (``\n``, ``\x1b``, ``\u200b``), so the name shows as text.
Files the commands write (JSON) keep the exact names.
"""


def printable(text: str, *, keep_newlines: bool = False) -> str:
  """``text`` with every non-printable character escaped.

  Args:
    text: any text, e.g. a file name.
    keep_newlines: leave ``\n`` as it is (a message of several lines whose
      other characters are escaped).

  Returns:
    ``text`` where each character that ``str.isprintable`` rejects (control
    and format characters; a space is printable) is written as its
    ``unicode_escape`` sequence.
  """
  return "".join(
    char
    if char.isprintable() or (keep_newlines and char == "\n")
    else char.encode("unicode_escape").decode("ascii")
    for char in text
  )
