// Direct sparse convolution on the CPU (Park et al. 2017): every non-zero weight is one
// multiply-add of a shifted input plane into an output plane, vectorised over output pixels.
//
// `spread` (below) lays the input out so that every shift is a plain offset: channel-major,
// [C, phases, B, hq, wq] flat, each image zero-padded and, for stride 2, split into its 4
// row/column parity phases. Output pixel p = (b * hq + oh) * wq + ow runs over
// the whole batch in one stretch, so small planes still fill whole vectors; the positions past
// the output's height or width are computed and thrown away. A weight is then (row, offset,
// value): its output channel, where its shifted input starts, and its value. The flat input
// carries slack at its end for the reads of the last tile.
//
// Both kernels go tile by tile of output pixels (the threads split the tiles, and for small
// inputs the forward's output channels too) and, within a tile, by groups of input channels
// whose share of the tile fits L1, so that all output channels read it from there. Measured
// on a 64 -> 64 3x3 layer at 32x32, batch 64, density 0.25-0.35, on a core whose
// multiply-adds peak at about 117 GFLOP/s (AVX-512, Zen 4): about 45 GFLOP/s reading each
// shifted input unaligned from L2 (the kernel this one replaced), 50 with the groups in L1,
// 55-65 from aligned per-tile columns. Not kept, measured alike at
// densities 0.1-0.35: blocks of 2, 4 or 8 output channels sharing each shifted input load,
// zero-filled where a channel lacks that weight (Elsen et al. 2020's layout; no faster with
// 2, slower with 4 and 8), a shifted input built from aligned loads by permutes (18-31
// GFLOP/s), 256-bit vectors (as fast as 512-bit), groups sized for L2 (1.2-1.5x slower).
//
// GCC vector extensions compile to the machine's vectors under -march=native (AVX-512 or
// AVX2, `vec`); the threads are ATen's (torch.set_num_threads), OpenMP's: built without
// -fopenmp, at::parallel_for runs everything on the calling thread.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace {

// The machine's own vector: 512 bits under AVX-512, else 256 (AVX2; SSE machines split it).
#ifdef __AVX512F__
constexpr int VECTOR_BYTES = 64;
#else
constexpr int VECTOR_BYTES = 32;
#endif
typedef float vec __attribute__((vector_size(VECTOR_BYTES)));
typedef float unaligned_vec __attribute__((vector_size(VECTOR_BYTES), aligned(4)));
constexpr int64_t LANES = VECTOR_BYTES / sizeof(float);

inline vec load(const float* p) { return *reinterpret_cast<const unaligned_vec*>(p); }

// The sum of a vector's lanes, by halves (a few shuffles where the lanes are added in turn).
inline float reduce(vec v) {
  typedef float half __attribute__((vector_size(32)));
  typedef float quarter __attribute__((vector_size(16)));
  half h;
  if constexpr (VECTOR_BYTES == 64) {
    half low, high;
    std::memcpy(&low, &v, sizeof low);
    std::memcpy(&high, reinterpret_cast<const char*>(&v) + sizeof low, sizeof high);
    h = low + high;
  } else {
    std::memcpy(&h, &v, sizeof h);
  }
  quarter a, b;
  std::memcpy(&a, &h, sizeof a);
  std::memcpy(&b, reinterpret_cast<const char*>(&h) + sizeof a, sizeof b);
  const quarter q = a + b;
  return (q[0] + q[2]) + (q[1] + q[3]);
}

struct Layout {
  int64_t batch, hq, wq, out_h, out_w;
  int64_t image_stride, row_stride;  // of out
  int64_t residual_image_stride = 0, residual_row_stride = 0;  // of the epilogue's residual
  int64_t gate_image_stride = 0, gate_row_stride = 0;  // and of its gate
  int64_t span() const { return batch * hq * wq; }
};

// The runs of valid output pixels in tile [p0, p0 + count): where each starts in the tile,
// where in out [B, C, H, W] for channel 0 (channel r adds r times out's channel stride), and
// its length (and where in the residual and the gate, if any). The same for every output
// channel of the tile, so the divisions are done once.
struct Run {
  int64_t from, to, length, residual, gate;
};

inline void valid_runs(int64_t p0, int64_t count, const Layout& l, std::vector<Run>& runs) {
  runs.clear();
  const int64_t plane = l.hq * l.wq, end = std::min(p0 + count, l.span());
  for (int64_t q = p0; q < end;) {
    const int64_t b = q / plane, rest = q % plane, oh = rest / l.wq, ow = rest % l.wq;
    const int64_t segment = std::min(end - q, l.wq - ow);
    if (oh < l.out_h && ow < l.out_w)
      runs.push_back({q - p0, b * l.image_stride + oh * l.row_stride + ow,
                      std::min(segment, l.out_w - ow),
                      b * l.residual_image_stride + oh * l.residual_row_stride + ow,
                      b * l.gate_image_stride + oh * l.gate_row_stride + ow});
    q += segment;
  }
}

// The forward pass, tile-major: for one tile of BLOCK output pixels, the input channels go
// in groups small enough that the group's share of the tile stays in L1 while every output
// channel reads it (each output channel's partial sums wait in `acc` between groups). The
// weights come sorted by (group, output channel); rows[g * out_channels + r] starts those of
// output channel r in group g.
//
// Two ways to read a weight's shifted input, chosen per layer by the caller:
//   direct   `where` is the weight's offset in x: an unaligned load straight from the input;
//   columns  (shifts not empty) the group's shifted inputs of this tile are first copied into
//            an aligned buffer, column (channel - first channel of group) * K + position,
//            shifts[position] being where that kernel position starts within a channel of x;
//            `where` is the weight's column. The copy costs one load per column and vector;
//            it pays where many output channels read each column (aligned loads from L1 run
//            about 1.5x as many multiply-adds per cycle as unaligned ones here).
//
// A tile is VECTORS of the machine's vectors of output pixels (BLOCK pixels), a template
// argument the caller picks per layer (`TILE_VECTORS` in Python: 8 or 12): their sums take
// 8 or 12 registers of AVX-512's 32 or of AVX2's 16. Twelve keep more multiply-adds in
// flight than the FMA latency needs and make fewer passes over each weight, but waste more
// of a tile on a small input: on one Zen 3 core, forward and backward of a sparse conv at
// batch 128 took 0.77-1.05x the time of tiles of 8 (WRN-16-4's layers, density 0.05-0.3),
// the forward at batch 1 on 8x8 layers 1.3x (100 padded pixels fill two tiles of 96 instead
// of two of 64). On AVX2 a tile of 16 vectors spilled its sums to the stack and ran 3-5x
// slower than F.conv2d; held in two passes of 8 it took a group of half as many input
// channels in L1, and ran 1.1-1.5x slower than tiles of 8 on 32x32 layers.
constexpr int64_t LINE = 16;  // floats per cache line

// Calls `body` with the tile's vectors as a compile-time constant (std::integral_constant),
// so that a tile's sums are registers.
template <typename Body>
void with_tile(int64_t vectors, Body&& body) {
  TORCH_CHECK(vectors == 8 || vectors == 12, "vectors: 8 or 12 per tile");
  if (vectors == 8) return body(std::integral_constant<int64_t, 8>{});
  body(std::integral_constant<int64_t, 12>{});
}

// Asks for the input of channels [first, last) two tiles ahead: one stream per channel is
// more than the hardware prefetcher follows, and at batch 128 the input is past L3 (the
// kernels ran at 30 GFLOP/s there against 55 at batch 16 without this).
template <int64_t BLOCK>
inline void prefetch_ahead(const float* tile, int64_t first, int64_t last,
                           int64_t channel_size) {
  for (int64_t c = first; c < last; ++c)
    for (int64_t line = 0; line < BLOCK; line += LINE)
      __builtin_prefetch(tile + c * channel_size + 2 * BLOCK + line);
}

// One tile's input for the channels [first, last) of a group: the input itself, read at shifted
// offsets, or (`positions` > 0) its columns copied into `columns`, aligned, where many weights
// share each of them.
template <int64_t VECTORS>
inline const float* group_input(const float* xs, int64_t p, int64_t first, int64_t last,
                                int64_t channel_size, const int32_t* shift, int64_t positions,
                                vec* columns) {
  prefetch_ahead<VECTORS * LANES>(xs + p, first, last, channel_size);
  if (!positions) return xs + p;
  vec* column = columns;
  for (int64_t c = first; c < last; ++c)
    for (int64_t k = 0; k < positions; ++k, column += VECTORS) {
      const float* s = xs + c * channel_size + shift[k] + p;
      for (int64_t v = 0; v < VECTORS; ++v) column[v] = load(s + v * LANES);
    }
  return reinterpret_cast<const float*>(columns);
}

// How many slices of output channels the forward's threads split besides the tiles: none on
// one thread or where there are tiles enough to share evenly, else one per thread (at batch 1
// an 8x8 layer is one tile, a 16x16 one three), of at least 8 channels. A slice per thread
// rather than more: each slice copies the tile's columns again.
inline int64_t channel_parts(int64_t tiles, int64_t channels) {
  const int64_t threads = at::get_num_threads();
  if (threads == 1 || tiles >= 16 * threads) return 1;
  return std::max<int64_t>(1, std::min(threads, channels / 8));
}

// The epilogue, as the tile's sums are written out: `residual` (empty: none), a tensor of
// out's shape (rows contiguous), added, then max(0, .) where `relu`, and zero wherever
// `gate` (empty: none; out's shape, rows contiguous) is not above zero. Inference folds a
// batch-norm that follows the conv into its weights and bias, so a block's conv, batch-norm,
// ReLU and residual sum are one pass over the output rather than four; training's input
// gradient through a ReLU is the gradient gated by the ReLU's output.
void conv_forward(const at::Tensor& x, const at::Tensor& rows, const at::Tensor& where,
                  const at::Tensor& values, const at::Tensor& bias, const at::Tensor& shifts,
                  int64_t channel_size, int64_t group, int64_t in_channels, int64_t batch,
                  int64_t hq, int64_t wq, const at::Tensor& residual, bool relu,
                  const at::Tensor& gate, int64_t vectors, at::Tensor& out) {
  TORCH_CHECK(x.is_contiguous() && x.scalar_type() == at::kFloat, "x: contiguous float32");
  TORCH_CHECK(group > 0 && in_channels > 0, "group and in_channels must be positive");
  TORCH_CHECK(out.dim() == 4 && out.size(0) == batch && out.scalar_type() == at::kFloat &&
              out.stride(3) == 1, "out: float32 [batch, out_channels, H, W], rows contiguous");
  TORCH_CHECK(!residual.numel() || (residual.sizes() == out.sizes() &&
                                    residual.stride(3) == 1 &&
                                    residual.scalar_type() == at::kFloat),
              "residual: float32 of out's shape, rows contiguous");
  TORCH_CHECK(!gate.numel() || (gate.sizes() == out.sizes() && gate.stride(3) == 1 &&
                                gate.scalar_type() == at::kFloat),
              "gate: float32 of out's shape, rows contiguous");
  const float* rs = residual.numel() ? residual.data_ptr<float>() : nullptr;
  const float* gs = gate.numel() ? gate.data_ptr<float>() : nullptr;
  Layout l{batch, hq, wq, out.size(2), out.size(3), out.stride(0), out.stride(2)};
  if (rs) {
    l.residual_image_stride = residual.stride(0);
    l.residual_row_stride = residual.stride(2);
  }
  if (gs) {
    l.gate_image_stride = gate.stride(0);
    l.gate_row_stride = gate.stride(2);
  }
  const int64_t groups = (in_channels + group - 1) / group;
  TORCH_CHECK((rows.size(0) - 1) % groups == 0, "rows: groups * out_channels + 1 pointers");
  const int64_t channels = (rows.size(0) - 1) / groups;
  TORCH_CHECK(out.size(1) == channels, "out: one plane per output channel");
  const float* xs = x.data_ptr<float>();
  const int64_t* row = rows.data_ptr<int64_t>();
  const int32_t* at_ = where.data_ptr<int32_t>();
  const float* val = values.data_ptr<float>();
  const float* bs = bias.numel() ? bias.data_ptr<float>() : nullptr;
  const int64_t positions = shifts.numel();
  const int32_t* shift = positions ? shifts.data_ptr<int32_t>() : nullptr;
  float* os = out.data_ptr<float>();
  const int64_t channel_stride = out.stride(1);
  with_tile(vectors, [&](auto tile_vectors) {
    constexpr int64_t VECTORS = decltype(tile_vectors)::value, BLOCK = VECTORS * LANES;
    const int64_t tiles = (l.span() + BLOCK - 1) / BLOCK;
    const int64_t parts = channel_parts(tiles, channels);
    // Work items part-major: with one slice per thread, each thread computes its slice of the
    // output channels over every tile, the same share of the work for each.
    at::parallel_for(0, parts * tiles, 1, [&](int64_t begin, int64_t end) {
      // Kept per thread between calls: a fresh buffer of this size costs page faults.
      thread_local std::vector<vec> acc, columns;
      thread_local std::vector<Run> runs;
      acc.resize(channels * VECTORS);
      if (positions) columns.resize(group * positions * VECTORS);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t tile = item % tiles, part = item / tiles, p = tile * BLOCK;
        const int64_t from = part * channels / parts, to = (part + 1) * channels / parts;
        for (int64_t g = 0; g < groups; ++g) {
          const int64_t first = g * group, last = std::min(first + group, in_channels);
          const float* base = group_input<VECTORS>(xs, p, first, last, channel_size, shift,
                                                   positions, columns.data());
          const int64_t scale = positions ? BLOCK : 1;
          for (int64_t r = from; r < to; ++r) {
            const int64_t first = row[g * channels + r], last = row[g * channels + r + 1];
            vec* a = acc.data() + r * VECTORS;
            if (g > 0 && first == last) continue;
            vec sum[VECTORS];
            for (int64_t v = 0; v < VECTORS; ++v)
              sum[v] = g > 0 ? a[v] : (bs ? bs[r] : 0.f) - vec{};
            for (int64_t i = first; i < last; ++i) {
              const float* s = base + at_[i] * scale;
              const float w = val[i];
              for (int64_t v = 0; v < VECTORS; ++v) sum[v] += w * load(s + v * LANES);
            }
            for (int64_t v = 0; v < VECTORS; ++v) a[v] = sum[v];
          }
        }
        valid_runs(p, BLOCK, l, runs);
        for (int64_t r = from; r < to; ++r) {
          const float* tile_r = reinterpret_cast<const float*>(acc.data() + r * VECTORS);
          float* out_r = os + r * channel_stride;
          const float* residual_r = rs ? rs + r * residual.stride(1) : nullptr;
          const float* gate_r = gs ? gs + r * gate.stride(1) : nullptr;
          for (const Run& run : runs) {
            const float* sums = tile_r + run.from;
            float* target = out_r + run.to;
            if (!residual_r && !relu && !gate_r) {
              std::memcpy(target, sums, run.length * sizeof(float));
              continue;
            }
            for (int64_t j = 0; j < run.length; ++j) {
              float value = residual_r ? sums[j] + residual_r[run.residual + j] : sums[j];
              if (relu) value = std::max(value, 0.f);
              if (gate_r && !(gate_r[run.gate + j] > 0.f)) value = 0.f;
              target[j] = value;
            }
          }
        }
      }
    });
  });
}

// The weight gradient at the given weights only (a sampled dense-dense product), in the
// forward's plan: grad[i] = sum over p of grad_out[row(i), p] * input(i)[p], where grad_out
// [C, padded] is laid out like the forward's output pixels (padded: whole tiles), zero
// wherever the forward threw its result away, and input(i) is weight i's shifted input, read
// as in conv_forward (direct or from the tile's columns). Tile-major as the forward: a tile of
// grad_out stays in registers while every weight of its row takes its product, and each
// weight's partial sum over the tile is added to its thread's total.
at::Tensor weight_grad(const at::Tensor& x, const at::Tensor& grad_out, const at::Tensor& rows,
                       const at::Tensor& where, const at::Tensor& shifts, int64_t channel_size,
                       int64_t group, int64_t in_channels, int64_t padded, int64_t vectors) {
  TORCH_CHECK(x.is_contiguous() && grad_out.is_contiguous(), "contiguous inputs");
  TORCH_CHECK(padded % (vectors * LANES) == 0 && group > 0, "whole tiles");
  const int64_t groups = (in_channels + group - 1) / group;
  const int64_t channels = (rows.size(0) - 1) / groups;
  TORCH_CHECK(grad_out.numel() == channels * padded, "grad_out: [channels, padded]");
  const int64_t count = where.numel();
  at::Tensor totals = at::zeros({at::get_num_threads(), count}, x.options());
  const float* xs = x.data_ptr<float>();
  const float* gs = grad_out.data_ptr<float>();
  const int64_t* row = rows.data_ptr<int64_t>();
  const int32_t* at_ = where.data_ptr<int32_t>();
  const int64_t positions = shifts.numel();
  const int32_t* shift = positions ? shifts.data_ptr<int32_t>() : nullptr;
  float* total_s = totals.data_ptr<float>();
  with_tile(vectors, [&](auto tile_vectors) {
    constexpr int64_t VECTORS = decltype(tile_vectors)::value, BLOCK = VECTORS * LANES;
    at::parallel_for(0, padded / BLOCK, 1, [&](int64_t begin, int64_t end) {
      thread_local std::vector<vec> columns;
      if (positions) columns.resize(group * positions * VECTORS);
      float* total = total_s + at::get_thread_num() * count;
      for (int64_t tile = begin; tile < end; ++tile) {
        const int64_t p = tile * BLOCK;
        for (int64_t g = 0; g < groups; ++g) {
          const int64_t first = g * group, last = std::min(first + group, in_channels);
          const float* base = group_input<VECTORS>(xs, p, first, last, channel_size, shift,
                                                   positions, columns.data());
          const int64_t scale = positions ? BLOCK : 1;
          for (int64_t r = 0; r < channels; ++r) {
            const int64_t first = row[g * channels + r], last = row[g * channels + r + 1];
            if (first == last) continue;
            vec grad[VECTORS];
            for (int64_t v = 0; v < VECTORS; ++v)
              grad[v] = load(gs + r * padded + p + v * LANES);
            for (int64_t i = first; i < last; ++i) {
              const float* s = base + at_[i] * scale;
              vec even = vec{}, odd = vec{};  // two chains: the multiply-add latency
              for (int64_t v = 0; v < VECTORS; v += 2) {
                even += grad[v] * load(s + v * LANES);
                odd += grad[v + 1] * load(s + (v + 1) * LANES);
              }
              total[i] += reduce(even + odd);
            }
          }
        }
      }
    });
  });
  return totals.sum(0);
}

// x [B, C, H, W] (any strides) into the flat layout of the header: channel c (at
// c * channel_size), phase (y % stride, x % stride) of the padded image, image b, row
// y / stride, column x / stride. Only the image's own pixels are written; the caller's zeros
// stay as the padding. The prologue, where `scale` is not empty: max(0, x * scale[c] +
// shift[c]) is written instead of x, the eval-mode batch-norm and ReLU that precede a
// pre-activation block's convs applied in the same pass as the copy.
void spread(const at::Tensor& x, at::Tensor& flat, int64_t stride, int64_t padding, int64_t hq,
            int64_t wq, int64_t channel_size, const at::Tensor& scale, const at::Tensor& shift) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() == 4, "x: float32 [B, C, H, W]");
  TORCH_CHECK(flat.is_contiguous(), "flat: contiguous");
  TORCH_CHECK(!scale.numel() || (scale.numel() == x.size(1) && shift.numel() == x.size(1) &&
                                 scale.is_contiguous() && shift.is_contiguous()),
              "scale, shift: one contiguous value per channel");
  const float* scales = scale.numel() ? scale.data_ptr<float>() : nullptr;
  const float* shifts = scales ? shift.data_ptr<float>() : nullptr;
  const int64_t batch = x.size(0), channels = x.size(1), height = x.size(2), width = x.size(3);
  const int64_t span = batch * hq * wq;
  TORCH_CHECK(channel_size >= stride * stride * span, "channel_size: under one channel");
  TORCH_CHECK(flat.numel() >= (channels - 1) * channel_size + stride * stride * span,
              "flat: too small");
  const int64_t sb = x.stride(0), sc = x.stride(1), sh = x.stride(2), sw = x.stride(3);
  const float* xs = x.data_ptr<float>();
  float* fs = flat.data_ptr<float>();
  at::parallel_for(0, channels * batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t c = item / batch, b = item % batch;
      for (int64_t h = 0; h < height; ++h) {
        const float* row = xs + b * sb + c * sc + h * sh;
        const int64_t y = h + padding;
        float* out = fs + c * channel_size + (y % stride) * stride * span + b * hq * wq
                     + y / stride * wq;
        if (scales) {
          const float a = scales[c], t = shifts[c];
          if (stride == 1 && sw == 1) {
            for (int64_t w = 0; w < width; ++w)
              out[padding + w] = std::max(row[w] * a + t, 0.f);
            continue;
          }
          for (int64_t phase = 0; phase < stride; ++phase) {
            const int64_t first = ((phase - padding) % stride + stride) % stride;
            float* to = out + phase * span + (first + padding) / stride;
            for (int64_t w = first, i = 0; w < width; w += stride, ++i)
              to[i] = std::max(row[w * sw] * a + t, 0.f);
          }
          continue;
        }
        if (stride == 1 && sw == 1) {
          std::memcpy(out + padding, row, width * sizeof(float));
          continue;
        }
        // Column phase by phase: its pixels are every stride-th of the row, written in turn.
        for (int64_t phase = 0; phase < stride; ++phase) {
          const int64_t first = ((phase - padding) % stride + stride) % stride;
          float* to = out + phase * span + (first + padding) / stride;
          for (int64_t w = first, i = 0; w < width; w += stride, ++i) to[i] = row[w * sw];
        }
      }
    }
  });
}

// The input gradient of a stride-2 conv from its phases: out [B, C, H, W] (contiguous) at row
// y, column x is phases[(y % 2) * 2 + x % 2] [B, C, rows, columns] at y / 2, x / 2. One pass
// in the order of out, rather than each phase written into out every other pixel, which
// fetches each line of out once per phase.
void interleave(const at::Tensor& phases, at::Tensor& out) {
  TORCH_CHECK(phases.is_contiguous() && out.is_contiguous() && phases.dim() == 5 &&
              phases.size(0) == 4, "phases: contiguous [4, B, C, H, W]");
  const int64_t images = out.size(0) * out.size(1), height = out.size(2), width = out.size(3);
  const int64_t rows = phases.size(3), columns = phases.size(4);
  const int64_t phase_size = images * rows * columns, pairs = width / 2;
  const float* ps = phases.data_ptr<float>();
  float* os = out.data_ptr<float>();
  at::parallel_for(0, images, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane)
      for (int64_t y = 0; y < height; ++y) {
        float* to = os + (plane * height + y) * width;
        const float* even = ps + (y % 2) * 2 * phase_size + (plane * rows + y / 2) * columns;
        const float* odd = even + phase_size;
        for (int64_t i = 0; i < pairs; ++i) {  // a pair of stores a step: they vectorise
          to[2 * i] = even[i];
          to[2 * i + 1] = odd[i];
        }
        if (width % 2) to[width - 1] = even[pairs];
      }
  });
}

// Per channel of x [B, C, H, W] (contiguous), the mean and the biased variance over the batch
// and the pixels, [2, C]: a training-mode batch-norm's statistics in one pass over x (torch's
// CPU batch-norm makes one for its statistics and one more for the output, which the
// kernels' prologue writes instead). Sums of x - x[0, c, 0, 0] in float vectors within each
// image, totals in double: the shift keeps the variance from cancelling where the mean is
// large against the spread.
at::Tensor channel_moments(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous() && x.scalar_type() == at::kFloat && x.numel(),
              "x: non-empty contiguous float32 [B, C, H, W]");
  const int64_t batch = x.size(0), channels = x.size(1), plane = x.size(2) * x.size(3);
  at::Tensor moments = at::empty({2, channels}, x.options());
  const float* xs = x.data_ptr<float>();
  float* ms = moments.data_ptr<float>();
  at::parallel_for(0, channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const float shift = xs[c * plane];
      double total = 0, squares = 0;
      for (int64_t b = 0; b < batch; ++b) {
        const float* p = xs + (b * channels + c) * plane;
        vec sum = vec{}, square = vec{};
        int64_t i = 0;
        for (; i + LANES <= plane; i += LANES) {
          const vec v = load(p + i) - shift;
          sum += v;
          square += v * v;
        }
        double rest = 0, rest_squares = 0;
        for (; i < plane; ++i) {
          const double v = p[i] - shift;
          rest += v;
          rest_squares += v * v;
        }
        total += reduce(sum) + rest;
        squares += reduce(square) + rest_squares;
      }
      const double count = static_cast<double>(batch * plane), mean = total / count;
      ms[c] = static_cast<float>(shift + mean);
      ms[channels + c] = static_cast<float>(std::max(squares / count - mean * mean, 0.0));
    }
  });
  return moments;
}

int64_t lanes() { return LANES; }

}  // namespace

TORCH_LIBRARY(freetickets_sparse, m) {
  m.def("lanes() -> int", &lanes);
  m.def("conv_forward(Tensor x, Tensor rows, Tensor where, Tensor values, Tensor bias, "
        "Tensor shifts, int channel_size, int group, int in_channels, int batch, int hq, "
        "int wq, Tensor residual, bool relu, Tensor gate, int vectors, Tensor(a!) out) -> ()",
        &conv_forward);
  m.def("weight_grad(Tensor x, Tensor grad_out, Tensor rows, Tensor where, Tensor shifts, "
        "int channel_size, int group, int in_channels, int padded, int vectors) -> Tensor",
        &weight_grad);
  m.def("spread(Tensor x, Tensor(a!) flat, int stride, int padding, int hq, int wq, "
        "int channel_size, Tensor scale, Tensor shift) -> ()",
        &spread);
  m.def("interleave(Tensor phases, Tensor(a!) out) -> ()", &interleave);
  m.def("channel_moments(Tensor x) -> Tensor", &channel_moments);
}
