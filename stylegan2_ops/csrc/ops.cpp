// Python bindings for nada's StyleGAN2 CUDA kernels (our own sources).
#include <torch/extension.h>

torch::Tensor bias_act_cuda(torch::Tensor x, torch::Tensor b, torch::Tensor gy, int64_t dim,
                            int64_t act, int64_t grad, double alpha, double gain, double clamp);
torch::Tensor upfirdn2d_cuda(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy,
                             int64_t downx, int64_t downy, int64_t padx0, int64_t padx1,
                             int64_t pady0, int64_t pady1);

static torch::Tensor bias_act(torch::Tensor x, torch::Tensor b, torch::Tensor gy, int64_t dim,
                              int64_t act, int64_t grad, double alpha, double gain, double clamp) {
    TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
    TORCH_CHECK(b.numel() == 0 || (b.is_cuda() && b.dim() == 1 && b.size(0) == x.size(dim)),
                "bias_act: b must be empty or a CUDA vector of length x.size(dim)");
    TORCH_CHECK(gy.numel() == 0 || gy.sizes() == x.sizes(), "bias_act: gy must match x");
    return bias_act_cuda(x, b, gy, dim, act, grad, alpha, gain, clamp);
}

static torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy,
                               int64_t downx, int64_t downy, int64_t padx0, int64_t padx1,
                               int64_t pady0, int64_t pady1) {
    TORCH_CHECK(x.is_cuda() && f.is_cuda(), "upfirdn2d: x and f must be CUDA tensors");
    TORCH_CHECK(x.dim() == 4 && f.dim() == 2, "upfirdn2d: x must be 4-D and f 2-D");
    TORCH_CHECK(f.scalar_type() == torch::kFloat, "upfirdn2d: f must be float32");
    TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: bad scaling");
    return upfirdn2d_cuda(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("bias_act", &bias_act, "fused bias + activation + gain + clamp (and its gradient)");
    m.def("upfirdn2d", &upfirdn2d, "up-sample, pad, FIR filter, down-sample");
}
