// Matching a client's public key against an OpenSSH authorized_keys file.
#include "ssh_auth.hpp"

#include <fstream>
#include <sstream>

namespace openshell::runtime::ssh {
namespace {

// A bound on what we read: an authorized_keys file is a few kilobytes.
constexpr size_t kMaxLines = 10'000;

bool matches(const std::string& line, ssh_key key) {
  std::istringstream fields(line);
  std::string type;
  std::string base64;
  if (!(fields >> type >> base64)) return false;
  if (type.empty() || type.front() == '#') return false;
  const enum ssh_keytypes_e key_type = ssh_key_type_from_name(type.c_str());
  if (key_type == SSH_KEYTYPE_UNKNOWN) return false;
  ssh_key listed = nullptr;
  if (ssh_pki_import_pubkey_base64(base64.c_str(), key_type, &listed) != SSH_OK) return false;
  const bool same = ssh_key_cmp(listed, key, SSH_KEY_CMP_PUBLIC) == 0;
  ssh_key_free(listed);
  return same;
}

}  // namespace

bool key_authorized(const std::string& authorized_keys_path, ssh_key key) {
  if (key == nullptr) return false;
  std::ifstream file(authorized_keys_path);
  std::string line;
  for (size_t count = 0; count < kMaxLines && std::getline(file, line); ++count) {
    if (matches(line, key)) return true;
  }
  return false;
}

}  // namespace openshell::runtime::ssh
