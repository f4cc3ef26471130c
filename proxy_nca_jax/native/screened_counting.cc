// Copyright 2026 The proxy_nca_jax Authors.
// SPDX-License-Identifier: Apache-2.0
//
// The counting algorithm of the exact retrieval metrics (evaluation/
// counting.py) for a set that is its own gallery, screened in bfloat16, as
// two XLA FFI handlers for the CPU (native/screened_counting.py). The rows
// of x are the items ordered by class, so that a class's members are rows
// [start, start + count).
//
// - MemberSimilarities: each item's similarity to each member of its class,
//   s = fl32(Dot(x_a, x_b)), bf16_tile.h's float64 dot rounded to float32.
//   These similarities, every one of them computed this way, are the ones
//   ranked.
// - ScreenedCounts: for each item a as a query and each of its positives m
//   (thresholds t = s(a, p_m) in rank order, gallery index ti), the items
//   b != a ranked before p_m: s(a, b) > t, or s(a, b) = t and
//   index(b) < ti. Each pair {a, b}, a < b, is computed once as a bfloat16
//   similarity v with bf16_tile.h's micro-tiles, and counts for a (b as the
//   item) and for b (a as the item). With E_a a bound on |v - s| for every
//   pair of a (screened_counting.py), v > t + E_a means s > t, and
//   v < t - E_a means s < t; only a pair within E_a of one of the query's
//   thresholds is scored again, exactly as the thresholds were, and
//   compared with the tie rule.
//
// A count is exact below its cap, which is all the metrics need (Counter):
// most of a query's items then lie below its floor, the lowest threshold
// still counting, and are passed over in the micro-tiles.
//
// Built with -DPROXY_NCA_JAX_PORTABLE, the micro-tiles use bf16_tile.h's
// portable loop and the handlers end in Portable.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "bf16_tile.h"
#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using proxy_nca_jax::ParallelFor;
using proxy_nca_jax::bf16::Bf16Rows;
using proxy_nca_jax::bf16::Dot;
using proxy_nca_jax::bf16::kLanes;
using proxy_nca_jax::bf16::kPanels;
using proxy_nca_jax::bf16::kQueries;
using proxy_nca_jax::bf16::ScanTiles;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// Items of a micro-tile.
constexpr int64_t kItems = kPanels * kLanes;
// Tasks per thread: the triangle's rows are split into tasks of equal
// work, handed out as threads come free.
constexpr int64_t kTasksPerThread = 4;

// The similarity every pair is ranked by.
inline float Similarity(const float* x, const float* y, int64_t dim) {
  return static_cast<float>(Dot(x, y, dim));
}

ffi::Error MemberSimilaritiesImpl(ffi::ThreadPool pool,
                                  ffi::Buffer<ffi::F32> items,
                                  ffi::Buffer<ffi::S32> start,
                                  ffi::Buffer<ffi::S32> count,
                                  ffi::ResultBuffer<ffi::F32> members) {
  const auto x_dims = items.dimensions();
  const auto m_dims = members->dimensions();
  if (x_dims.size() != 2 || m_dims.size() != 2 || m_dims[0] != x_dims[0] ||
      static_cast<int64_t>(start.element_count()) != x_dims[0] ||
      static_cast<int64_t>(count.element_count()) != x_dims[0]) {
    return ffi::Error::InvalidArgument("unexpected shapes (screened_counting.py)");
  }
  const int64_t num = x_dims[0], dim = x_dims[1], width = m_dims[1];
  const float* x = items.typed_data();
  const int32_t* first = start.typed_data();
  const int32_t* size = count.typed_data();
  for (int64_t a = 0; a < num; ++a) {
    if (first[a] < 0 || size[a] > width || first[a] + size[a] > num) {
      return ffi::Error::InvalidArgument("members out of range (screened_counting.py)");
    }
  }
  float* out = members->typed_data();
  constexpr int64_t kRowsPerTask = 256;
  ParallelFor(pool, (num + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t t) {
    const int64_t end = std::min(num, (t + 1) * kRowsPerTask);
    for (int64_t a = t * kRowsPerTask; a < end; ++a) {
      for (int64_t k = 0; k < width; ++k) {
        out[a * width + k] =
            k < size[a] ? Similarity(x + a * dim, x + (first[a] + k) * dim, dim)
                        : std::numeric_limits<float>::quiet_NaN();
      }
    }
  });
  return ffi::Error::Success();
}

// A float read and written by several threads (the comparisons' floor).
inline float Load(const float* value) {
  float loaded;
  __atomic_load(value, &loaded, __ATOMIC_RELAXED);
  return loaded;
}
inline void Store(float* value, float to) {
  __atomic_store(value, &to, __ATOMIC_RELAXED);
}

// Every query's counts, shared by the threads. A count only needs to be
// exact below its cap (R for a positive, max(max_k, R) for the first): from
// there on the positive is no hit of MAP@R and beyond Recall@max_k. A
// count that reaches its cap stops counting, and the query's floor rises to
// its lowest threshold still counting, so that the items below it are
// passed over in the micro-tiles. Counts only grow, so a count read at its
// cap is at its cap for good, and one that never reaches it counts every
// item: the result does not depend on the order of the pairs or the
// threads (a floor read stale is only lower, and screens less).
class Counter {
 public:
  Counter(const float* x, int64_t dim, const float* thresholds,
          const int32_t* threshold_index, const int32_t* item_index,
          const float* margins, int64_t num, int64_t width, int64_t padded,
          int64_t max_k)
      : x_(x), dim_(dim), t_(thresholds), ti_(threshold_index),
        index_(item_index), num_(num), width_(width), positives_(num),
        above_(num * width), below_(num * width), caps_(num * width),
        floor_(padded, kInf), counts_(num * width, 0), scored_(num, 0) {
    for (int64_t a = 0; a < num; ++a) {
      const float* t = t_ + a * width;
      int32_t r = 0;
      while (r < width && t[r] < kInf) ++r;
      const double e = margins[a];
      for (int64_t m = 0; m < r; ++m) {
        above_[a * width + m] = std::nextafter(
            static_cast<float>(static_cast<double>(t[m]) + e), kInf);
        below_[a * width + m] = std::nextafter(
            static_cast<float>(static_cast<double>(t[m]) - e), -kInf);
        caps_[a * width + m] =
            m == 0 ? static_cast<int32_t>(std::max<int64_t>(max_k, r)) : r;
      }
      positives_[a] = r;
      if (r > 0) floor_[a] = below_[a * width + r - 1];
    }
  }

  // Each query's floor (kInf beyond the items, up to `padded`); read with
  // Load.
  const float* floor() const { return floor_.data(); }

  // Counts item b (bfloat16 similarity v) for query a.
  void Count(int64_t a, int64_t b, float v) {
    if (!(v >= Load(&floor_[a]))) return;
    const int64_t row = a * width_;
    float exact = std::numeric_limits<float>::quiet_NaN();
    bool capped = false;
    for (int64_t m = 0; m < positives_[a]; ++m) {
      int32_t* count = &counts_[row + m];
      if (__atomic_load_n(count, __ATOMIC_RELAXED) >= caps_[row + m]) continue;
      if (v < below_[row + m]) continue;  // After positive m.
      if (!(v > above_[row + m])) {  // Within the margin: decide exactly.
        if (std::isnan(exact)) {
          exact = Similarity(x_ + a * dim_, x_ + b * dim_, dim_);
          __atomic_fetch_add(&scored_[a], 1, __ATOMIC_RELAXED);
        }
        const float t = t_[row + m];
        if (!(exact > t || (exact == t && index_[b] < ti_[row + m]))) continue;
      }
      capped |= __atomic_add_fetch(count, 1, __ATOMIC_RELAXED) >= caps_[row + m];
    }
    if (capped) RaiseFloor(a);
  }

  // Each count (garbage beyond R; at or past its cap where it got there)
  // and the pairs each query scored again.
  void Write(int32_t* counts, int32_t* scored) const {
    std::copy(counts_.begin(), counts_.end(), counts);
    std::copy(scored_.begin(), scored_.end(), scored);
  }

 private:
  // The floor of query a: its lowest threshold still counting, less the
  // margin (kInf when none is).
  void RaiseFloor(int64_t a) {
    const int64_t row = a * width_;
    float floor = kInf;
    for (int64_t m = positives_[a] - 1; m >= 0; --m) {
      if (__atomic_load_n(&counts_[row + m], __ATOMIC_RELAXED) < caps_[row + m]) {
        floor = below_[row + m];
        break;
      }
    }
    Store(&floor_[a], floor);
  }

  const float* x_;
  int64_t dim_;
  const float* t_;
  const int32_t* ti_;
  const int32_t* index_;
  int64_t num_, width_;
  std::vector<int32_t> positives_;
  std::vector<float> above_, below_;
  std::vector<int32_t> caps_;
  std::vector<float> floor_;
  std::vector<int32_t> counts_, scored_;
};

// The micro-tile at rows [group, group + kQueries) and items
// [panel * kLanes, + kItems): each pair with row < item < num counts for the
// row (as query) and for the item (as query).
void CountTile(Counter& counter, int64_t group, int64_t panel, int64_t num,
               uint32_t row_hits, const float* tile) {
  const int64_t first_item = panel * kLanes;
  const int64_t items = std::min<int64_t>(kItems, num - first_item);
  for (int64_t m = 0; m < kQueries; ++m) {
    const int64_t a = group + m;
    if (a >= num) break;
    const int64_t from = std::max<int64_t>(0, a + 1 - first_item);
    const float* row = tile + m * kItems;
    if (row_hits >> m & 1u) {
      for (int64_t j = from; j < items; ++j) {
        counter.Count(a, first_item + j, row[j]);
      }
    }
  }
  // Columns: items whose largest value reaches their own floor.
  const float* floors = counter.floor() + first_item;
  float floor[kItems];
  for (int64_t j = 0; j < kItems; ++j) floor[j] = Load(floors + j);
  float top[kItems];
  std::copy(tile, tile + kItems, top);
  for (int64_t m = 1; m < kQueries; ++m) {
    for (int64_t j = 0; j < kItems; ++j) {
      top[j] = std::max(top[j], tile[m * kItems + j]);
    }
  }
  bool any = false;
  for (int64_t j = 0; j < kItems; ++j) any |= top[j] >= floor[j];
  if (!any) return;
  for (int64_t j = 0; j < items; ++j) {
    const int64_t b = first_item + j;
    if (!(top[j] >= floor[j])) continue;
    for (int64_t m = 0; m < kQueries && group + m < std::min(b, num); ++m) {
      counter.Count(b, group + m, tile[m * kItems + j]);
    }
  }
}

ffi::Error ScreenedCountsImpl(
    ffi::ThreadPool pool, ffi::Buffer<ffi::F32> items,
    ffi::Buffer<ffi::U16> packed, ffi::Buffer<ffi::F32> thresholds,
    ffi::Buffer<ffi::S32> threshold_index, ffi::Buffer<ffi::S32> item_index,
    ffi::Buffer<ffi::F32> margins, int64_t max_k,
    ffi::ResultBuffer<ffi::S32> counts, ffi::ResultBuffer<ffi::S32> scored) {
  const auto x_dims = items.dimensions();
  const auto p_dims = packed.dimensions();
  const auto t_dims = thresholds.dimensions();
  if (x_dims.size() != 2 || p_dims.size() != 4 || t_dims.size() != 2 ||
      p_dims[2] != kLanes || p_dims[3] != 2 || p_dims[0] % kPanels != 0) {
    return ffi::Error::InvalidArgument("unexpected shapes (screened_counting.py)");
  }
  const int64_t num = x_dims[0], dim = x_dims[1], pairs = p_dims[1];
  const int64_t panels = p_dims[0], width = t_dims[1];
  if (pairs * 2 < dim || pairs * 2 > dim + 1 || panels * kLanes < num ||
      t_dims[0] != num ||
      static_cast<int64_t>(threshold_index.element_count()) != num * width ||
      static_cast<int64_t>(item_index.element_count()) != num ||
      static_cast<int64_t>(margins.element_count()) != num) {
    return ffi::Error::InvalidArgument("inconsistent sizes (screened_counting.py)");
  }
  const float* x = items.typed_data();
  const uint32_t* words_in = reinterpret_cast<const uint32_t*>(packed.typed_data());
  Counter counter(x, dim, thresholds.typed_data(), threshold_index.typed_data(),
                  item_index.typed_data(), margins.typed_data(), num, width,
                  panels * kLanes, max_k);

  // Row groups of kQueries; group g meets the items after its first row, so
  // its work is about num - g * kQueries: the tasks split that triangle.
  const int64_t groups = (num + kQueries - 1) / kQueries;
  const int64_t tasks = std::max<int64_t>(
      1, std::min<int64_t>(groups, pool.num_threads() * kTasksPerThread));
  std::vector<int64_t> bounds(tasks + 1, groups);
  bounds[0] = 0;
  {
    const double total = 0.5 * static_cast<double>(groups) * (groups + 1);
    double done = 0.0;
    int64_t task = 1;
    for (int64_t g = 0; g < groups && task < tasks; ++g) {
      done += static_cast<double>(groups - g);
      if (done >= total * task / tasks) bounds[task++] = g + 1;
    }
  }
  ParallelFor(pool, tasks, [&](int64_t task) {
    const int64_t first = bounds[task] * kQueries;
    const int64_t last = std::min(num, bounds[task + 1] * kQueries);
    if (first >= last) return;
    const int64_t padded = (last - first + kQueries - 1) / kQueries * kQueries;
    const std::vector<uint32_t> words =
        Bf16Rows(x + first * dim, last - first, padded, dim, pairs);
    ScanTiles(
        words.data(), padded, words_in, panels, pairs, /*bias=*/nullptr,
        // The first micro-tile of panels holding an item after the row.
        [&](int64_t row) { return (first + row + 1) / kItems * kPanels; },
        [&](int64_t row) { return Load(counter.floor() + first + row); },
        [&](int64_t group, int64_t panel, uint32_t hits, const float* tile) {
          CountTile(counter, first + group, panel, num, hits, tile);
        });
  });
  counter.Write(counts->typed_data(), scored->typed_data());
  return ffi::Error::Success();
}

}  // namespace

#if defined(PROXY_NCA_JAX_PORTABLE)
#define PROXY_NCA_JAX_MEMBER_SIMILARITIES MemberSimilaritiesPortable
#define PROXY_NCA_JAX_SCREENED_COUNTS ScreenedCountsPortable
#else
#define PROXY_NCA_JAX_MEMBER_SIMILARITIES MemberSimilarities
#define PROXY_NCA_JAX_SCREENED_COUNTS ScreenedCounts
#endif

XLA_FFI_DEFINE_HANDLER_SYMBOL(PROXY_NCA_JAX_MEMBER_SIMILARITIES,
                              MemberSimilaritiesImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(PROXY_NCA_JAX_SCREENED_COUNTS,
                              ScreenedCountsImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U16>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("max_k")
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>());
