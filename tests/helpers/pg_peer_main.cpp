// eep_pg_peer: one rank of a Gloo process group as its own process, for the multi-process
// integration test (tests/integration/test_process_group_processes.cpp). Rank 0 serves the
// group's store, as a worker does, and writes the port it bound to --port-file so the test can
// start the other ranks. Every rank runs uneven all-to-alls and an all-reduce, checks the
// results, and exits 0 when all of them are right (1 with a message on stderr otherwise).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "eep/common/log.h"
#include "eep/worker/comm/kv_store.h"
#include "eep/worker/comm/process_group_gloo.h"

namespace {

using eep::Status;
using namespace eep::worker;

// Bytes rank `from` sends rank `to` in round `round`: uneven, zero for some pairs.
size_t block_bytes(int from, int to, int round) {
  return static_cast<size_t>((from * 5 + to * 3 + round) % 4) * 1000;
}
unsigned char block_byte(int from, int to, int round, size_t idx) {
  return static_cast<unsigned char>(from * 37 + to * 11 + round * 7 + idx);
}

int fail(const std::string& what) {
  std::cerr << "eep_pg_peer: " << what << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"One rank of a Gloo process group (test helper)"};
  int rank = -1;
  int size = 0;
  int store_port = 0;
  int num_rounds = 5;
  std::string port_file;
  app.add_option("--rank", rank)->required();
  app.add_option("--size", size)->required();
  app.add_option("--store-port", store_port, "rank 0: port to serve the store on (0: any)");
  app.add_option("--port-file", port_file, "rank 0: write the store's port here");
  app.add_option("--rounds", num_rounds);
  CLI11_PARSE(app, argc, argv);
  eep::set_log_speaker("pg_peer rank=" + std::to_string(rank));

  std::unique_ptr<StoreServer> server;
  if (rank == 0) {
    auto started = StoreServer::start("127.0.0.1", store_port);
    if (!started.is_ok()) return fail(started.status().to_string());
    server = std::move(started).value();
    store_port = server->port();
    // Written to a temporary name and renamed, so the test never reads half a number.
    const std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << store_port << "\n";
    if (std::rename(tmp.c_str(), port_file.c_str()) != 0) return fail("cannot write " + port_file);
  }

  GroupSpec spec;
  spec.generation = 1;
  spec.name = "ep";
  spec.rank = rank;
  spec.size = size;
  spec.store_port = store_port;
  spec.timeout = std::chrono::seconds(20);
  auto built = create_gloo_group(spec);
  if (!built.is_ok()) return fail(built.status().to_string());
  ProcessGroup& group = **built;
  server.reset();  // the build ended with a barrier: nobody needs the store any more

  for (int round = 0; round < num_rounds; ++round) {
    std::vector<size_t> send_bytes(size), recv_bytes(size);
    for (int peer = 0; peer < size; ++peer) {
      send_bytes[peer] = block_bytes(rank, peer, round);
      recv_bytes[peer] = block_bytes(peer, rank, round);
    }
    std::vector<unsigned char> send(std::accumulate(send_bytes.begin(), send_bytes.end(), 0u));
    std::vector<unsigned char> recv(std::accumulate(recv_bytes.begin(), recv_bytes.end(), 0u));
    for (size_t peer = 0, offset = 0; peer < send_bytes.size(); offset += send_bytes[peer++]) {
      for (size_t idx = 0; idx < send_bytes[peer]; ++idx) {
        send[offset + idx] = block_byte(rank, static_cast<int>(peer), round, idx);
      }
    }
    Status status =
        group.all_to_all_v(send.data(), send_bytes.data(), recv.data(), recv_bytes.data());
    if (!status.is_ok()) return fail(status.to_string());
    for (size_t peer = 0, offset = 0; peer < recv_bytes.size(); offset += recv_bytes[peer++]) {
      for (size_t idx = 0; idx < recv_bytes[peer]; ++idx) {
        if (recv[offset + idx] != block_byte(static_cast<int>(peer), rank, round, idx)) {
          return fail("round " + std::to_string(round) + ": wrong byte " + std::to_string(idx) +
                      " from rank " + std::to_string(peer));
        }
      }
    }
    int64_t checksum = std::accumulate(recv.begin(), recv.end(), int64_t{0});
    int64_t total = checksum;
    status = group.all_reduce(&total, 1, ReduceOp::kSum);
    if (!status.is_ok()) return fail(status.to_string());
    if (round == num_rounds - 1) {
      std::cout << "rank " << rank << " ok checksum " << total << std::endl;
    }
  }
  Status status = group.barrier();
  if (!status.is_ok()) return fail(status.to_string());
  group.destroy();
  return 0;
}
