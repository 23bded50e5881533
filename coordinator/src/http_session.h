// One connection of the HTTP API (http_api.cpp accepts them): reads requests with their limits
// and deadlines, answers /health, /metrics and /v1/models, submits completions to the frontend
// and writes their events back, whole or streamed, and cancels a request whose client went away.
#pragma once

#include "http_server_state.h"

namespace eep::coordinator::http_server {

// Serves `socket` until the client or the server closes it. On the socket's strand.
void start_session(tcp::socket socket, ServerState& state);

// At --max-connections: closes the oldest connection that waits for a request (on its strand;
// the count is briefly one over). False when every connection has a request. Any thread.
bool close_oldest_idle(ServerState& state);

}  // namespace eep::coordinator::http_server
