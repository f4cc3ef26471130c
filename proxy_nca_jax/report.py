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
r"""Deprecated name of ``python -m proxy_nca_jax.evaluate``.

  python -m proxy_nca_jax.report --workdir=... [--split=test] [--max_examples=N]

Runs the evaluate command with the same flags after a one-line notice; its
files are evaluate's (``metrics_<split>.json``, ``retrieval_<split>.png``,
``projection_<split>.png``, ``convergence.png``).
"""

import sys

from absl import app

from proxy_nca_jax import evaluate


def main(argv: list[str]) -> None:
  sys.stderr.write(
    "warning: python -m proxy_nca_jax.report is deprecated; use python -m "
    "proxy_nca_jax.evaluate (same flags). Its files are now "
    "retrieval_<split>.png and projection_<split>.png.\n"
  )
  evaluate.main(argv)


if __name__ == "__main__":
  app.run(main)
