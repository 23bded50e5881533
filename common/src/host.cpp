#include "eep/common/host.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace eep {

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

std::optional<std::string> local_address_towards(const std::string& endpoint) {
  const std::string tcp = "tcp://";
  if (endpoint.rfind(tcp, 0) != 0) return std::nullopt;
  const std::string host_port = endpoint.substr(tcp.size());
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  const std::string host = host_port.substr(0, colon);
  if (host.front() == '[') return std::nullopt;  // IPv6: not supported by the stores and Gloo
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  // Port 9 (discard): connect() on a UDP socket sends nothing, it only picks the route.
  if (::getaddrinfo(host.c_str(), "9", &hints, &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  std::optional<std::string> address;
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0) {
    sockaddr_in local{};
    socklen_t length = sizeof(local);
    char text[INET_ADDRSTRLEN] = {};
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0 &&
        ::inet_ntop(AF_INET, &local.sin_addr, text, sizeof(text)) != nullptr) {
      address = text;
    }
  }
  if (fd >= 0) ::close(fd);
  ::freeaddrinfo(found);
  return address;
}

}  // namespace eep
