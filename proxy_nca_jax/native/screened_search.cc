// Copyright 2026 The proxy_nca_jax Authors.
// SPDX-License-Identifier: Apache-2.0
//
// The screening pass of the exact top-k search (native/screening.py,
// evaluation/nearest.py) as one XLA FFI handler for the CPU. For each query
// it lists the gallery items that may belong to the query's exact top k:
// every item whose bfloat16 similarity `a` is at least the k-th largest `a`
// seen so far minus the query's margin (twice a proven bound on |a - s|,
// where s is the float32 similarity; screening.py). The few listed items
// are then scored in float32 by XLA, which orders them exactly.
//
// The bfloat16 products are bf16_tile.h's micro-tiles (AVX-512 BF16, or
// its portable loop). Built with -DPROXY_NCA_JAX_PORTABLE, the handler is
// ScreenCandidatesPortable (the tests check both builds).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

#include "bf16_tile.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using proxy_nca_jax::bf16::ForEachShare;
using proxy_nca_jax::bf16::kLanes;
using proxy_nca_jax::bf16::kPanels;
using proxy_nca_jax::bf16::kQueries;
using proxy_nca_jax::bf16::ScanTiles;
using proxy_nca_jax::bf16::Share;

namespace {

// One query's screening: the k largest bf16 similarities so far (a min-heap)
// and the items listed (bf16 similarity, gallery index).
struct Screen {
  std::vector<float> best;
  std::vector<std::pair<float, int32_t>> listed;
  float margin = 0.0f;
  // Items with a bf16 similarity below it cannot enter the top k.
  float threshold = -std::numeric_limits<float>::infinity();
  bool overflowed = false;

  void Raise() {
    threshold = std::nextafter(best.front() - margin,
                               -std::numeric_limits<float>::infinity());
  }

  // Drops the listed items below the threshold.
  void Compact() {
    const float t = threshold;
    listed.erase(std::remove_if(listed.begin(), listed.end(),
                                [t](const auto& item) { return item.first < t; }),
                 listed.end());
  }

  void Offer(float similarity, int32_t item, size_t k, size_t capacity) {
    if (similarity < threshold) return;
    if (listed.size() == capacity) {
      Compact();
      if (listed.size() > capacity - capacity / 4) {  // Ties, or near ones.
        overflowed = true;
        threshold = std::numeric_limits<float>::infinity();
        listed.clear();
        return;
      }
    }
    listed.emplace_back(similarity, item);
    if (best.size() < k) {
      best.push_back(similarity);
      std::push_heap(best.begin(), best.end(), std::greater<float>());
      if (best.size() == k) Raise();
    } else if (similarity > best.front()) {
      std::pop_heap(best.begin(), best.end(), std::greater<float>());
      best.back() = similarity;
      std::push_heap(best.begin(), best.end(), std::greater<float>());
      Raise();
    }
  }
};

ffi::Error ScreenCandidatesImpl(ffi::ThreadPool pool,
                                ffi::Buffer<ffi::F32> queries,
                                ffi::Buffer<ffi::U16> gallery,
                                ffi::Buffer<ffi::S32> size_buffer,
                                ffi::Buffer<ffi::F32> margins,
                                ffi::Buffer<ffi::S32> exclude,
                                ffi::ResultBuffer<ffi::S32> candidates,
                                ffi::ResultBuffer<ffi::S32> counts, int64_t k) {
  const auto q_dims = queries.dimensions();
  const auto g_dims = gallery.dimensions();
  const auto c_dims = candidates->dimensions();
  if (q_dims.size() != 2 || g_dims.size() != 4 || c_dims.size() != 2 ||
      g_dims[2] != kLanes || g_dims[3] != 2 || g_dims[0] % kPanels != 0) {
    return ffi::Error::InvalidArgument("unexpected shapes (screening.py)");
  }
  const int64_t num = q_dims[0], dim = q_dims[1], pairs = g_dims[1];
  const int64_t panels = g_dims[0], capacity = c_dims[1];
  const int64_t size = size_buffer.typed_data()[0];
  if (pairs * 2 < dim || pairs * 2 > dim + 1 || c_dims[0] != num ||
      size > panels * kLanes || k < 1 || capacity < 2 * k) {
    return ffi::Error::InvalidArgument("inconsistent sizes (screening.py)");
  }
  const float* query_data = queries.typed_data();
  const uint32_t* packed =
      reinterpret_cast<const uint32_t*>(gallery.typed_data());
  // One task per thread, each a share of the queries: the gallery is read
  // from memory once per chunk of a task's queries.
  ForEachShare(pool, query_data, num, dim, pairs,
               [&](const Share& share, const std::vector<uint32_t>& words) {
    const int64_t first = share.first, count = share.count;
    const int64_t padded = share.padded;
    std::vector<Screen> screens(padded);
    for (int64_t a = 0; a < count; ++a) {
      screens[a].margin = margins.typed_data()[first + a];
      screens[a].best.reserve(k);
      screens[a].listed.reserve(capacity);
    }
    for (int64_t a = count; a < padded; ++a) {  // Padding lists nothing.
      screens[a].threshold = std::numeric_limits<float>::infinity();
    }
    const int32_t* excluded = exclude.typed_data() + first;
    ScanTiles(
        words.data(), padded, packed, panels, pairs, /*bias=*/nullptr,
        /*first_panel=*/[](int64_t) { return int64_t{0}; },
        [&](int64_t row) { return screens[row].threshold; },
        [&](int64_t group, int64_t panel, uint32_t hits, const float* tile) {
          if (!hits) return;
          for (int64_t m = 0; m < kQueries; ++m) {
            if (!(hits >> m & 1u)) continue;
            const float* row = tile + m * kPanels * kLanes;
            for (int64_t j = 0; j < kPanels * kLanes; ++j) {
              const int64_t item = panel * kLanes + j;
              if (item >= size || item == excluded[group + m]) continue;
              screens[group + m].Offer(row[j], static_cast<int32_t>(item), k,
                                       capacity);
            }
          }
        });
    for (int64_t a = 0; a < count; ++a) {
      Screen& s = screens[a];
      int32_t* out = candidates->typed_data() + (first + a) * capacity;
      std::fill(out, out + capacity, -1);
      if (s.overflowed || s.best.size() < static_cast<size_t>(k)) {
        counts->typed_data()[first + a] = -1;
        continue;
      }
      s.Compact();
      std::sort(s.listed.begin(), s.listed.end(),
                [](const auto& x, const auto& y) { return x.second < y.second; });
      for (size_t i = 0; i < s.listed.size(); ++i) out[i] = s.listed[i].second;
      counts->typed_data()[first + a] = static_cast<int32_t>(s.listed.size());
    }
  });
  return ffi::Error::Success();
}

}  // namespace

#if defined(PROXY_NCA_JAX_PORTABLE)
#define PROXY_NCA_JAX_SCREEN_CANDIDATES ScreenCandidatesPortable
#else
#define PROXY_NCA_JAX_SCREEN_CANDIDATES ScreenCandidates
#endif

XLA_FFI_DEFINE_HANDLER_SYMBOL(PROXY_NCA_JAX_SCREEN_CANDIDATES,
                              ScreenCandidatesImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U16>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("k"));
