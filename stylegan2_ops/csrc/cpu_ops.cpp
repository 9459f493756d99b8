#include <torch/extension.h>
#include <vector>

// The CPU extension's Python bindings (nada_cpu_ops): the Winograd convolution
// (winograd_cpu.cpp, used by stylegan2_ops/conv.py) and the modulated conv's fused epilogue
// (epilogue_cpu.cpp, used by stylegan2_ops/epilogue.py).

at::Tensor conv_forward(at::Tensor x, c10::optional<at::Tensor> scale, at::Tensor U);
std::vector<at::Tensor> conv_backward(at::Tensor x, c10::optional<at::Tensor> scale, at::Tensor g, at::Tensor Uf,
                                      bool need_x, bool need_w, bool need_scale);
at::Tensor epilogue_forward(at::Tensor y, at::Tensor d, at::Tensor b, c10::optional<at::Tensor> z, double alpha,
                            bool nhwc);
std::vector<at::Tensor> epilogue_backward(at::Tensor grad, at::Tensor out, at::Tensor y, at::Tensor d, int64_t nz,
                                          double alpha, bool nhwc);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("conv_forward", &conv_forward, "x [N,H,W,C], scale [N,C] or None, U [36,C,K] -> y [N,H,W,K]");
  m.def("conv_backward", &conv_backward,
        "x, scale, grad [N,H,W,K], Uf [36,K,C], need_x, need_w, need_scale -> (grad_x, dU [36,K,C], grad_scale)");
  m.def("epilogue_forward", &epilogue_forward, "y, d [N,C], b [C], z [1|N,P] or None, alpha, nhwc -> out");
  m.def("epilogue_backward", &epilogue_backward,
        "grad, out, y, d, nz, alpha, nhwc -> (grad_y, grad_d [N,C], grad_b [C], grad_z [nz,P])");
}
