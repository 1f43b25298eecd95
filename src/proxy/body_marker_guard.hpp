// Private to the proxy: relaying a request body that is not rewritten while a credential set is
// active (spec §4.5, last rule). The body streams, but a placeholder marker in it stops the relay
// before the marker is forwarded: the request is then refused as credential_unavailable.
#pragma once

#include <cstddef>

#include "body.hpp"

namespace openshell::proxy::detail {

// Bytes held back so a marker split across reads is seen whole before any of it is sent: three
// times the 22-byte canonical prefix (spec §4.5), enough for the percent-encoded form as well.
inline constexpr size_t kMarkerTailWindow = 66;

struct GuardedBodyRelay {
  BodyRelay relay;
  bool marker = false;  // stopped on a placeholder marker (relay.ok is false)
};

// As relay_body for kNone, kLength and kChunked framing (request bodies).
asio::awaitable<GuardedBodyRelay> relay_body_without_markers(StreamReader& from, ByteStream& to,
                                                             BodyFraming framing, uint64_t length,
                                                             Clock::duration idle);

}  // namespace openshell::proxy::detail
