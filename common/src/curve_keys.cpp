#include "eep/common/curve_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <zmq.h>

#include "eep/common/text.h"

namespace eep {

namespace {

// `key = "value"` lines; comments (#) and section names (`curve`, `metadata`) are skipped.
Result<std::map<std::string, std::string>> read_key_file_fields(const std::string& path) {
  std::ifstream file(path);
  if (!file) return error(ErrorCode::kIoError, "cannot read key file " + path);
  std::map<std::string, std::string> fields;
  std::string line;
  while (std::getline(file, line)) {
    const size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    const size_t eq = line.find('=', start);
    if (eq == std::string::npos) continue;
    std::string name = line.substr(start, eq - start);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
    const size_t open = line.find('"', eq);
    const size_t close = open == std::string::npos ? open : line.find('"', open + 1);
    if (close == std::string::npos) {
      return error(ErrorCode::kDataLoss, "key file " + path + ": the value of '" + printable(name) +
                                             "' is not in double quotes");
    }
    fields[name] = line.substr(open + 1, close - open - 1);
  }
  return fields;
}

Result<std::string> key_field(const std::map<std::string, std::string>& fields,
                              const std::string& name, const std::string& path) {
  auto it = fields.find(name);
  if (it == fields.end()) {
    return error(ErrorCode::kDataLoss, "key file " + path + " has no " + name);
  }
  if (!is_z85_key(it->second)) {
    return error(ErrorCode::kDataLoss, "key file " + path + ": " + name +
                                           " is not a 40-character Z85 key (eep-keygen writes "
                                           "them)");
  }
  return it->second;
}

std::string key_file_text(const std::string& name, const CurveKeyPair& pair, bool with_secret) {
  std::ostringstream text;
  text << "# elastic-ep CURVE " << (with_secret ? "key pair" : "public key") << " \"" << name
       << "\"" << (with_secret ? "; keep this file secret" : "") << "\n"
       << "public-key = \"" << pair.public_key << "\"\n";
  if (with_secret) text << "secret-key = \"" << pair.secret_key << "\"\n";
  return text.str();
}

}  // namespace

Result<CurveKeyPair> make_curve_key_pair() {
  char public_key[kZ85KeyChars + 1] = {};
  char secret_key[kZ85KeyChars + 1] = {};
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return error(ErrorCode::kInternal, std::string("cannot make a CURVE key pair: ") +
                                           zmq_strerror(zmq_errno()) +
                                           " (is libzmq built with libsodium?)");
  }
  return CurveKeyPair{public_key, secret_key};
}

bool is_z85_key(const std::string& text) {
  if (text.size() != kZ85KeyChars) return false;
  uint8_t decoded[32];
  return zmq_z85_decode(decoded, text.c_str()) != nullptr;
}

Result<CurveKeyPair> read_key_pair_file(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return error(ErrorCode::kIoError, "cannot read key file " + path + ": " + std::strerror(errno));
  }
  if ((info.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return error(
        ErrorCode::kFailedPrecondition,
        "key file " + path + " holds a secret key and others may read it; run: chmod 600 " + path);
  }
  EEP_ASSIGN_OR_RETURN(auto fields, read_key_file_fields(path));
  CurveKeyPair pair;
  EEP_ASSIGN_OR_RETURN(pair.public_key, key_field(fields, "public-key", path));
  EEP_ASSIGN_OR_RETURN(pair.secret_key, key_field(fields, "secret-key", path));
  return pair;
}

Result<std::string> read_public_key_file(const std::string& path) {
  EEP_ASSIGN_OR_RETURN(auto fields, read_key_file_fields(path));
  return key_field(fields, "public-key", path);
}

Status write_new_file(const std::string& path, const std::string& content, unsigned mode) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return error(ErrorCode::kIoError, "cannot write " + tmp + ": " + std::strerror(errno));
  }
  ::fchmod(fd, mode);  // whatever the umask
  const bool written =
      ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) &&
      ::fsync(fd) == 0;
  ::close(fd);
  if (!written) {
    ::unlink(tmp.c_str());
    return error(ErrorCode::kIoError, "cannot write " + tmp);
  }
  const int linked = ::link(tmp.c_str(), path.c_str());
  const int link_errno = errno;
  ::unlink(tmp.c_str());
  if (linked != 0) {
    return error(link_errno == EEXIST ? ErrorCode::kAlreadyExists : ErrorCode::kIoError,
                 "cannot create " + path + ": " + std::strerror(link_errno));
  }
  return Status::ok();
}

Status write_key_files(const std::string& dir, const std::string& name, const CurveKeyPair& pair) {
  EEP_RETURN_IF_ERROR(
      write_new_file(dir + "/" + name + ".key", key_file_text(name, pair, true), 0600));
  return write_new_file(dir + "/" + name + ".pub", key_file_text(name, pair, false), 0644);
}

}  // namespace eep
