#include "eep/common/admin_client.h"

#include <CLI/CLI.hpp>

#include "eep/common/token_file.h"
#include "eep/common/zmq_util.h"

namespace eep {

using Clock = std::chrono::steady_clock;

CLI::Option* add_admin_client_options(CLI::App& app, AdminClientOptions& options,
                                      const std::string& endpoint_help) {
  CLI::Option* endpoint = app.add_option("--admin", options.endpoint, endpoint_help);
  app.add_option("--token-file,--admin-token-file", options.token_file,
                 "Admin token file (when the coordinator has --admin-token-file)");
  add_client_key_options(app, options.keys, "admin");
  return endpoint;
}

Result<AdminConnection> resolve_admin_connection(const AdminClientOptions& options) {
  AdminConnection connection;
  connection.endpoint = options.endpoint;
  if (!options.token_file.empty()) {
    EEP_ASSIGN_OR_RETURN(connection.token, read_token_file(options.token_file, "admin token"));
  }
  EEP_ASSIGN_OR_RETURN(connection.curve, load_client_keys(options.keys, "admin"));
  return connection;
}

AdminClient::AdminClient(AdminConnection connection)
    : endpoint_(std::move(connection.endpoint)),
      token_(std::move(connection.token)),
      context_(1),
      socket_(context_, zmq::socket_type::dealer) {
  set_common_options(socket_);
  if (connection.curve) set_curve_client(socket_, *connection.curve);
  monitor_ = std::make_unique<HandshakeMonitor>(context_, socket_);
  socket_.connect(endpoint_);
}

Status AdminClient::no_answer(std::chrono::milliseconds timeout) {
  return error(
      ErrorCode::kUnavailable,
      with_handshake_failure(monitor_.get(), "no answer from the coordinator at " + endpoint_ +
                                                 " within " + std::to_string(timeout.count()) +
                                                 " ms; is eep-coordinator running?"));
}

Result<std::string> AdminClient::call_raw(const std::string& frame,
                                          std::chrono::milliseconds timeout) {
  socket_.send(zmq::buffer(frame), zmq::send_flags::none);
  auto frames = recv_frames(socket_, timeout);
  if (!frames || frames->empty()) {
    return no_answer(timeout);
  }
  return frames->back().to_string();
}

Result<nlohmann::json> AdminClient::call(protocol::AdminRequest request,
                                         std::chrono::milliseconds timeout) {
  request.seq = next_seq_++;
  if (request.token.empty()) request.token = token_;
  const std::string text = protocol::serialize(request);
  socket_.send(zmq::buffer(text), zmq::send_flags::none);
  const auto deadline = Clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    auto frames = recv_frames(socket_, left);
    if (!frames || frames->empty()) break;
    auto reply = nlohmann::json::parse(frames->back().to_string_view(), nullptr, false);
    if (reply.is_discarded() || !reply.is_object()) {
      return error(ErrorCode::kInternal, "the coordinator sent a reply that is not JSON");
    }
    // A reply to an earlier request that timed out: not ours.
    if (reply.value("seq", uint64_t{0}) != request.seq && reply.value("seq", uint64_t{0}) != 0) {
      continue;
    }
    Status status = protocol::admin_reply_status(reply);
    if (!status.is_ok()) return status;
    return reply;
  }
  return no_answer(timeout);
}

}  // namespace eep
