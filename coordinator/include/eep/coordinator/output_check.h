// What a worker's output must be before a client sees it (DESIGN.md section 3, security): a
// worker is a process on the network, so its token batches are checked like any other input.
// Pure; the router calls it for every output of a request routed to that worker.
#pragma once

#include <cstddef>
#include <optional>

#include "eep/common/protocol.h"
#include "eep/common/status.h"

namespace eep::coordinator {

struct OutputLimits {
  std::optional<int> vocab_size;  // unknown until a worker reported its model
  size_t num_tokens_so_far = 0;   // of the request, before this output
  int max_tokens = 0;             // the request's
  int logprobs = -1;              // the request's: -1 none, else the top k asked for
};

// kInternal naming the violation: a token id outside the vocabulary, more tokens than
// max_tokens, a finish_reason outside {length, stop, cancelled, error}, a finish_reason or error
// on an output that does not finish, an error message over 4 KiB, log-probabilities that were
// not asked for or not one per new token, more than k top entries, a top id outside the
// vocabulary, a log-probability that is NaN or above 0.
Status check_output(const protocol::RequestOutput& output, const OutputLimits& limits);

}  // namespace eep::coordinator
