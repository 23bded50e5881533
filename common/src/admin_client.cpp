#include "eep/common/admin_client.h"

#include "eep/common/zmq_util.h"

namespace eep {

using Clock = std::chrono::steady_clock;

AdminClient::AdminClient(std::string endpoint, std::string token)
    : endpoint_(std::move(endpoint)),
      token_(std::move(token)),
      context_(1),
      socket_(context_, zmq::socket_type::dealer) {
  set_common_options(socket_);
  socket_.connect(endpoint_);
}

Result<std::string> AdminClient::call_raw(const std::string& frame,
                                          std::chrono::milliseconds timeout) {
  socket_.send(zmq::buffer(frame), zmq::send_flags::none);
  auto frames = recv_frames(socket_, timeout);
  if (!frames || frames->empty()) {
    return error(ErrorCode::kUnavailable, "no answer from the coordinator at " + endpoint_ +
                                              " within " + std::to_string(timeout.count()) +
                                              " ms; is eep-coordinator running?");
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
  return error(ErrorCode::kUnavailable, "no answer from the coordinator at " + endpoint_ +
                                            " within " + std::to_string(timeout.count()) +
                                            " ms; is eep-coordinator running?");
}

}  // namespace eep
