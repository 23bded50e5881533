#include "eep/common/config.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <vector>

namespace eep {
namespace {

constexpr const char* kConfigOption = "--config";

std::optional<std::string> find_config_path(int argc, const char* const* argv) {
  std::optional<std::string> path;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == kConfigOption && i + 1 < argc) {
      path = argv[++i];
    } else if (arg.rfind(std::string(kConfigOption) + "=", 0) == 0) {
      path = arg.substr(std::string(kConfigOption).size() + 1);
    }
  }
  return path;
}

std::string option_long_name(const CLI::Option* option) {
  const auto& names = option->get_lnames();
  return names.empty() ? std::string() : names.front();
}

}  // namespace

std::string env_name_for(const std::string& long_option_name) {
  std::string name = "EEP_";
  for (char c : long_option_name) {
    name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return name;
}

void add_config_option(CLI::App& app) {
  app.add_option(kConfigOption,
                 "Config file (`name = value` lines; precedence: default < file < "
                 "EEP_* environment < flag)")
      ->check(CLI::ExistingFile);
  app.footer("Every option --some-name may also be set as EEP_SOME_NAME in the environment.");
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

std::optional<int> parse_args(CLI::App& app, int argc, const char* const* argv) {
  // Arguments in increasing precedence: file, environment, command line. With TakeLast the last
  // occurrence of a single-valued option wins.
  std::vector<std::string> args;
  try {
    if (auto path = find_config_path(argc, argv)) {
      std::ifstream file(*path);
      if (!file) throw CLI::FileError::Missing(*path);
      for (const CLI::ConfigItem& item : CLI::ConfigTOML().from_config(file)) {
        std::string name = item.name;
        std::replace(name.begin(), name.end(), '_', '-');
        if (app.get_option_no_throw("--" + name) == nullptr) {
          throw CLI::ConversionError("config file " + *path + ": unknown key '" + item.name + "'");
        }
        for (const std::string& input : item.inputs) args.push_back("--" + name + "=" + input);
      }
    }
    for (const CLI::Option* option : app.get_options()) {
      std::string name = option_long_name(option);
      if (name.empty() || name == "help" || name == "config") continue;
      if (const char* value = std::getenv(env_name_for(name).c_str())) {
        args.push_back("--" + name + "=" + value);
      }
    }
    for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
    std::reverse(args.begin(), args.end());  // CLI11 consumes from the back
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return std::nullopt;
}

}  // namespace eep
