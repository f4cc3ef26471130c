// Copyright 2026 The proxy_nca_jax Authors.
// SPDX-License-Identifier: Apache-2.0
//
// Splitting a kernel's work over XLA's intra-op thread pool (the FFI's
// ThreadPool context), shared by the kernels of this folder.

#ifndef PROXY_NCA_JAX_NATIVE_PARALLEL_FOR_H_
#define PROXY_NCA_JAX_NATIVE_PARALLEL_FOR_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace proxy_nca_jax {

// Runs body(0) ... body(n - 1) on the calling thread and the pool's, and
// returns once all are done. The caller takes work too, so a busy or empty
// pool only makes it slower; tasks that start after the last index was
// taken return at once (they hold the shared state, never `body`).
template <typename Body>
void ParallelFor(xla::ffi::ThreadPool& pool, int64_t n, const Body& body) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mutex;
    std::condition_variable all_done;
  };
  auto state = std::make_shared<State>();
  auto work = [state, n, &body] {
    for (int64_t i; (i = state->next.fetch_add(1)) < n;) {
      body(i);
      if (state->done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->all_done.notify_all();
      }
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), n) - 1;
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule(decltype(work)(work));
  work();
  std::unique_lock<std::mutex> lock(state->mutex);
  state->all_done.wait(lock, [&] { return state->done.load() == n; });
}

}  // namespace proxy_nca_jax

#endif  // PROXY_NCA_JAX_NATIVE_PARALLEL_FOR_H_
