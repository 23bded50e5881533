// Facts about this machine that processes report about themselves.
#pragma once

#include <optional>
#include <string>

namespace eep {

// gethostname(), or "localhost" when it fails.
std::string host_name();

// The IPv4 address of this machine's interface that routes to the host of `endpoint`
// ("tcp://HOST:PORT", HOST a name or an IPv4 literal): the address peers on that network reach
// this machine at, found without sending a packet (a UDP socket connected there, then
// getsockname). 127.0.0.1 for a coordinator on loopback. nullopt when HOST does not resolve to
// IPv4, there is no route, or the endpoint is not tcp:// (ipc://, inproc://).
std::optional<std::string> local_address_towards(const std::string& endpoint);

}  // namespace eep
