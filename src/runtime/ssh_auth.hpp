// Public-key authentication of the SSH server: an OpenSSH authorized_keys file, read on every
// attempt so an edited file takes effect for the next connection.
#pragma once

#include <libssh/libssh.h>

#include <string>

namespace openshell::runtime::ssh {

// True when `key` (the client's public key) is one of the file's keys. Lines with options before
// the key type are not supported and never match; an unreadable file matches nothing.
bool key_authorized(const std::string& authorized_keys_path, ssh_key key);

}  // namespace openshell::runtime::ssh
