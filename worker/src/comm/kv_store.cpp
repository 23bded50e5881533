#include "eep/worker/comm/kv_store.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <gloo/common/error.h>
#include <zmq_addon.hpp>

#include "eep/common/log.h"
#include "eep/common/zmq_util.h"

namespace eep::worker {
namespace {

// Operations and reply codes on the wire (see kv_store.h).
constexpr std::string_view kOpSet = "set";
constexpr std::string_view kOpGet = "get";
constexpr std::string_view kOpCheck = "check";
constexpr std::string_view kOpWait = "wait";
constexpr std::string_view kOpAdd = "add";
constexpr std::string_view kOpDeletePrefix = "delete_prefix";
constexpr std::string_view kReplyOk = "ok";
constexpr std::string_view kReplyMissing = "missing";
constexpr std::string_view kReplyTimeout = "timeout";
constexpr std::string_view kReplyError = "error";

std::string to_string(const zmq::message_t& message) {
  return message.to_string();
}

bool parse_int64(const std::string& text, int64_t* value) {
  std::istringstream is(text);
  is >> *value;
  return !is.fail() && is.eof();
}

std::string join_keys(const std::vector<std::string>& keys) {
  std::string joined;
  for (const auto& key : keys) joined += (joined.empty() ? "" : ", ") + key;
  return joined;
}

}  // namespace

std::string ephemeral_port_hint(int port, const std::string& ip_local_port_range) {
  std::istringstream is(ip_local_port_range);
  int first = 0, last = 0;
  if (port == 0 || !(is >> first >> last) || port < first || port > last) return "";
  return "; port " + std::to_string(port) + " is inside this host's ephemeral port range " +
         std::to_string(first) + "-" + std::to_string(last) +
         " (net.ipv4.ip_local_port_range), from which outgoing connections take ports: give the "
         "coordinator a --port-range outside it";
}

std::string store_prefix(uint64_t generation, const std::string& group_name) {
  return "g" + std::to_string(generation) + "/" + group_name + "/";
}

// ------------------------------------------------------------------------------------------
// StoreServer

Result<std::unique_ptr<StoreServer>> StoreServer::start(const std::string& host, int port) {
  if (port < 0 || port > 65535) {
    return error(ErrorCode::kInvalidArgument,
                 "store port " + std::to_string(port) + " is out of range (0 for any free port)");
  }
  std::unique_ptr<StoreServer> server(new StoreServer());
  server->socket_ = zmq::socket_t(server->context_, zmq::socket_type::router);
  set_common_options(server->socket_);
  server->socket_.set(zmq::sockopt::maxmsgsize, kMaxMessageBytes);
  const std::string requested =
      "tcp://" + host + ":" + (port == 0 ? std::string("*") : std::to_string(port));
  auto bound = bind_socket(server->socket_, requested);
  if (!bound.is_ok()) {
    std::ifstream range_file("/proc/sys/net/ipv4/ip_local_port_range");
    std::stringstream range;
    range << range_file.rdbuf();
    return error(bound.status().code(),
                 bound.status().message() + ephemeral_port_hint(port, range.str()));
  }
  server->endpoint_ = bound.value();
  server->port_ = std::stoi(server->endpoint_.substr(server->endpoint_.rfind(':') + 1));
  server->thread_ = std::thread([raw = server.get()] { raw->serve(); });
  EEP_LOG_DEBUG("store server serving on " << server->endpoint_);
  return server;
}

StoreServer::~StoreServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  socket_.close();
  context_.close();
}

void StoreServer::serve() {
  using Clock = std::chrono::steady_clock;
  // A wait that is not satisfied yet: answered when its keys are all set or at its deadline.
  struct ParkedWait {
    std::string identity;
    std::string request_id;
    std::vector<std::string> keys;
    Clock::time_point deadline;
  };
  std::map<std::string, std::string> values;
  std::vector<ParkedWait> parked;

  auto reply = [&](const std::string& identity, const std::string& request_id,
                   std::initializer_list<std::string_view> frames) {
    // A client that went away is not our problem: ROUTER drops what it cannot route.
    socket_.send(zmq::buffer(identity), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(request_id), zmq::send_flags::sndmore);
    size_t idx = 0;
    for (auto frame : frames) {
      const bool last = ++idx == frames.size();
      socket_.send(zmq::buffer(frame), last ? zmq::send_flags::none : zmq::send_flags::sndmore);
    }
  };
  auto all_set = [&](const std::vector<std::string>& keys) {
    return std::all_of(keys.begin(), keys.end(),
                       [&](const std::string& key) { return values.count(key) > 0; });
  };
  auto wake_parked = [&] {
    for (auto it = parked.begin(); it != parked.end();) {
      if (all_set(it->keys)) {
        reply(it->identity, it->request_id, {kReplyOk});
        it = parked.erase(it);
      } else {
        ++it;
      }
    }
  };

  auto handle = [&](std::vector<zmq::message_t>& frames) {
    // [identity][request_id][op][args...]
    if (frames.size() < 3) return;  // not one of ours; nothing sensible to answer
    const std::string identity = to_string(frames[0]);
    const std::string request_id = to_string(frames[1]);
    const std::string op = to_string(frames[2]);
    std::vector<std::string> args;
    for (size_t idx = 3; idx < frames.size(); ++idx) args.push_back(to_string(frames[idx]));

    if (op == kOpSet && args.size() == 2) {
      values[args[0]] = args[1];
      reply(identity, request_id, {kReplyOk});
      wake_parked();
    } else if (op == kOpGet && args.size() == 1) {
      auto it = values.find(args[0]);
      if (it == values.end()) {
        reply(identity, request_id, {kReplyMissing});
      } else {
        reply(identity, request_id, {kReplyOk, it->second});
      }
    } else if (op == kOpCheck) {
      reply(identity, request_id, {all_set(args) ? kReplyOk : kReplyMissing});
    } else if (op == kOpWait && !args.empty()) {
      int64_t timeout_ms = 0;
      if (!parse_int64(args[0], &timeout_ms) || timeout_ms < 0) {
        reply(identity, request_id, {kReplyError, "bad wait timeout '" + args[0] + "'"});
        return;
      }
      std::vector<std::string> keys(args.begin() + 1, args.end());
      if (all_set(keys)) {
        reply(identity, request_id, {kReplyOk});
      } else {
        parked.push_back({identity, request_id, std::move(keys),
                          Clock::now() + std::chrono::milliseconds(timeout_ms)});
      }
    } else if (op == kOpAdd && args.size() == 2) {
      int64_t delta = 0;
      int64_t current = 0;
      auto it = values.find(args[0]);
      if (!parse_int64(args[1], &delta) ||
          (it != values.end() && !parse_int64(it->second, &current))) {
        reply(
            identity, request_id,
            {kReplyError, "add needs an integer delta and an integer (or absent) key " + args[0]});
        return;
      }
      const std::string updated = std::to_string(current + delta);
      values[args[0]] = updated;
      reply(identity, request_id, {kReplyOk, updated});
      wake_parked();
    } else if (op == kOpDeletePrefix && args.size() == 1) {
      int64_t num_deleted = 0;
      for (auto it = values.lower_bound(args[0]);
           it != values.end() && it->first.compare(0, args[0].size(), args[0]) == 0;) {
        it = values.erase(it);
        ++num_deleted;
      }
      reply(identity, request_id, {kReplyOk, std::to_string(num_deleted)});
    } else {
      reply(identity, request_id,
            {kReplyError, "unknown store operation '" + op + "' with " +
                              std::to_string(args.size()) + " arguments"});
    }
  };

  while (!stop_) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, kPollInterval);
    while (true) {
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
        break;
      }
      handle(frames);
    }
    const auto now = Clock::now();
    for (auto it = parked.begin(); it != parked.end();) {
      if (it->deadline <= now) {
        reply(it->identity, it->request_id, {kReplyTimeout});
        it = parked.erase(it);
      } else {
        ++it;
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// StoreClient

Result<std::unique_ptr<StoreClient>> StoreClient::connect(const std::string& endpoint) {
  std::unique_ptr<StoreClient> client(new StoreClient());
  client->endpoint_ = endpoint;
  client->socket_.emplace(client->context_, zmq::socket_type::dealer);
  set_common_options(*client->socket_);
  EEP_RETURN_IF_ERROR(connect_socket(*client->socket_, endpoint));
  return client;
}

Result<std::unique_ptr<StoreClient>> StoreClient::connect(const std::string& host, int port) {
  if (port <= 0 || port > 65535) {
    return error(ErrorCode::kInvalidArgument,
                 "store port " + std::to_string(port) + " is out of range 1..65535");
  }
  return connect("tcp://" + host + ":" + std::to_string(port));
}

StoreClient::~StoreClient() {
  socket_.reset();
  context_.close();
}

void StoreClient::reconnect() {
  // Drops whatever is queued for a server that never answered, so a stale request is not
  // delivered (and applied) when the server comes back.
  socket_.emplace(context_, zmq::socket_type::dealer);
  set_common_options(*socket_);
  Status status = connect_socket(*socket_, endpoint_);
  EEP_CHECK_MSG(status.is_ok(), status.to_string());  // the same endpoint connected before
}

Result<std::vector<std::string>> StoreClient::request(const std::vector<std::string>& frames,
                                                      std::chrono::milliseconds reply_timeout) {
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t request_id = next_request_id_++;
  std::string id_frame(sizeof(request_id), '\0');
  std::memcpy(id_frame.data(), &request_id, sizeof(request_id));

  socket_->send(zmq::buffer(id_frame), zmq::send_flags::sndmore);
  for (size_t idx = 0; idx < frames.size(); ++idx) {
    const bool last = idx + 1 == frames.size();
    socket_->send(zmq::buffer(frames[idx]),
                  last ? zmq::send_flags::none : zmq::send_flags::sndmore);
  }

  const auto deadline = std::chrono::steady_clock::now() + reply_timeout;
  while (true) {
    const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (remaining.count() <= 0) break;
    zmq::pollitem_t item{socket_->handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, remaining) == 0) continue;
    std::vector<zmq::message_t> reply;
    if (!zmq::recv_multipart(*socket_, std::back_inserter(reply), zmq::recv_flags::dontwait)) {
      continue;
    }
    if (reply.size() < 2 || to_string(reply[0]) != id_frame) continue;  // a late, stale reply
    std::vector<std::string> values;
    for (size_t idx = 1; idx < reply.size(); ++idx) values.push_back(to_string(reply[idx]));
    if (values[0] == kReplyError) {
      return error(ErrorCode::kInternal,
                   "store server at " + endpoint_ + " refused '" + frames[0] +
                       "': " + (values.size() > 1 ? values[1] : std::string()));
    }
    return values;
  }
  reconnect();
  return error(ErrorCode::kUnavailable,
               "store server at " + endpoint_ + " did not answer '" + frames[0] + "' within " +
                   std::to_string(reply_timeout.count()) +
                   " ms: its rank 0 is gone or unreachable; roll back this group");
}

Status StoreClient::set_value(const std::string& key, const std::string& value) {
  EEP_ASSIGN_OR_RETURN(auto reply, request({std::string(kOpSet), key, value}, kRequestTimeout));
  return Status::ok();
}

Result<std::string> StoreClient::get_value(const std::string& key) {
  EEP_ASSIGN_OR_RETURN(auto reply, request({std::string(kOpGet), key}, kRequestTimeout));
  if (reply[0] == kReplyMissing) {
    return error(ErrorCode::kNotFound, "key " + key + " is not set in store " + endpoint_);
  }
  if (reply.size() != 2) return error(ErrorCode::kInternal, "malformed get reply");
  return reply[1];
}

Result<std::string> StoreClient::wait_value(const std::string& key,
                                            std::chrono::milliseconds timeout) {
  EEP_RETURN_IF_ERROR(wait_keys({key}, timeout));
  return get_value(key);
}

Result<bool> StoreClient::check(const std::vector<std::string>& keys) {
  std::vector<std::string> frames{std::string(kOpCheck)};
  frames.insert(frames.end(), keys.begin(), keys.end());
  EEP_ASSIGN_OR_RETURN(auto reply, request(frames, kRequestTimeout));
  return reply[0] == kReplyOk;
}

Status StoreClient::wait_keys(const std::vector<std::string>& keys,
                              std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + timeout;
  while (true) {
    const auto remaining =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (remaining.count() <= 0) break;
    const auto slice = std::min(remaining, kWaitSlice);
    std::vector<std::string> frames{std::string(kOpWait), std::to_string(slice.count())};
    frames.insert(frames.end(), keys.begin(), keys.end());
    EEP_ASSIGN_OR_RETURN(auto reply, request(frames, slice + kRequestTimeout));
    if (reply[0] == kReplyOk) return Status::ok();
  }
  // Name what is missing, so the log says which rank never arrived.
  std::vector<std::string> missing;
  for (const auto& key : keys) {
    auto set = check({key});
    if (!set.is_ok()) return set.status();
    if (!*set) missing.push_back(key);
  }
  if (missing.empty()) return Status::ok();  // arrived at the last moment
  return error(ErrorCode::kDeadlineExceeded,
               "keys [" + join_keys(missing) + "] did not appear in store " + endpoint_ +
                   " within " + std::to_string(timeout.count()) +
                   " ms: a rank of this group never arrived; roll back this group");
}

Result<int64_t> StoreClient::add(const std::string& key, int64_t delta) {
  EEP_ASSIGN_OR_RETURN(auto reply,
                       request({std::string(kOpAdd), key, std::to_string(delta)}, kRequestTimeout));
  int64_t value = 0;
  if (reply.size() != 2 || !parse_int64(reply[1], &value)) {
    return error(ErrorCode::kInternal, "malformed add reply from store " + endpoint_);
  }
  return value;
}

Result<int64_t> StoreClient::delete_prefix(const std::string& prefix) {
  EEP_ASSIGN_OR_RETURN(auto reply,
                       request({std::string(kOpDeletePrefix), prefix}, kRequestTimeout));
  int64_t num_deleted = 0;
  if (reply.size() != 2 || !parse_int64(reply[1], &num_deleted)) {
    return error(ErrorCode::kInternal, "malformed delete_prefix reply from store " + endpoint_);
  }
  return num_deleted;
}

// gloo::rendezvous::Store: Gloo reports errors by exception.

void StoreClient::set(const std::string& key, const std::vector<char>& data) {
  Status status = set_value(key, std::string(data.begin(), data.end()));
  if (!status.is_ok()) throw gloo::IoException(status.to_string());
}

std::vector<char> StoreClient::get(const std::string& key) {
  auto value = wait_value(key, kGlooGetTimeout);
  if (!value.is_ok()) throw gloo::IoException(value.status().to_string());
  return std::vector<char>(value->begin(), value->end());
}

void StoreClient::wait(const std::vector<std::string>& keys) {
  wait(keys, kGlooGetTimeout);
}

void StoreClient::wait(const std::vector<std::string>& keys,
                       const std::chrono::milliseconds& timeout) {
  Status status = wait_keys(keys, timeout);
  if (!status.is_ok()) throw gloo::IoException(status.to_string());
}

}  // namespace eep::worker
