// eep-keygen: makes a fleet's CURVE keys (docs/security.md).
//   eep-keygen [--dir DIR]                       a fresh set: coordinator, worker and admin key
//                                                pairs and authorized_keys (if DIR has none)
//   eep-keygen [--dir DIR] --worker NAME --ids PATTERN
//                                                one more worker key pair (e.g. per host),
//                                                authorized for the worker ids of PATTERN
//   eep-keygen [--dir DIR] --admin NAME          one more operator key pair
// Existing files are never overwritten. After adding a key to a running fleet, send the
// coordinator SIGHUP (systemctl reload eep-coordinator) so that it reads authorized_keys again.
#include <CLI/CLI.hpp>
#include <iostream>

#include "eep/common/config.h"
#include "eep/common/fleet_keys.h"

int main(int argc, char** argv) {
  std::string dir;
  std::string worker;
  std::string ids;
  std::string admin;
  CLI::App app{"eep-keygen: make the CURVE keys of an elastic-ep fleet"};
  app.add_option("--dir,--keys-dir", dir,
                 "The fleet's keys directory (default " + eep::default_keys_dir() + ")");
  CLI::Option* worker_option =
      app.add_option("--worker", worker, "Add a worker key pair NAME.key (e.g. one per host)");
  app.add_option("--ids", ids, "The worker ids the --worker key may speak for: ID, PREFIX* or *")
      ->needs(worker_option);
  CLI::Option* admin_option = app.add_option("--admin", admin, "Add an operator key pair NAME.key");
  worker_option->excludes(admin_option);
  worker_option->needs(app.get_option("--ids"));
  if (auto exit_code = eep::parse_args(app, argc, argv)) return *exit_code;
  if (dir.empty()) dir = eep::default_keys_dir();

  auto made = eep::ensure_fleet_keys(dir);
  if (!made.is_ok()) {
    std::cerr << "eep-keygen: " << made.status().to_string() << "\n";
    return 1;
  }
  if (made.value()) std::cout << "made a fleet's keys in " << dir << "\n";
  if (!worker.empty() || !admin.empty()) {
    const bool is_worker = !worker.empty();
    const std::string& name = is_worker ? worker : admin;
    eep::Status added =
        eep::add_fleet_key(dir, name, is_worker ? eep::KeyRole::kWorker : eep::KeyRole::kAdmin,
                           is_worker ? ids : admin);
    if (!added.is_ok()) {
      std::cerr << "eep-keygen: " << added.to_string() << "\n";
      return 1;
    }
    std::cout << "added " << dir << "/" << name << ".key, authorized as "
              << (is_worker ? "worker " + ids : "admin " + admin)
              << "; a running coordinator reads it on SIGHUP\n";
  } else if (!made.value()) {
    std::cout << dir << " already holds a fleet's keys; nothing changed\n";
  }
  return 0;
}
