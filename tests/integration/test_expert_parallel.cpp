// Expert parallelism across real processes (Gloo over loopback): EP=2 and EP=4, with and
// without redundant expert replicas, give the logits of EP=1 on batches of mixed-length
// sequences (prefill of every position and decode steps; one EP=4 rank has no sequences and
// takes dummy steps). The same holds when every layer's experts move peer to peer to a random
// placement between two steps (EPLB's expert moves).
#include <cmath>
#include <cstring>

#include <zmq.hpp>

#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

// float32 "logits" tensor of a file eep_ep_peer wrote: the header is JSON after an 8-byte length.
std::vector<float> read_logits(const std::string& path) {
  const std::string bytes = read_file(path);
  REQUIRE(bytes.size() > 8);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  json header = json::parse(bytes.substr(8, header_len));
  const auto offsets = header["logits"]["data_offsets"];
  const size_t begin = 8 + header_len + offsets[0].get<size_t>();
  const size_t end = 8 + header_len + offsets[1].get<size_t>();
  std::vector<float> logits((end - begin) / sizeof(float));
  std::memcpy(logits.data(), bytes.data() + begin, end - begin);
  return logits;
}

// Runs an EP=size group (moving its experts to the placement of move_seed before decode step
// move_before_step when move_seed is not 0); returns the worst relative error against EP=1
// without moves over every rank's rows.
double compare_with_ep1(const std::string& model, int size, int slots_per_rank, const TempDir& dir,
                        int move_seed = 0, int move_before_step = 1) {
  const int port = free_port();
  std::vector<ChildProcess> ranks;
  for (int rank = 0; rank < size; ++rank) {
    SpawnOptions options;
    options.log_path =
        dir.file("ep" + std::to_string(size) + "_rank" + std::to_string(rank) + ".log");
    auto child = ChildProcess::spawn(
        {bin("eep_ep_peer"), "--model", model, "--rank", std::to_string(rank), "--size",
         std::to_string(size), "--slots-per-rank", std::to_string(slots_per_rank), "--store-port",
         std::to_string(port), "--seqs-of", std::to_string(rank) + "/" + std::to_string(size),
         "--out", dir.file("ep" + std::to_string(size) + "_" + std::to_string(rank) + ".st"),
         "--move-seed", std::to_string(move_seed), "--move-before-step",
         std::to_string(move_before_step)},
        options);
    REQUIRE(child.is_ok());
    ranks.push_back(std::move(child).value());
  }
  for (int rank = 0; rank < size; ++rank) {
    INFO(
        read_file(dir.file("ep" + std::to_string(size) + "_rank" + std::to_string(rank) + ".log")));
    REQUIRE(ranks[rank].wait_for(120s));
    REQUIRE(ranks[rank].describe_exit() == "exited with 0");
    if (move_seed != 0) {
      CHECK_THAT(read_file(dir.file("ep" + std::to_string(size) + "_rank" + std::to_string(rank) +
                                    ".log")),
                 Catch::Contains("moved every layer's experts before step"));
    }
  }
  double worst = 0.0;
  for (int rank = 0; rank < size; ++rank) {
    const std::string reference =
        dir.file("ref_" + std::to_string(size) + "_" + std::to_string(rank) + ".st");
    CommandResult ep1 =
        run_command({bin("eep_ep_peer"), "--model", model, "--seqs-of",
                     std::to_string(rank) + "/" + std::to_string(size), "--out", reference},
                    120s);
    INFO(ep1.output);
    REQUIRE(ep1.exit_code == 0);
    const auto expected = read_logits(reference);
    const auto got =
        read_logits(dir.file("ep" + std::to_string(size) + "_" + std::to_string(rank) + ".st"));
    REQUIRE(got.size() == expected.size());
    double max_diff = 0.0, max_ref = 1e-30;
    for (size_t i = 0; i < got.size(); ++i) {
      max_diff =
          std::max(max_diff, std::isfinite(got[i]) ? std::abs(double(got[i]) - expected[i]) : 1e30);
      max_ref = std::max(max_ref, std::abs(double(expected[i])));
    }
    worst = std::max(worst, max_diff / max_ref);
  }
  WARN("EP=" << size << " slots/rank " << slots_per_rank
             << (move_seed != 0
                     ? " with expert moves before step " + std::to_string(move_before_step)
                     : std::string())
             << ": max relative error vs EP=1 " << worst);
  return worst;
}

}  // namespace

TEST_CASE("EP=2 and EP=4 over Gloo processes give the logits of EP=1", "[ep]") {
  TempDir dir;
  const std::string model = dir.file("tiny");
  CommandResult made = run_command(
      {bin("eep-mkmodel"), "--preset", "tiny", "--seed", "5", "--dtype", "fp32", "--out", model},
      120s);
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  // tiny has 16 experts: 8 or 4 slots per rank hold each once; 10 or 5 add replicas.
  CHECK(compare_with_ep1(model, 2, 8, dir) <= 1e-5);
  CHECK(compare_with_ep1(model, 2, 10, dir) <= 1e-5);
  CHECK(compare_with_ep1(model, 4, 4, dir) <= 1e-5);
  CHECK(compare_with_ep1(model, 4, 5, dir) <= 1e-5);
}

TEST_CASE("EP=2 and EP=4 over Gloo processes with expert moves give the logits of EP=1",
          "[ep][moves]") {
  TempDir dir;
  const std::string model = dir.file("tiny");
  CommandResult made = run_command(
      {bin("eep-mkmodel"), "--preset", "tiny", "--seed", "5", "--dtype", "fp32", "--out", model},
      120s);
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  // Moves before the first decode step and between two decode steps; with and without replicas
  // (the replica counts of the experts change with the move). The CPU backend's results do not
  // depend on where an expert runs or on the replica a token takes, so the moved runs match EP=1
  // bit for bit.
  CHECK(compare_with_ep1(model, 2, 8, dir, 21, 1) == 0.0);
  CHECK(compare_with_ep1(model, 2, 10, dir, 22, 2) == 0.0);
  CHECK(compare_with_ep1(model, 4, 4, dir, 23, 2) == 0.0);
  CHECK(compare_with_ep1(model, 4, 5, dir, 24, 1) == 0.0);
}
