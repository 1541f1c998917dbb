// Direct sparse convolution on the CPU (Park et al. 2017): every non-zero weight is one
// multiply-add of a shifted input plane into an output plane, vectorised over output pixels.
//
// The Python side (harness/sparse_conv.py) lays the input out so that every shift is a plain
// offset: each image is a flat run of per-channel planes, padded (and split into stride
// phases), `wq` elements wide; output pixel p = oh * wq + ow (ow < wq; the columns at and past
// the output width are computed and thrown away). A weight is then (row, offset, value): its
// output channel, where its shifted input starts, and its value. The flat input carries at
// least TILE elements of slack at its end, as the last tile reads past the last plane.
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

// One output plane, `vectors` x 16 pixels at a time in registers.
template <int VECTORS>
void output_plane(const float* image, const int64_t* row, const int32_t* off, const float* val,
                  int64_t r, float start, int64_t padded, float* plane) {
  for (int64_t p = 0; p < padded; p += VECTORS * LANES) {
    vec a[VECTORS];
    for (int v = 0; v < VECTORS; ++v) a[v] = start - (vec){};
    for (int64_t i = row[r]; i < row[r + 1]; ++i) {
      const float* s = image + off[i] + p;
      const float w = val[i];
      for (int v = 0; v < VECTORS; ++v) a[v] += w * load(s + v * LANES);
    }
    std::memcpy(plane + p, a, sizeof a);
  }
}

// The tile width (in vectors: 4, 2 or 1) that wastes the fewest pixels past `length`.
int tile_vectors(int64_t length) {
  int best = 4;
  int64_t least = (length + 63) / 64 * 64;
  for (int vectors : {2, 1}) {
    const int64_t padded = (length + vectors * LANES - 1) / (vectors * LANES) * vectors * LANES;
    if (padded < least) least = padded, best = vectors;
  }
  return best;
}

// out[b, r, oh, ow] = bias[r] + sum over weights i of row r: values[i] * x[b, offsets[i] + p]
at::Tensor conv_forward(const at::Tensor& x, const at::Tensor& rows, const at::Tensor& offsets,
                        const at::Tensor& values, const at::Tensor& bias, int64_t batch,
                        int64_t image_size, int64_t out_h, int64_t out_w, int64_t wq) {
  TORCH_CHECK(x.is_contiguous() && x.scalar_type() == at::kFloat, "x: contiguous float32");
  const int64_t channels = rows.size(0) - 1;
  TORCH_CHECK(x.numel() >= batch * image_size + TILE, "x lacks its slack");
  at::Tensor out = at::empty({batch, channels, out_h, out_w}, x.options());
  const float* xs = x.data_ptr<float>();
  const int64_t* row = rows.data_ptr<int64_t>();
  const int32_t* off = offsets.data_ptr<int32_t>();
  const float* val = values.data_ptr<float>();
  const float* bs = bias.numel() ? bias.data_ptr<float>() : nullptr;
  float* os = out.data_ptr<float>();
  const int64_t length = out_h * wq;
  const int vectors = tile_vectors(length);
  const int64_t padded = (length + vectors * LANES - 1) / (vectors * LANES) * vectors * LANES;
  at::parallel_for(0, batch * channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> plane(padded);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t b = job / channels, r = job % channels;
      const float* image = xs + b * image_size;
      const float start = bs ? bs[r] : 0.f;
      if (vectors == 4) output_plane<4>(image, row, off, val, r, start, padded, plane.data());
      else if (vectors == 2) output_plane<2>(image, row, off, val, r, start, padded, plane.data());
      else output_plane<1>(image, row, off, val, r, start, padded, plane.data());
      float* o = os + job * out_h * out_w;
      for (int64_t h = 0; h < out_h; ++h)
        std::memcpy(o + h * out_w, &plane[h * wq], out_w * sizeof(float));
    }
  });
  return out;
}

// The weight gradient at the given weights only (a sampled dense-dense product):
// grad[i] = sum over b, p of grad_out[b, row(i), p] * x[b, offsets[i] + p], where grad_out is
// laid out like the forward's output planes (wq wide, zeros in the thrown-away columns,
// `plane` elements per channel, a multiple of TILE). A tile of grad_out stays in registers
// while every weight of its row takes its product; each weight keeps a vector of partial
// sums over the whole batch and is reduced once.
at::Tensor weight_grad(const at::Tensor& x, const at::Tensor& grad_out, const at::Tensor& rows,
                       const at::Tensor& offsets, int64_t batch, int64_t image_size,
                       int64_t plane) {
  TORCH_CHECK(x.is_contiguous() && grad_out.is_contiguous(), "contiguous inputs");
  TORCH_CHECK(plane % TILE == 0, "plane must be a multiple of 64");
  TORCH_CHECK(x.numel() >= batch * image_size + TILE, "x lacks its slack");
  const int64_t channels = rows.size(0) - 1;
  at::Tensor grad = at::empty({offsets.numel()}, x.options());
  const float* xs = x.data_ptr<float>();
  const float* gs = grad_out.data_ptr<float>();
  const int64_t* row = rows.data_ptr<int64_t>();
  const int32_t* off = offsets.data_ptr<int32_t>();
  float* out = grad.data_ptr<float>();
  at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<vec> sums;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t first = row[r], count = row[r + 1] - first;
      sums.assign(count, vec{});
      for (int64_t b = 0; b < batch; ++b) {
        const float* g = gs + (b * channels + r) * plane;
        const float* image = xs + b * image_size;
        for (int64_t p = 0; p < plane; p += TILE) {
          const vec g0 = load(g + p), g1 = load(g + p + LANES), g2 = load(g + p + 2 * LANES),
                    g3 = load(g + p + 3 * LANES);
          for (int64_t i = 0; i < count; ++i) {
            const float* s = image + off[first + i] + p;
            sums[i] += g0 * load(s) + g1 * load(s + LANES) + g2 * load(s + 2 * LANES)
                       + g3 * load(s + 3 * LANES);
          }
        }
      }
      for (int64_t i = 0; i < count; ++i) {
        float total = 0.f;
        for (int64_t l = 0; l < LANES; ++l) total += sums[i][l];
        out[first + i] = total;
      }
    }
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY(freetickets_sparse, m) {
  m.def("conv_forward(Tensor x, Tensor rows, Tensor offsets, Tensor values, Tensor bias, "
        "int batch, int image_size, int out_h, int out_w, int wq) -> Tensor",
        &conv_forward);
  m.def("weight_grad(Tensor x, Tensor grad_out, Tensor rows, Tensor offsets, int batch, "
        "int image_size, int plane) -> Tensor",
        &weight_grad);
}
