#include "eep/coordinator/port_probe.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "eep/common/host.h"

namespace eep::coordinator {

bool port_held_locally(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  // As a store binds: a port in TIME_WAIT is free, a listening one is not.
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_ANY);  // conflicts with a listener on any address
  address.sin_port = htons(static_cast<uint16_t>(port));
  const bool held = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 &&
                    errno == EADDRINUSE;
  ::close(fd);
  return held;
}

bool is_this_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0 || host == host_name();
}

}  // namespace eep::coordinator
