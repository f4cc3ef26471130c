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
"""Compiling, caching and registering the native kernels (see __init__).

`KERNELS` lists the libraries, each built and loaded on its own, so one
that needs a missing package (oneDNN) leaves the others usable.

The library is built with ``-march=native``, so its cache key holds the
CPU's model and instruction-set flags with the sources, the compiler's
version and jaxlib's (whose FFI headers it is compiled against): a cache
folder shared by machines of different kinds (a home directory on a pod)
keeps one library per kind. A build writes a unique temporary file and
renames it, so processes building at once each get a whole library.
"""

import ctypes
import dataclasses
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile

import jax
import jaxlib
from absl import logging

# Set to 0 to keep XLA's versions of every kernel.
SWITCH = "PROXY_NCA_JAX_NATIVE"
# The cache folder (default: $XDG_CACHE_HOME or ~/.cache, proxy_nca_jax).
CACHE = "PROXY_NCA_JAX_CACHE"

_HERE = pathlib.Path(__file__).parent
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC")


@dataclasses.dataclass(frozen=True)
class Kernels:
  """One library of kernels: its sources, FFI targets and needs.

  Attributes:
    sources: C++ files beside this module.
    targets: the FFI handler symbols it defines.
    flags: compiler flags beyond `_FLAGS`.
    link: libraries to link (``-l...``).
    needs: what to install when the build fails (said in the error).
  """

  sources: tuple[str, ...]
  targets: tuple[str, ...]
  flags: tuple[str, ...] = ()
  link: tuple[str, ...] = ()
  needs: str = "g++ (Debian/Ubuntu: apt-get install g++)"


KERNELS = {
  # The counting pass of the exact retrieval metrics (counting.py).
  "counting": Kernels(("count_before.cc",), ("CountBefore",)),
  # The bfloat16 screening of the exact top-k search (screening.py).
  "screening": Kernels(("screened_search.cc",), ("ScreenCandidates",)),
  # k-means' nearest centroids, screened in bfloat16 (nearest_centroid.py).
  "nearest_centroid": Kernels(("nearest_centroid.cc",), ("NearestCentroid",)),
  # The counting of the exact retrieval metrics, screened in bfloat16
  # (screened_counting.py).
  "screened_counting": Kernels(
    ("screened_counting.cc",), ("MemberSimilarities", "ScreenedCounts")
  ),
  # Proxy-NCA's sums over the proxies and their gradients (proxy_sums.py).
  "proxy_sums": Kernels(
    ("proxy_sums.cc",), ("ProxySumsForward", "ProxySumsBackward")
  ),
  # convnet-S's 3x3 convolution through oneDNN (convolution.py).
  "onednn_conv": Kernels(
    ("onednn_conv.cc",),
    ("OneDnnConvForward", "OneDnnConvInputGrad", "OneDnnConvKernelGrad"),
    flags=("-fopenmp",),
    link=("-ldnnl",),
    needs="g++ and oneDNN (Debian/Ubuntu: apt-get install g++ libdnnl-dev)",
  ),
}


def cache_folder() -> pathlib.Path:
  """Where compiled libraries are kept."""
  if os.environ.get(CACHE):
    return pathlib.Path(os.environ[CACHE])
  base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
  return pathlib.Path(base) / "proxy_nca_jax"


@functools.cache
def _cpuinfo() -> dict[str, str] | None:
  """The first value of each field of Linux's /proc/cpuinfo (None
  elsewhere)."""
  try:
    lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
  except OSError:
    return None
  fields = {}
  for line in lines:
    key, _, value = line.partition(":")
    fields.setdefault(key.strip(), value.strip())
  return fields


def _cpu_description() -> str:
  """The CPU's model and flags (Linux), else what `platform` knows."""
  fields = _cpuinfo()
  if fields is None:
    return platform.processor() + platform.machine()
  wanted = ("vendor_id", "cpu family", "model", "model name", "flags")
  return repr(sorted((key, fields[key]) for key in wanted if key in fields))


def cpu_flags() -> frozenset[str]:
  """The CPU's instruction-set flags (Linux's /proc/cpuinfo; else none)."""
  return frozenset((_cpuinfo() or {}).get("flags", "").split())


def _compiler_version(compiler: str) -> str:
  result = subprocess.run(
    [compiler, "--version"], capture_output=True, text=True, check=True
  )
  return result.stdout


def build(name: str, compiler: str = "g++") -> pathlib.Path:
  """Compiles library `name` of `KERNELS` into the cache (unless there).

  Returns:
    The library's path.

  Raises:
    RuntimeError: no compiler, or the build failed (its message and what
      to install inside).
  """
  kernels = KERNELS[name]
  if shutil.which(compiler) is None:
    raise RuntimeError(f"no {compiler} on the PATH; install {kernels.needs}")
  sources = [_HERE / source for source in kernels.sources]
  command = [compiler, *_FLAGS, *kernels.flags, "-w"]
  command += [f"-I{jax.ffi.include_dir()}", *map(str, sources)]
  key = hashlib.sha256()
  for part in (
    *(source.read_bytes() for source in sources),
    *(header.read_bytes() for header in sorted(_HERE.glob("*.h"))),
    " ".join([*command[1:], *kernels.link]).encode(),
    _compiler_version(compiler).encode(),
    jaxlib.__version__.encode(),
    _cpu_description().encode(),
  ):
    key.update(hashlib.sha256(part).digest())
  folder = cache_folder() / "native" / f"{name}-{key.hexdigest()[:24]}"
  library = folder / f"lib{name}.so"
  if library.exists():
    return library
  folder.mkdir(parents=True, exist_ok=True)
  handle, partial = tempfile.mkstemp(dir=folder, suffix=".so.partial")
  os.close(handle)
  command += ["-o", partial, *kernels.link]
  result = subprocess.run(command, capture_output=True, text=True)
  if result.returncode:
    os.unlink(partial)
    raise RuntimeError(
      f"{' '.join(command)} failed (it needs {kernels.needs}):\n"
      f"{result.stderr[-3000:]}"
    )
  os.chmod(partial, 0o755)
  os.replace(partial, library)
  return library


@functools.cache
def available(name: str) -> bool:
  """Whether library `name` of `KERNELS` is registered (built if needed).

  False where ``PROXY_NCA_JAX_NATIVE=0`` or the build failed; the reason
  is logged once, and callers keep XLA's versions.
  """
  if os.environ.get(SWITCH, "1") == "0":
    return False
  try:
    handles = ctypes.cdll.LoadLibrary(str(build(name)))
  except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
    logging.warning(
      "Native CPU kernels %r unavailable, XLA's slower versions used "
      "instead: %s",
      name,
      error,
    )
    return False
  for target in KERNELS[name].targets:
    jax.ffi.register_ffi_target(
      target, jax.ffi.pycapsule(getattr(handles, target)), platform="cpu"
    )
  return True
