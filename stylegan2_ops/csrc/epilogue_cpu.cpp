#include <ATen/Parallel.h>  // at::parallel_for only (a light header: the build stays seconds)
#include <algorithm>
#include <cstdint>

// The epilogue of a modulated conv on CPU in one pass each way:
//   forward:  out = lrelu(y * d[n, c] + b[c] + z[n or 0, pixel])   (d, b, z carry the gain)
//   backward: g' = grad * (out > 0 ? 1 : alpha); grad_y = g' * d; and the sums
//             grad_d[n, c] = sum_pixels g' * y, grad_b[c] = sum g', grad_z[n or 0, pixel] = sum_c g'
// y, out and grad are [N, C, P] (NCHW) or [N, P, C] (channels-last), P = H * W pixels.
// See stylegan2_ops/epilogue.py for the contract; plain C entry points over contiguous float32
// arrays that stylegan2_ops/_cpu_plugin.py allocates and passes through ctypes.

namespace {

constexpr int64_t PIXELS = 1024;  // pixels per parallel job

struct Shape {
  int64_t N, C, P, Nz;  // Nz: rows of z (0: no noise, 1: shared over the batch, N: per sample)
  bool nhwc;
};

}  // namespace

// The inner loops, over one run of contiguous floats (restrict-qualified so they vectorise):
// NCHW runs are pixels of one channel (scalar d, b; z per element), channels-last runs are the
// channels of one pixel (d, b per element; scalar z).
inline void fwd_run(const float* __restrict y, float* __restrict o, int64_t len, const float* __restrict d,
                    float ds, const float* __restrict b, float bs, const float* __restrict z, float zs, float alpha) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) {
    const float v = y[i] * (d ? d[i] : ds) + (b ? b[i] : bs) + (z ? z[i] : zs);
    o[i] = v > 0.f ? v : v * alpha;
  }
}

// g' = g * (o > 0 ? 1 : alpha); gy = g' * d; returns sum g' * y and sum g' (in *gsum);
// accumulates g' * y into gd and g' into gb / gz where given (per-element accumulators).
inline float bwd_run(const float* __restrict g, const float* __restrict o, const float* __restrict y,
                     float* __restrict gy, int64_t len, const float* __restrict d, float ds, float* __restrict gd,
                     float* __restrict gb, float* __restrict gz, float alpha, float* gsum) {
  float dsum = 0.f, bsum = 0.f;
#pragma omp simd reduction(+ : dsum, bsum)
  for (int64_t i = 0; i < len; ++i) {
    const float gg = o[i] > 0.f ? g[i] : g[i] * alpha;
    gy[i] = gg * (d ? d[i] : ds);
    const float gyv = gg * y[i];
    if (gd) gd[i] += gyv;
    if (gb) gb[i] += gg;
    if (gz) gz[i] += gg;
    dsum += gyv;
    bsum += gg;
  }
  *gsum = bsum;
  return dsum;
}

// out = lrelu(y * d + b + z) for y, out [N, C, P] or [N, P, C]; d [N, C]; b [C]; z [Nz, P] or null.
extern "C" int nada_epilogue_forward(const float* yp, const float* dp, const float* bp, const float* zp, int64_t Nz,
                                     float* op, int64_t N, int64_t C, int64_t P, int nhwc, float alpha) {
  const Shape s{N, C, P, zp ? Nz : 0, nhwc != 0};
  const int64_t blocks = (s.P + PIXELS - 1) / PIXELS;
  at::parallel_for(0, s.N * blocks, 1, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t n = j / blocks, p0 = (j % blocks) * PIXELS, p1 = std::min(s.P, p0 + PIXELS);
      const float* zr = zp ? zp + (s.Nz == 1 ? 0 : n) * s.P : nullptr;
      if (s.nhwc) {
        for (int64_t p = p0; p < p1; ++p)
          fwd_run(yp + (n * s.P + p) * s.C, op + (n * s.P + p) * s.C, s.C, dp + n * s.C, 0.f, bp, 0.f, nullptr,
                  zr ? zr[p] : 0.f, alpha);
      } else {
        for (int64_t c = 0; c < s.C; ++c) {
          const int64_t o = (n * s.C + c) * s.P + p0;
          fwd_run(yp + o, op + o, p1 - p0, nullptr, dp[n * s.C + c], nullptr, bp[c], zr ? zr + p0 : nullptr, 0.f, alpha);
        }
      }
    }
  });
  return 0;
}

// Writes grad_y (gy, shaped like y) and adds into the zeroed per-thread partial sums gd
// [threads, N, C], gb [threads, C] and gz [threads, nz, P] (nz 0: none). Returns -1, writing
// nothing, when more than ``threads`` threads would run.
extern "C" int nada_epilogue_backward(const float* gp, const float* op, const float* yp, const float* dp, float* gyp,
                                      float* gd, float* gb, float* gz, int64_t nz, int64_t threads, int64_t N,
                                      int64_t C, int64_t P, int nhwc, float alpha) {
  const Shape s{N, C, P, nz, nhwc != 0};
  // per-thread accumulators; called inside another parallel region, parallel_for runs inline
  const bool nested = at::in_parallel_region();
  if (!nested && at::get_num_threads() > threads) return -1;
  const int64_t blocks = (s.P + PIXELS - 1) / PIXELS;
  at::parallel_for(0, s.N * blocks, 1, [&](int64_t j0, int64_t j1) {
    const int tid = nested ? 0 : at::get_thread_num();
    float* gdt = gd + tid * s.N * s.C;
    float* gbt = gb + tid * s.C;
    float* gzt = nz ? gz + tid * nz * s.P : nullptr;
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t n = j / blocks, p0 = (j % blocks) * PIXELS, p1 = std::min(s.P, p0 + PIXELS);
      float* zr = gzt ? gzt + (nz == 1 ? 0 : n) * s.P : nullptr;
      float gsum;
      if (s.nhwc) {
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t o = (n * s.P + p) * s.C;
          bwd_run(gp + o, op + o, yp + o, gyp + o, s.C, dp + n * s.C, 0.f, gdt + n * s.C, gbt, nullptr, alpha, &gsum);
          if (zr) zr[p] += gsum;
        }
      } else {
        for (int64_t c = 0; c < s.C; ++c) {
          const int64_t o = (n * s.C + c) * s.P + p0;
          gdt[n * s.C + c] += bwd_run(gp + o, op + o, yp + o, gyp + o, p1 - p0, nullptr, dp[n * s.C + c], nullptr,
                                      nullptr, zr ? zr + p0 : nullptr, alpha, &gsum);
          gbt[c] += gsum;
        }
      }
    }
  });
  return 0;
}
