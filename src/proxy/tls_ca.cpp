// The interception CA: generating or loading it, minting per-host leaves with mbedTLS 2.28's
// certificate writer (SAN, extendedKeyUsage and AKI encoded by hand: 2.28 has no setters).
#include "openshell/proxy/tls_ca.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <mbedtls/asn1write.h>
#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/platform.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <utility>

#include "openshell/proxy/tls_settings.hpp"

namespace openshell::proxy::tls {
namespace {

constexpr const char* kCaSubject = "CN=OpenShell Sandbox CA,O=OpenShell";
// A fixed date rather than "now": the CA does not depend on the clock at generation time, and
// it is earlier than any leaf's not_before on a sane clock.
constexpr const char* kCaNotBefore = "20250101000000";
// Before 2050, so both dates stay UTCTime: some clients mishandle the GeneralizedTime switch.
constexpr const char* kCaNotAfter = "20491231235959";
// A day of slack for clients whose clock runs behind; a year is far longer than any sandbox.
constexpr std::time_t kLeafBackdate = std::time_t{24} * 60 * 60;
constexpr std::time_t kLeafLifetime = std::time_t{365} * 24 * 60 * 60;
constexpr size_t kSerialBytes = 16;
// A P-256 leaf is under 1 KB; this leaves room for an RSA CA's long signature and issuer name.
constexpr size_t kCertBufferSize = 8192;
constexpr size_t kMaxHostLength = 253;  // a DNS name's limit; also fits mbedTLS's DN parser

constexpr const char* kSystemBundles[] = {
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
};

std::string mbedtls_text(int rc) {
  std::array<char, 160> text{};
  mbedtls_strerror(rc, text.data(), text.size());
  char code[16];
  std::snprintf(code, sizeof code, "-0x%04x", static_cast<unsigned>(-rc));
  return std::string(text.data()) + " (" + code + ")";
}

Error tls_error(std::string what, int rc) {
  return make_error(Errc::kInternal, std::move(what) + ": " + mbedtls_text(rc));
}

// RAII for the mbedTLS structures used only inside one function.
struct Crt {
  mbedtls_x509_crt value;
  Crt() { mbedtls_x509_crt_init(&value); }
  ~Crt() { mbedtls_x509_crt_free(&value); }
  Crt(const Crt&) = delete;
  Crt& operator=(const Crt&) = delete;
};
struct Mpi {
  mbedtls_mpi value;
  Mpi() { mbedtls_mpi_init(&value); }
  ~Mpi() { mbedtls_mpi_free(&value); }
  Mpi(const Mpi&) = delete;
  Mpi& operator=(const Mpi&) = delete;
};
struct CertWriter {
  mbedtls_x509write_cert value;
  CertWriter() { mbedtls_x509write_crt_init(&value); }
  ~CertWriter() { mbedtls_x509write_crt_free(&value); }
  CertWriter(const CertWriter&) = delete;
  CertWriter& operator=(const CertWriter&) = delete;
};

// asn1write writes backwards from the end of a buffer. This keeps the running length and the
// first failure, so an encoding reads as a list of writes, innermost content first.
class DerWriter {
 public:
  DerWriter() : p_(buf_.data() + buf_.size()) {}
  DerWriter(const DerWriter&) = delete;
  DerWriter& operator=(const DerWriter&) = delete;

  size_t length() const { return static_cast<size_t>(buf_.data() + buf_.size() - p_); }
  const unsigned char* data() const { return p_; }
  bool ok() const { return ok_; }

  void raw(const unsigned char* bytes, size_t size) {
    check(mbedtls_asn1_write_raw_buffer(&p_, buf_.data(), bytes, size));
  }
  void oid(const char* oid, size_t size) {
    check(mbedtls_asn1_write_oid(&p_, buf_.data(), oid, size));
  }
  // Tags everything written since length() was `mark`.
  void wrap(size_t mark, unsigned char tag) {
    check(mbedtls_asn1_write_len(&p_, buf_.data(), length() - mark));
    check(mbedtls_asn1_write_tag(&p_, buf_.data(), tag));
  }

 private:
  void check(int rc) { ok_ = ok_ && rc >= 0; }

  std::array<unsigned char, 512> buf_{};
  unsigned char* p_;
  bool ok_ = true;
};

constexpr unsigned char kSequence = MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE;
constexpr unsigned char kDnsNameTag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2;    // GeneralName [2]
constexpr unsigned char kIpAddressTag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7;  // GeneralName [7]
constexpr unsigned char kKeyIdTag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | 0;      // AKI keyIdentifier

int add_extension(mbedtls_x509write_cert& writer, const char* oid, size_t oid_size,
                  const DerWriter& der) {
  if (!der.ok()) return MBEDTLS_ERR_ASN1_BUF_TOO_SMALL;
  return mbedtls_x509write_crt_set_extension(&writer, oid, oid_size, 0, der.data(), der.length());
}

// A host as it goes into a leaf: the text for CN (and dNSName), or the address bytes.
struct LeafHost {
  std::string text;
  std::array<unsigned char, 16> address{};
  size_t address_size = 0;  // 4 or 16 for an IP literal, 0 for a name
};

std::optional<LeafHost> parse_host(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host.size() > kMaxHostLength) return std::nullopt;
  LeafHost out;
  out.text.assign(host);
  if (inet_pton(AF_INET, out.text.c_str(), out.address.data()) == 1) {
    out.address_size = 4;
    return out;
  }
  if (inet_pton(AF_INET6, out.text.c_str(), out.address.data()) == 1) {
    out.address_size = 16;
    return out;
  }
  // Letters, digits, '-', '.' and '_' (seen in real names): nothing mbedTLS's DN parser would
  // read as syntax (',', '=', '\\') and nothing a dNSName cannot hold.
  for (const char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_';
    if (!ok) return std::nullopt;
  }
  return out;
}

std::string format_time(std::time_t when) {
  std::tm parts{};
  gmtime_r(&when, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d%H%M%S", &parts);
  return text;
}

std::string format_time(const mbedtls_x509_time& when) {
  char text[32];
  std::snprintf(text, sizeof text, "%04d%02d%02d%02d%02d%02d", when.year, when.mon, when.day,
                when.hour, when.min, when.sec);
  return text;
}

int generate_p256(mbedtls_pk_context& key, TlsRandom& random) {
  int rc = mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
  if (rc != 0) return rc;
  return mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key), TlsRandom::generate,
                             random.context());
}

// 16 random bytes, top bit clear so the INTEGER is positive and stays 16 bytes, second bit set
// so it is never zero or shorter.
int random_serial(mbedtls_mpi& serial, TlsRandom& random) {
  std::array<unsigned char, kSerialBytes> bytes{};
  if (int rc = TlsRandom::generate(random.context(), bytes.data(), bytes.size()); rc != 0) {
    return rc;
  }
  bytes[0] = static_cast<unsigned char>((bytes[0] & 0x7f) | 0x40);
  return mbedtls_mpi_read_binary(&serial, bytes.data(), bytes.size());
}

Result<std::vector<unsigned char>> write_der(mbedtls_x509write_cert& writer, TlsRandom& random) {
  std::vector<unsigned char> buffer(kCertBufferSize);
  const int size = mbedtls_x509write_crt_der(&writer, buffer.data(), buffer.size(),
                                             TlsRandom::generate, random.context());
  if (size < 0) return tls_error("signing a certificate failed", size);
  // The writer fills the buffer from its end.
  buffer.erase(buffer.begin(), buffer.end() - size);
  return buffer;
}

std::string der_to_pem(const unsigned char* der, size_t size) {
  std::string pem(size * 2 + 128, '\0');
  size_t written = 0;
  const int rc = mbedtls_pem_write_buffer(
      "-----BEGIN CERTIFICATE-----\n", "-----END CERTIFICATE-----\n", der, size,
      reinterpret_cast<unsigned char*>(pem.data()), pem.size(), &written);
  if (rc != 0) return {};
  pem.resize(written > 0 ? written - 1 : 0);  // `written` counts the terminating NUL
  return pem;
}

// The issuer of a leaf must be the CA's subject byte for byte (Go compares the raw DER), so the
// writer's list is built from the parsed subject, keeping each value's string type. The writer
// emits its list last-first, hence the prepending. Multi-valued RDNs come out split, a form no
// CA we generate or expect to load uses.
int copy_issuer(mbedtls_x509write_cert& writer, const mbedtls_x509_name& subject) {
  for (const mbedtls_x509_name* name = &subject; name != nullptr; name = name->next) {
    if (name->oid.p == nullptr) continue;
    auto* node =
        static_cast<mbedtls_asn1_named_data*>(mbedtls_calloc(1, sizeof(mbedtls_asn1_named_data)));
    if (node == nullptr) return MBEDTLS_ERR_X509_ALLOC_FAILED;
    node->next = writer.issuer;
    writer.issuer = node;  // owned by the writer from here: freed with it
    node->oid.tag = name->oid.tag;
    node->oid.len = name->oid.len;
    node->oid.p = static_cast<unsigned char*>(mbedtls_calloc(1, name->oid.len));
    node->val.tag = name->val.tag;
    node->val.len = name->val.len;
    node->val.p = static_cast<unsigned char*>(mbedtls_calloc(1, name->val.len + 1));
    if (node->oid.p == nullptr || node->val.p == nullptr) return MBEDTLS_ERR_X509_ALLOC_FAILED;
    std::memcpy(node->oid.p, name->oid.p, name->oid.len);
    std::memcpy(node->val.p, name->val.p, name->val.len);
  }
  return 0;
}

// The CA's subjectKeyIdentifier, if it has one: 2.28 parses the extension but keeps no field.
std::vector<unsigned char> subject_key_id(const mbedtls_x509_crt& crt) {
  unsigned char* p = crt.v3_ext.p;
  if (p == nullptr) return {};
  const unsigned char* const end = p + crt.v3_ext.len;
  size_t len = 0;
  if (mbedtls_asn1_get_tag(&p, end, &len, kSequence) != 0) return {};
  while (p < end) {
    if (mbedtls_asn1_get_tag(&p, end, &len, kSequence) != 0) return {};
    unsigned char* const next = p + len;
    mbedtls_x509_buf oid{};
    oid.tag = MBEDTLS_ASN1_OID;
    if (mbedtls_asn1_get_tag(&p, next, &oid.len, MBEDTLS_ASN1_OID) != 0) return {};
    oid.p = p;
    p += oid.len;
    if (MBEDTLS_OID_CMP(MBEDTLS_OID_SUBJECT_KEY_IDENTIFIER, &oid) == 0) {
      int critical = 0;
      (void)mbedtls_asn1_get_bool(&p, next, &critical);
      if (mbedtls_asn1_get_tag(&p, next, &len, MBEDTLS_ASN1_OCTET_STRING) != 0) return {};
      if (mbedtls_asn1_get_tag(&p, next, &len, MBEDTLS_ASN1_OCTET_STRING) != 0) return {};
      return std::vector<unsigned char>(p, p + len);
    }
    p = next;
  }
  return {};
}

Result<std::string> read_whole_file(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rbe");
  if (file == nullptr) return Error::from_errno("open");
  std::string contents;
  std::array<char, 16384> chunk{};
  size_t got = 0;
  while ((got = std::fread(chunk.data(), 1, chunk.size(), file)) > 0) {
    contents.append(chunk.data(), got);
  }
  const bool failed = std::ferror(file) != 0;
  const int err = errno;
  std::fclose(file);
  if (failed) return Error::from_errno("read", err);
  return contents;
}

// mbedTLS takes PEM only NUL-terminated with the NUL counted, and DER exactly.
size_t parse_length(const std::string& contents) {
  return contents.find("-----BEGIN") != std::string::npos ? contents.size() + 1 : contents.size();
}

const unsigned char* bytes_of(const std::string& contents) {
  return reinterpret_cast<const unsigned char*>(contents.c_str());
}

int configure_server(LeafCertificate& leaf, TlsRandom& random,
                     mbedtls_ssl_ticket_context* tickets) {
  // Static: mbedTLS keeps the pointer. Only HTTP/1.1 is relayed inside the tunnel.
  static const char* alpn_protocols[] = {"http/1.1", nullptr};
  mbedtls_ssl_config& conf = leaf.server_config;
  int rc = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                       MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc != 0) return rc;
  mbedtls_ssl_conf_rng(&conf, TlsRandom::generate, random.context());
  apply_server_settings(conf);
  mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_NONE);
  if ((rc = mbedtls_ssl_conf_alpn_protocols(&conf, alpn_protocols)) != 0) return rc;
  if ((rc = mbedtls_ssl_conf_own_cert(&conf, &leaf.chain, &leaf.key)) != 0) return rc;
  if (tickets != nullptr) {
    mbedtls_ssl_conf_session_tickets_cb(&conf, mbedtls_ssl_ticket_write, mbedtls_ssl_ticket_parse,
                                        tickets);
  }
  return 0;
}

}  // namespace

LeafCertificate::LeafCertificate() {
  mbedtls_x509_crt_init(&chain);
  mbedtls_pk_init(&key);
  mbedtls_ssl_config_init(&server_config);
}

LeafCertificate::~LeafCertificate() {
  mbedtls_ssl_config_free(&server_config);
  mbedtls_pk_free(&key);
  mbedtls_x509_crt_free(&chain);
}

CertificateAuthority::CertificateAuthority(TlsRandom& random, mbedtls_ssl_ticket_context* tickets)
    : random_(random), tickets_(tickets) {
  mbedtls_x509_crt_init(&cert_);
  mbedtls_pk_init(&key_);
}

CertificateAuthority::~CertificateAuthority() {
  mbedtls_pk_free(&key_);
  mbedtls_x509_crt_free(&cert_);
}

Result<void> CertificateAuthority::adopt(const unsigned char* der, size_t der_len,
                                         std::string_view origin) {
  if (int rc = mbedtls_x509_crt_parse_der(&cert_, der, der_len); rc != 0) {
    return tls_error(std::string(origin) + ": parsing the CA certificate failed", rc);
  }
  cert_pem_ = der_to_pem(cert_.raw.p, cert_.raw.len);
  if (cert_pem_.empty()) return make_error(Errc::kInternal, "encoding the CA certificate failed");
  key_id_ = subject_key_id(cert_);
  return {};
}

Result<std::unique_ptr<CertificateAuthority>> CertificateAuthority::generate(
    TlsRandom& random, mbedtls_ssl_ticket_context* tickets) {
  std::unique_ptr<CertificateAuthority> ca(new CertificateAuthority(random, tickets));
  if (int rc = generate_p256(ca->key_, random); rc != 0) {
    return tls_error("generating the CA key failed", rc);
  }
  Mpi serial;
  CertWriter writer;
  mbedtls_x509write_cert& w = writer.value;
  mbedtls_x509write_crt_set_subject_key(&w, &ca->key_);
  mbedtls_x509write_crt_set_issuer_key(&w, &ca->key_);
  mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
  int rc = random_serial(serial.value, random);
  if (rc == 0) rc = mbedtls_x509write_crt_set_serial(&w, &serial.value);
  if (rc == 0) rc = mbedtls_x509write_crt_set_subject_name(&w, kCaSubject);
  if (rc == 0) rc = mbedtls_x509write_crt_set_issuer_name(&w, kCaSubject);
  if (rc == 0) rc = mbedtls_x509write_crt_set_validity(&w, kCaNotBefore, kCaNotAfter);
  if (rc == 0) rc = mbedtls_x509write_crt_set_basic_constraints(&w, 1, -1);  // no pathlen
  if (rc == 0) {
    rc = mbedtls_x509write_crt_set_key_usage(
        &w, MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN);
  }
  if (rc == 0) rc = mbedtls_x509write_crt_set_subject_key_identifier(&w);
  if (rc != 0) return tls_error("preparing the CA certificate failed", rc);
  Result<std::vector<unsigned char>> der = write_der(w, random);
  if (!der) return der.error();
  if (Result<void> adopted = ca->adopt(der->data(), der->size(), "generated CA"); !adopted) {
    return adopted.error();
  }
  return ca;
}

Result<std::unique_ptr<CertificateAuthority>> CertificateAuthority::load(
    const std::string& cert_path, const std::string& key_path, TlsRandom& random,
    mbedtls_ssl_ticket_context* tickets) {
  const std::string cert_what = "CA certificate " + cert_path;
  const std::string key_what = "CA key " + key_path;
  Result<std::string> cert_file = read_whole_file(cert_path);
  if (!cert_file) {
    return make_error(Errc::kIo, cert_what + " is unreadable: " + cert_file.error().message);
  }
  Crt parsed;
  const int parsed_rc =
      mbedtls_x509_crt_parse(&parsed.value, bytes_of(*cert_file), parse_length(*cert_file));
  // A positive count means some certificates of a PEM list failed; the first one is what counts.
  if (parsed_rc < 0 || parsed.value.raw.len == 0) {
    return make_error(
        Errc::kParse,
        cert_what + " is not a certificate (PEM or DER): " +
            mbedtls_text(parsed_rc < 0 ? parsed_rc : MBEDTLS_ERR_X509_CERT_UNKNOWN_FORMAT));
  }
  const mbedtls_x509_crt& cert = parsed.value;
  if ((cert.ext_types & MBEDTLS_X509_EXT_BASIC_CONSTRAINTS) == 0 || cert.ca_istrue == 0) {
    return make_error(Errc::kInvalidArgument,
                      cert_what + " is not a CA certificate (basicConstraints CA:TRUE missing)");
  }
  if (mbedtls_x509_crt_check_key_usage(&cert, MBEDTLS_X509_KU_KEY_CERT_SIGN) != 0) {
    return make_error(Errc::kInvalidArgument,
                      cert_what + " is not a CA certificate (keyUsage lacks keyCertSign)");
  }
  if (mbedtls_x509_time_is_past(&cert.valid_to) != 0) {
    return make_error(Errc::kInvalidArgument,
                      cert_what + " has expired (notAfter " + format_time(cert.valid_to) + "Z)");
  }

  Result<std::string> key_file = read_whole_file(key_path);
  if (!key_file) {
    return make_error(Errc::kIo, key_what + " is unreadable: " + key_file.error().message);
  }
  std::unique_ptr<CertificateAuthority> ca(new CertificateAuthority(random, tickets));
  const int key_rc =
      mbedtls_pk_parse_key(&ca->key_, bytes_of(*key_file), parse_length(*key_file), nullptr, 0);
  if (key_rc == MBEDTLS_ERR_PK_PASSWORD_REQUIRED ||
      (key_rc != 0 && key_file->find("ENCRYPTED") != std::string::npos)) {
    return make_error(Errc::kInvalidArgument,
                      key_what + " is encrypted; only unencrypted keys are supported");
  }
  if (key_rc != 0) {
    return make_error(Errc::kParse,
                      key_what + " is not a private key (PEM or DER): " + mbedtls_text(key_rc));
  }
  const mbedtls_pk_type_t type = mbedtls_pk_get_type(&ca->key_);
  if (type != MBEDTLS_PK_ECKEY && type != MBEDTLS_PK_RSA) {
    return make_error(Errc::kInvalidArgument, key_what + " has an unsupported key type (" +
                                                  mbedtls_pk_get_name(&ca->key_) +
                                                  "); EC and RSA keys are supported");
  }
  if (mbedtls_pk_check_pair(&cert.pk, &ca->key_) != 0) {
    return make_error(Errc::kInvalidArgument,
                      key_what + " does not match the certificate " + cert_path);
  }
  if (Result<void> adopted = ca->adopt(cert.raw.p, cert.raw.len, cert_what); !adopted) {
    return adopted.error();
  }
  return ca;
}

Result<std::shared_ptr<const LeafCertificate>> CertificateAuthority::mint(
    std::string_view host) const {
  const std::optional<LeafHost> parsed = parse_host(host);
  if (!parsed) {
    return make_error(Errc::kInvalidArgument, "cannot mint a certificate for \"" +
                                                  std::string(host) +
                                                  "\": not a host name or IP literal");
  }
  const std::string failed = "minting a certificate for " + parsed->text + " failed";
  auto leaf = std::make_shared<LeafCertificate>();
  if (int rc = generate_p256(leaf->key, random_); rc != 0) return tls_error(failed, rc);

  DerWriter san;
  if (parsed->address_size > 0) {
    san.raw(parsed->address.data(), parsed->address_size);
    san.wrap(0, kIpAddressTag);
  } else {
    san.raw(reinterpret_cast<const unsigned char*>(parsed->text.data()), parsed->text.size());
    san.wrap(0, kDnsNameTag);
  }
  san.wrap(0, kSequence);
  DerWriter eku;
  eku.oid(MBEDTLS_OID_SERVER_AUTH, MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH));
  eku.wrap(0, kSequence);

  const std::time_t now = std::time(nullptr);
  std::string not_after = format_time(now + kLeafLifetime);
  // Lexicographic order is time order for these fixed-width strings.
  if (const std::string ca_end = format_time(cert_.valid_to); ca_end < not_after) {
    not_after = ca_end;
  }

  Mpi serial;
  CertWriter writer;
  mbedtls_x509write_cert& w = writer.value;
  mbedtls_x509write_crt_set_subject_key(&w, &leaf->key);
  mbedtls_x509write_crt_set_issuer_key(&w, &key_);
  mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
  int rc = random_serial(serial.value, random_);
  if (rc == 0) rc = mbedtls_x509write_crt_set_serial(&w, &serial.value);
  if (rc == 0) rc = mbedtls_x509write_crt_set_subject_name(&w, ("CN=" + parsed->text).c_str());
  if (rc == 0) rc = copy_issuer(w, cert_.subject);
  if (rc == 0) {
    rc = mbedtls_x509write_crt_set_validity(&w, format_time(now - kLeafBackdate).c_str(),
                                            not_after.c_str());
  }
  if (rc == 0) rc = mbedtls_x509write_crt_set_basic_constraints(&w, 0, 0);
  // digitalSignature alone: ECDHE with an EC key never uses keyEncipherment.
  if (rc == 0) rc = mbedtls_x509write_crt_set_key_usage(&w, MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
  if (rc == 0) {
    rc = add_extension(w, MBEDTLS_OID_EXTENDED_KEY_USAGE,
                       MBEDTLS_OID_SIZE(MBEDTLS_OID_EXTENDED_KEY_USAGE), eku);
  }
  if (rc == 0) {
    rc = add_extension(w, MBEDTLS_OID_SUBJECT_ALT_NAME,
                       MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), san);
  }
  if (rc == 0 && !key_id_.empty()) {
    // The CA's own identifier, not one recomputed from its key: a loaded CA may use another
    // method, and OpenSSL rejects an issuer whose SKI differs from the leaf's AKI.
    DerWriter aki;
    aki.raw(key_id_.data(), key_id_.size());
    aki.wrap(0, kKeyIdTag);
    aki.wrap(0, kSequence);
    rc = add_extension(w, MBEDTLS_OID_AUTHORITY_KEY_IDENTIFIER,
                       MBEDTLS_OID_SIZE(MBEDTLS_OID_AUTHORITY_KEY_IDENTIFIER), aki);
  } else if (rc == 0) {
    rc = mbedtls_x509write_crt_set_authority_key_identifier(&w);
  }
  if (rc != 0) return tls_error(failed, rc);

  Result<std::vector<unsigned char>> der = [&] {
    // One signer at a time on the CA key: mbedTLS contexts are not meant for concurrent use.
    std::lock_guard lock(sign_mutex_);
    return write_der(w, random_);
  }();
  if (!der) return der.error();
  if ((rc = mbedtls_x509_crt_parse_der(&leaf->chain, der->data(), der->size())) != 0 ||
      (rc = mbedtls_x509_crt_parse_der(&leaf->chain, cert_.raw.p, cert_.raw.len)) != 0 ||
      (rc = configure_server(*leaf, random_, tickets_)) != 0) {
    return tls_error(failed, rc);
  }
  return std::shared_ptr<const LeafCertificate>(std::move(leaf));
}

std::string combined_ca_bundle(std::string_view ca_pem) {
  std::string bundle;
  for (const char* path : kSystemBundles) {
    if (Result<std::string> contents = read_whole_file(path)) {
      bundle = std::move(*contents);
      break;
    }
  }
  if (!bundle.empty() && bundle.back() != '\n') bundle += '\n';
  bundle += ca_pem;
  return bundle;
}

namespace {

// Writes all of `bytes`; the failing call's name, or nullptr (errno then says why).
const char* write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t wrote = ::write(fd, bytes.data(), bytes.size());
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0) return "write";
    bytes.remove_prefix(static_cast<size_t>(wrote));
  }
  return nullptr;
}

// Appends the rest of `from` to `to`: in the kernel (copy_file_range), or through a buffer
// where the kernel cannot (another filesystem type, an old kernel). Adds the bytes to `copied`.
const char* copy_all(int from, int to, size_t& copied) {
  for (bool kernel = true;;) {
    if (kernel) {
      const ssize_t n = ::copy_file_range(from, nullptr, to, nullptr, size_t{1} << 30, 0);
      if (n > 0) {
        copied += static_cast<size_t>(n);
        continue;
      }
      if (n == 0) return nullptr;
      if (errno == EINTR) continue;
      if (errno != EXDEV && errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL) {
        return "copy_file_range";
      }
      kernel = false;
    }
    std::array<char, 16384> chunk{};
    const ssize_t n = ::read(from, chunk.data(), chunk.size());
    if (n == 0) return nullptr;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return "read";
    if (const char* failed = write_all(to, std::string_view(chunk.data(), static_cast<size_t>(n))))
      return failed;
    copied += static_cast<size_t>(n);
  }
}

// Through a temporary file in the same directory, renamed over `path` once `fill` succeeded:
// readers never see a half-written file. `fill` returns the failing call's name, or nullptr.
template <typename Fill>
Result<void> write_atomically(const std::string& path, Fill&& fill) {
  const auto failure = [&path](std::string_view call, int err) {
    return make_error(Errc::kIo,
                      "cannot write " + path + ": " + Error::from_errno(call, err).message);
  };
  std::string temp = path + ".XXXXXX";  // same directory, so rename() is atomic
  const int fd = mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) return failure("mkostemp", errno);
  const char* call = nullptr;
  int err = 0;
  // No fsync: readers must never see a half-written file, but nothing needs it across a crash.
  if (fchmod(fd, 0644) != 0) {
    call = "fchmod";
    err = errno;
  }
  if (call == nullptr && (call = fill(fd)) != nullptr) err = errno;
  if (::close(fd) != 0 && call == nullptr) {
    call = "close";
    err = errno;
  }
  if (call == nullptr && std::rename(temp.c_str(), path.c_str()) != 0) {
    call = "rename";
    err = errno;
  }
  if (call != nullptr) {
    ::unlink(temp.c_str());
    return failure(call, err);
  }
  return {};
}

}  // namespace

Result<void> write_pem_file(const std::string& path, std::string_view pem) {
  return write_atomically(path, [pem](int fd) { return write_all(fd, pem); });
}

Result<void> write_ca_bundle_file(const std::string& path, std::string_view ca_pem) {
  return write_atomically(path, [ca_pem](int fd) -> const char* {
    for (const char* system : kSystemBundles) {
      const int from = ::open(system, O_RDONLY | O_CLOEXEC);
      if (from < 0) continue;
      struct stat status {};
      if (::fstat(from, &status) != 0 || !S_ISREG(status.st_mode)) {
        ::close(from);
        continue;
      }
      size_t copied = 0;
      const char* failed = copy_all(from, fd, copied);
      char last = '\n';
      if (failed == nullptr && copied > 0 &&
          ::pread(from, &last, 1, static_cast<off_t>(copied - 1)) != 1) {
        failed = "pread";
      }
      const int saved = errno;
      ::close(from);
      errno = saved;
      if (failed != nullptr) return failed;
      if (last != '\n' && (failed = write_all(fd, "\n")) != nullptr) return failed;
      break;
    }
    return write_all(fd, ca_pem);
  });
}

}  // namespace openshell::proxy::tls
