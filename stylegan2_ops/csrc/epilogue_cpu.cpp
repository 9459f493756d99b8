#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <vector>

// The epilogue of a modulated conv on CPU in one pass each way:
//   forward:  out = lrelu(y * d[n, c] + b[c] + z[n or 0, pixel])   (d, b, z carry the gain)
//   backward: g' = grad * (out > 0 ? 1 : alpha); grad_y = g' * d; and the sums
//             grad_d[n, c] = sum_pixels g' * y, grad_b[c] = sum g', grad_z[n or 0, pixel] = sum_c g'
// y, out and grad are [N, C, P] (NCHW) or [N, P, C] (channels-last), P = H * W pixels.
// See stylegan2_ops/epilogue.py for the contract.

namespace {

constexpr int64_t PIXELS = 1024;  // pixels per parallel job

struct Shape {
  int64_t N, C, P, Nz;  // Nz: rows of z (0: no noise, 1: shared over the batch, N: per sample)
  bool nhwc;
};

Shape shape_of(const at::Tensor& y, const at::Tensor& z, bool nhwc) {
  TORCH_CHECK(y.dim() == 3 && y.is_contiguous() && y.scalar_type() == at::kFloat && y.device().is_cpu(),
              "y must be a contiguous float32 CPU tensor [N, C, P] or [N, P, C]");
  Shape s{y.size(0), nhwc ? y.size(2) : y.size(1), nhwc ? y.size(1) : y.size(2), 0, nhwc};
  if (z.defined()) {
    TORCH_CHECK(z.dim() == 2 && z.is_contiguous() && z.size(1) == s.P && (z.size(0) == 1 || z.size(0) == s.N),
                "z must be a contiguous [1 or N, P] tensor");
    s.Nz = z.size(0);
  }
  return s;
}

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

at::Tensor epilogue_forward(at::Tensor y, at::Tensor d, at::Tensor b, c10::optional<at::Tensor> z_opt,
                            double alpha_d, bool nhwc) {
  at::Tensor z = z_opt.has_value() ? *z_opt : at::Tensor();
  const Shape s = shape_of(y, z, nhwc);
  TORCH_CHECK(d.is_contiguous() && d.numel() == s.N * s.C && b.is_contiguous() && b.numel() == s.C, "d: [N, C], b: [C]");
  const float alpha = static_cast<float>(alpha_d);
  auto out = at::empty_like(y);
  const float *yp = y.data_ptr<float>(), *dp = d.data_ptr<float>(), *bp = b.data_ptr<float>();
  const float* zp = z.defined() ? z.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
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
  return out;
}

// -> (grad_y, grad_d [N, C], grad_b [C], grad_z [Nz, P] or undefined)
std::vector<at::Tensor> epilogue_backward(at::Tensor grad, at::Tensor out, at::Tensor y, at::Tensor d,
                                          int64_t nz, double alpha_d, bool nhwc) {
  const Shape s0 = shape_of(y, at::Tensor(), nhwc);
  Shape s = s0;
  s.Nz = nz;
  TORCH_CHECK(grad.is_contiguous() && out.is_contiguous() && grad.sizes() == y.sizes() && out.sizes() == y.sizes(),
              "grad and out must be contiguous and shaped like y");
  TORCH_CHECK(nz == 0 || nz == 1 || nz == s.N, "nz must be 0, 1 or N");
  const float alpha = static_cast<float>(alpha_d);
  // per-thread accumulators; called inside another parallel region, parallel_for runs inline
  const bool nested = at::in_parallel_region();
  const int nthreads = nested ? 1 : at::get_num_threads();
  auto gy = at::empty_like(y);
  auto gd = at::zeros({nthreads, s.N, s.C}, y.options());
  auto gb = at::zeros({nthreads, s.C}, y.options());
  auto gz = nz ? at::zeros({nthreads, nz, s.P}, y.options()) : at::Tensor();
  const float *gp = grad.data_ptr<float>(), *op = out.data_ptr<float>(), *yp = y.data_ptr<float>(), *dp = d.data_ptr<float>();
  float* gyp = gy.data_ptr<float>();
  const int64_t blocks = (s.P + PIXELS - 1) / PIXELS;
  at::parallel_for(0, s.N * blocks, 1, [&](int64_t j0, int64_t j1) {
    const int tid = nested ? 0 : at::get_thread_num();
    float* gdt = gd.data_ptr<float>() + tid * s.N * s.C;
    float* gbt = gb.data_ptr<float>() + tid * s.C;
    float* gzt = nz ? gz.data_ptr<float>() + tid * nz * s.P : nullptr;
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
  return {gy, gd.sum(0), gb.sum(0), nz ? gz.sum(0) : at::Tensor()};
}
