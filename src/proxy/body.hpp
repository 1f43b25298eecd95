// Private to the proxy: relaying exactly one HTTP message body from a buffered reader to a socket,
// so bytes of a pipelined follow-on message are never forwarded with it.
#pragma once

#include <cstdint>

#include "io.hpp"
#include "openshell/proxy/response_head.hpp"

namespace openshell::proxy::detail {

struct BodyRelay {
  bool ok = false;
  bool malformed = false;  // the sender's framing was invalid (answer 400), not an I/O failure
  uint64_t bytes = 0;      // framed bytes forwarded
  std::string error;       // why it stopped early
};

// `idle` bounds each wait for bytes from `from` and each write to `to`.
asio::awaitable<BodyRelay> relay_body(StreamReader& from, ByteStream& to, BodyFraming framing,
                                      uint64_t length, Clock::duration idle);

}  // namespace openshell::proxy::detail
