// The daemons under a Type=notify unit (common/include/eep/common/service_notifier.h): a fake
// service manager binds the $NOTIFY_SOCKET datagram socket and reads what they send, with the
// sender's pid (SO_PASSCRED). The coordinator says READY=1 once its sockets are bound; a worker
// once the coordinator accepted its registration, never before; both feed the watchdog at half of
// $WATCHDOG_USEC from their loops and say STOPPING=1 at the end; children do not speak for the
// unit.
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include "fleet.h"

using namespace eep;
using namespace eep::testing;

namespace {

// The watchdog interval the tests give: pings every 200 ms.
constexpr const char* kWatchdogUsec = "400000";

struct Notification {
  pid_t pid = 0;
  std::string text;
  std::chrono::steady_clock::time_point at{};  // when the test read it
};

// systemd's end of sd_notify(3): a unix datagram socket at a path.
class FakeNotifySocket {
 public:
  explicit FakeNotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path_.size() < sizeof(address.sun_path));
    std::memcpy(address.sun_path, path_.c_str(), path_.size() + 1);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    const int on = 1;
    REQUIRE(::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == 0);
  }
  ~FakeNotifySocket() { ::close(fd_); }
  FakeNotifySocket(const FakeNotifySocket&) = delete;
  FakeNotifySocket& operator=(const FakeNotifySocket&) = delete;

  const std::string& path() const { return path_; }

  // Everything received so far, in order.
  const std::vector<Notification>& received() {
    drain();
    return received_;
  }

  // The first message (from index `from` on) that holds `line` as one of its lines, waiting up
  // to `timeout` for it.
  std::optional<Notification> wait_for(const std::string& line, std::chrono::milliseconds timeout,
                                       size_t from = 0) {
    std::optional<Notification> found;
    eventually(
        [&] {
          drain();
          for (size_t i = from; i < received_.size(); ++i) {
            if (has_line(received_[i].text, line)) {
              found = received_[i];
              return true;
            }
          }
          return false;
        },
        timeout);
    return found;
  }

  static bool has_line(const std::string& text, const std::string& line) {
    std::istringstream lines(text);
    std::string each;
    while (std::getline(lines, each)) {
      if (each == line) return true;
    }
    return false;
  }

 private:
  void drain() {
    while (true) {
      char buffer[4096];
      iovec iov{buffer, sizeof(buffer)};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
      msghdr message{};
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control;
      message.msg_controllen = sizeof(control);
      const ssize_t n = ::recvmsg(fd_, &message, MSG_DONTWAIT);
      if (n < 0) return;
      Notification notification;
      notification.text.assign(buffer, static_cast<size_t>(n));
      notification.at = std::chrono::steady_clock::now();
      for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
          ucred credentials{};
          std::memcpy(&credentials, CMSG_DATA(c), sizeof(credentials));
          notification.pid = credentials.pid;
        }
      }
      received_.push_back(std::move(notification));
    }
  }

  std::string path_;
  int fd_ = -1;
  std::vector<Notification> received_;
};

size_t count_from(const std::vector<Notification>& notifications, const std::string& line,
                  std::chrono::steady_clock::time_point since) {
  size_t count = 0;
  for (const Notification& n : notifications) {
    if (n.at >= since && FakeNotifySocket::has_line(n.text, line)) ++count;
  }
  return count;
}

std::map<std::string, std::string> notify_env(const FakeNotifySocket& socket) {
  return {{"NOTIFY_SOCKET", socket.path()}, {"WATCHDOG_USEC", kWatchdogUsec}};
}

// WATCHDOG=1 pings over `window`: about one per 200 ms (the loops turn at least that often), and
// not a flood (one per loop turn would be hundreds).
void check_watchdog_pings(FakeNotifySocket& notify, std::chrono::milliseconds window) {
  notify.received();  // what came before the window is stamped before it
  const auto since = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(window);
  const size_t pings = count_from(notify.received(), "WATCHDOG=1", since);
  const size_t expected = static_cast<size_t>(window / 200ms);
  INFO("WATCHDOG=1 pings in " << window.count() << " ms: " << pings);
  CHECK(pings + 2 >= expected);
  CHECK(pings <= expected + 2);
}

bool built_with_libsystemd() {
#if EEP_TEST_LIBSYSTEMD
  return true;
#else
  WARN(
      "SKIPPED: this build has no libsystemd (EEP_SYSTEMD, docs/dependencies.md): the daemons "
      "send no notifications");
  return false;
#endif
}

}  // namespace

TEST_CASE(
    "coordinator under systemd: READY=1 once its sockets are bound, watchdog pings, "
    "STOPPING=1, nothing from its workers",
    "[service_notify]") {
  if (!built_with_libsystemd()) return;
  TempDir dir;
  FakeNotifySocket notify(dir.file("notify"));
  // One worker from the local launcher: it must not inherit the unit's socket.
  Fleet fleet({"--dp", "1"}, notify_env(notify));
  const pid_t coordinator_pid = fleet.coordinator().pid();

  const auto ready = notify.wait_for("READY=1", 10s);
  INFO(fleet.coordinator_log());
  REQUIRE(ready);
  CHECK(ready->pid == coordinator_pid);
  CHECK_THAT(ready->text, Catch::Contains("STATUS=serving: admin " + fleet.admin()));
  // READY=1 came after the ready file: every socket was bound before it.
  CHECK(fleet.eepctl({"status"}).exit_code == 0);

  REQUIRE(eventually([&] { return fleet.has_active(1); }, 30s));
  check_watchdog_pings(notify, 1200ms);

  REQUIRE(fleet.eepctl({"shutdown"}).exit_code == 0);
  CHECK(fleet.coordinator().wait_for(20s));
  const auto stopping = notify.wait_for("STOPPING=1", 1s);
  CHECK(stopping);
  // Only the coordinator spoke: the worker it started did not inherit $NOTIFY_SOCKET.
  for (const Notification& n : notify.received()) {
    INFO(n.text);
    CHECK(n.pid == coordinator_pid);
  }
}

TEST_CASE(
    "worker under systemd: READY=1 only once registered, watchdog pings while it waits "
    "and serves, STOPPING=1",
    "[service_notify]") {
  if (!built_with_libsystemd()) return;
  TempDir dir;

  SECTION("no coordinator: watchdog pings, no READY=1, exit 1 for systemd to restart it") {
    FakeNotifySocket notify(dir.file("notify"));
    SpawnOptions options;
    options.log_path = dir.file("worker.log");
    options.env = notify_env(notify);
    auto worker = ChildProcess::spawn(
        {bin("eep-worker"), "--coordinator", "tcp://127.0.0.1:" + std::to_string(free_port()),
         "--worker-id", "lonely", "--host", "127.0.0.1", "--register-timeout-ms", "1500"},
        options);
    REQUIRE(worker.is_ok());
    check_watchdog_pings(notify, 1000ms);
    REQUIRE(worker->wait_for(10s));
    const int status = worker->wait_status().value_or(-1);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 1));
    INFO(read_file(dir.file("worker.log")));
    CHECK_FALSE(notify.wait_for("READY=1", 0ms));
  }

  SECTION("a coordinator accepts it: READY=1 when it is a spare, then pings as it idles") {
    FakeNotifySocket notify(dir.file("notify"));
    Fleet fleet({"--launcher", "none", "--dp", "0"});
    SpawnOptions options;
    options.log_path = dir.file("worker.log");
    options.env = notify_env(notify);
    auto worker = ChildProcess::spawn({bin("eep-worker"), "--coordinator", fleet.control(),
                                       "--worker-id", "self-0", "--host", "127.0.0.1"},
                                      options);
    REQUIRE(worker.is_ok());
    const auto ready = notify.wait_for("READY=1", 20s);
    INFO(fleet.coordinator_log() << read_file(dir.file("worker.log")));
    REQUIRE(ready);
    CHECK(ready->pid == worker->pid());
    CHECK_THAT(ready->text, Catch::Contains("STATUS=registered with " + fleet.control()));
    // When it said READY=1 the coordinator had it as a spare already.
    const std::vector<json> spares = fleet.workers_in("SPARE");
    REQUIRE(spares.size() == 1);
    CHECK(spares[0]["id"] == "self-0");
    // Idle, its loop waits a heartbeat interval (1 s) per turn: capped to feed the watchdog.
    check_watchdog_pings(notify, 1200ms);

    const size_t before_stop = notify.received().size();
    worker->signal(SIGTERM);
    CHECK(worker->wait_for(10s));
    CHECK(notify.wait_for("STOPPING=1", 1s, before_stop));
  }
}
