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
"""The native kernels' tests need them built (proxy_nca_jax/native)."""

from proxy_nca_jax import native
from proxy_nca_jax.native import library


def require(name: str) -> None:
  """Fails unless library `name` of `library.KERNELS` builds and registers
  here. make test installs what the kernels need, so a missing build is a
  set-up failure of the machine, never a skipped test.

  Raises:
    AssertionError: saying what to install.
  """
  if not native.available(name):
    raise AssertionError(
      f"the native kernels {name!r} did not build here: install "
      f"{library.KERNELS[name].needs} (make test does)"
    )
