// ChildProcess::spawn with a real child: what crosses exec.
#include <unistd.h>

#include "fleet.h"

using namespace eep;
using namespace eep::testing;

TEST_CASE("a spawned child inherits stdio and no other descriptor of the parent", "[subprocess]") {
  // A pipe opened without O_CLOEXEC, as Boost.Asio opens its sockets (the coordinator's HTTP
  // listener and connections once lived on in every worker it launched).
  int inheritable[2];
  REQUIRE(::pipe(inheritable) == 0);
  auto held_by_child = [&](int fd) {
    return run_command({"sh", "-c", "test -e /proc/self/fd/" + std::to_string(fd)}, 10s).exit_code;
  };
  CHECK(held_by_child(STDERR_FILENO) == 0);
  CHECK(held_by_child(inheritable[0]) == 1);
  CHECK(held_by_child(inheritable[1]) == 1);
  ::close(inheritable[0]);
  ::close(inheritable[1]);
}
