// Copyright 2026 The proxy_nca_jax Authors.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.
//
// convnet-S's convolution (3x3, stride 1, SAME padding, NHWC activations,
// HWIO kernel, float32) through oneDNN, as three XLA FFI handlers: the
// forward pass, the input gradient and the kernel gradient. Built and used
// by native/convolution.py (model.conv = "onednn"; issue 34, item 4).
//
// oneDNN's primitives are made once per shape and kept. Each call passes its
// own scratchpad (scratchpad_mode::user): with the library's shared one, two
// devices' threads running primitives at once overwrite each other's (a
// wrong gradient, seen in the first prototype). The scratchpad is a buffer
// per calling thread, kept between calls (so are the kernels reordered to
// a primitive's layout): allocating it per call cost the whole gain in page
// faults.

#include <omp.h>

#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace {

namespace ffi = xla::ffi;
using dnnl::memory;
using Tag = memory::format_tag;
using Type = memory::data_type;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// A memory object over a buffer of this thread, grown as needed. Calls on
// one thread run one after the other, so they can share it.
memory OnThreadBuffer(std::vector<char>& buffer, const memory::desc& desc) {
  if (buffer.size() < desc.get_size()) buffer.resize(desc.get_size());
  return memory(desc, Engine(), buffer.data());
}

// A primitive's scratchpad.
memory Scratch(const memory::desc& desc) {
  thread_local std::vector<char> buffer;
  return OnThreadBuffer(buffer, desc);
}

// A kernel in a primitive's own layout (alive while the primitive runs).
memory KernelBuffer(const memory::desc& desc) {
  thread_local std::vector<char> buffer;
  return OnThreadBuffer(buffer, desc);
}

// A reorder between the kernel's HWIO layout and a primitive's own.
struct Reorder {
  bool needed = false;
  dnnl::reorder primitive;
  memory::desc scratchpad;

  Reorder(const memory::desc& from, const memory::desc& to,
          const dnnl::primitive_attr& attr)
      : needed(from != to) {
    if (!needed) return;
    auto pd = dnnl::reorder::primitive_desc(Engine(), from, Engine(), to, attr);
    primitive = dnnl::reorder(pd);
    scratchpad = pd.scratchpad_desc();
  }

  void Run(dnnl::stream& stream, memory& from, memory& to) {
    primitive.execute(stream, {{DNNL_ARG_FROM, from},
                               {DNNL_ARG_TO, to},
                               {DNNL_ARG_SCRATCHPAD, Scratch(scratchpad)}});
  }
};

struct Convolution {
  memory::desc input, output, hwio;
  dnnl::convolution_forward forward;
  memory::desc forward_kernel, forward_scratchpad;
  std::unique_ptr<Reorder> to_forward;
  dnnl::convolution_backward_data input_grad;
  memory::desc input_grad_kernel, input_grad_scratchpad;
  std::unique_ptr<Reorder> to_input_grad;
  dnnl::convolution_backward_weights kernel_grad;
  memory::desc kernel_grad_kernel, kernel_grad_scratchpad;
  std::unique_ptr<Reorder> from_kernel_grad;
};

// The primitives of one shape: batch, height, width, in and out channels.
Convolution& Primitives(int n, int h, int w, int in, int out) {
  static std::mutex mutex;
  static std::map<std::tuple<int, int, int, int, int>,
                  std::unique_ptr<Convolution>>
      cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto key = std::make_tuple(n, h, w, in, out);
  auto found = cache.find(key);
  if (found != cache.end()) return *found->second;

  auto c = std::make_unique<Convolution>();
  c->input = memory::desc({n, in, h, w}, Type::f32, Tag::nhwc);
  c->output = memory::desc({n, out, h, w}, Type::f32, Tag::nhwc);
  c->hwio = memory::desc({out, in, 3, 3}, Type::f32, Tag::hwio);
  memory::desc any_kernel({out, in, 3, 3}, Type::f32, Tag::any);
  memory::dims strides = {1, 1}, padding = {1, 1};
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto algorithm = dnnl::algorithm::convolution_direct;

  auto forward_pd = dnnl::convolution_forward::primitive_desc(
      dnnl::convolution_forward::desc(
          dnnl::prop_kind::forward_training, algorithm, c->input, any_kernel,
          c->output, strides, padding, padding),
      attr, Engine());
  c->forward = dnnl::convolution_forward(forward_pd);
  c->forward_kernel = forward_pd.weights_desc();
  c->forward_scratchpad = forward_pd.scratchpad_desc();
  c->to_forward = std::make_unique<Reorder>(c->hwio, c->forward_kernel, attr);

  auto input_grad_pd = dnnl::convolution_backward_data::primitive_desc(
      dnnl::convolution_backward_data::desc(algorithm, c->input, any_kernel,
                                            c->output, strides, padding,
                                            padding),
      attr, Engine(), forward_pd);
  c->input_grad = dnnl::convolution_backward_data(input_grad_pd);
  c->input_grad_kernel = input_grad_pd.weights_desc();
  c->input_grad_scratchpad = input_grad_pd.scratchpad_desc();
  c->to_input_grad =
      std::make_unique<Reorder>(c->hwio, c->input_grad_kernel, attr);

  auto kernel_grad_pd = dnnl::convolution_backward_weights::primitive_desc(
      dnnl::convolution_backward_weights::desc(algorithm, c->input,
                                               any_kernel, c->output, strides,
                                               padding, padding),
      attr, Engine(), forward_pd);
  c->kernel_grad = dnnl::convolution_backward_weights(kernel_grad_pd);
  c->kernel_grad_kernel = kernel_grad_pd.diff_weights_desc();
  c->kernel_grad_scratchpad = kernel_grad_pd.scratchpad_desc();
  c->from_kernel_grad =
      std::make_unique<Reorder>(c->kernel_grad_kernel, c->hwio, attr);

  Convolution& made = *c;
  cache[key] = std::move(c);
  return made;
}

// ``kernel`` (HWIO) in the layout ``want``: itself, or a reordered copy.
memory KernelAs(dnnl::stream& stream, Reorder& reorder,
                const memory::desc& hwio, const memory::desc& want,
                float* kernel) {
  memory given(hwio, Engine(), kernel);
  if (!reorder.needed) return given;
  memory reordered = KernelBuffer(want);
  reorder.Run(stream, given, reordered);
  return reordered;
}

ffi::Error Forward(int64_t threads, ffi::Buffer<ffi::F32> x,
                   ffi::Buffer<ffi::F32> kernel, ffi::ResultBuffer<ffi::F32> y) {
  omp_set_num_threads(static_cast<int>(threads));
  auto d = x.dimensions();
  Convolution& c = Primitives(d[0], d[1], d[2], d[3], kernel.dimensions()[3]);
  dnnl::stream stream(Engine());
  memory k = KernelAs(stream, *c.to_forward, c.hwio, c.forward_kernel,
                      kernel.typed_data());
  memory input(c.input, Engine(), x.typed_data());
  memory output(c.output, Engine(), y->typed_data());
  c.forward.execute(stream, {{DNNL_ARG_SRC, input},
                             {DNNL_ARG_WEIGHTS, k},
                             {DNNL_ARG_DST, output},
                             {DNNL_ARG_SCRATCHPAD, Scratch(c.forward_scratchpad)}});
  stream.wait();
  return ffi::Error::Success();
}

ffi::Error InputGrad(int64_t threads, ffi::Buffer<ffi::F32> dy,
                     ffi::Buffer<ffi::F32> kernel,
                     ffi::ResultBuffer<ffi::F32> dx) {
  omp_set_num_threads(static_cast<int>(threads));
  auto d = dx->dimensions();
  Convolution& c = Primitives(d[0], d[1], d[2], d[3], kernel.dimensions()[3]);
  dnnl::stream stream(Engine());
  memory k = KernelAs(stream, *c.to_input_grad, c.hwio, c.input_grad_kernel,
                      kernel.typed_data());
  memory output_grad(c.output, Engine(), dy.typed_data());
  memory input_grad(c.input, Engine(), dx->typed_data());
  c.input_grad.execute(
      stream, {{DNNL_ARG_DIFF_DST, output_grad},
               {DNNL_ARG_WEIGHTS, k},
               {DNNL_ARG_DIFF_SRC, input_grad},
               {DNNL_ARG_SCRATCHPAD, Scratch(c.input_grad_scratchpad)}});
  stream.wait();
  return ffi::Error::Success();
}

ffi::Error KernelGrad(int64_t threads, ffi::Buffer<ffi::F32> x,
                      ffi::Buffer<ffi::F32> dy,
                      ffi::ResultBuffer<ffi::F32> dkernel) {
  omp_set_num_threads(static_cast<int>(threads));
  auto d = x.dimensions();
  Convolution& c = Primitives(d[0], d[1], d[2], d[3], dkernel->dimensions()[3]);
  dnnl::stream stream(Engine());
  memory input(c.input, Engine(), x.typed_data());
  memory output_grad(c.output, Engine(), dy.typed_data());
  memory hwio(c.hwio, Engine(), dkernel->typed_data());
  memory computed = c.from_kernel_grad->needed
                        ? KernelBuffer(c.kernel_grad_kernel)
                        : hwio;
  c.kernel_grad.execute(
      stream, {{DNNL_ARG_SRC, input},
               {DNNL_ARG_DIFF_DST, output_grad},
               {DNNL_ARG_DIFF_WEIGHTS, computed},
               {DNNL_ARG_SCRATCHPAD, Scratch(c.kernel_grad_scratchpad)}});
  // In order on the stream: the reorder's scratchpad may reuse the buffer.
  if (c.from_kernel_grad->needed) {
    stream.wait();
    c.from_kernel_grad->Run(stream, computed, hwio);
  }
  stream.wait();
  return ffi::Error::Success();
}

// The three handlers' signature: (threads; two float32 buffers) -> one.
auto Signature() {
  return ffi::Ffi::Bind()
      .Attr<int64_t>("threads")
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Ret<ffi::Buffer<ffi::F32>>();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(OneDnnConvForward, Forward, Signature());
XLA_FFI_DEFINE_HANDLER_SYMBOL(OneDnnConvInputGrad, InputGrad, Signature());
XLA_FFI_DEFINE_HANDLER_SYMBOL(OneDnnConvKernelGrad, KernelGrad, Signature());
