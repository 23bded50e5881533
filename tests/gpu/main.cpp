// The GPU tests' entry point. Without a CUDA device they are skipped, loudly: ctest shows the
// test "gpu" as Skipped (exit code 77) with this message, and scripts/gpu/test.sh runs them on
// the GPU machine.
#define CATCH_CONFIG_RUNNER
#include <cuda_runtime.h>
#include <catch2/catch.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  int num_devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&num_devices);
  if (err != cudaSuccess || num_devices == 0) {
    std::printf(
        "SKIPPED: the GPU tests need a CUDA device (%s); run scripts/gpu/test.sh on the GPU "
        "machine\n",
        err != cudaSuccess ? cudaGetErrorString(err) : "none found");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
