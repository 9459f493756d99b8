#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <vector>

// Winograd F(4x4, 3x3) convolution on CPU (Lavin & Gray 2016): the tile transforms of a 3x3,
// stride 1, padding 1 convolution on channels-last data, vectorised over channels. The 36
// element-wise GEMMs between the transforms run in torch (MKL); see stylegan2_ops/conv.py.
//   input:  V = B^T d B   for every 6x6 window d (stride 4) of the zero-padded input
//   output: y = A^T M A   for every 4x4 output tile
//   adjoint of the output transform: A g A^T (the weight gradient's tile transform)

static inline void bt6(const float* const* in, float* const* out, int64_t n) {
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

static inline void at4(const float* const* in, float* const* out, int64_t n) {
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
static inline void a6(const float* const* in, float* const* out, int64_t n) {
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

// x: [N, H, W, C] contiguous -> V: [36, T, C], T = N * ceil(H/4) * ceil(W/4), padding 1.
torch::Tensor input_transform(torch::Tensor x) {
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous() && x.scalar_type() == torch::kFloat32);
  const int64_t N = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t th = (H + 3) / 4, tw = (W + 3) / 4, T = N * th * tw;
  auto V = torch::empty({36, T, C}, x.options());
  const float* xp = x.data_ptr<float>();
  float* vp = V.data_ptr<float>();
  at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> buf(36 * C), tmp(36 * C), zero(C, 0.f);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / (th * tw), r = t % (th * tw), y0 = (r / tw) * 4 - 1, x0 = (r % tw) * 4 - 1;
      const float* rows[36];
      for (int i = 0; i < 6; ++i)
        for (int j = 0; j < 6; ++j) {
          const int64_t yy = y0 + i, xx = x0 + j;
          rows[i * 6 + j] = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? xp + ((n * H + yy) * W + xx) * C : zero.data();
        }
      for (int j = 0; j < 6; ++j) {  // columns: tmp[i][j] = sum_k BT[i][k] d[k][j]
        const float* in[6];
        float* out[6];
        for (int k = 0; k < 6; ++k) { in[k] = rows[k * 6 + j]; out[k] = tmp.data() + (k * 6 + j) * C; }
        bt6(in, out, C);
      }
      for (int i = 0; i < 6; ++i) {  // rows: V[i][j] = sum_k tmp[i][k] BT[j][k]
        const float* in[6];
        float* out[6];
        for (int k = 0; k < 6; ++k) { in[k] = tmp.data() + (i * 6 + k) * C; out[k] = vp + ((i * 6 + k) * T + t) * C; }
        bt6(in, out, C);
      }
    }
  });
  return V;
}

// M: [36, T, K] -> y: [N, H, W, K]
torch::Tensor output_transform(torch::Tensor M, int64_t N, int64_t H, int64_t W) {
  TORCH_CHECK(M.dim() == 3 && M.size(0) == 36 && M.is_contiguous());
  const int64_t T = M.size(1), K = M.size(2), th = (H + 3) / 4, tw = (W + 3) / 4;
  TORCH_CHECK(T == N * th * tw);
  auto y = torch::empty({N, H, W, K}, M.options());
  const float* mp = M.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> tmp(24 * K), out(16 * K);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / (th * tw), r = t % (th * tw), y0 = (r / tw) * 4, x0 = (r % tw) * 4;
      for (int j = 0; j < 6; ++j) {  // tmp[a][j] = sum_k AT[a][k] M[k][j]
        const float* in[6];
        float* o[4];
        for (int k = 0; k < 6; ++k) in[k] = mp + ((k * 6 + j) * T + t) * K;
        for (int a = 0; a < 4; ++a) o[a] = tmp.data() + (a * 6 + j) * K;
        at4(in, o, K);
      }
      const bool full = y0 + 4 <= H && x0 + 4 <= W;
      for (int a = 0; a < 4; ++a) {
        const float* in[6];
        float* o[4];
        for (int k = 0; k < 6; ++k) in[k] = tmp.data() + (a * 6 + k) * K;
        for (int b = 0; b < 4; ++b)
          o[b] = full ? yp + ((n * H + y0 + a) * W + x0 + b) * K : out.data() + (a * 4 + b) * K;
        at4(in, o, K);
      }
      if (!full)
        for (int a = 0; a < 4; ++a)
          for (int b = 0; b < 4; ++b)
            if (y0 + a < H && x0 + b < W)
              std::copy(out.data() + (a * 4 + b) * K, out.data() + (a * 4 + b + 1) * K, yp + ((n * H + y0 + a) * W + x0 + b) * K);
    }
  });
  return y;
}

// adjoint of output_transform: g: [N, H, W, K] -> dM: [36, T, K]
torch::Tensor output_transform_adjoint(torch::Tensor g) {
  TORCH_CHECK(g.dim() == 4 && g.is_contiguous() && g.scalar_type() == torch::kFloat32);
  const int64_t N = g.size(0), H = g.size(1), W = g.size(2), K = g.size(3);
  const int64_t th = (H + 3) / 4, tw = (W + 3) / 4, T = N * th * tw;
  auto dM = torch::empty({36, T, K}, g.options());
  const float* gp = g.data_ptr<float>();
  float* dp = dM.data_ptr<float>();
  at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> tmp(24 * K), zero(K, 0.f);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / (th * tw), r = t % (th * tw), y0 = (r / tw) * 4, x0 = (r % tw) * 4;
      for (int b = 0; b < 4; ++b) {  // tmp[k][b] = sum_a AT[a][k] g[a][b]
        const float* in[4];
        float* o[6];
        for (int a = 0; a < 4; ++a) {
          const int64_t yy = y0 + a, xx = x0 + b;
          in[a] = (yy < H && xx < W) ? gp + ((n * H + yy) * W + xx) * K : zero.data();
        }
        for (int k = 0; k < 6; ++k) o[k] = tmp.data() + (k * 4 + b) * K;
        a6(in, o, K);
      }
      for (int k = 0; k < 6; ++k) {
        const float* in[4];
        float* o[6];
        for (int b = 0; b < 4; ++b) in[b] = tmp.data() + (k * 4 + b) * K;
        for (int l = 0; l < 6; ++l) o[l] = dp + ((k * 6 + l) * T + t) * K;
        a6(in, o, K);
      }
    }
  });
  return dM;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("input_transform", &input_transform, "[N,H,W,C] -> [36,T,C]");
  m.def("output_transform", &output_transform, "[36,T,K], N, H, W -> [N,H,W,K]");
  m.def("output_transform_adjoint", &output_transform_adjoint, "[N,H,W,K] -> [36,T,K]");
}
