#include <ATen/Parallel.h>  // at::parallel_for only: the build stays seconds, not half a minute
#include <algorithm>
#include <cstdint>
#include <vector>

// Winograd F(4x4, 3x3) convolution on CPU (Lavin & Gray 2016) for a 3x3, stride 1, padding 1
// convolution on channels-last data, with an optional per-(sample, input channel) scale (the
// modulation of StyleGAN2's synthesis layers) folded in. The work runs in blocks of tiles: each
// block's transformed inputs, 36 GEMMs (MKL sgemm, one thread each) and output transform stay in
// cache, so no [36, tiles, channels] array ever reaches memory; the backward recomputes the
// input tiles instead of saving them. See stylegan2_ops/conv.py for the contract; the
// entry points are plain C functions over float pointers (stylegan2_ops/_cpu_plugin.py calls
// them through ctypes and owns every buffer).
//   input:   V = B^T d B   for every 6x6 window d (stride 4) of the zero-padded input
//   output:  y = A^T M A   for every 4x4 output tile
//   adjoint of the output transform: A g A^T (the weight gradient's tile transform)

extern "C" void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
                       const float*, const int*, const float*, const int*, const float*, float*, const int*);

namespace {

// C (col-major m x n, ldc) = alpha op(A) op(B) + beta C
inline void gemm(char ta, char tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                 float beta, float* c, int ldc) {
  const float one = 1.f;
  sgemm_(&ta, &tb, &m, &n, &k, &one, a, &lda, b, &ldb, &beta, c, &ldc);
}

inline void bt6(const float* const* in, float* const* out, int64_t n) {
  const float *d0 = in[0], *d1 = in[1], *d2 = in[2], *d3 = in[3], *d4 = in[4], *d5 = in[5];
  float *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3], *o4 = out[4], *o5 = out[5];
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) {
    float a1 = d1[c], a2 = d2[c], a3 = d3[c], a4 = d4[c];
    o0[c] = 4.f * d0[c] - 5.f * a2 + a4;
    o1[c] = -4.f * (a1 + a2) + a3 + a4;
    o2[c] = 4.f * (a1 - a2) - a3 + a4;
    o3[c] = 2.f * (a3 - a1) - a2 + a4;
    o4[c] = 2.f * (a1 - a3) - a2 + a4;
    o5[c] = 4.f * a1 - 5.f * a3 + d5[c];
  }
}

inline void at4(const float* const* in, float* const* out, int64_t n) {
  const float *m0 = in[0], *m1 = in[1], *m2 = in[2], *m3 = in[3], *m4 = in[4], *m5 = in[5];
  float *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3];
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) {
    float p12 = m1[c] + m2[c], d12 = m1[c] - m2[c];
    float p34 = m3[c] + m4[c], d34 = m3[c] - m4[c];
    o0[c] = m0[c] + p12 + p34;
    o1[c] = d12 + 2.f * d34;
    o2[c] = p12 + 4.f * p34;
    o3[c] = d12 + 8.f * d34 + m5[c];
  }
}

// adjoint of at4: 4 inputs -> 6 outputs
inline void a6(const float* const* in, float* const* out, int64_t n) {
  const float *g0 = in[0], *g1 = in[1], *g2 = in[2], *g3 = in[3];
  float *o0 = out[0], *o1 = out[1], *o2 = out[2], *o3 = out[3], *o4 = out[4], *o5 = out[5];
#pragma omp simd
  for (int64_t c = 0; c < n; ++c) {
    float a0 = g0[c], a1 = g1[c], a2 = g2[c], a3 = g3[c];
    float e = a0 + a2, o = a1 + a3, e4 = a0 + 4.f * a2, o8 = 2.f * a1 + 8.f * a3;
    o0[c] = a0;
    o1[c] = e + o;
    o2[c] = e - o;
    o3[c] = e4 + o8;
    o4[c] = e4 - o8;
    o5[c] = a3;
  }
}

// The tile grid of an [N, H, W, C] map: tile t covers output rows 4*ty.. and columns 4*tx..
struct Grid {
  int64_t N, H, W, th, tw, T;
  Grid(int64_t n, int64_t h, int64_t w) : N(n), H(h), W(w), th((h + 3) / 4), tw((w + 3) / 4), T(n * th * tw) {}
  int64_t n(int64_t t) const { return t / (th * tw); }
  int64_t y0(int64_t t) const { return ((t % (th * tw)) / tw) * 4; }
  int64_t x0(int64_t t) const { return ((t % (th * tw)) % tw) * 4; }
};

// V[p * ld + c] = (B^T d B)[p] * scale[c] for the 6x6 window of tile t (scale may be null).
void input_tile(const Grid& g, const float* x, int64_t C, int64_t t, const float* scale, const float* zero,
                float* tmp, float* V, int64_t ld) {
  const int64_t n = g.n(t), y0 = g.y0(t) - 1, x0 = g.x0(t) - 1;
  const float* rows[36];
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 6; ++j) {
      const int64_t yy = y0 + i, xx = x0 + j;
      rows[i * 6 + j] = (yy >= 0 && yy < g.H && xx >= 0 && xx < g.W) ? x + ((n * g.H + yy) * g.W + xx) * C : zero;
    }
  for (int j = 0; j < 6; ++j) {  // columns: tmp[i][j] = sum_k BT[i][k] d[k][j]
    const float* in[6];
    float* out[6];
    for (int k = 0; k < 6; ++k) { in[k] = rows[k * 6 + j]; out[k] = tmp + (k * 6 + j) * C; }
    bt6(in, out, C);
  }
  for (int i = 0; i < 6; ++i) {  // rows: V[i][j] = sum_k tmp[i][k] BT[j][k]
    const float* in[6];
    float* out[6];
    for (int k = 0; k < 6; ++k) { in[k] = tmp + (i * 6 + k) * C; out[k] = V + (i * 6 + k) * ld; }
    bt6(in, out, C);
  }
  if (scale)
    for (int p = 0; p < 36; ++p) {
      float* v = V + p * ld;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) v[c] *= scale[c];
    }
}

// out[(a * 4 + b) * K + k] = (A^T M A)[a][b] for one tile, M[p * ld + k].
void output_tile(const float* M, int64_t ld, int64_t K, float* tmp, float* out) {
  for (int j = 0; j < 6; ++j) {  // tmp[a][j] = sum_k AT[a][k] M[k][j]
    const float* in[6];
    float* o[4];
    for (int k = 0; k < 6; ++k) in[k] = M + (k * 6 + j) * ld;
    for (int a = 0; a < 4; ++a) o[a] = tmp + (a * 6 + j) * K;
    at4(in, o, K);
  }
  for (int a = 0; a < 4; ++a) {
    const float* in[6];
    float* o[4];
    for (int k = 0; k < 6; ++k) in[k] = tmp + (a * 6 + k) * K;
    for (int b = 0; b < 4; ++b) o[b] = out + (a * 4 + b) * K;
    at4(in, o, K);
  }
}

// dM[p * ld + k] = (A g A^T)[p] for tile t of g [N, H, W, K] (outside the map: zero).
void adjoint_tile(const Grid& gr, const float* g, int64_t K, int64_t t, const float* zero, float* tmp,
                  float* dM, int64_t ld) {
  const int64_t n = gr.n(t), y0 = gr.y0(t), x0 = gr.x0(t);
  for (int b = 0; b < 4; ++b) {  // tmp[k][b] = sum_a AT[a][k] g[a][b]
    const float* in[4];
    float* o[6];
    for (int a = 0; a < 4; ++a) {
      const int64_t yy = y0 + a, xx = x0 + b;
      in[a] = (yy < gr.H && xx < gr.W) ? g + ((n * gr.H + yy) * gr.W + xx) * K : zero;
    }
    for (int k = 0; k < 6; ++k) o[k] = tmp + (k * 4 + b) * K;
    a6(in, o, K);
  }
  for (int k = 0; k < 6; ++k) {
    const float* in[4];
    float* o[6];
    for (int b = 0; b < 4; ++b) in[b] = tmp + (k * 4 + b) * K;
    for (int l = 0; l < 6; ++l) o[l] = dM + (k * 6 + l) * ld;
    a6(in, o, K);
  }
}

// Tiles per block: 128 measured best or within noise of it from 128 to 512 channels (2-core
// Xeon; a block of 512 channels holds 4 x 9.4 MB in the backward).
constexpr int64_t BLOCK = 128;

inline const float* scale_ptr(const float* scale, int64_t n, int64_t C) {
  return scale ? scale + n * C : nullptr;
}

}  // namespace

// y [N, H, W, K] = conv3x3(x * scale) for x [N, H, W, C], U [36, C, K] (the transformed weight,
// U[p][c][k]), scale [N, C] or null. Every array is contiguous float32.
extern "C" int nada_conv_forward(const float* xp, const float* scale, const float* up, float* yp, int64_t N,
                                 int64_t H, int64_t W, int64_t C, int64_t K) {
  const Grid g(N, H, W);
  const int64_t B = BLOCK, nblk = (g.T + B - 1) / B;
  at::parallel_for(0, nblk, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> V(36 * B * C), M(36 * B * K), tmp(36 * std::max(C, K)), zero(C, 0.f), out(16 * K);
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t t0 = blk * B, nb = std::min(B, g.T - t0);
      for (int64_t i = 0; i < nb; ++i)
        input_tile(g, xp, C, t0 + i, scale_ptr(scale, g.n(t0 + i), C), zero.data(), tmp.data(), V.data() + i * C, B * C);
      // per position: M (nb x K, row-major) = V (nb x C) U (C x K); column-major: M^T = U^T V^T
      for (int p = 0; p < 36; ++p)
        gemm('N', 'N', K, nb, C, up + p * C * K, K, V.data() + p * B * C, C, 0.f, M.data() + p * B * K, K);
      for (int64_t i = 0; i < nb; ++i) {
        const int64_t t = t0 + i, n = g.n(t), y0 = g.y0(t), x0 = g.x0(t);
        output_tile(M.data() + i * K, B * K, K, tmp.data(), out.data());
        for (int a = 0; a < 4 && y0 + a < H; ++a)
          for (int b = 0; b < 4 && x0 + b < W; ++b)
            std::copy(out.data() + (a * 4 + b) * K, out.data() + (a * 4 + b + 1) * K, yp + ((n * H + y0 + a) * W + x0 + b) * K);
      }
    }
  });
  return 0;
}

// The backward of nada_conv_forward for the output gradient g [N, H, W, K], with Uf [36, K, C]
// the transformed flipped kernel (Uf[p][k][c]). Writes grad_x [N, H, W, C] (gx, or null), and
// adds into the zeroed per-thread partial sums dU [threads, 36, K, C] (the weight gradient in
// the Winograd domain, or null) and gs [threads, N, C] (the scale's gradient, or null; only with
// a scale). Returns -1, writing nothing, when more than ``threads`` threads would run.
extern "C" int nada_conv_backward(const float* xp, const float* scale, const float* gp, const float* ufp, float* gx,
                                  float* dU, float* gs, int64_t threads, int64_t N, int64_t H, int64_t W, int64_t C,
                                  int64_t K) {
  const bool need_x = gx != nullptr, need_w = dU != nullptr, need_scale = gs != nullptr && scale != nullptr;
  const bool need_gx = need_x || need_scale;  // the scale's gradient needs the conv input's gradient
  const Grid gr(N, H, W);
  const int64_t B = BLOCK, nblk = (gr.T + B - 1) / B;
  // per-thread accumulators; called inside another parallel region, parallel_for runs inline
  const bool nested = at::in_parallel_region();
  if (!nested && at::get_num_threads() > threads) return -1;
  at::parallel_for(0, nblk, 1, [&](int64_t b0, int64_t b1) {
    const int tid = nested ? 0 : at::get_thread_num();
    const int64_t CK = std::max(C, K);
    std::vector<float> Vx(need_w ? 36 * B * C : 0), dM(need_w ? 36 * B * K : 0);
    std::vector<float> Vg(need_gx ? 36 * B * K : 0), Mg(need_gx ? 36 * B * C : 0);
    std::vector<float> tmp(36 * CK), zero(CK, 0.f), out(16 * C);
    float* dUp = need_w ? dU + tid * 36 * K * C : nullptr;
    float* gsp = need_scale ? gs + tid * N * C : nullptr;
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t t0 = blk * B, nb = std::min(B, gr.T - t0);
      if (need_w) {
        for (int64_t i = 0; i < nb; ++i) {
          const int64_t t = t0 + i;
          input_tile(gr, xp, C, t, scale_ptr(scale, gr.n(t), C), zero.data(), tmp.data(), Vx.data() + i * C, B * C);
          adjoint_tile(gr, gp, K, t, zero.data(), tmp.data(), dM.data() + i * K, B * K);
        }
        // dU[p] (K x C, row-major) += dM^T V; column-major C x K: V^T (C x nb) dM (nb x K)
        for (int p = 0; p < 36; ++p)
          gemm('N', 'T', C, K, nb, Vx.data() + p * B * C, C, dM.data() + p * B * K, K, 1.f, dUp + p * K * C, C);
      }
      if (need_gx) {
        // the input gradient: the same convolution of g with the flipped kernel, K -> C channels
        for (int64_t i = 0; i < nb; ++i)
          input_tile(gr, gp, K, t0 + i, nullptr, zero.data(), tmp.data(), Vg.data() + i * K, B * K);
        for (int p = 0; p < 36; ++p)
          gemm('N', 'N', C, nb, K, ufp + p * K * C, C, Vg.data() + p * B * K, K, 0.f, Mg.data() + p * B * C, C);
        for (int64_t i = 0; i < nb; ++i) {
          const int64_t t = t0 + i, n = gr.n(t), y0 = gr.y0(t), x0 = gr.x0(t);
          output_tile(Mg.data() + i * C, B * C, C, tmp.data(), out.data());
          const float* s = scale_ptr(scale, n, C);
          for (int a = 0; a < 4 && y0 + a < H; ++a)
            for (int b = 0; b < 4 && x0 + b < W; ++b) {
              const int64_t pix = ((n * H + y0 + a) * W + x0 + b) * C;
              const float* o = out.data() + (a * 4 + b) * C;
              if (gsp) {  // d/ds of conv(x * s): sum over pixels of x * (gradient of x * s)
                const float* xv = xp + pix;
                float* acc = gsp + n * C;
#pragma omp simd
                for (int64_t c = 0; c < C; ++c) acc[c] += o[c] * xv[c];
              }
              if (need_x) {
                float* dst = gx + pix;
                if (s) {
#pragma omp simd
                  for (int64_t c = 0; c < C; ++c) dst[c] = o[c] * s[c];
                } else {
                  std::copy(o, o + C, dst);
                }
              }
            }
        }
      }
    }
  });
  return 0;
}
