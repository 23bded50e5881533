// bench_moe_layer: the MoE block of one layer on one GPU as the CUDA backend runs it: router
// product (cuBLAS, fp32 logits), top-k, the exchange and the grouped expert GEMMs of
// MoeDispatcherCuda (EP=1), the combine into the fp32 residual. Random bf16 weights at the
// Qwen3-30B-A3B shape by default. Prints time and TFLOP/s (expert FLOPs: 3 products of
// 2 * rows * hidden * intermediate per routed token-expert pair, the router's 2 * T * H * E).
// scripts/gpu/bench_moe_transformers.py times transformers' Qwen3MoeSparseMoeBlock on the same
// shapes, so scripts/gpu/bench.sh prints both from one run.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <random>
#include <sstream>

#include <cuda_bf16.h>

#include "eep/common/config.h"
#include "eep/kernels/cuda/gemm.h"
#include "eep/kernels/cuda/router.h"
#include "eep/worker/cuda/moe_dispatcher_cuda.h"

using namespace eep;
using namespace eep::worker;
using kernels::cuda::bf16;

namespace {

#define CHECK_CUDA(expr)                                                 \
  do {                                                                   \
    cudaError_t err_ = (expr);                                           \
    if (err_ != cudaSuccess) {                                           \
      std::fprintf(stderr, "%s: %s\n", #expr, cudaGetErrorString(err_)); \
      std::exit(1);                                                      \
    }                                                                    \
  } while (0)

template <typename T>
T* device_random(size_t n, float scale, uint64_t seed) {
  std::vector<bf16> host(n);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  for (auto& v : host) v = __float2bfloat16(dist(rng));
  T* ptr = nullptr;
  CHECK_CUDA(cudaMalloc(&ptr, n * sizeof(T)));
  CHECK_CUDA(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  return ptr;
}

}  // namespace

int main(int argc, char** argv) {
  int hidden = 2048, intermediate = 768, experts = 128, top_k = 8, iters = 50;
  std::string tokens_text = "256,4096";
  CLI::App app{"bench_moe_layer: one MoE block on one GPU"};
  app.add_option("--hidden", hidden)->capture_default_str();
  app.add_option("--intermediate", intermediate)->capture_default_str();
  app.add_option("--experts", experts)->capture_default_str();
  app.add_option("--top-k", top_k)->capture_default_str();
  app.add_option("--tokens", tokens_text)->capture_default_str();
  app.add_option("--iters", iters)->capture_default_str();
  if (auto code = parse_args(app, argc, argv)) return *code;
  std::vector<int64_t> token_counts;
  {
    std::stringstream stream(tokens_text);
    std::string item;
    while (std::getline(stream, item, ',')) token_counts.push_back(std::stoll(item));
  }
  const int64_t max_tokens = *std::max_element(token_counts.begin(), token_counts.end());
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t stream = nullptr;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  // Weights: router [E, H]; experts w13 [E, 2I, H], w2 [E, H, I] (std 0.02 like the checkpoints).
  bf16* router = device_random<bf16>(size_t(experts) * hidden, 0.02f, 1);
  bf16* w13 = device_random<bf16>(size_t(experts) * 2 * intermediate * hidden, 0.02f, 2);
  bf16* w2 = device_random<bf16>(size_t(experts) * hidden * intermediate, 0.02f, 3);
  bf16* h = device_random<bf16>(size_t(max_tokens) * hidden, 1.0f, 4);
  float *x = nullptr, *logits = nullptr, *topk_w = nullptr;
  int32_t* topk_ids = nullptr;
  CHECK_CUDA(cudaMalloc(&x, size_t(max_tokens) * hidden * sizeof(float)));
  CHECK_CUDA(cudaMemset(x, 0, size_t(max_tokens) * hidden * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&logits, size_t(max_tokens) * experts * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&topk_w, size_t(max_tokens) * top_k * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&topk_ids, size_t(max_tokens) * top_k * sizeof(int32_t)));

  auto placement = Placement::round_robin(1, experts, 1, experts);
  EEP_CHECK(placement.is_ok());
  auto moe = MoeDispatcherCuda::create(placement.value(), 0, nullptr, max_tokens, hidden,
                                       intermediate, top_k, stream);
  EEP_CHECK_MSG(moe.is_ok(), moe.status().to_string());
  kernels::cuda::Blas blas(stream);
  EEP_CHECK(blas.ok());

  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  std::printf("GPU: %s\n", prop.name);
  std::printf("MoE block, hidden %d, intermediate %d, %d experts, top-%d, bf16 (ours, EP=1)\n",
              hidden, intermediate, experts, top_k);
  std::printf("%8s %12s %12s %12s\n", "tokens", "ms", "TFLOP/s", "expert ms");
  for (int64_t tokens : token_counts) {
    auto block = [&](bool with_router) {
      if (with_router) {
        EEP_CHECK(blas.matmul_nt(h, router, logits, tokens, experts, hidden, 0.0f) ==
                  CUBLAS_STATUS_SUCCESS);
        CHECK_CUDA(kernels::cuda::router_topk(logits, tokens, experts, top_k, true, nullptr,
                                              topk_ids, topk_w, stream));
      }
      EEP_CHECK((*moe)->forward(0, h, topk_ids, topk_w, tokens, tokens, {w13, w2}, x).is_ok());
    };
    std::vector<float> times[2];
    for (int with_router = 1; with_router >= 0; --with_router) {
      for (int i = 0; i < 5; ++i) block(true);  // warm up (and route once)
      for (int i = 0; i < iters; ++i) {
        CHECK_CUDA(cudaEventRecord(start, stream));
        block(with_router == 1);
        CHECK_CUDA(cudaEventRecord(stop, stream));
        CHECK_CUDA(cudaEventSynchronize(stop));
        float ms = 0;
        CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
        times[with_router].push_back(ms);
      }
      std::sort(times[with_router].begin(), times[with_router].end());
    }
    const double ms = times[1][times[1].size() / 2];
    const double expert_ms = times[0][times[0].size() / 2];
    const double flops = 2.0 * tokens * hidden * experts +
                         3.0 * 2.0 * tokens * top_k * double(hidden) * intermediate;
    std::printf("%8lld %12.3f %12.1f %12.3f\n", static_cast<long long>(tokens), ms,
                flops / (ms * 1e-3) / 1e12, expert_ms);
  }
  return 0;
}
