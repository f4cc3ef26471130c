// Copyright 2026 The proxy_nca_jax Authors.
// SPDX-License-Identifier: Apache-2.0
//
// The counting pass of the exact retrieval metrics (evaluation/counting.py)
// as one XLA FFI handler for the CPU: for each query of a similarity tile
// and each of its first `num` positives, the gallery items ranked before the
// positive, that is with a larger similarity, or an equal one and a smaller
// gallery index. XLA's version (counting_tiles._count_before) streams the
// tile once per positive; this one reads each cache line of the tile once,
// comparing it with all of a query's positives while it is in L1, and splits
// the queries over XLA's intra-op threads.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using proxy_nca_jax::ParallelFor;

namespace {

// Columns of a tile counted together on the column side: 64 float32, four
// cache lines of each tile row.
constexpr int64_t kColumnChunk = 64;

// Items per screening step: one 64-byte vector of float32.
constexpr int64_t kLanes = 16;

// Queries along the rows: counts[a, m] over the items of row a. Most items
// rank after all of a query's positives; a step of kLanes items below the
// lowest threshold is passed over after one comparison.
void CountRows(const float* sims, const float* thresholds,
               const int32_t* threshold_index, const int32_t* item_index,
               int64_t rows, int64_t items, int64_t width, int64_t num,
               int32_t* counts, ffi::ThreadPool& pool) {
  constexpr int64_t kRowsPerTask = 16;
  ParallelFor(pool, (rows + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t c) {
    std::vector<int32_t> above(num * kLanes), ties(num * kLanes);
    const int64_t end = std::min(rows, (c + 1) * kRowsPerTask);
    for (int64_t a = c * kRowsPerTask; a < end; ++a) {
      const float* s = sims + a * items;
      const float* t = thresholds + a * width;
      const float lowest = *std::min_element(t, t + num);
      std::fill(above.begin(), above.end(), 0);
      std::fill(ties.begin(), ties.end(), 0);
      int64_t j = 0;
      for (; j + kLanes <= items; j += kLanes) {
        float top = s[j];
        for (int64_t l = 1; l < kLanes; ++l) top = s[j + l] > top ? s[j + l] : top;
        if (top < lowest) continue;
        for (int64_t m = 0; m < num; ++m) {
          for (int64_t l = 0; l < kLanes; ++l) {
            above[m * kLanes + l] += s[j + l] > t[m];
            ties[m * kLanes + l] += s[j + l] == t[m];
          }
        }
      }
      for (int64_t m = 0; m < num; ++m) {
        int32_t count = 0, tied = 0;
        for (int64_t l = 0; l < kLanes; ++l) {
          count += above[m * kLanes + l];
          tied += ties[m * kLanes + l];
        }
        for (int64_t k = j; k < items; ++k) {  // The last partial step.
          count += s[k] > t[m];
          tied += s[k] == t[m];
        }
        if (tied) {  // Ties rank by gallery index.
          const int32_t ti = threshold_index[a * width + m];
          for (int64_t k = 0; k < items; ++k) {
            count += (s[k] == t[m]) & (item_index[k] < ti);
          }
        }
        counts[a * width + m] = count;
      }
    }
  });
}

// Queries along the columns: counts[b, m] over the items of column b, a
// chunk of columns at a time, each tile row read once per chunk; as for
// the rows, a tile row below the chunk's lowest thresholds is passed over.
void CountColumns(const float* sims, const float* thresholds,
                  const int32_t* threshold_index, const int32_t* item_index,
                  int64_t items, int64_t columns, int64_t width, int64_t num,
                  int32_t* counts, ffi::ThreadPool& pool) {
  const int64_t chunks = (columns + kColumnChunk - 1) / kColumnChunk;
  ParallelFor(pool, chunks, [&](int64_t c) {
    const int64_t first = c * kColumnChunk;
    const int64_t w = std::min(kColumnChunk, columns - first);
    // Thresholds of the chunk by positive: t[m][b], contiguous in b; the
    // columns past the tile's end never count (+inf).
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> t(num * kColumnChunk, inf), lowest(kColumnChunk, inf);
    std::vector<int32_t> ti(num * kColumnChunk);
    std::vector<int32_t> acc(num * kColumnChunk, 0);
    for (int64_t b = 0; b < w; ++b) {
      for (int64_t m = 0; m < num; ++m) {
        const float value = thresholds[(first + b) * width + m];
        t[m * kColumnChunk + b] = value;
        ti[m * kColumnChunk + b] = threshold_index[(first + b) * width + m];
        lowest[b] = std::min(lowest[b], value);
      }
    }
    // A full chunk reads whole vectors; the last one copies its row part.
    std::vector<float> row(kColumnChunk, -inf);
    int32_t ties = 0;
    for (int64_t i = 0; i < items; ++i) {
      const float* s = sims + i * columns + first;
      if (w < kColumnChunk) {
        std::copy(s, s + w, row.begin());
        s = row.data();
      }
      int32_t reach = 0;
      for (int64_t b = 0; b < kColumnChunk; ++b) reach += s[b] >= lowest[b];
      if (!reach) continue;
      for (int64_t m = 0; m < num; ++m) {
        const float* tm = t.data() + m * kColumnChunk;
        int32_t* am = acc.data() + m * kColumnChunk;
        for (int64_t b = 0; b < kColumnChunk; ++b) {
          am[b] += s[b] > tm[b];
          ties += s[b] == tm[b];
        }
      }
    }
    if (ties) {  // Ties rank by gallery index.
      for (int64_t i = 0; i < items; ++i) {
        const float* s = sims + i * columns + first;
        const int32_t index = item_index[i];
        for (int64_t m = 0; m < num; ++m) {
          const float* tm = t.data() + m * kColumnChunk;
          const int32_t* tim = ti.data() + m * kColumnChunk;
          int32_t* am = acc.data() + m * kColumnChunk;
          for (int64_t b = 0; b < w; ++b) {
            am[b] += (s[b] == tm[b]) & (index < tim[b]);
          }
        }
      }
    }
    for (int64_t b = 0; b < w; ++b) {
      for (int64_t m = 0; m < num; ++m) {
        counts[(first + b) * width + m] = acc[m * kColumnChunk + b];
      }
    }
  });
}

ffi::Error CountBeforeImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> sims,
                           ffi::Buffer<ffi::F32> thresholds,
                           ffi::Buffer<ffi::S32> threshold_index,
                           ffi::Buffer<ffi::S32> item_index,
                           ffi::Buffer<ffi::S32> num_buffer,
                           ffi::ResultBuffer<ffi::S32> counts, bool columns) {
  const auto dims = sims.dimensions();
  const auto t_dims = thresholds.dimensions();
  if (dims.size() != 2 || t_dims.size() != 2) {
    return ffi::Error::InvalidArgument("sims and thresholds must be 2-D");
  }
  const int64_t rows = dims[0], cols = dims[1], queries = t_dims[0];
  const int64_t width = t_dims[1];
  const int64_t items = columns ? rows : cols;
  if (queries != (columns ? cols : rows) ||
      item_index.element_count() != static_cast<size_t>(items)) {
    return ffi::Error::InvalidArgument("tile, thresholds and items disagree");
  }
  const int64_t num =
      std::clamp<int64_t>(num_buffer.typed_data()[0], 0, width);
  int32_t* out = counts->typed_data();
  std::fill(out, out + queries * width, 0);
  if (columns) {
    CountColumns(sims.typed_data(), thresholds.typed_data(),
                 threshold_index.typed_data(), item_index.typed_data(), rows,
                 cols, width, num, out, pool);
  } else {
    CountRows(sims.typed_data(), thresholds.typed_data(),
              threshold_index.typed_data(), item_index.typed_data(), rows,
              cols, width, num, out, pool);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(CountBefore, CountBeforeImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<bool>("columns"));
