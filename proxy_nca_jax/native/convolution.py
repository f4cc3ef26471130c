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
"""convnet-S's convolutions through oneDNN (onednn_conv.cc): issue 34's item 4.

XLA:CPU's convolutions, above all their kernel gradient, run well below
oneDNN's, which PyTorch uses. Here the three products of a 3x3 convolution
(forward, input gradient, kernel gradient) are oneDNN's, called through
XLA's FFI, and `conv_factory` hands them to ``models.ConvNetS(conv=...)``
in place of ``nn.Conv``: the same parameter (``kernel``, HWIO, ``nn.Conv``'s
initialiser), the same function to float32 rounding
(tests/native_convolution_test.py checks all three products against
float64 NumPy). ``config.model.conv = "onednn"`` trains with it
(training/setup.py); ``benchmarks.train_step_vs_pytorch --onednn_conv``
times it against PyTorch.

Each device computes its share of the batch (``jax.shard_map`` over the
mesh's ``data`` axis; the kernel gradient is summed over the devices), with
``threads`` OpenMP threads of its own (default: the cores over the devices).
An FFI call is opaque to XLA's partitioner, which would otherwise gather
the whole batch onto every device.

Training only: the FFI target exists only in a process that built and
registered it (``library.available("onednn_conv")``: g++ and oneDNN's
headers, Debian's ``libdnnl-dev``), so a trained network is loaded, embedded
and exported with XLA's convolution (the same weights).
"""

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec


def _call(target: str, shape: tuple[int, ...], threads: int, *args):
  result = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.ffi.ffi_call(target, result)(*args, threads=threads)


def forward(x: jax.Array, kernel: jax.Array, threads: int) -> jax.Array:
  """(B, H, W, I) * (3, 3, I, O) -> (B, H, W, O), SAME padding, one device."""
  shape = (*x.shape[:3], kernel.shape[3])
  return _call("OneDnnConvForward", shape, threads, x, kernel)


def input_grad(dy: jax.Array, kernel: jax.Array, threads: int) -> jax.Array:
  """The gradient of `forward` with respect to x, one device."""
  shape = (*dy.shape[:3], kernel.shape[2])
  return _call("OneDnnConvInputGrad", shape, threads, dy, kernel)


def kernel_grad(x: jax.Array, dy: jax.Array, threads: int) -> jax.Array:
  """The gradient of `forward` with respect to the kernel, one device."""
  shape = (3, 3, x.shape[3], dy.shape[3])
  return _call("OneDnnConvKernelGrad", shape, threads, x, dy)


def sharded_conv(mesh: jax.sharding.Mesh, threads: int):
  """``conv(x, kernel)``, differentiable, each device on its batch share.

  A batch that does not divide over the devices (the sample batch of
  ``model.init``) is computed whole on one device.
  """
  batch, whole = PartitionSpec("data"), PartitionSpec()

  def per_device(fn, in_specs, out_spec):
    return jax.shard_map(
      fn, mesh=mesh, in_specs=in_specs, out_specs=out_spec, check_vma=False
    )

  def run_forward(x, kernel):
    if x.shape[0] % mesh.size:
      return forward(x, kernel, threads)
    local = functools.partial(forward, threads=threads)
    return per_device(local, (batch, whole), batch)(x, kernel)

  def summed_kernel_grad(x, dy):
    return jax.lax.psum(kernel_grad(x, dy, threads), "data")

  @jax.custom_vjp
  def conv(x, kernel):
    return run_forward(x, kernel)

  def conv_forward(x, kernel):
    return run_forward(x, kernel), (x, kernel)

  def conv_backward(residuals, dy):
    x, kernel = residuals
    if x.shape[0] % mesh.size:
      return input_grad(dy, kernel, threads), kernel_grad(x, dy, threads)
    local = functools.partial(input_grad, threads=threads)
    dx = per_device(local, (batch, whole), batch)(dy, kernel)
    dkernel = per_device(summed_kernel_grad, (batch, batch), whole)(x, dy)
    return dx, dkernel

  conv.defvjp(conv_forward, conv_backward)
  return conv


class OneDnnConv3x3(nn.Module):
  """``nn.Conv(features, (3, 3), padding="SAME", use_bias=False)`` through
  `sharded_conv`: the same parameter and initialiser."""

  features: int
  mesh: jax.sharding.Mesh
  threads: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param(
      "kernel",
      nn.initializers.lecun_normal(),
      (3, 3, x.shape[-1], self.features),
      jnp.float32,
    )
    conv = sharded_conv(self.mesh, self.threads)
    return conv(x.astype(jnp.float32), kernel)


def conv_factory(mesh: jax.sharding.Mesh, threads: int | None = None):
  """A ``models.ConvFactory`` of `OneDnnConv3x3` (threads per device,
  default: this process's cores over its devices of the mesh)."""
  if threads is None:
    cores = len(os.sched_getaffinity(0))
    threads = max(1, cores // len(mesh.local_devices))

  def make(features: int, name: str) -> nn.Module:
    return OneDnnConv3x3(features, mesh, threads, name=name)

  return make
