// Throughput of the CPU GEMM (eep::kernels::cpu::matmul_nt) on the model's shapes: prints a table
// of GFLOP/s per shape and thread count. Usage: bench_cpu_gemm [min_seconds_per_shape]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "eep/kernels/gemm.h"

namespace {

struct Shape {
  const char* what;
  int64_t m, n, k;
};

double seconds_per_call(const Shape& s, double min_seconds) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::vector<float> a(s.m * s.k), b(s.n * s.k), c(s.m * s.n);
  for (float& v : a) v = value(rng);
  for (float& v : b) v = value(rng);
  eep::kernels::cpu::matmul_nt(a.data(), b.data(), c.data(), s.m, s.n, s.k);  // warm up
  int64_t calls = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0.0;
  do {
    eep::kernels::cpu::matmul_nt(a.data(), b.data(), c.data(), s.m, s.n, s.k);
    ++calls;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } while (elapsed < min_seconds);
  return elapsed / static_cast<double>(calls);
}

}  // namespace

int main(int argc, char** argv) {
  const double min_seconds = argc > 1 ? std::atof(argv[1]) : 0.5;
  const Shape shapes[] = {
      {"decode qkv-like", 1, 2048, 2048},   {"decode expert gate", 1, 768, 2048},
      {"decode expert down", 1, 2048, 768}, {"prefill 64", 64, 2048, 2048},
      {"prefill 256", 256, 2048, 2048},     {"expert group 16", 16, 768, 2048},
      {"odd sizes", 37, 1001, 515},
  };
  const int max_threads = eep::kernels::cpu::gemm_num_threads();
  std::printf("%-20s %6s %6s %6s %8s %10s %10s\n", "shape", "M", "N", "K", "threads", "ms/call",
              "GFLOP/s");
  for (const Shape& s : shapes) {
    for (int threads = 1; threads <= max_threads; threads *= 2) {
      eep::kernels::cpu::set_gemm_num_threads(threads);
      const double t = seconds_per_call(s, min_seconds);
      std::printf("%-20s %6lld %6lld %6lld %8d %10.3f %10.2f\n", s.what, (long long)s.m,
                  (long long)s.n, (long long)s.k, threads, t * 1e3,
                  2.0 * s.m * s.n * s.k / t * 1e-9);
    }
  }
  return 0;
}
