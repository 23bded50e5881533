// Constructors of the launchers, for make_launcher (launcher.cpp) only.
#pragma once

#include <memory>
#include <string>

#include "eep/coordinator/launcher.h"

namespace eep::coordinator {

std::unique_ptr<Launcher> make_local_launcher(const CoordinatorConfig& config,
                                              std::string worker_binary,
                                              std::string control_endpoint);
std::unique_ptr<Launcher> make_systemd_launcher(const CoordinatorConfig& config);
std::unique_ptr<Launcher> make_none_launcher();

}  // namespace eep::coordinator
