// Control endpoints as users write them (`unix:PATH`, `tcp:HOST:PORT`) and the bearer token that
// guards TCP. No gRPC types here: the CLI includes this header.
#pragma once

#include <string>
#include <string_view>

#include "openshell/core/result.hpp"

namespace openshell::control {

// Where `ctl` connects when --endpoint is not given.
inline constexpr std::string_view kDefaultEndpoint = "unix:/run/openshell/control.sock";

struct Endpoint {
  enum class Kind { kUnix, kTcp };
  Kind kind = Kind::kUnix;
  std::string address;  // the path (kUnix) or HOST:PORT (kTcp)

  // As the user wrote it: "unix:/run/x.sock", "tcp:127.0.0.1:7070".
  std::string to_string() const;
  // The gRPC target: "unix:PATH", "ipv4:IP:PORT", "ipv6:[IP]:PORT", or "HOST:PORT".
  std::string grpc_target() const;
};

Result<Endpoint> parse_endpoint(std::string_view text);

// The token file's content without one trailing newline (LF or CRLF); empty, unreadable or
// oversized files are errors naming the file.
Result<std::string> read_token_file(const std::string& path);

// A PEM file (certificate or key) as text; bounded, errors name the file.
Result<std::string> read_pem_file(const std::string& path);

// Compares in time independent of where the inputs differ (token checks).
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace openshell::control
