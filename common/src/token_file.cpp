#include "eep/common/token_file.h"

#include <cctype>
#include <fstream>
#include <sstream>

namespace eep {

Result<std::string> read_token_file(const std::string& path, const std::string& what) {
  std::ifstream file(path);
  if (!file) return error(ErrorCode::kIoError, "cannot read " + what + " file " + path);
  std::stringstream content;
  content << file.rdbuf();
  std::string token = content.str();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty())
    return error(ErrorCode::kInvalidArgument, what + " file " + path + " is empty");
  return token;
}

}  // namespace eep
