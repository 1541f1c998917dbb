// Direct sparse convolution on the CPU (Park et al. 2017): every non-zero weight is one
// multiply-add of a shifted input plane into an output plane, vectorised over output pixels.
//
// The Python side (harness/sparse_conv.py) lays the input out so that every shift is a plain
// offset: channel-major, [C, phases, B, hq, wq] flat, each image zero-padded and, for stride 2,
// split into its 4 row/column parity phases. Output pixel p = (b * hq + oh) * wq + ow runs over
// the whole batch in one stretch, so small planes still fill whole vectors; the positions past
// the output's height or width are computed and thrown away. A weight is then (row, offset,
// value): its output channel, where its shifted input starts, and its value. The flat input
// carries slack at its end for the reads of the last tile.
//
// Work goes in chunks of the pixel range, chunk-major, so that the chunk of every input
// channel stays in cache while all output channels read it.
//
// GCC vector extensions compile to AVX-512 (or AVX2, twice as many instructions) under
// -march=native; the threads are ATen's (torch.set_num_threads).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace {

typedef float vec __attribute__((vector_size(64)));
typedef float unaligned_vec __attribute__((vector_size(64), aligned(4)));
constexpr int64_t LANES = 16;
constexpr int64_t TILE = 4 * LANES;  // output pixels accumulated in registers at once

inline vec load(const float* p) { return *reinterpret_cast<const unaligned_vec*>(p); }

struct Layout {
  int64_t batch, hq, wq, out_h, out_w;
  int64_t span() const { return batch * hq * wq; }
  int64_t padded() const { return (span() + TILE - 1) / TILE * TILE; }
};

// Copies the valid pixels of tile [p0, p0 + TILE) of output channel r into out [B, C, H, W].
inline void store_tile(const float* tile, int64_t p0, const Layout& l, int64_t channels,
                       int64_t r, float* out) {
  const int64_t plane = l.hq * l.wq, end = std::min(p0 + TILE, l.span());
  for (int64_t q = p0; q < end;) {
    const int64_t b = q / plane, rest = q % plane, oh = rest / l.wq, ow = rest % l.wq;
    const int64_t segment = std::min(end - q, l.wq - ow);
    if (oh < l.out_h && ow < l.out_w)
      std::memcpy(out + ((b * channels + r) * l.out_h + oh) * l.out_w + ow, tile + (q - p0),
                  std::min(segment, l.out_w - ow) * sizeof(float));
    q += segment;
  }
}

// out[b, r, oh, ow] = bias[r] + sum over weights i of row r: values[i] * x[offsets[i] + p]
at::Tensor conv_forward(const at::Tensor& x, const at::Tensor& rows, const at::Tensor& offsets,
                        const at::Tensor& values, const at::Tensor& bias, int64_t batch,
                        int64_t hq, int64_t wq, int64_t out_h, int64_t out_w, int64_t chunk) {
  TORCH_CHECK(x.is_contiguous() && x.scalar_type() == at::kFloat, "x: contiguous float32");
  TORCH_CHECK(chunk % TILE == 0 && chunk > 0, "chunk must be a multiple of 64");
  const Layout l{batch, hq, wq, out_h, out_w};
  const int64_t channels = rows.size(0) - 1;
  at::Tensor out = at::empty({batch, channels, out_h, out_w}, x.options());
  const float* xs = x.data_ptr<float>();
  const int64_t* row = rows.data_ptr<int64_t>();
  const int32_t* off = offsets.data_ptr<int32_t>();
  const float* val = values.data_ptr<float>();
  const float* bs = bias.numel() ? bias.data_ptr<float>() : nullptr;
  float* os = out.data_ptr<float>();
  const int64_t padded = l.padded(), chunks = (padded + chunk - 1) / chunk;
  at::parallel_for(0, chunks * channels, 1, [&](int64_t begin, int64_t end) {
    alignas(64) float tile[TILE];
    for (int64_t job = begin; job < end; ++job) {
      const int64_t c = job / channels, r = job % channels;
      const float start = bs ? bs[r] : 0.f;
      for (int64_t p = c * chunk; p < std::min((c + 1) * chunk, padded); p += TILE) {
        vec a0 = start - (vec){}, a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = row[r]; i < row[r + 1]; ++i) {
          const float* s = xs + off[i] + p;
          const float w = val[i];
          a0 += w * load(s);
          a1 += w * load(s + LANES);
          a2 += w * load(s + 2 * LANES);
          a3 += w * load(s + 3 * LANES);
        }
        std::memcpy(tile, &a0, sizeof a0);
        std::memcpy(tile + LANES, &a1, sizeof a1);
        std::memcpy(tile + 2 * LANES, &a2, sizeof a2);
        std::memcpy(tile + 3 * LANES, &a3, sizeof a3);
        store_tile(tile, p, l, channels, r, os);
      }
    }
  });
  return out;
}

// The weight gradient at the given weights only (a sampled dense-dense product):
// grad[i] = sum over p of grad_out[row(i), p] * x[offsets[i] + p], where grad_out [C, padded]
// is laid out like the forward's output pixels, zero wherever the forward threw its result
// away. A tile of grad_out stays in registers while every weight of its row takes its product;
// each weight keeps a vector of partial sums over a chunk and is reduced once per chunk.
at::Tensor weight_grad(const at::Tensor& x, const at::Tensor& grad_out, const at::Tensor& rows,
                       const at::Tensor& offsets, int64_t padded, int64_t chunk) {
  TORCH_CHECK(x.is_contiguous() && grad_out.is_contiguous(), "contiguous inputs");
  TORCH_CHECK(padded % TILE == 0 && chunk % TILE == 0 && chunk > 0, "whole tiles");
  const int64_t channels = rows.size(0) - 1;
  TORCH_CHECK(grad_out.numel() == channels * padded, "grad_out: [channels, padded]");
  at::Tensor grad = at::zeros({offsets.numel()}, x.options());
  const float* xs = x.data_ptr<float>();
  const float* gs = grad_out.data_ptr<float>();
  const int64_t* row = rows.data_ptr<int64_t>();
  const int32_t* off = offsets.data_ptr<int32_t>();
  float* out = grad.data_ptr<float>();
  at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<vec> sums;
    for (int64_t c = 0; c < padded; c += chunk) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t first = row[r], count = row[r + 1] - first;
        sums.assign(count, vec{});
        const float* g = gs + r * padded;
        for (int64_t p = c; p < std::min(c + chunk, padded); p += TILE) {
          const vec g0 = load(g + p), g1 = load(g + p + LANES), g2 = load(g + p + 2 * LANES),
                    g3 = load(g + p + 3 * LANES);
          for (int64_t i = 0; i < count; ++i) {
            const float* s = xs + off[first + i] + p;
            sums[i] += g0 * load(s) + g1 * load(s + LANES) + g2 * load(s + 2 * LANES)
                       + g3 * load(s + 3 * LANES);
          }
        }
        for (int64_t i = 0; i < count; ++i) {
          float total = 0.f;
          for (int64_t lane = 0; lane < LANES; ++lane) total += sums[i][lane];
          out[first + i] += total;
        }
      }
    }
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY(freetickets_sparse, m) {
  m.def("conv_forward(Tensor x, Tensor rows, Tensor offsets, Tensor values, Tensor bias, "
        "int batch, int hq, int wq, int out_h, int out_w, int chunk) -> Tensor",
        &conv_forward);
  m.def("weight_grad(Tensor x, Tensor grad_out, Tensor rows, Tensor offsets, int padded, "
        "int chunk) -> Tensor",
        &weight_grad);
}
