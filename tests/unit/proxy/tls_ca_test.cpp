// The interception CA with real mbedTLS: the generated CA, leaves for names and IP literals
// (SAN, EKU, chain, key), load() and its errors, an in-memory handshake (ALPN, hostname check,
// ticket resumption), and OpenSSL's own verdict on the certificates when `openssl` is installed.
#include "openshell/proxy/tls_ca.hpp"

#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/ssl_ticket.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../temp_dir.hpp"

namespace {

using openshell::proxy::tls::CertificateAuthority;
using openshell::proxy::tls::combined_ca_bundle;
using openshell::proxy::tls::LeafCertificate;
using openshell::proxy::tls::TlsRandom;
using openshell::proxy::tls::write_ca_bundle_file;
using openshell::proxy::tls::write_pem_file;
using Leaf = std::shared_ptr<const LeafCertificate>;

TlsRandom& rng() {
  static TlsRandom random;
  static const bool seeded = TlsRandom::init(random).ok();
  REQUIRE(seeded);
  return random;
}

// One generated CA for the whole file: a P-256 key generation per test case adds nothing.
const CertificateAuthority& shared_ca() {
  static auto ca = CertificateAuthority::generate(rng());
  REQUIRE(ca.ok());
  return *ca.value();
}

Leaf mint(const CertificateAuthority& ca, const std::string& host) {
  auto leaf = ca.mint(host);
  INFO(host << ": " << (leaf.ok() ? "" : leaf.error().message));
  REQUIRE(leaf.ok());
  return leaf.value();
}

// mbedTLS 2.28 takes these non-const although it only reads them.
mbedtls_x509_crt* mutable_crt(const mbedtls_x509_crt* crt) {
  return const_cast<mbedtls_x509_crt*>(crt);
}

uint32_t verify(const Leaf& leaf, const CertificateAuthority& ca, const char* cn) {
  uint32_t flags = 0;
  const int rc = mbedtls_x509_crt_verify(mutable_crt(&leaf->chain), mutable_crt(ca.certificate()),
                                         nullptr, cn, &flags, nullptr, nullptr);
  return rc == 0 ? 0 : (flags == 0 ? 0xffffffffu : flags);
}

std::string crt_pem(const mbedtls_x509_crt& crt) {
  std::vector<unsigned char> out(crt.raw.len * 2 + 128);
  size_t written = 0;
  REQUIRE(mbedtls_pem_write_buffer("-----BEGIN CERTIFICATE-----\n", "-----END CERTIFICATE-----\n",
                                   crt.raw.p, crt.raw.len, out.data(), out.size(), &written) == 0);
  return std::string(reinterpret_cast<const char*>(out.data()));
}

std::string key_pem(const mbedtls_pk_context& key) {
  std::vector<unsigned char> out(4096);
  REQUIRE(mbedtls_pk_write_key_pem(const_cast<mbedtls_pk_context*>(&key), out.data(), out.size()) ==
          0);
  return std::string(reinterpret_cast<const char*>(out.data()));
}

struct SanEntry {
  unsigned char tag;
  std::vector<unsigned char> bytes;
};

std::vector<SanEntry> sans(const mbedtls_x509_crt& crt) {
  std::vector<SanEntry> out;
  for (const mbedtls_x509_sequence* s = &crt.subject_alt_names; s != nullptr && s->buf.p != nullptr;
       s = s->next) {
    out.push_back({static_cast<unsigned char>(s->buf.tag),
                   std::vector<unsigned char>(s->buf.p, s->buf.p + s->buf.len)});
  }
  return out;
}

constexpr unsigned char kDnsTag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2;
constexpr unsigned char kIpTag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7;

std::vector<unsigned char> bytes(const std::string& text) {
  return {text.begin(), text.end()};
}

bool has_eku(const mbedtls_x509_crt& crt, const char* oid, size_t size) {
  return mbedtls_x509_crt_check_extended_key_usage(&crt, oid, size) == 0;
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

void write(const std::string& path, std::string_view contents) {
  auto written = write_pem_file(path, contents);
  INFO(path << ": " << (written.ok() ? "" : written.error().message));
  REQUIRE(written.ok());
}

bool have_openssl() {
  static const bool have = std::system("openssl version >/dev/null 2>&1") == 0;
  return have;
}

int run(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str());
}

// ---- in-memory TLS -----------------------------------------------------------------------

// One direction of a connection; `total` counts what was ever sent through it.
struct Pipe {
  std::deque<unsigned char> bytes;
  size_t total = 0;
};
struct Link {
  Pipe* out;
  Pipe* in;
};

int bio_send(void* context, const unsigned char* data, size_t size) {
  Pipe& pipe = *static_cast<Link*>(context)->out;
  pipe.bytes.insert(pipe.bytes.end(), data, data + size);
  pipe.total += size;
  return static_cast<int>(size);
}

int bio_recv(void* context, unsigned char* data, size_t size) {
  Pipe& pipe = *static_cast<Link*>(context)->in;
  if (pipe.bytes.empty()) return MBEDTLS_ERR_SSL_WANT_READ;
  const size_t n = std::min(size, pipe.bytes.size());
  std::copy_n(pipe.bytes.begin(), n, data);
  pipe.bytes.erase(pipe.bytes.begin(), pipe.bytes.begin() + static_cast<std::ptrdiff_t>(n));
  return static_cast<int>(n);
}

struct ClientConfig {
  mbedtls_ssl_config conf;
  explicit ClientConfig(const CertificateAuthority& ca) {
    // Offering h2 first proves the server picks http/1.1 itself.
    static const char* alpn[] = {"h2", "http/1.1", nullptr};
    mbedtls_ssl_config_init(&conf);
    REQUIRE(mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT) == 0);
    mbedtls_ssl_conf_rng(&conf, TlsRandom::generate, rng().context());
    mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&conf, mutable_crt(ca.certificate()), nullptr);
    REQUIRE(mbedtls_ssl_conf_alpn_protocols(&conf, alpn) == 0);
  }
  ~ClientConfig() { mbedtls_ssl_config_free(&conf); }
  ClientConfig(const ClientConfig&) = delete;
  ClientConfig& operator=(const ClientConfig&) = delete;
};

struct Ssl {
  mbedtls_ssl_context ssl;
  explicit Ssl(const mbedtls_ssl_config& conf) {
    mbedtls_ssl_init(&ssl);
    REQUIRE(mbedtls_ssl_setup(&ssl, &conf) == 0);
  }
  ~Ssl() { mbedtls_ssl_free(&ssl); }
  Ssl(const Ssl&) = delete;
  Ssl& operator=(const Ssl&) = delete;
};

struct Session {
  mbedtls_ssl_session session;
  Session() { mbedtls_ssl_session_init(&session); }
  ~Session() { mbedtls_ssl_session_free(&session); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
};

struct Outcome {
  int client_rc = 0;
  int server_rc = 0;
  uint32_t verify_flags = 0;
  std::string alpn;
  size_t server_bytes = 0;  // server → client, the certificate chain included
};

Outcome handshake(const Leaf& leaf, const ClientConfig& client_conf, const char* hostname,
                  const Session* resume = nullptr, Session* save = nullptr) {
  Pipe to_server;
  Pipe to_client;
  Link client_link{&to_server, &to_client};
  Link server_link{&to_client, &to_server};
  Ssl client(client_conf.conf);
  Ssl server(leaf->server_config);
  REQUIRE(mbedtls_ssl_set_hostname(&client.ssl, hostname) == 0);
  if (resume != nullptr) REQUIRE(mbedtls_ssl_set_session(&client.ssl, &resume->session) == 0);
  mbedtls_ssl_set_bio(&client.ssl, &client_link, bio_send, bio_recv, nullptr);
  mbedtls_ssl_set_bio(&server.ssl, &server_link, bio_send, bio_recv, nullptr);

  Outcome out;
  bool client_done = false;
  bool server_done = false;
  const auto pending = [](int rc) {
    return rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE;
  };
  for (int step = 0; step < 200 && !(client_done && server_done); ++step) {
    if (!client_done) {
      out.client_rc = mbedtls_ssl_handshake(&client.ssl);
      client_done = out.client_rc == 0;
      if (!client_done && !pending(out.client_rc)) break;
    }
    if (!server_done) {
      out.server_rc = mbedtls_ssl_handshake(&server.ssl);
      server_done = out.server_rc == 0;
      if (!server_done && !pending(out.server_rc)) break;
    }
  }
  out.verify_flags = mbedtls_ssl_get_verify_result(&client.ssl);
  if (const char* alpn = mbedtls_ssl_get_alpn_protocol(&client.ssl)) out.alpn = alpn;
  out.server_bytes = to_client.total;
  if (save != nullptr && client_done) {
    REQUIRE(mbedtls_ssl_get_session(&client.ssl, &save->session) == 0);
  }
  return out;
}

}  // namespace

TEST_CASE("tls ca: the generated CA is a self-signed P-256 CA", "[tls_ca]") {
  const CertificateAuthority& ca = shared_ca();
  const mbedtls_x509_crt& crt = *ca.certificate();

  char dn[256];
  REQUIRE(mbedtls_x509_dn_gets(dn, sizeof dn, &crt.subject) > 0);
  CHECK(std::string(dn) == "CN=OpenShell Sandbox CA, O=OpenShell");
  CHECK(crt.issuer_raw.len == crt.subject_raw.len);
  CHECK(std::memcmp(crt.issuer_raw.p, crt.subject_raw.p, crt.subject_raw.len) == 0);
  CHECK(crt.version == 3);
  CHECK(crt.ca_istrue == 1);
  CHECK(crt.max_pathlen == 0);  // mbedTLS stores pathlen + 1; 0 means "no limit"
  CHECK(mbedtls_x509_crt_check_key_usage(
            &crt, MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN) == 0);
  CHECK(crt.sig_md == MBEDTLS_MD_SHA256);
  REQUIRE(mbedtls_pk_get_type(&crt.pk) == MBEDTLS_PK_ECKEY);
  CHECK(mbedtls_pk_ec(crt.pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1);
  CHECK(crt.serial.len == 16);
  CHECK(crt.serial.p[0] < 0x80);  // positive
  CHECK(crt.valid_from.year == 2025);
  CHECK(crt.valid_to.year == 2049);

  uint32_t flags = 0;
  CHECK(mbedtls_x509_crt_verify(mutable_crt(&crt), mutable_crt(&crt), nullptr, nullptr, &flags,
                                nullptr, nullptr) == 0);

  // cert_pem() is the same certificate.
  mbedtls_x509_crt reparsed;
  mbedtls_x509_crt_init(&reparsed);
  const std::string& pem = ca.cert_pem();
  CHECK(pem.rfind("-----BEGIN CERTIFICATE-----\n", 0) == 0);
  CHECK(pem.back() == '\n');
  REQUIRE(mbedtls_x509_crt_parse(&reparsed, reinterpret_cast<const unsigned char*>(pem.c_str()),
                                 pem.size() + 1) == 0);
  CHECK(reparsed.raw.len == crt.raw.len);
  CHECK(std::memcmp(reparsed.raw.p, crt.raw.p, crt.raw.len) == 0);
  mbedtls_x509_crt_free(&reparsed);
}

TEST_CASE("tls ca: two generated CAs differ in key and serial", "[tls_ca]") {
  auto other = CertificateAuthority::generate(rng());
  REQUIRE(other.ok());
  const mbedtls_x509_crt& a = *shared_ca().certificate();
  const mbedtls_x509_crt& b = *other.value()->certificate();
  CHECK((a.serial.len != b.serial.len || std::memcmp(a.serial.p, b.serial.p, a.serial.len) != 0));
  CHECK(mbedtls_pk_check_pair(&a.pk, &b.pk) != 0);
}

TEST_CASE("tls ca: a leaf for a name verifies for that name only", "[tls_ca]") {
  const CertificateAuthority& ca = shared_ca();
  const Leaf leaf = mint(ca, "api.example.com");
  const mbedtls_x509_crt& crt = leaf->chain;

  CHECK(verify(leaf, ca, "api.example.com") == 0);
  CHECK((verify(leaf, ca, "other.example.com") & MBEDTLS_X509_BADCERT_CN_MISMATCH) != 0);
  CHECK(verify(leaf, ca, nullptr) == 0);

  char dn[256];
  REQUIRE(mbedtls_x509_dn_gets(dn, sizeof dn, &crt.subject) > 0);
  CHECK(std::string(dn) == "CN=api.example.com");
  const std::vector<SanEntry> names = sans(crt);
  REQUIRE(names.size() == 1);
  CHECK(names[0].tag == kDnsTag);
  CHECK(names[0].bytes == bytes("api.example.com"));

  CHECK(crt.ca_istrue == 0);
  CHECK(mbedtls_x509_crt_check_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE) == 0);
  CHECK(mbedtls_x509_crt_check_key_usage(&crt, MBEDTLS_X509_KU_KEY_CERT_SIGN) != 0);
  CHECK(has_eku(crt, MBEDTLS_OID_SERVER_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)));
  CHECK_FALSE(has_eku(crt, MBEDTLS_OID_CLIENT_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH)));
  CHECK(crt.sig_md == MBEDTLS_MD_SHA256);
  REQUIRE(mbedtls_pk_get_type(&crt.pk) == MBEDTLS_PK_ECKEY);
  CHECK(mbedtls_pk_ec(crt.pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1);
  CHECK(mbedtls_x509_time_is_past(&crt.valid_from) == 1);
  CHECK(mbedtls_x509_time_is_future(&crt.valid_to) == 1);
  CHECK(crt.valid_to.year - crt.valid_from.year <= 2);

  // The issuer is the CA's subject byte for byte (Go compares them raw).
  const mbedtls_x509_crt& ca_crt = *ca.certificate();
  REQUIRE(crt.issuer_raw.len == ca_crt.subject_raw.len);
  CHECK(std::memcmp(crt.issuer_raw.p, ca_crt.subject_raw.p, crt.issuer_raw.len) == 0);

  // The chain is [leaf, CA]; the key is the leaf's.
  REQUIRE(crt.next != nullptr);
  CHECK(crt.next->next == nullptr);
  REQUIRE(crt.next->raw.len == ca_crt.raw.len);
  CHECK(std::memcmp(crt.next->raw.p, ca_crt.raw.p, ca_crt.raw.len) == 0);
  CHECK(mbedtls_pk_check_pair(&crt.pk, &leaf->key) == 0);
  CHECK(mbedtls_pk_check_pair(&ca_crt.pk, &leaf->key) != 0);

  // Fresh key and serial per mint.
  const Leaf again = mint(ca, "api.example.com");
  CHECK(mbedtls_pk_check_pair(&again->chain.pk, &leaf->key) != 0);
  CHECK((again->chain.serial.len != crt.serial.len ||
         std::memcmp(again->chain.serial.p, crt.serial.p, crt.serial.len) != 0));
}

TEST_CASE("tls ca: IP literals get iPAddress SANs", "[tls_ca]") {
  const CertificateAuthority& ca = shared_ca();
  SECTION("IPv4") {
    const Leaf leaf = mint(ca, "127.0.0.1");
    const std::vector<SanEntry> names = sans(leaf->chain);
    REQUIRE(names.size() == 1);
    CHECK(names[0].tag == kIpTag);
    CHECK(names[0].bytes == std::vector<unsigned char>{0x7f, 0x00, 0x00, 0x01});
    char dn[256];
    REQUIRE(mbedtls_x509_dn_gets(dn, sizeof dn, &leaf->chain.subject) > 0);
    CHECK(std::string(dn) == "CN=127.0.0.1");
    // The chain itself is sound; mbedTLS 2.28 cannot match an IP against a SAN (BUILD-NOTES).
    CHECK(verify(leaf, ca, nullptr) == 0);
  }
  SECTION("IPv6, bare and bracketed") {
    for (const char* host : {"2001:db8::1", "[2001:db8::1]"}) {
      const Leaf leaf = mint(ca, host);
      const std::vector<SanEntry> names = sans(leaf->chain);
      REQUIRE(names.size() == 1);
      CHECK(names[0].tag == kIpTag);
      std::vector<unsigned char> expected(16, 0);
      expected[0] = 0x20;
      expected[1] = 0x01;
      expected[2] = 0x0d;
      expected[3] = 0xb8;
      expected[15] = 0x01;
      CHECK(names[0].bytes == expected);
      char dn[256];
      REQUIRE(mbedtls_x509_dn_gets(dn, sizeof dn, &leaf->chain.subject) > 0);
      CHECK(std::string(dn) == "CN=2001:db8::1");
    }
  }
}

TEST_CASE("tls ca: hosts that cannot be certified are refused", "[tls_ca]") {
  const CertificateAuthority& ca = shared_ca();
  for (const std::string& host :
       {std::string(), std::string("a,b.example"), std::string("x=y"), std::string("has space"),
        std::string("nul\0x", 5), std::string("[]"), std::string(300, 'a'),
        std::string("fe80::1%eth0")}) {
    auto leaf = ca.mint(host);
    INFO(host);
    REQUIRE_FALSE(leaf.ok());
    CHECK(leaf.error().code == openshell::Errc::kInvalidArgument);
  }
  CHECK(ca.mint("under_score.example.com").ok());
  CHECK(ca.mint(std::string(253, 'a')).ok());
}

TEST_CASE("tls ca: in-memory handshake negotiates http/1.1 and checks the name", "[tls_ca]") {
  const CertificateAuthority& ca = shared_ca();
  const Leaf leaf = mint(ca, "api.example.com");
  ClientConfig client(ca);

  const Outcome good = handshake(leaf, client, "api.example.com");
  CHECK(good.client_rc == 0);
  CHECK(good.server_rc == 0);
  CHECK(good.verify_flags == 0);
  CHECK(good.alpn == "http/1.1");

  const Outcome wrong = handshake(leaf, client, "other.example.com");
  CHECK(wrong.client_rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
  CHECK((wrong.verify_flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) != 0);

  // A client trusting another CA refuses the leaf.
  auto stranger = CertificateAuthority::generate(rng());
  REQUIRE(stranger.ok());
  ClientConfig other_client(*stranger.value());
  const Outcome untrusted = handshake(leaf, other_client, "api.example.com");
  CHECK(untrusted.client_rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
  CHECK((untrusted.verify_flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED) != 0);
}

TEST_CASE("tls ca: session tickets resume when the CA has a ticket context", "[tls_ca]") {
  mbedtls_ssl_ticket_context tickets;
  mbedtls_ssl_ticket_init(&tickets);
  REQUIRE(mbedtls_ssl_ticket_setup(&tickets, TlsRandom::generate, rng().context(),
                                   MBEDTLS_CIPHER_AES_256_GCM, 3600) == 0);
  {
    auto ca = CertificateAuthority::generate(rng(), &tickets);
    REQUIRE(ca.ok());
    const Leaf leaf = mint(*ca.value(), "api.example.com");
    ClientConfig client(*ca.value());

    Session saved;
    const Outcome full = handshake(leaf, client, "api.example.com", nullptr, &saved);
    REQUIRE(full.client_rc == 0);
    CHECK(saved.session.ticket_len > 0);
    const Outcome resumed = handshake(leaf, client, "api.example.com", &saved);
    REQUIRE(resumed.client_rc == 0);
    CHECK(resumed.server_rc == 0);
    CHECK(resumed.alpn == "http/1.1");
    // No Certificate message on resumption: the chain alone is several hundred bytes.
    CHECK(resumed.server_bytes + 300 < full.server_bytes);
  }
  mbedtls_ssl_ticket_free(&tickets);
}

TEST_CASE("tls ca: load() round trip and errors", "[tls_ca]") {
  openshell::test::TempDir dir("openshell-tls");
  const CertificateAuthority& ca = shared_ca();
  // A CA whose key the test holds (CertificateAuthority never exports its key), built with
  // mbedTLS's writer, a mixed-type subject and basicConstraints pathlen 0.
  mbedtls_pk_context key;
  mbedtls_pk_init(&key);
  REQUIRE(mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) == 0);
  REQUIRE(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key), TlsRandom::generate,
                              rng().context()) == 0);
  mbedtls_x509write_cert writer;
  mbedtls_x509write_crt_init(&writer);
  mbedtls_mpi serial;
  mbedtls_mpi_init(&serial);
  REQUIRE(mbedtls_mpi_lset(&serial, 4242) == 0);
  mbedtls_x509write_crt_set_subject_key(&writer, &key);
  mbedtls_x509write_crt_set_issuer_key(&writer, &key);
  mbedtls_x509write_crt_set_md_alg(&writer, MBEDTLS_MD_SHA256);
  REQUIRE(mbedtls_x509write_crt_set_serial(&writer, &serial) == 0);
  REQUIRE(mbedtls_x509write_crt_set_subject_name(&writer, "C=DE,O=Test Org,CN=Test CA") == 0);
  REQUIRE(mbedtls_x509write_crt_set_issuer_name(&writer, "C=DE,O=Test Org,CN=Test CA") == 0);
  REQUIRE(mbedtls_x509write_crt_set_validity(&writer, "20240101000000", "20400101000000") == 0);
  REQUIRE(mbedtls_x509write_crt_set_basic_constraints(&writer, 1, 0) == 0);
  REQUIRE(mbedtls_x509write_crt_set_subject_key_identifier(&writer) == 0);
  std::vector<unsigned char> der(4096);
  const int der_size = mbedtls_x509write_crt_der(&writer, der.data(), der.size(),
                                                 TlsRandom::generate, rng().context());
  REQUIRE(der_size > 0);
  const std::string der_text(reinterpret_cast<const char*>(der.data() + der.size() - der_size),
                             static_cast<size_t>(der_size));
  mbedtls_x509write_crt_free(&writer);
  mbedtls_mpi_free(&serial);

  mbedtls_x509_crt parsed;
  mbedtls_x509_crt_init(&parsed);
  REQUIRE(mbedtls_x509_crt_parse_der(&parsed,
                                     reinterpret_cast<const unsigned char*>(der_text.data()),
                                     der_text.size()) == 0);
  write(dir.file("ca.pem"), crt_pem(parsed));
  write(dir.file("ca.der"), der_text);
  write(dir.file("ca.key"), key_pem(key));
  mbedtls_x509_crt_free(&parsed);
  mbedtls_pk_free(&key);

  SECTION("PEM and DER certificates load and mint verifiable leaves") {
    for (const char* cert_file : {"ca.pem", "ca.der"}) {
      auto loaded = CertificateAuthority::load(dir.file(cert_file), dir.file("ca.key"), rng());
      INFO(cert_file << ": " << (loaded.ok() ? "" : loaded.error().message));
      REQUIRE(loaded.ok());
      const CertificateAuthority& test_ca = *loaded.value();
      CHECK(test_ca.cert_pem() == read(dir.file("ca.pem")));
      const Leaf leaf = mint(test_ca, "svc.internal");
      CHECK(verify(leaf, test_ca, "svc.internal") == 0);
      CHECK(leaf->chain.issuer_raw.len == test_ca.certificate()->subject_raw.len);
      CHECK(std::memcmp(leaf->chain.issuer_raw.p, test_ca.certificate()->subject_raw.p,
                        leaf->chain.issuer_raw.len) == 0);
      // Clamped to the CA's own end.
      CHECK(leaf->chain.valid_to.year <= 2040);
    }
  }
  SECTION("the generated CA's PEM round-trips through write_pem_file") {
    write(dir.file("generated.pem"), ca.cert_pem());
    CHECK(read(dir.file("generated.pem")) == ca.cert_pem());
    struct stat info {};
    REQUIRE(stat(dir.file("generated.pem").c_str(), &info) == 0);
    CHECK((info.st_mode & 07777) == 0644);
    // Overwriting is atomic and leaves no temporary behind.
    write(dir.file("generated.pem"), "second\n");
    CHECK(read(dir.file("generated.pem")) == "second\n");
    size_t entries = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.file(""))) {
      ++entries;
    }
    CHECK(entries == 4);  // ca.pem, ca.der, ca.key, generated.pem
  }
  SECTION("errors name the file and the problem") {
    const auto error_of = [&](const std::string& cert, const std::string& key_file) {
      auto loaded = CertificateAuthority::load(cert, key_file, rng());
      REQUIRE_FALSE(loaded.ok());
      return loaded.error().message;
    };
    using Catch::Matchers::Contains;
    const std::string missing = dir.file("missing.pem");
    CHECK_THAT(error_of(missing, dir.file("ca.key")), Contains(missing) && Contains("unreadable"));
    CHECK_THAT(error_of(dir.file("ca.pem"), missing), Contains(missing) && Contains("unreadable"));

    write(dir.file("junk.pem"), "not a certificate\n");
    CHECK_THAT(error_of(dir.file("junk.pem"), dir.file("ca.key")),
               Contains(dir.file("junk.pem")) && Contains("not a certificate"));
    CHECK_THAT(error_of(dir.file("ca.pem"), dir.file("junk.pem")),
               Contains(dir.file("junk.pem")) && Contains("not a private key"));

    // A leaf is no CA, even with its own key.
    const Leaf leaf = mint(ca, "leaf.example.com");
    write(dir.file("leaf.pem"), crt_pem(leaf->chain));
    write(dir.file("leaf.key"), key_pem(leaf->key));
    CHECK_THAT(error_of(dir.file("leaf.pem"), dir.file("leaf.key")),
               Contains(dir.file("leaf.pem")) && Contains("not a CA"));

    // The right kind of files, but not a pair.
    CHECK_THAT(error_of(dir.file("ca.pem"), dir.file("leaf.key")),
               Contains(dir.file("leaf.key")) && Contains("does not match"));

    write(dir.file("encrypted.key"),
          "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBAA==\n-----END ENCRYPTED PRIVATE KEY-----\n");
    CHECK_THAT(error_of(dir.file("ca.pem"), dir.file("encrypted.key")),
               Contains(dir.file("encrypted.key")) && Contains("encrypted"));
  }
}

TEST_CASE("tls ca: write_pem_file errors name the path", "[tls_ca]") {
  const std::string path = "/nonexistent-openshell-dir/ca.pem";
  auto written = write_pem_file(path, "x");
  REQUIRE_FALSE(written.ok());
  CHECK_THAT(written.error().message, Catch::Matchers::Contains(path));
}

TEST_CASE("tls ca: the bundle file is the combined bundle, copied without reading", "[tls_ca]") {
  const std::string ca_pem = shared_ca().cert_pem();
  openshell::test::TempDir dir("openshell-tls");
  const std::string path = dir.file("bundle.pem");
  auto written = write_ca_bundle_file(path, ca_pem);
  REQUIRE(written.ok());
  CHECK(read(path) == combined_ca_bundle(ca_pem));
  auto failed = write_ca_bundle_file("/nonexistent-openshell-dir/bundle.pem", ca_pem);
  REQUIRE_FALSE(failed.ok());
  CHECK_THAT(failed.error().message, Catch::Matchers::Contains("/nonexistent-openshell-dir"));
}

TEST_CASE("tls ca: the combined bundle is the system bundle, a newline, then the CA", "[tls_ca]") {
  const std::string ca_pem = shared_ca().cert_pem();
  const std::string bundle = combined_ca_bundle(ca_pem);
  REQUIRE(bundle.size() >= ca_pem.size());
  CHECK(bundle.compare(bundle.size() - ca_pem.size(), ca_pem.size(), ca_pem) == 0);
  std::string system;
  for (const char* path : {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                           "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem"}) {
    std::ifstream in(path, std::ios::binary);
    if (!in) continue;
    system = read(path);
    break;
  }
  if (system.empty()) {
    CHECK(bundle == ca_pem);
  } else {
    CHECK(bundle.compare(0, system.size(), system) == 0);
    CHECK(bundle[bundle.size() - ca_pem.size() - 1] == '\n');
  }
}

TEST_CASE("tls ca: OpenSSL accepts the leaves and a CA it made", "[tls_ca][openssl]") {
  if (!have_openssl()) {
    WARN("openssl not installed: skipped");
    return;
  }
  openshell::test::TempDir dir("openshell-tls");
  const CertificateAuthority& ca = shared_ca();
  write(dir.file("ca.pem"), ca.cert_pem());
  const std::string verify_cmd =
      "openssl verify -x509_strict -purpose sslserver -CAfile " + dir.file("ca.pem") + " ";

  write(dir.file("name.pem"), crt_pem(mint(ca, "api.example.com")->chain));
  CHECK(run(verify_cmd + "-verify_hostname api.example.com " + dir.file("name.pem")) == 0);
  CHECK(run(verify_cmd + "-verify_hostname other.example.com " + dir.file("name.pem")) != 0);

  write(dir.file("v4.pem"), crt_pem(mint(ca, "127.0.0.1")->chain));
  CHECK(run(verify_cmd + "-verify_ip 127.0.0.1 " + dir.file("v4.pem")) == 0);
  CHECK(run(verify_cmd + "-verify_ip 127.0.0.2 " + dir.file("v4.pem")) != 0);

  write(dir.file("v6.pem"), crt_pem(mint(ca, "::1")->chain));
  CHECK(run(verify_cmd + "-verify_ip ::1 " + dir.file("v6.pem")) == 0);
  CHECK(run(verify_cmd + "-verify_ip ::2 " + dir.file("v6.pem")) != 0);

  // An RSA CA made by OpenSSL, its names PrintableString (mbedTLS would write UTF8String):
  // leaves must still name it byte for byte.
  write(dir.file("req.cnf"),
        "[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n"
        "string_mask = default\n[dn]\nC = US\nO = Example Org\nCN = Example RSA CA\n"
        "[ext]\nbasicConstraints = critical,CA:true\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n");
  REQUIRE(run("openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 30 -config " +
              dir.file("req.cnf") + " -keyout " + dir.file("rsa.key") + " -out " +
              dir.file("rsa.pem")) == 0);
  auto rsa = CertificateAuthority::load(dir.file("rsa.pem"), dir.file("rsa.key"), rng());
  INFO((rsa.ok() ? "" : rsa.error().message));
  REQUIRE(rsa.ok());
  const Leaf leaf = mint(*rsa.value(), "api.example.com");
  CHECK(verify(leaf, *rsa.value(), "api.example.com") == 0);
  const mbedtls_x509_crt& rsa_crt = *rsa.value()->certificate();
  REQUIRE(leaf->chain.issuer_raw.len == rsa_crt.subject_raw.len);
  CHECK(std::memcmp(leaf->chain.issuer_raw.p, rsa_crt.subject_raw.p, rsa_crt.subject_raw.len) == 0);
  write(dir.file("rsa-leaf.pem"), crt_pem(leaf->chain));
  CHECK(run("openssl verify -x509_strict -purpose sslserver -verify_hostname api.example.com "
            "-CAfile " +
            dir.file("rsa.pem") + " " + dir.file("rsa-leaf.pem")) == 0);

  // A real encrypted key is refused as such.
  REQUIRE(run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes-256-cbc "
              "-pass pass:secret -out " +
              dir.file("enc.key")) == 0);
  auto encrypted = CertificateAuthority::load(dir.file("rsa.pem"), dir.file("enc.key"), rng());
  REQUIRE_FALSE(encrypted.ok());
  CHECK_THAT(encrypted.error().message, Catch::Matchers::Contains("encrypted"));
}
