#include "eep/common/authorized_keys.h"

#include <fstream>
#include <sstream>

#include "eep/common/curve_keys.h"
#include "eep/common/protocol.h"
#include "eep/common/text.h"

namespace eep {

namespace {

constexpr std::string_view kWorkerPrefix = "worker:";
constexpr std::string_view kAdminPrefix = "admin:";

bool is_valid_pattern(std::string_view pattern) {
  if (pattern == "*") return true;
  if (!pattern.empty() && pattern.back() == '*') pattern.remove_suffix(1);
  return protocol::is_valid_worker_id(pattern);
}

}  // namespace

Result<std::vector<AuthorizedKey>> parse_authorized_keys(std::string_view text) {
  std::vector<AuthorizedKey> keys;
  std::istringstream lines{std::string(text)};
  std::string line;
  int number = 0;
  while (std::getline(lines, line)) {
    ++number;
    std::istringstream words(line);
    std::string role, who, key;
    if (!(words >> role) || role[0] == '#') continue;
    const std::string where = "authorized_keys line " + std::to_string(number) + ": ";
    if (!(words >> who >> key)) {
      return error(ErrorCode::kInvalidArgument,
                   where + "expected \"worker PATTERN KEY\" or \"admin NAME KEY\"");
    }
    AuthorizedKey entry;
    if (role == "worker") {
      entry.role = KeyRole::kWorker;
      if (!is_valid_pattern(who)) {
        return error(
            ErrorCode::kInvalidArgument,
            where + "'" + printable(who) + "' is not a worker id pattern (an id, PREFIX* or *)");
      }
    } else if (role == "admin") {
      entry.role = KeyRole::kAdmin;
      if (!protocol::is_valid_worker_id(who)) {
        return error(
            ErrorCode::kInvalidArgument,
            where + "'" + printable(who) + "' is not a name (letters, digits and . _ - @ :)");
      }
    } else {
      return error(ErrorCode::kInvalidArgument,
                   where + "unknown role '" + printable(role) + "' (worker or admin)");
    }
    if (!is_z85_key(key)) {
      return error(ErrorCode::kInvalidArgument,
                   where + "'" + printable(key) + "' is not a 40-character Z85 public key");
    }
    entry.who = who;
    entry.public_key = key;
    keys.push_back(std::move(entry));
  }
  return keys;
}

Result<std::vector<AuthorizedKey>> read_authorized_keys(const std::string& path) {
  std::ifstream file(path);
  if (!file) return error(ErrorCode::kIoError, "cannot read " + path);
  std::stringstream content;
  content << file.rdbuf();
  auto keys = parse_authorized_keys(content.str());
  if (!keys.is_ok()) return error(keys.status().code(), path + ": " + keys.status().message());
  return keys;
}

std::string authorized_keys_line(const AuthorizedKey& key, const std::string& comment) {
  std::string line = key.role == KeyRole::kWorker ? "worker " : "admin ";
  line += key.who + " " + key.public_key;
  if (!comment.empty()) line += "  " + comment;
  return line + "\n";
}

std::string user_id_of(const AuthorizedKey& key) {
  return std::string(key.role == KeyRole::kWorker ? kWorkerPrefix : kAdminPrefix) + key.who;
}

bool worker_pattern_matches(std::string_view pattern, std::string_view worker_id) {
  if (!pattern.empty() && pattern.back() == '*') {
    pattern.remove_suffix(1);
    return worker_id.substr(0, pattern.size()) == pattern;
  }
  return pattern == worker_id;
}

bool may_speak_for(std::string_view user_id, std::string_view worker_id) {
  if (user_id.substr(0, kWorkerPrefix.size()) != kWorkerPrefix) return false;
  return worker_pattern_matches(user_id.substr(kWorkerPrefix.size()), worker_id);
}

}  // namespace eep
