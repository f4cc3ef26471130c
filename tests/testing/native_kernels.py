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

from unittest import mock

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


def require_portable(name: str) -> None:
  """Builds and registers library `name` of `library.KERNELS` with
  -DPROXY_NCA_JAX_PORTABLE (the loops that CPUs without AVX-512 BF16 run),
  its FFI targets named with ``Portable`` at the end.

  Raises:
    AssertionError: it did not build.
  """
  kernels = library.KERNELS[name]
  portable = library.Kernels(
    kernels.sources,
    tuple(f"{target}Portable" for target in kernels.targets),
    flags=(*kernels.flags, "-DPROXY_NCA_JAX_PORTABLE"),
    link=kernels.link,
    needs=kernels.needs,
  )
  with mock.patch.dict(library.KERNELS, {f"{name}_portable": portable}):
    if not native.available(f"{name}_portable"):
      raise AssertionError(f"the portable build of {name!r} did not build")
