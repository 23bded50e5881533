// `eepctl status --watch [SECONDS]`: the fleet as a view refreshed every SECONDS (1 by default)
// until Ctrl-C: generation and size, the running scale's stage and how long it has been in it,
// tokens/s overall and per rank (from the workers' token counts between two refreshes), and one
// row per worker.
//
// On a terminal each frame redraws the screen in place with plain VT100 sequences (cursor home,
// erase line / below), which every terminal and ssh session understands; piped into a file or
// another program, frames follow one another, each opened by its header line, so a script or a
// test reads every frame. With --json each refresh prints the status reply as one JSON line.
// SIGINT, SIGTERM and SIGHUP end it with exit code 0 after restoring the cursor.
#pragma once

#include <chrono>
#include <string>

#include "eep/common/admin_client.h"
#include "eep/common/protocol.h"

namespace eep::ctl {

struct WatchOptions {
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds reply_timeout{5000};
  bool json_output = false;
};

// One frame, without terminal control sequences. `previous` is the status of the last refresh
// (nullptr for the first), `elapsed_s` the time between the two, for tokens/s. `header` is the
// first line (the command, the time).
std::string format_watch_frame(const protocol::StatusReply& status,
                               const protocol::StatusReply* previous, double elapsed_s,
                               const std::string& header);

// Runs until a signal ends it; returns the exit code (0). A status that fails is shown in the
// frame and asked again at the next refresh (the coordinator may be restarting).
int run_status_watch(AdminClient& client, const WatchOptions& options);

}  // namespace eep::ctl
