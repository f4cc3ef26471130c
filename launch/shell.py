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
"""Shell command lines that are exact and easy to read (no absl flags here)."""

import re
import shlex


def shell_line(argv: list[str]) -> str:
  """``argv`` as one shell line (shlex.split gives it back), easy to read.

  Values that need quoting get double quotes where that is safe (no $, `,
  \\, ! or "), after the ``--flag=`` part: ``--command="cd ~/x && ..."``.
  """
  words = []
  for arg in argv:
    flag, value = re.match(r"^(--[\w.-]+=)?(.*)$", arg, re.DOTALL).groups()
    if shlex.quote(arg) == arg:
      words.append(arg)
    elif re.search(r'[$`\\!"]', value):
      words.append((flag or "") + shlex.quote(value))
    else:
      words.append(f'{flag or ""}"{value}"')
  return " ".join(words)
