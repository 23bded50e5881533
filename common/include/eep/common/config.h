// Command-line parsing for every binary, with CLI11: defaults < --config FILE < EEP_* environment
// < flags. Each option --some-name may come from the environment as EEP_SOME_NAME and from the
// config file as `some-name = value` (or some_name). Repeatable options accumulate across sources.
#pragma once

#include <optional>
#include <string>

namespace CLI {
class App;
}  // namespace CLI

namespace eep {

// Adds --config FILE to the app. Call before parse_args.
void add_config_option(CLI::App& app);

// Parses argv with the precedence above. Returns nullopt to go on, or the exit code to return
// (after --help, or after printing a clear error for a bad flag, file or environment value).
std::optional<int> parse_args(CLI::App& app, int argc, const char* const* argv);

// EEP_ADMIN_TOKEN_FILE for --admin-token-file.
std::string env_name_for(const std::string& long_option_name);

}  // namespace eep
