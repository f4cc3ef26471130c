// Copyright 2026 The proxy_nca_jax Authors.
// SPDX-License-Identifier: Apache-2.0
//
// bfloat16 screening's shared parts: the packed layout of the screened
// vectors and the micro-tile of their bf16 dot products, summed in float32
// (native/screening.py). Used by the exact top-k search's screening
// (screened_search.cc), k-means' nearest centroids (nearest_centroid.cc) and
// the counting of the exact retrieval metrics (screened_counting.cc).
//
// The products run on AVX-512 BF16 (VDPBF16PS: two bf16 products summed
// into each float32 lane, twice float32's rate) where the compiler targets
// it; elsewhere a portable loop computes the same kind of value (exact
// products, float32 sums) within the same bound, more slowly. Built with
// -DPROXY_NCA_JAX_PORTABLE, the portable loop is used on any CPU.

#ifndef PROXY_NCA_JAX_NATIVE_BF16_TILE_H_
#define PROXY_NCA_JAX_NATIVE_BF16_TILE_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

#if defined(__AVX512BF16__) && !defined(PROXY_NCA_JAX_PORTABLE)
#define PROXY_NCA_JAX_BF16_INSTRUCTIONS
#include <immintrin.h>
#endif

namespace proxy_nca_jax {
namespace bf16 {

// The packed gallery (screening.pack_gallery): panels of kLanes items; in a
// panel, feature pair p of item j is the 32-bit word p * kLanes + j (low
// half: feature 2p, high half: feature 2p + 1).
inline constexpr int64_t kLanes = 16;
// A micro-tile: kQueries queries x kPanels panels (8 x 48 similarities in
// 24 vector registers).
inline constexpr int64_t kQueries = 8;
inline constexpr int64_t kPanels = 3;
// Bytes of a gallery block (whole micro-tiles of panels) and of a chunk of
// a task's queries (whole micro-tiles of queries): both stay in L2 while
// every query of the chunk passes over the block, so the gallery is read
// from memory once per chunk and a chunk once per block.
inline constexpr int64_t kBlockBytes = 64 * 1024;
inline constexpr int64_t kChunkBytes = 64 * 1024;

// bfloat16 of a float32, rounded to nearest even (finite inputs).
inline uint32_t ToBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
}

inline float FromBf16(uint32_t half) {
  const uint32_t bits = half << 16;
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// x . y in float64, the score screened items get again: the products of
// two float32 are exact, the sums run in kDoubles lanes then across them,
// always in this order (on any CPU, whatever the build).
typedef double Doubles __attribute__((vector_size(64)));
inline constexpr int64_t kDoubles = 8;

inline double Dot(const float* x, const float* y, int64_t dim) {
  Doubles acc = {};
  int64_t d = 0;
  for (; d + kDoubles <= dim; d += kDoubles) {
    Doubles a, b;
    for (int64_t i = 0; i < kDoubles; ++i) {
      a[i] = x[d + i];
      b[i] = y[d + i];
    }
    acc += a * b;
  }
  double sum = 0.0;
  for (int64_t i = 0; i < kDoubles; ++i) sum += acc[i];
  for (; d < dim; ++d) sum += static_cast<double>(x[d]) * y[d];
  return sum;
}

// The kQueries x (kPanels * kLanes) bf16 similarities of a micro-tile,
// less bias[j] for item j where `bias` is given (kPanels * kLanes floats),
// written to `out`; returns a bit per query, set where one of its values
// reaches its threshold. queries: kQueries rows of `pairs` words; panels:
// kPanels panels, `stride` words apart.
inline uint32_t MicroTile(const uint32_t* queries, const uint32_t* panels,
                          int64_t pairs, int64_t stride, const float* bias,
                          const float* thresholds, float* out) {
#if defined(PROXY_NCA_JAX_BF16_INSTRUCTIONS)
  __m512 acc[kQueries][kPanels];
  for (int64_t m = 0; m < kQueries; ++m) {
    for (int64_t n = 0; n < kPanels; ++n) acc[m][n] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh items[kPanels];
    for (int64_t n = 0; n < kPanels; ++n) {
      items[n] = (__m512bh)_mm512_loadu_si512(panels + n * stride + p * kLanes);
    }
    for (int64_t m = 0; m < kQueries; ++m) {
      const __m512bh query =
          (__m512bh)_mm512_set1_epi32(static_cast<int>(queries[m * pairs + p]));
      for (int64_t n = 0; n < kPanels; ++n) {
        acc[m][n] = _mm512_dpbf16_ps(acc[m][n], items[n], query);
      }
    }
  }
  if (bias != nullptr) {
    for (int64_t n = 0; n < kPanels; ++n) {
      const __m512 b = _mm512_loadu_ps(bias + n * kLanes);
      for (int64_t m = 0; m < kQueries; ++m) {
        acc[m][n] = _mm512_sub_ps(acc[m][n], b);
      }
    }
  }
  uint32_t hits = 0;
  for (int64_t m = 0; m < kQueries; ++m) {
    const __m512 threshold = _mm512_set1_ps(thresholds[m]);
    __mmask16 reached = 0;
    for (int64_t n = 0; n < kPanels; ++n) {
      _mm512_storeu_ps(out + (m * kPanels + n) * kLanes, acc[m][n]);
      reached |= _mm512_cmp_ps_mask(acc[m][n], threshold, _CMP_GE_OQ);
    }
    hits |= static_cast<uint32_t>(reached != 0) << m;
  }
  return hits;
#else
  std::fill(out, out + kQueries * kPanels * kLanes, 0.0f);
  for (int64_t p = 0; p < pairs; ++p) {
    for (int64_t m = 0; m < kQueries; ++m) {
      const uint32_t q = queries[m * pairs + p];
      const float q0 = FromBf16(q & 0xffffu), q1 = FromBf16(q >> 16);
      for (int64_t n = 0; n < kPanels; ++n) {
        const uint32_t* g = panels + n * stride + p * kLanes;
        float* o = out + (m * kPanels + n) * kLanes;
        for (int64_t j = 0; j < kLanes; ++j) {
          o[j] += FromBf16(g[j] >> 16) * q1;
          o[j] += FromBf16(g[j] & 0xffffu) * q0;
        }
      }
    }
  }
  if (bias != nullptr) {
    for (int64_t m = 0; m < kQueries; ++m) {
      float* row = out + m * kPanels * kLanes;
      for (int64_t j = 0; j < kPanels * kLanes; ++j) row[j] -= bias[j];
    }
  }
  uint32_t hits = 0;
  for (int64_t m = 0; m < kQueries; ++m) {
    const float* row = out + m * kPanels * kLanes;
    for (int64_t j = 0; j < kPanels * kLanes; ++j) {
      if (row[j] >= thresholds[m]) hits |= 1u << m;
    }
  }
  return hits;
#endif
}

// A task's share of `num` rows (queries or points) when split into
// `tasks` parts of whole micro-tiles: rows [first, first + count), padded to
// `padded` rows.
struct Share {
  int64_t first, count, padded;
};

// `count` rows of `dim` floats as bf16 words, `pairs` words a row, zero on
// the padding up to `padded` rows.
inline std::vector<uint32_t> Bf16Rows(const float* rows, int64_t count,
                                      int64_t padded, int64_t dim,
                                      int64_t pairs) {
  std::vector<uint32_t> words(padded * pairs, 0);
  for (int64_t a = 0; a < count; ++a) {
    for (int64_t d = 0; d < dim; ++d) {
      words[a * pairs + d / 2] |= ToBf16(rows[a * dim + d]) << (16 * (d % 2));
    }
  }
  return words;
}

// Splits the `num` rows of `dim` floats over the pool's threads, one task
// each (at most one per micro-tile of rows), and calls body(share, words)
// in every task with its share and its rows as bf16 words, `pairs` a row.
template <typename Body>
void ForEachShare(xla::ffi::ThreadPool& pool, const float* rows, int64_t num,
                  int64_t dim, int64_t pairs, const Body& body) {
  const int64_t groups = (num + kQueries - 1) / kQueries;
  const int64_t tasks =
      std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), groups));
  ParallelFor(pool, tasks, [&](int64_t task) {
    const int64_t first = groups * task / tasks * kQueries;
    const int64_t last = std::min(num, groups * (task + 1) / tasks * kQueries);
    const int64_t count = last - first;
    const int64_t padded = (count + kQueries - 1) / kQueries * kQueries;
    const Share share{first, count, padded};
    body(share, Bf16Rows(rows + first * dim, count, padded, dim, pairs));
  });
}

// Every micro-tile of `padded` rows (`words`) against the `num_panels`
// packed panels from first_panel(first row of the micro-tile) on (a
// multiple of kPanels, never decreasing with the row), in chunks of rows
// and blocks of panels that both stay in L2 (kChunkBytes, kBlockBytes), so
// the panels are read from memory once per chunk. Calls
// visit(first row, first panel, hits, tile) with MicroTile's results for
// every micro-tile, `hits` marking the rows that reach `threshold(row)`,
// taken as the tile starts; `bias`, if given, holds one float per item of
// the panels. Each row meets the items in index order.
template <typename FirstPanel, typename Threshold, typename Visit>
void ScanTiles(const uint32_t* words, int64_t padded, const uint32_t* panels,
               int64_t num_panels, int64_t pairs, const float* bias,
               const FirstPanel& first_panel, const Threshold& threshold,
               const Visit& visit) {
  const int64_t stride = pairs * kLanes;  // Words per panel.
  alignas(64) float tile[kQueries * kPanels * kLanes];
  float thresholds[kQueries];
  const int64_t block_panels = std::max<int64_t>(
      kPanels, kBlockBytes / (stride * 4) / kPanels * kPanels);
  const int64_t chunk_rows = std::max<int64_t>(
      kQueries, kChunkBytes / (pairs * 4) / kQueries * kQueries);
  for (int64_t chunk = 0; chunk < padded; chunk += chunk_rows) {
    const int64_t chunk_end = std::min(padded, chunk + chunk_rows);
    for (int64_t block = first_panel(chunk); block < num_panels;
         block += block_panels) {
      const int64_t block_end = std::min(num_panels, block + block_panels);
      for (int64_t group = chunk; group < chunk_end; group += kQueries) {
        const int64_t from = std::max(block, first_panel(group));
        for (int64_t panel = from; panel < block_end; panel += kPanels) {
          for (int64_t m = 0; m < kQueries; ++m) {
            thresholds[m] = threshold(group + m);
          }
          const uint32_t hits = MicroTile(
              words + group * pairs, panels + panel * stride, pairs, stride,
              bias == nullptr ? nullptr : bias + panel * kLanes, thresholds,
              tile);
          visit(group, panel, hits, tile);
        }
      }
    }
  }
}

}  // namespace bf16
}  // namespace proxy_nca_jax

#endif  // PROXY_NCA_JAX_NATIVE_BF16_TILE_H_
