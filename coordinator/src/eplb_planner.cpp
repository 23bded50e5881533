#include "eep/coordinator/eplb_planner.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include <nlohmann/json.hpp>

#include "eep/common/check.h"

namespace eep::coordinator {
namespace {

// The planning threads' nice value: above the event loop's, so that on a busy host the loop (and
// the tokens it relays) comes first. Per-layer threads started by the planner inherit it.
constexpr int kPlannerNice = 10;

}  // namespace

Result<EplbTestLoad> read_eplb_test_load(const std::string& path) {
  std::ifstream file(path);
  if (!file) return error(ErrorCode::kInvalidArgument, "cannot read --eplb-test-load " + path);
  try {
    const auto c = nlohmann::json::parse(file).at("cases").at(0);
    EplbTestLoad test;
    test.load = c.at("load").get<LoadMatrix>();
    test.config.num_ranks = c.at("num_ranks").get<int>();
    test.config.slots_per_rank = c.at("slots_per_rank").get<int>();
    test.config.num_nodes = c.value("num_nodes", 1);
    test.config.num_groups = c.value("num_groups", 1);
    EEP_RETURN_IF_ERROR(rebalance_experts(LoadMatrix{test.load.at(0)}, test.config).status());
    return test;
  } catch (const nlohmann::json::exception& e) {
    return error(ErrorCode::kInvalidArgument,
                 "--eplb-test-load " + path + ": not a cases.json-format file: " + e.what());
  }
}

PlanResult plan(const PlanRequest& request) {
  PlanResult result;
  result.request_id = request.request_id;
  result.generation = request.generation;
  result.window_steps = request.window_steps;
  result.forced = request.forced;
  result.plan =
      rebalance_experts_from(request.load, request.config, request.current, request.migration);
  return result;
}

EplbPlanner::~EplbPlanner() {
  if (thread_.joinable()) thread_.join();
}

void EplbPlanner::submit(PlanRequest request) {
  EEP_CHECK(!busy());
  done_ = false;
  thread_ = std::thread([this, request = std::move(request)] {
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), kPlannerNice);
    const auto start = std::chrono::steady_clock::now();
    PlanResult result = plan(request);
    if (request.test_load) {
      // As a real rebalance would: a plan from scratch, then one from it on a 10% drift.
      EplbConfig config = request.test_load->config;
      config.num_threads = request.config.num_threads;
      auto scratch = rebalance_experts(request.test_load->load, config);
      if (scratch.is_ok()) {
        LoadMatrix drifted = request.test_load->load;
        for (size_t layer = 0; layer < drifted.size(); ++layer) {
          for (size_t e = 0; e < drifted[layer].size(); ++e)
            drifted[layer][e] *= (e + layer) % 2 ? 1.1 : 0.9;
        }
        (void)rebalance_experts_from(drifted, config, *scratch, request.migration);
      }
    }
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result_ = std::move(result);
    done_ = true;
  });
}

std::optional<PlanResult> EplbPlanner::take() {
  if (!thread_.joinable() || !done_) return std::nullopt;
  thread_.join();
  return std::move(result_);
}

}  // namespace eep::coordinator
