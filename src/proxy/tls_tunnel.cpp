// One intercepted tunnel: leaf from the cache, verified TLS to the origin (resumed when we have
// a session), TLS to the client, then the inspected HTTP relay between the two.
#include "tls_tunnel.hpp"

#include <arpa/inet.h>
#include <mbedtls/x509.h>

#include <array>
#include <cstring>

#include "openshell/core/events.hpp"
#include "openshell/proxy/http_response.hpp"
#include "openshell/proxy/tls_interception.hpp"
#include "tls_stream.hpp"

namespace openshell::proxy::detail {

namespace {

// The binary form of an IP literal host (4 or 16 bytes), or empty for a name.
std::string ip_literal_bytes(const std::string& host) {
  std::array<unsigned char, 16> bytes{};
  if (inet_pton(AF_INET, host.c_str(), bytes.data()) == 1) {
    return std::string(reinterpret_cast<const char*>(bytes.data()), 4);
  }
  if (inet_pton(AF_INET6, host.c_str(), bytes.data()) == 1) {
    return std::string(reinterpret_cast<const char*>(bytes.data()), 16);
  }
  return {};
}

// mbedTLS 2.28 matches only dNSName/CN against the expected host, so an origin addressed by IP
// is checked here: its certificate must carry that address as an iPAddress SAN.
int verify_ip_san(void* expected, mbedtls_x509_crt* crt, int depth, uint32_t* flags) {
  if (depth != 0) return 0;
  const auto& address = *static_cast<const std::string*>(expected);
  constexpr int kIpAddressTag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7;
  for (const mbedtls_x509_sequence* san = &crt->subject_alt_names; san != nullptr;
       san = san->next) {
    if (san->buf.tag == kIpAddressTag && san->buf.len == address.size() &&
        std::memcmp(san->buf.p, address.data(), address.size()) == 0) {
      return 0;
    }
  }
  *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
  return 0;
}

// Why a handshake failed, in words: the certificate problems when verification failed.
std::string handshake_failure(const TlsStream& stream, const std::error_code& error) {
  const uint32_t flags = stream.verify_flags();
  if (error == make_tls_error(MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) && flags != 0) {
    char text[512];
    mbedtls_x509_crt_verify_info(text, sizeof(text), "", flags);
    std::string why = "certificate verification failed: ";
    for (const char* c = text; *c != '\0'; ++c) {
      if (*c == '\n') {
        if (c[1] != '\0') why += "; ";
      } else {
        why += *c;
      }
    }
    return why;
  }
  return error.message();
}

}  // namespace

asio::awaitable<void> intercept_tls_tunnel(ProxyContext& context, const ConnectionInfo& info,
                                           const TunnelTarget& target,
                                           asio::ip::tcp::socket& client, std::string hello,
                                           asio::ip::tcp::socket& upstream) {
  tls::Interception& tls = *context.tls;
  const Clock::time_point deadline = Clock::now() + context.options.head_timeout;
  const std::string origin = target.host + ":" + std::to_string(target.port);
  const auto failed = [&](std::string_view step, std::string_view why) {
    context.log.emit(core::Event::network(core::NetworkActivity::kFail)
                         .with_message("TLS " + std::string(step) + " failed for " + origin + ": " +
                                       std::string(why))
                         .with_dst(target.host, target.port)
                         .with_dst_ip(target.dst_ip)
                         .with_reason(why)
                         .with_severity(core::Severity::kMedium)
                         .with_cid(info.cid)
                         .with_src(info.peer_ip, info.peer_port));
  };

  // Queued ahead of the leaf on the minting thread: loading deferred roots there, not here.
  tls.prefetch_roots();
  auto leaf = co_await tls.leaves().get(target.host);
  if (!leaf.ok()) {
    failed("leaf certificate", leaf.error().message);
    co_return;
  }

  // The origin first: a client must never be told "connected" to an origin we could not verify.
  TlsStream origin_tls(upstream, tls.upstream_config());
  const std::string address = ip_literal_bytes(target.host);
  if (address.empty()) {
    (void)origin_tls.set_hostname(target.host);
  } else {
    mbedtls_ssl_set_verify(&origin_tls.ssl(), &verify_ip_san, const_cast<std::string*>(&address));
  }
  std::string origin_failure;
  if (Result<void> roots = tls.upstream_roots(); !roots.ok()) {
    origin_failure = roots.error().message;
    failed("to origin", origin_failure);
  } else {
    tls.resume_session(origin, origin_tls.ssl());
    if (const std::error_code origin_error = co_await origin_tls.handshake(deadline)) {
      origin_failure = handshake_failure(origin_tls, origin_error);
      failed("to origin", origin_failure);
    } else {
      tls.remember_session(origin, origin_tls.ssl());
    }
  }

  TlsStream client_tls(client, (*leaf)->server_config);
  client_tls.feed_received(hello);
  if (const std::error_code error = co_await client_tls.handshake(deadline)) {
    failed("from client", error.message());
    co_return;
  }
  if (!origin_failure.empty()) {
    // Said inside the tunnel, where the client can read it: a bare handshake alert would only
    // tell it that *something* failed.
    (void)co_await write_all(client_tls,
                             upstream_tls_failed_response(target.host, target.port, origin_failure),
                             context.options.head_timeout);
    co_await client_tls.shutdown_send();
    co_return;
  }
  StreamReader client_reader(client_tls);
  co_await serve_http_tunnel(context, info, target, client_reader, origin_tls);
}

}  // namespace openshell::proxy::detail
