// Copyright 2026 The proxy_nca_jax Authors.
// SPDX-License-Identifier: Apache-2.0
//
// k-means' assignment step (evaluation/clustering.py) as one XLA FFI handler
// for the CPU: each point's nearest centroid, screened in bfloat16 and
// decided in float64 (native/nearest_centroid.py).
//
// The nearest centroid maximises s(c) = x . c - |c|^2 / 2. The handler
// computes a(c) = (bf16 x) . (bf16 c) - fl32(|c|^2 / 2), summed in float32,
// with bf16_tile.h's micro-tiles, and keeps the largest a seen so far. A
// centroid whose a is within the point's margin of that running peak is
// scored again in float64 (exact products, sums in a fixed order), and the
// point takes the centroid of the largest float64 score (the lowest index
// among equal ones). The margin is twice a proven bound E on |a - s|
// (nearest_centroid.py), so the nearest centroid c* is always scored: for
// any c, a(c*) >= s(c*) - E >= s(c) - E >= a(c) - 2 E. Most centroids are
// thus ruled out at bfloat16's rate (twice float32's), and the answer is the
// float64 one, whatever the number of threads.
//
// Built with -DPROXY_NCA_JAX_PORTABLE, the micro-tiles use bf16_tile.h's
// portable loop and the handler is NearestCentroidPortable.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "bf16_tile.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using proxy_nca_jax::bf16::Dot;
using proxy_nca_jax::bf16::ForEachShare;
using proxy_nca_jax::bf16::kLanes;
using proxy_nca_jax::bf16::kPanels;
using proxy_nca_jax::bf16::kQueries;
using proxy_nca_jax::bf16::ScanTiles;
using proxy_nca_jax::bf16::Share;

namespace {

// One point's search: the running peak of a, the threshold it sets, and the
// best float64 score so far.
struct Search {
  float margin = 0.0f;
  float peak = -std::numeric_limits<float>::infinity();
  float threshold = -std::numeric_limits<float>::infinity();
  double best = -std::numeric_limits<double>::infinity();
  int32_t nearest = -1;
  int32_t scored = 0;
};

ffi::Error NearestCentroidImpl(
    ffi::ThreadPool pool, ffi::Buffer<ffi::F32> points,
    ffi::Buffer<ffi::U16> packed, ffi::Buffer<ffi::F32> centroids,
    ffi::Buffer<ffi::F32> half_norms, ffi::Buffer<ffi::F32> margins,
    ffi::ResultBuffer<ffi::S32> nearest, ffi::ResultBuffer<ffi::F32> distances,
    ffi::ResultBuffer<ffi::S32> scored) {
  const auto x_dims = points.dimensions();
  const auto p_dims = packed.dimensions();
  const auto c_dims = centroids.dimensions();
  if (x_dims.size() != 2 || p_dims.size() != 4 || c_dims.size() != 2 ||
      p_dims[2] != kLanes || p_dims[3] != 2 || p_dims[0] % kPanels != 0) {
    return ffi::Error::InvalidArgument("unexpected shapes (nearest_centroid.py)");
  }
  const int64_t num = x_dims[0], dim = x_dims[1], pairs = p_dims[1];
  const int64_t panels = p_dims[0], size = c_dims[0];
  if (pairs * 2 < dim || pairs * 2 > dim + 1 || c_dims[1] != dim ||
      size < 1 || size > panels * kLanes ||
      static_cast<int64_t>(half_norms.element_count()) != panels * kLanes ||
      static_cast<int64_t>(margins.element_count()) != num) {
    return ffi::Error::InvalidArgument("inconsistent sizes (nearest_centroid.py)");
  }
  const float* x_data = points.typed_data();
  const float* c_data = centroids.typed_data();
  const uint32_t* words_in = reinterpret_cast<const uint32_t*>(packed.typed_data());
  std::vector<double> half(size);
  for (int64_t c = 0; c < size; ++c) {
    half[c] = 0.5 * Dot(c_data + c * dim, c_data + c * dim, dim);
  }
  ForEachShare(pool, x_data, num, dim, pairs,
               [&](const Share& share, const std::vector<uint32_t>& words) {
    const int64_t first = share.first, count = share.count;
    const int64_t padded = share.padded;
    std::vector<Search> searches(padded);
    for (int64_t a = 0; a < count; ++a) {
      searches[a].margin = margins.typed_data()[first + a];
    }
    for (int64_t a = count; a < padded; ++a) {  // Padding scores nothing.
      searches[a].peak = searches[a].threshold =
          std::numeric_limits<float>::infinity();
    }
    ScanTiles(
        words.data(), padded, words_in, panels, pairs, half_norms.typed_data(),
        /*first_panel=*/[](int64_t) { return int64_t{0}; },
        [&](int64_t row) { return searches[row].threshold; },
        [&](int64_t group, int64_t panel, uint32_t hits, const float* tile) {
          if (!hits) return;
          const int64_t items =
              std::min<int64_t>(kPanels * kLanes, size - panel * kLanes);
          for (int64_t m = 0; m < kQueries && items > 0; ++m) {
            if (!(hits >> m & 1u)) continue;
            Search& s = searches[group + m];
            const float* row = tile + m * kPanels * kLanes;
            const float peak = *std::max_element(row, row + items);
            if (peak > s.peak) {
              s.peak = peak;
              s.threshold = std::nextafter(
                  peak - s.margin, -std::numeric_limits<float>::infinity());
            }
            const float* x = x_data + (first + group + m) * dim;
            for (int64_t j = 0; j < items; ++j) {
              if (!(row[j] >= s.threshold)) continue;
              const int64_t c = panel * kLanes + j;
              const double score = Dot(x, c_data + c * dim, dim) - half[c];
              ++s.scored;
              if (score > s.best) {  // Items come in index order.
                s.best = score;
                s.nearest = static_cast<int32_t>(c);
              }
            }
          }
        });
    for (int64_t a = 0; a < count; ++a) {
      const Search& s = searches[a];
      const float* x = x_data + (first + a) * dim;
      nearest->typed_data()[first + a] = s.nearest;
      distances->typed_data()[first + a] = static_cast<float>(
          std::max(0.0, Dot(x, x, dim) - 2.0 * s.best));
      scored->typed_data()[first + a] = s.scored;
    }
  });
  return ffi::Error::Success();
}

}  // namespace

#if defined(PROXY_NCA_JAX_PORTABLE)
#define PROXY_NCA_JAX_NEAREST_CENTROID NearestCentroidPortable
#else
#define PROXY_NCA_JAX_NEAREST_CENTROID NearestCentroid
#endif

XLA_FFI_DEFINE_HANDLER_SYMBOL(PROXY_NCA_JAX_NEAREST_CENTROID,
                              NearestCentroidImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U16>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());
