// libFuzzer target for what SSH clients and flags hand the server as text: the --ssh listen
// address, direct-tcpip destinations and the detach scanner. Invariants: no crash; an accepted
// forward destination is loopback; the scanner passes on exactly the input minus the sequence,
// however the input is split.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "openshell/runtime/ssh_server.hpp"
#include "ssh_forward.hpp"
#include "ssh_session_channel.hpp"

namespace {

namespace ssh = openshell::runtime::ssh;

// abort() rather than assert(): the invariant must hold in NDEBUG builds too.
void require(bool ok) {
  if (!ok) std::abort();
}

bool is_loopback(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(address);
    return (ntohl(v4.sin_addr.s_addr) >> 24) == 127;
  }
  const auto& v6 = reinterpret_cast<const sockaddr_in6&>(address);
  return IN6_IS_ADDR_LOOPBACK(&v6.sin6_addr) ||
         (IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr) && v6.sin6_addr.s6_addr[12] == 127);
}

// What the scanner should pass on: everything before the first Ctrl-P Ctrl-Q.
std::string expected_passed(std::string_view input) {
  const size_t at = input.find("\x10\x11");
  return std::string(input.substr(0, at));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  (void)openshell::runtime::parse_ssh_listen(text);

  const uint32_t port = size >= 2 ? static_cast<uint32_t>(data[0]) << 8 | data[1] : 0;
  if (const auto destination = ssh::loopback_destination(text.substr(size >= 2 ? 2 : 0), port)) {
    require(is_loopback(*destination));
  }

  // Split at a position the first byte picks; the result must not depend on the split.
  const size_t split = size > 0 ? data[0] % (size + 1) : 0;
  ssh::DetachScanner scanner;
  std::string passed = scanner.scan(text.substr(0, split));
  if (!scanner.detached()) passed += scanner.scan(text.substr(split));
  const bool has_sequence = text.find("\x10\x11") != std::string_view::npos;
  require(scanner.detached() == has_sequence);
  if (has_sequence) {
    require(passed == expected_passed(text));
  } else {
    // A trailing Ctrl-P is held back until the next byte decides.
    const std::string whole(text);
    require(passed == whole || (passed + "\x10" == whole));
  }
  return 0;
}
