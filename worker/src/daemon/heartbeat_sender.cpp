#include "eep/worker/daemon/heartbeat_sender.h"

#include "eep/common/log.h"
#include "eep/common/zmq_util.h"

namespace eep::worker {

HeartbeatSender::HeartbeatSender(zmq::context_t& context, Options options)
    : context_(context), options_(std::move(options)), last_turn_(Clock::now()) {
  beat_.generation = -1;
  beat_.rank = -1;
}

HeartbeatSender::~HeartbeatSender() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status HeartbeatSender::start() {
  auto socket = std::make_shared<zmq::socket_t>(context_, zmq::socket_type::dealer);
  set_common_options(*socket);
  socket->set(zmq::sockopt::routing_id, protocol::heartbeat_identity(options_.worker_id));
  // A beat that cannot leave at once is stale by the next one: never queue them behind a peer
  // that does not read, and never hold the exit for them.
  socket->set(zmq::sockopt::sndhwm, 4);
  socket->set(zmq::sockopt::linger, 0);
  if (options_.curve) set_curve_client(*socket, *options_.curve);
  EEP_RETURN_IF_ERROR(connect_socket(*socket, options_.coordinator_endpoint));
  thread_ = std::thread([this, socket] {
    set_thread_log_speaker("worker " + options_.worker_id + " heartbeat");
    uint64_t seq = 1;
    bool stalled = false;
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      const Clock::duration since_turn = Clock::now() - last_turn_;
      if (since_turn > options_.stall_limit) {
        if (!stalled) {
          EEP_LOG_ERROR("the engine thread has not turned for "
                        << std::chrono::duration_cast<std::chrono::milliseconds>(since_turn).count()
                        << " ms: no heartbeat until it does");
        }
        stalled = true;
      } else {
        stalled = false;
        const protocol::Heartbeat beat = beat_;
        lock.unlock();
        const protocol::Frames frames = protocol::encode(
            protocol::make_envelope(beat, seq++, beat.generation, options_.worker_id));
        try {
          // Dropped, not queued, while the coordinator does not read (sndhwm above).
          if (socket->send(zmq::buffer(frames.type),
                           zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
            socket->send(zmq::buffer(frames.json), zmq::send_flags::none);
          }
        } catch (const zmq::error_t& e) {
          EEP_LOG_WARN("heartbeat not sent: " << e.what());
        }
        lock.lock();
      }
      wake_.wait_for(lock, options_.interval, [this] { return stopping_; });
    }
    lock.unlock();
    socket->close();
  });
  return Status::ok();
}

void HeartbeatSender::update(int64_t generation, int rank, const protocol::WorkerLoad& load) {
  std::lock_guard lock(mutex_);
  beat_.generation = generation;
  beat_.rank = rank;
  beat_.load = load;
  last_turn_ = Clock::now();
}

}  // namespace eep::worker
