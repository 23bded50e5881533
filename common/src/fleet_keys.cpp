#include "eep/common/fleet_keys.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "eep/common/curve_keys.h"
#include "eep/common/protocol.h"
#include "eep/common/text.h"

namespace eep {

namespace fs = std::filesystem;

std::string default_keys_dir() {
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr && *home != '\0' ? home : ".") + "/.elastic-ep/keys";
}

namespace {

Status write_fresh_set(const std::string& dir) {
  std::string authorized =
      "# elastic-ep: who may connect to the coordinator (docs/security.md)\n"
      "# role  who  public key (Z85)  comment\n";
  struct Member {
    const char* name;
    KeyRole role;
    const char* who;
    const char* comment;
  };
  for (const Member& member : {Member{"coordinator", KeyRole::kWorker, "", ""},
                               Member{"worker", KeyRole::kWorker, "*", "the fleet's worker key"},
                               Member{"admin", KeyRole::kAdmin, "admin", "the operators' key"}}) {
    EEP_ASSIGN_OR_RETURN(CurveKeyPair pair, make_curve_key_pair());
    EEP_RETURN_IF_ERROR(write_key_files(dir, member.name, pair));
    if (*member.who == '\0') continue;  // the coordinator's own key authorizes nobody
    authorized += authorized_keys_line({member.role, member.who, pair.public_key}, member.comment);
  }
  return write_new_file(authorized_keys_path(dir), authorized, 0644);
}

}  // namespace

Result<bool> ensure_fleet_keys(const std::string& dir) {
  if (fs::exists(key_pair_path(dir, "coordinator"))) return false;
  std::error_code ec;
  const fs::path target = fs::absolute(dir, ec);
  fs::create_directories(target.parent_path(), ec);
  if (ec) {
    return error(ErrorCode::kIoError,
                 "cannot create " + target.parent_path().string() + ": " + ec.message());
  }
  if (fs::exists(target) && !fs::is_empty(target, ec)) {
    return error(ErrorCode::kFailedPrecondition,
                 "keys directory " + dir +
                     " has files but no coordinator.key; make a set with eep-keygen --dir " + dir +
                     " or name an empty or new directory");
  }
  const std::string staging =
      target.string() + ".new." + std::to_string(::getpid()) + "." + std::to_string(std::rand());
  if (::mkdir(staging.c_str(), 0700) != 0) {
    return error(ErrorCode::kIoError, "cannot create " + staging + ": " + std::strerror(errno));
  }
  Status made = write_fresh_set(staging);
  if (made.is_ok() && ::rename(staging.c_str(), target.c_str()) == 0) return true;
  const int rename_errno = errno;
  fs::remove_all(staging, ec);
  if (!made.is_ok()) return made;
  // Another process put its set in place first: use that one.
  if (fs::exists(key_pair_path(dir, "coordinator"))) return false;
  return error(ErrorCode::kIoError,
               "cannot put the new keys in " + dir + ": " + std::strerror(rename_errno));
}

Status add_fleet_key(const std::string& dir, const std::string& name, KeyRole role,
                     const std::string& who) {
  if (!protocol::is_valid_worker_id(name)) {
    return error(ErrorCode::kInvalidArgument,
                 "key name '" + printable(name) + "' must be letters, digits and . _ - @ :");
  }
  const AuthorizedKey probe{role, who, std::string(kZ85KeyChars, '0')};
  const auto check = parse_authorized_keys(authorized_keys_line(probe, ""));
  if (!check.is_ok()) return check.status();
  EEP_ASSIGN_OR_RETURN(CurveKeyPair pair, make_curve_key_pair());
  EEP_RETURN_IF_ERROR(write_key_files(dir, name, pair));
  std::ofstream out(authorized_keys_path(dir), std::ios::app);
  out << authorized_keys_line({role, who, pair.public_key}, name);
  if (!out) return error(ErrorCode::kIoError, "cannot append to " + authorized_keys_path(dir));
  return Status::ok();
}

}  // namespace eep
