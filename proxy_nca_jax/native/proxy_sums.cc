// Copyright 2026 The proxy_nca_jax Authors.
// SPDX-License-Identifier: Apache-2.0
//
// Proxy-NCA's sums over the proxies (losses/proxy_blocks.py) as two XLA FFI
// handlers for the CPU: the forward pass (log-sum-exp and sum of the logits
// of each sample over the selected proxies) and its backward pass (the
// embeddings' and the proxies' gradients). The arithmetic is that of XLA's
// blocked version:
//
//   q_z = b p_z / |p_z|   (geometry.l2_normalize: a zero row stays zero),
//   l_bz = -scale max(|x_b|^2 + |q_z|^2 - 2 x_b . q_z, 0),
//
// with the same online log-sum-exp, but XLA:CPU runs the products of this
// shape (B x D times D x block, D = 128) at about half its peak rate, and
// the step forms them four times. Here the proxies are taken 96 rows at a
// time: normalised, their products with every sample formed by register
// tiles (12 or 8 rows x 32 columns, register_tile.h) into a (rows, samples)
// block that stays in L2, then turned into the sums, sixteen samples a
// vector (and, backward, into both gradients' products) before the next
// block. Blocks are split over XLA's intra-op threads in a fixed number of
// chunks whose partial sums are joined in chunk order: the result does not
// depend on the number of threads.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "parallel_for.h"
#include "register_tile.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using proxy_nca_jax::kLanes;
using proxy_nca_jax::ParallelFor;
using proxy_nca_jax::Tile;
using proxy_nca_jax::Vec;

namespace {

typedef int32_t IntVec __attribute__((vector_size(64)));
// Proxy rows per block: eight 12-row tiles, six 16-lane vectors.
constexpr int64_t kBlock = 96;
// Chunks of blocks with their own partial sums (at most).
constexpr int64_t kChunks = 32;

struct Free {
  void operator()(float* p) const { std::free(p); }
};
using Floats = std::unique_ptr<float[], Free>;

Floats Zeros(int64_t count) {
  const size_t bytes = ((count * sizeof(float) + 63) / 64) * 64;
  Floats floats(static_cast<float*>(std::aligned_alloc(64, bytes)));
  std::memset(floats.get(), 0, bytes);
  return floats;
}

Vec Broadcast(float value) { return Vec{} + value; }

// exp(x) to about an ulp: x = n ln 2 + r, |r| <= ln 2 / 2, e^r by its
// Taylor polynomial of degree 7 (remainder < 6e-9 relatively), 2^n from its
// exponent bits. 0 below -87.3 (where float32's exponent ends) and at -inf;
// NaN stays NaN.
inline Vec Exp(Vec x) {
  const Vec low = Broadcast(-100.0f);
  const Vec clamped = x < low ? low : (x > 88.0f ? Broadcast(88.0f) : x);
  const Vec magic = Broadcast(12582912.0f);  // 1.5 * 2^23: rounds to even.
  const Vec n = (clamped * 1.44269504088896341f + magic) - magic;
  const Vec r = (clamped - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  Vec p = Broadcast(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const IntVec bits = (__builtin_convertvector(n, IntVec) + 127) << 23;
  Vec power;
  std::memcpy(&power, &bits, sizeof(power));
  const Vec result = p * power;
  return clamped < -87.33f ? Vec{} : result;
}

float Sum(Vec v) {
  float total = 0.0f;
  for (int l = 0; l < kLanes; ++l) total += v[l];
  return total;
}

Vec Load(const float* p) { return *reinterpret_cast<const Vec*>(p); }
void Store(float* p, Vec v) { *reinterpret_cast<Vec*>(p) = v; }
constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// The static description of one call. Samples are padded to a multiple of
// 32 (the tiles' columns) and features to a multiple of 32, with zeros;
// a padded sample has label -1, a zero cotangent and selects nothing.
struct Problem {
  int64_t batch, dim, rows;  // B, D, R
  int64_t padded_batch, padded_dim;
  float scale, proxy_norm;
  int64_t num_columns, first_column;
  bool exclude_positive;
  int64_t blocks;  // of kBlock rows
  int64_t chunks;  // of blocks, with their own partial sums
  const float* proxies;
  Floats x;    // (padded_batch, padded_dim)
  Floats x_t;  // (padded_dim, padded_batch): x transposed
  Floats xx;   // (padded_batch,): |x_b|^2
  std::vector<int32_t> labels;  // (padded_batch,), -1 for padding
};

Problem Describe(ffi::Buffer<ffi::F32>& x, ffi::Buffer<ffi::F32>& proxies,
                 ffi::Buffer<ffi::S32>& labels, int32_t first_column,
                 float scale, float proxy_norm, int64_t num_columns,
                 bool exclude_positive) {
  Problem p;
  p.batch = x.dimensions()[0];
  p.dim = x.dimensions()[1];
  p.rows = proxies.dimensions()[0];
  p.padded_batch = (p.batch + 31) / 32 * 32;
  p.padded_dim = (p.dim + 31) / 32 * 32;
  p.scale = scale;
  p.proxy_norm = proxy_norm;
  p.num_columns = num_columns;
  p.first_column = first_column;
  p.exclude_positive = exclude_positive;
  p.blocks = (p.rows + kBlock - 1) / kBlock;
  p.chunks = std::max<int64_t>(1, std::min(p.blocks, kChunks));
  p.proxies = proxies.typed_data();
  p.x = Zeros(p.padded_batch * p.padded_dim);
  p.x_t = Zeros(p.padded_dim * p.padded_batch);
  p.xx = Zeros(p.padded_batch);
  p.labels.assign(p.padded_batch, -1);
  for (int64_t b = 0; b < p.batch; ++b) {
    const float* row = x.typed_data() + b * p.dim;
    float sq = 0.0f;
    for (int64_t d = 0; d < p.dim; ++d) {
      p.x[b * p.padded_dim + d] = row[d];
      p.x_t[d * p.padded_batch + b] = row[d];
      sq += row[d] * row[d];
    }
    p.xx[b] = sq;
    p.labels[b] = labels.typed_data()[b];
  }
  return p;
}

// One block of proxy rows and their logits, in a thread's scratch.
struct Block {
  explicit Block(const Problem& p)
      : q(Zeros(kBlock * p.padded_dim)),
        dots(Zeros(kBlock * p.padded_batch)),
        qq(kBlock),
        inverse_norm(kBlock),
        valid_rows(0) {}
  Floats q;     // (kBlock, padded_dim): b times the normalised rows
  Floats dots;  // (kBlock, padded_batch): q_z . x_b, then the backward's H
  std::vector<float> qq;            // |q_z|^2
  std::vector<float> inverse_norm;  // 1 / |p_z|
  int64_t valid_rows;  // rows of the proxies in the block
  int64_t open_rows;   // of those, rows below num_columns
};

// Rows [start, start + kBlock) of the proxies, normalised as
// geometry.l2_normalize (divided twice by the root of the largest absolute
// coordinate, then by the norm, clamped below at 1/4), and their products
// with every sample.
void Prepare(const Problem& p, int64_t start, Block& block) {
  const int64_t pdim = p.padded_dim;
  block.valid_rows = std::min(kBlock, p.rows - start);
  block.open_rows = std::clamp<int64_t>(
      p.num_columns - p.first_column - start, 0, block.valid_rows);
  for (int64_t r = 0; r < kBlock; ++r) {
    float* q = block.q.get() + r * pdim;
    if (r >= block.valid_rows) {
      std::fill(q, q + pdim, 0.0f);
      block.qq[r] = 0.0f;
      continue;
    }
    std::copy_n(p.proxies + (start + r) * p.dim, p.dim, q);
    Vec peak{};
    for (int64_t d = 0; d < pdim; d += kLanes) {
      const Vec v = Load(q + d);
      const Vec magnitude = v < 0.0f ? -v : v;
      peak = magnitude > peak ? magnitude : peak;
    }
    float top = 0.0f;
    for (int l = 0; l < kLanes; ++l) top = std::max(top, peak[l]);
    const float root = std::sqrt(top > 0.0f ? top : 1.0f);
    Vec sq{};
    for (int64_t d = 0; d < pdim; d += kLanes) {
      const Vec v = Load(q + d) / root / root;
      Store(q + d, v);
      sq += v * v;
    }
    const float inverse = 1.0f / std::sqrt(std::max(Sum(sq), 0.25f));
    Vec qq{};
    for (int64_t d = 0; d < pdim; d += kLanes) {
      const Vec v = p.proxy_norm * (Load(q + d) * inverse);
      Store(q + d, v);
      qq += v * v;
    }
    block.qq[r] = Sum(qq);
    block.inverse_norm[r] = inverse / root / root;
  }
  // dots (block, B) = q (block, D) x^T (D, B).
  for (int64_t r = 0; r < kBlock; r += 12) {
    for (int64_t b = 0; b < p.padded_batch; b += 32) {
      Tile<12, 2, false>(block.q.get() + r * pdim, pdim, 1, p.x_t.get() + b,
                         p.padded_batch, pdim,
                         block.dots.get() + r * p.padded_batch + b,
                         p.padded_batch);
    }
  }
}

// The logits of row r for samples [b, b + 16): -scale max(d, 0) with
// d = |x|^2 + |q|^2 - 2 x.q, -inf where the sample's own column is left out
// (exclude_positive); `distance` gets d.
inline Vec Logits(const Problem& p, const Block& block, int64_t start,
                  int64_t r, int64_t b, Vec* distance) {
  const Vec d =
      Load(p.xx.get() + b) + block.qq[r] -
      2.0f * Load(block.dots.get() + r * p.padded_batch + b);
  *distance = d;
  Vec logits = -p.scale * (d > 0.0f ? d : Vec{});
  if (p.exclude_positive) {
    IntVec labels;
    std::memcpy(&labels, p.labels.data() + b, sizeof(labels));
    const int32_t column = static_cast<int32_t>(p.first_column + start + r);
    logits = labels == column ? Broadcast(kMinusInf) : logits;
  }
  return logits;
}

// The online log-sum-exp state of every sample over some blocks.
struct Sums {
  explicit Sums(int64_t n)
      : peak(Zeros(n)), total(Zeros(n)), logit_sum(Zeros(n)) {
    std::fill(peak.get(), peak.get() + n, kMinusInf);
  }
  Floats peak, total, logit_sum;
};

Vec Finite(Vec v) {
  return (v == kMinusInf || v == -kMinusInf) ? Vec{} : v;
}
float Finite(float value) { return std::isfinite(value) ? value : 0.0f; }

// Adds the block's selected logits to `sums`: m' = max(m, max l),
// s' = s exp(m - m') + sum exp(l - m') (losses/proxy_blocks.py), sixteen
// samples at a time.
void Accumulate(const Problem& p, int64_t start, const Block& block,
                Sums& sums) {
  alignas(64) float logits[kBlock * kLanes];
  for (int64_t b = 0; b < p.padded_batch; b += kLanes) {
    Vec top = Load(sums.peak.get() + b), logit_sum{};
    for (int64_t r = 0; r < block.open_rows; ++r) {
      Vec distance;
      const Vec l = Logits(p, block, start, r, b, &distance);
      Store(logits + r * kLanes, l);
      top = l > top ? l : top;
      logit_sum += l == kMinusInf ? Vec{} : l;
    }
    const Vec shift = Finite(top);
    Vec exps{};
    for (int64_t r = 0; r < block.open_rows; ++r) {
      exps += Exp(Load(logits + r * kLanes) - shift);
    }
    const Vec old_peak = Load(sums.peak.get() + b);
    Store(sums.total.get() + b,
          Load(sums.total.get() + b) * Exp(old_peak - shift) + exps);
    Store(sums.peak.get() + b, top);
    Store(sums.logit_sum.get() + b, Load(sums.logit_sum.get() + b) + logit_sum);
  }
}

// Blocks [first, last) of chunk c of `chunks`.
std::pair<int64_t, int64_t> ChunkBlocks(int64_t blocks, int64_t chunks,
                                        int64_t c) {
  return {blocks * c / chunks, blocks * (c + 1) / chunks};
}

ffi::Error CheckShapes(ffi::Buffer<ffi::F32>& x,
                       ffi::Buffer<ffi::F32>& proxies,
                       ffi::Buffer<ffi::S32>& labels) {
  const auto x_dims = x.dimensions();
  const auto p_dims = proxies.dimensions();
  if (x_dims.size() != 2 || p_dims.size() != 2 || x_dims[1] != p_dims[1] ||
      labels.element_count() != static_cast<size_t>(x_dims[0])) {
    return ffi::Error::InvalidArgument(
        "x (B, D), proxies (R, D) and labels (B,) disagree");
  }
  return ffi::Error::Success();
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                       ffi::Buffer<ffi::F32> proxies,
                       ffi::Buffer<ffi::S32> labels,
                       ffi::Buffer<ffi::S32> first_column,
                       ffi::ResultBuffer<ffi::F32> lse,
                       ffi::ResultBuffer<ffi::F32> logit_sum, float scale,
                       float proxy_norm, int64_t num_columns,
                       bool exclude_positive) {
  if (auto error = CheckShapes(x, proxies, labels); error.failure()) {
    return error;
  }
  const Problem p =
      Describe(x, proxies, labels, first_column.typed_data()[0], scale,
               proxy_norm, num_columns, exclude_positive);
  const int64_t blocks = p.blocks, chunks = p.chunks;
  std::vector<Sums> partial;
  for (int64_t c = 0; c < chunks; ++c) partial.emplace_back(p.padded_batch);
  ParallelFor(pool, chunks, [&](int64_t c) {
    Block block(p);
    const auto [first, last] = ChunkBlocks(blocks, chunks, c);
    for (int64_t i = first; i < last; ++i) {
      Prepare(p, i * kBlock, block);
      Accumulate(p, i * kBlock, block, partial[c]);
    }
  });
  for (int64_t b = 0; b < p.batch; ++b) {
    float peak = kMinusInf, total = 0.0f, sum = 0.0f;
    for (const Sums& part : partial) {
      const float top = std::max(peak, part.peak[b]);
      const float shift = Finite(top);
      total = total * std::exp(peak - shift) +
              part.total[b] * std::exp(part.peak[b] - shift);
      peak = top;
      sum += part.logit_sum[b];
    }
    // The largest selected logit adds exp(0) = 1: total is 0 only if empty.
    lse->typed_data()[b] =
        total > 0.0f ? std::log(total) + Finite(peak) : kMinusInf;
    logit_sum->typed_data()[b] = sum;
  }
  return ffi::Error::Success();
}

// The backward pass of one block. With G_bz = g_lse exp(l_bz - lse_b) +
// g_sum on the selected columns and H = scale G d max(d, 0)/dd (1/2 at
// d = 0, as jnp.maximum's), l_bz's derivatives are 2 H (q_z - x_b) for x_b
// and 2 H (x_b - q_z) for q_z. The block adds H q to `x_grad` and H's row
// sums to `row_sums` (the x_b-term is formed once at the end), and writes
// the proxies' rows of the gradient through the normalisation's Jacobian.
void BlockBackward(const Problem& p, int64_t start, const float* finite_lse,
                   const float* lse_grad, const float* sum_grad, Block& block,
                   float* x_grad, float* row_sums, float* q_grad,
                   float* proxies_grad) {
  const int64_t pdim = p.padded_dim, pbatch = p.padded_batch;
  for (int64_t b = 0; b < pbatch; b += kLanes) {
    const Vec shift = Load(finite_lse + b), g_lse = Load(lse_grad + b);
    const Vec g_sum = Load(sum_grad + b);
    Vec rows{};
    for (int64_t r = 0; r < kBlock; ++r) {
      float* h = block.dots.get() + r * pbatch + b;
      if (r >= block.open_rows) {
        Store(h, Vec{});
        continue;
      }
      Vec distance;
      const Vec l = Logits(p, block, start, r, b, &distance);
      const Vec g = l == kMinusInf ? Vec{} : Exp(l - shift) * g_lse + g_sum;
      const Vec slope =
          distance > 0.0f ? Broadcast(1.0f)
                          : (distance == 0.0f ? Broadcast(0.5f) : Vec{});
      const Vec value = p.scale * g * slope;
      Store(h, value);
      rows += value;
    }
    Store(row_sums + b, Load(row_sums + b) + rows);
  }
  // x_grad (B, D) += H (B, block) q (block, D); H is stored transposed.
  for (int64_t b = 0; b < pbatch; b += 8) {
    for (int64_t d = 0; d < pdim; d += 32) {
      Tile<8, 2, true>(block.dots.get() + b, 1, pbatch, block.q.get() + d,
                       pdim, kBlock, x_grad + b * pdim + d, pdim);
    }
  }
  // q_grad (block, D) = H^T (block, B) x (B, D).
  for (int64_t r = 0; r < kBlock; r += 12) {
    for (int64_t d = 0; d < pdim; d += 32) {
      Tile<12, 2, false>(block.dots.get() + r * pbatch, pbatch, 1,
                         p.x.get() + d, pdim, pbatch, q_grad + r * pdim + d,
                         pdim);
    }
  }
  // dL/dq_z = 2 (q_grad_z - q_z sum_b H_bz); through q = b y, y = p'/|p'|:
  // dL/dp = b (g - y (y . g)) / |p| with g = dL/dq, or 2 b g for a zero row.
  // The Jacobian takes out g's part along q, so the second term of dL/dq
  // is left out.
  for (int64_t r = 0; r < block.valid_rows; ++r) {
    const float* q = block.q.get() + r * pdim;
    float* g = q_grad + r * pdim;
    float* out = proxies_grad + (start + r) * p.dim;
    if (block.qq[r] == 0.0f) {
      for (int64_t d = 0; d < p.dim; ++d) {
        out[d] = 2.0f * p.proxy_norm * 2.0f * g[d];
      }
      continue;
    }
    // With y = q / b: y (y . g) = q (q . g) / b^2.
    Vec along{};
    for (int64_t d = 0; d < pdim; d += kLanes) along += Load(q + d) * Load(g + d);
    const float along_q = Sum(along) / (p.proxy_norm * p.proxy_norm);
    const float factor = 2.0f * p.proxy_norm * block.inverse_norm[r];
    for (int64_t d = 0; d < pdim; d += kLanes) {
      Store(g + d, factor * (Load(g + d) - Load(q + d) * along_q));
    }
    std::copy_n(g, p.dim, out);
  }
}

// A (batch,) input copied into a zero-padded (padded_batch,) one.
Floats Padded(const Problem& p, const float* values) {
  Floats padded = Zeros(p.padded_batch);
  std::copy_n(values, p.batch, padded.get());
  return padded;
}

ffi::Error BackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                        ffi::Buffer<ffi::F32> proxies,
                        ffi::Buffer<ffi::S32> labels,
                        ffi::Buffer<ffi::S32> first_column,
                        ffi::Buffer<ffi::F32> lse,
                        ffi::Buffer<ffi::F32> lse_grad,
                        ffi::Buffer<ffi::F32> sum_grad,
                        ffi::ResultBuffer<ffi::F32> x_grad,
                        ffi::ResultBuffer<ffi::F32> proxies_grad, float scale,
                        float proxy_norm, int64_t num_columns,
                        bool exclude_positive) {
  if (auto error = CheckShapes(x, proxies, labels); error.failure()) {
    return error;
  }
  const Problem p =
      Describe(x, proxies, labels, first_column.typed_data()[0], scale,
               proxy_norm, num_columns, exclude_positive);
  const int64_t pdim = p.padded_dim;
  Floats finite_lse = Padded(p, lse.typed_data());
  for (int64_t b = 0; b < p.batch; ++b) finite_lse[b] = Finite(finite_lse[b]);
  const Floats g_lse = Padded(p, lse_grad.typed_data());
  const Floats g_sum = Padded(p, sum_grad.typed_data());
  const int64_t blocks = p.blocks, chunks = p.chunks;
  std::vector<Floats> partial_x(chunks), partial_rows(chunks);
  ParallelFor(pool, chunks, [&](int64_t c) {
    Block block(p);
    partial_x[c] = Zeros(p.padded_batch * pdim);
    partial_rows[c] = Zeros(p.padded_batch);
    Floats q_grad = Zeros(kBlock * pdim);
    const auto [first, last] = ChunkBlocks(blocks, chunks, c);
    for (int64_t i = first; i < last; ++i) {
      Prepare(p, i * kBlock, block);
      BlockBackward(p, i * kBlock, finite_lse.get(), g_lse.get(), g_sum.get(),
                    block, partial_x[c].get(), partial_rows[c].get(),
                    q_grad.get(), proxies_grad->typed_data());
    }
  });
  // dL/dx_b = 2 (sum_z H_bz q_z - x_b sum_z H_bz).
  float* out = x_grad->typed_data();
  for (int64_t b = 0; b < p.batch; ++b) {
    float rows = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) rows += partial_rows[c][b];
    for (int64_t d = 0; d < p.dim; ++d) {
      float sum = 0.0f;
      for (int64_t c = 0; c < chunks; ++c) sum += partial_x[c][b * pdim + d];
      out[b * p.dim + d] = 2.0f * (sum - p.x[b * pdim + d] * rows);
    }
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(ProxySumsForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("scale")
                                  .Attr<float>("proxy_norm")
                                  .Attr<int64_t>("num_columns")
                                  .Attr<bool>("exclude_positive"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(ProxySumsBackward, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("scale")
                                  .Attr<float>("proxy_norm")
                                  .Attr<int64_t>("num_columns")
                                  .Attr<bool>("exclude_positive"));
