// upfirdn2d: each thread computes one output sample as a direct sum over the 2-D filter taps,
// reading the zero-inserted, padded input implicitly (no intermediate tensors).
// f is the correlation kernel (already flipped and scaled by the caller), float32.
// Output sample (oy, ox) reads padded position (oy*down + ty, ox*down + tx); padded position p maps
// to zero-inserted position p - pad0, which holds x[(p - pad0) / up] when divisible and in range.
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

__device__ __forceinline__ int64_t floor_div(int64_t a, int64_t b) {
    return (a >= 0) ? a / b : -((-a + b - 1) / b);
}

template <typename scalar_t>
__global__ void upfirdn2d_kernel(const scalar_t* __restrict__ x, const float* __restrict__ f,
                                 scalar_t* __restrict__ y, int64_t nc, int64_t in_h, int64_t in_w,
                                 int64_t out_h, int64_t out_w, int fh, int fw, int upx, int upy,
                                 int downx, int downy, int padx0, int pady0) {
    const int64_t total = nc * out_h * out_w;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)blockDim.x * gridDim.x) {
        const int64_t ox = i % out_w;
        const int64_t oy = (i / out_w) % out_h;
        const int64_t plane = i / (out_w * out_h);
        const scalar_t* xp = x + plane * in_h * in_w;
        float acc = 0.f;
        for (int ty = 0; ty < fh; ++ty) {
            const int64_t zy = oy * downy + ty - pady0;  // zero-inserted row
            if (zy < 0 || zy % upy != 0) continue;
            const int64_t iy = zy / upy;
            if (iy >= in_h) continue;
            for (int tx = 0; tx < fw; ++tx) {
                const int64_t zx = ox * downx + tx - padx0;
                if (zx < 0 || zx % upx != 0) continue;
                const int64_t ix = zx / upx;
                if (ix >= in_w) continue;
                acc += (float)xp[iy * in_w + ix] * f[ty * fw + tx];
            }
        }
        y[i] = (scalar_t)acc;
    }
}

torch::Tensor upfirdn2d_cuda(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy,
                             int64_t downx, int64_t downy, int64_t padx0, int64_t padx1,
                             int64_t pady0, int64_t pady1) {
    const at::cuda::OptionalCUDAGuard guard(device_of(x));
    x = x.contiguous();
    f = f.contiguous();
    const int64_t n = x.size(0), c = x.size(1), in_h = x.size(2), in_w = x.size(3);
    const int fh = (int)f.size(0), fw = (int)f.size(1);
    const int64_t out_h = (in_h * upy + pady0 + pady1 - fh) / downy + 1;
    const int64_t out_w = (in_w * upx + padx0 + padx1 - fw) / downx + 1;
    TORCH_CHECK(out_h >= 1 && out_w >= 1, "upfirdn2d: output would be empty");
    auto y = torch::empty({n, c, out_h, out_w}, x.options());
    const int64_t total = y.numel();
    const int threads = 256;
    const int blocks = (int)std::min<int64_t>((total + threads - 1) / threads, 65535 * 8);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_cuda", [&] {
        upfirdn2d_kernel<scalar_t><<<blocks, threads, 0, at::cuda::getCurrentCUDAStream()>>>(
            x.data_ptr<scalar_t>(), f.data_ptr<float>(), y.data_ptr<scalar_t>(), n * c, in_h, in_w,
            out_h, out_w, fh, fw, (int)upx, (int)upy, (int)downx, (int)downy, (int)padx0, (int)pady0);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}
