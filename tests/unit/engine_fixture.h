// Engines over a generated model in one test process: the ranks of a fleet are threads with Gloo
// groups over loopback (test_engine_eplb.cpp, test_engine_generation.cpp,
// test_engine_sampling.cpp).
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <thread>
#include <utility>

#include "eep/worker/comm/kv_store.h"
#include "eep/worker/engine/engine_core.h"
#include "eep/worker/model/random_checkpoint.h"
#include "scratch_dir.h"

namespace eep::testing {

// The tiny preset with the default random weights, written once per test process.
inline const std::string& tiny_model() {
  static const std::string dir = [] {
    const auto path = process_scratch_dir("eep_unit_tiny_model") / "tiny";
    auto config = worker::model_preset("tiny");
    REQUIRE(config.is_ok());
    REQUIRE(worker::write_random_checkpoint(config.value(), {}, path).is_ok());
    return path.string();
  }();
  return dir;
}

inline std::unique_ptr<worker::EngineCore> make_engine(const std::string& model_dir,
                                                       int num_kv_blocks = 128) {
  using namespace std::chrono_literals;
  worker::EngineOptions options;
  options.model_dir = model_dir;
  options.backend.num_kv_blocks = num_kv_blocks;
  options.backend.group_timeout = 20s;
  auto engine = worker::EngineCore::create(options);
  REQUIRE(engine.is_ok());
  return std::move(engine).value();
}

// Starts building, waits until this rank has built it, and orders the switch as the coordinator
// does once every member built it (the next step switches).
inline Status build(worker::EngineCore& engine, const protocol::Assign& assign) {
  using namespace std::chrono_literals;
  EEP_RETURN_IF_ERROR(engine.begin_generation(assign));
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    EEP_ASSIGN_OR_RETURN(const bool built, engine.next_generation_built());
    if (built) return engine.order_switch(protocol::Switch{assign.generation, false});
    std::this_thread::sleep_for(1ms);
  }
  return error(ErrorCode::kDeadlineExceeded, "generation not built within 60 s");
}

// Two loopback ports that were free a moment ago, for a generation's control and EP stores.
inline std::pair<int, int> free_store_ports() {
  auto control = worker::StoreServer::start("127.0.0.1", 0);
  auto ep = worker::StoreServer::start("127.0.0.1", 0);
  REQUIRE(control.is_ok());
  REQUIRE(ep.is_ok());
  return {control.value()->port(), ep.value()->port()};
}

}  // namespace eep::testing
