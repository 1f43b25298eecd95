// Endpoint parsing and the bearer token file.
#include "openshell/control/endpoint.hpp"

#include <arpa/inet.h>
#include <openssl/crypto.h>

#include <fstream>
#include <iterator>

namespace openshell::control {

namespace {

// A token is a short secret; a bigger file is a mistake (a key, a log), not a token.
constexpr size_t kMaxTokenBytes = 4096;
// A certificate chain or key; a CA bundle of a few hundred certificates still fits.
constexpr size_t kMaxPemBytes = 1024 * 1024;

bool is_ipv4(const std::string& text) {
  in_addr out{};
  return inet_pton(AF_INET, text.c_str(), &out) == 1;
}

}  // namespace

std::string Endpoint::to_string() const {
  return (kind == Kind::kUnix ? "unix:" : "tcp:") + address;
}

std::string Endpoint::grpc_target() const {
  if (kind == Kind::kUnix) return "unix:" + address;
  // IP literals get an explicit scheme so gRPC never hands them to a DNS resolver.
  if (!address.empty() && address.front() == '[') return "ipv6:" + address;
  const size_t colon = address.rfind(':');
  if (colon != std::string::npos && is_ipv4(address.substr(0, colon))) return "ipv4:" + address;
  return address;
}

Result<Endpoint> parse_endpoint(std::string_view text) {
  Endpoint out;
  if (text.starts_with("unix:")) {
    out.kind = Endpoint::Kind::kUnix;
    out.address = std::string(text.substr(5));
    if (out.address.empty() || out.address.front() != '/') {
      return make_error(Errc::kInvalidArgument,
                        "endpoint '" + std::string(text) + "': unix: needs an absolute path");
    }
    return out;
  }
  if (text.starts_with("tcp:")) {
    out.kind = Endpoint::Kind::kTcp;
    out.address = std::string(text.substr(4));
    const size_t colon = out.address.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == out.address.size()) {
      return make_error(Errc::kInvalidArgument,
                        "endpoint '" + std::string(text) + "': tcp: needs HOST:PORT");
    }
    return out;
  }
  return make_error(Errc::kInvalidArgument,
                    "endpoint '" + std::string(text) + "' is neither unix:PATH nor tcp:HOST:PORT");
}

Result<std::string> read_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::kIo, "cannot read token file " + path);
  std::string token;
  in >> std::noskipws;
  for (std::istreambuf_iterator<char> it(in), end; it != end; ++it) {
    token += *it;
    if (token.size() > kMaxTokenBytes) {
      return make_error(Errc::kInvalidArgument, "token file " + path + " is larger than " +
                                                    std::to_string(kMaxTokenBytes) + " bytes");
    }
  }
  if (token.ends_with('\n')) token.pop_back();
  if (token.ends_with('\r')) token.pop_back();
  if (token.empty()) return make_error(Errc::kInvalidArgument, "token file " + path + " is empty");
  if (token.find_first_of("\r\n") != std::string::npos) {
    return make_error(Errc::kInvalidArgument, "token file " + path + " holds more than one line");
  }
  return token;
}

Result<std::string> read_pem_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::kIo, "cannot read " + path);
  std::string text;
  for (std::istreambuf_iterator<char> it(in), end; it != end; ++it) {
    text += *it;
    if (text.size() > kMaxPemBytes) {
      return make_error(Errc::kInvalidArgument,
                        path + " is larger than " + std::to_string(kMaxPemBytes) + " bytes");
    }
  }
  if (text.find("-----BEGIN ") == std::string::npos) {
    return make_error(Errc::kInvalidArgument, path + " is not PEM");
  }
  return text;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace openshell::control
