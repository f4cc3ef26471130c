// Copyright 2026 The proxy_nca_jax Authors.
// SPDX-License-Identifier: Apache-2.0
//
// The register tile of the native kernels' float32 products
// (proxy_sums.cc): an R x 16 C block of a product held in R * C vectors of
// 16 floats (AVX-512 registers where the CPU has them,
// narrower ones paired elsewhere; the compiler's vector extension). Every
// entry is one chain of multiply-adds over the depth, in the same order for
// every pair of rows: a value depends on the two vectors only, never on
// their positions (copies of a vector get equal products).

#ifndef PROXY_NCA_JAX_NATIVE_REGISTER_TILE_H_
#define PROXY_NCA_JAX_NATIVE_REGISTER_TILE_H_

#include <cstdint>

namespace proxy_nca_jax {

typedef float Vec __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

// out[i][16 j + l] (+)= sum_k a[i * row_step + k * depth_step] b[k][16 j + l]
// for i < R, j < C, k < depth; b's rows `b_stride` floats apart and 64-byte
// aligned, as out's.
template <int R, int C, bool kAdd>
inline void Tile(const float* a, int64_t row_step, int64_t depth_step,
                 const float* b, int64_t b_stride, int64_t depth, float* out,
                 int64_t out_stride) {
  Vec acc[R][C] = {};
  for (int64_t k = 0; k < depth; ++k) {
    Vec column[C];
    for (int j = 0; j < C; ++j) {
      column[j] = *reinterpret_cast<const Vec*>(b + k * b_stride + 16 * j);
    }
    for (int i = 0; i < R; ++i) {
      const float s = a[i * row_step + k * depth_step];
      for (int j = 0; j < C; ++j) acc[i][j] += s * column[j];
    }
  }
  for (int i = 0; i < R; ++i) {
    for (int j = 0; j < C; ++j) {
      Vec* target = reinterpret_cast<Vec*>(out + i * out_stride + 16 * j);
      *target = kAdd ? *target + acc[i][j] : acc[i][j];
    }
  }
}

}  // namespace proxy_nca_jax

#endif  // PROXY_NCA_JAX_NATIVE_REGISTER_TILE_H_
