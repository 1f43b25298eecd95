// libFuzzer target for the request-head parser and the request-target parsers. Invariants:
// incremental feeding equals one-shot, consumed <= size, parsed fields carry no CR/LF/NUL, and a
// parsed head serialises to bytes that parse back to the same head.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "openshell/proxy/http_head.hpp"

namespace {

using openshell::proxy::RequestHead;
using openshell::proxy::RequestHeadParser;
using Status = RequestHeadParser::Status;

// abort() rather than assert(): the invariant must hold in NDEBUG builds too.
void require(bool ok) {
  if (!ok) std::abort();
}

bool clean(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == s.npos;
}

struct Run {
  Status status = Status::kNeedMore;
  size_t consumed = 0;
  RequestHead head;
  openshell::proxy::HeadError error = openshell::proxy::HeadError::kMalformedRequestLine;
  std::string reason;
};

// piece_for(offset) gives the length of the next piece fed; 0 means "everything left".
template <class PieceFn>
Run run(std::string_view input, size_t limit, PieceFn piece_for) {
  RequestHeadParser parser(limit);
  Run out;
  size_t offset = 0;
  while (offset < input.size() && parser.status() == Status::kNeedMore) {
    size_t piece = piece_for(offset);
    if (piece == 0 || piece > input.size() - offset) piece = input.size() - offset;
    const auto progress = parser.feed(input.substr(offset, piece));
    require(progress.consumed <= piece);
    require(progress.status == Status::kNeedMore ? progress.consumed == piece : true);
    out.consumed += progress.consumed;
    offset += piece;
  }
  out.status = parser.status();
  if (out.status == Status::kComplete) out.head = parser.head();
  if (out.status == Status::kError) {
    out.error = parser.error();
    out.reason = parser.reason();
  }
  return out;
}

bool same_head(const RequestHead& a, const RequestHead& b) {
  if (a.method != b.method || a.target != b.target || a.version != b.version ||
      a.content_length != b.content_length || a.chunked != b.chunked ||
      a.keep_alive != b.keep_alive || a.headers.size() != b.headers.size()) {
    return false;
  }
  for (size_t i = 0; i < a.headers.size(); ++i) {
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) {
      return false;
    }
  }
  return true;
}

void require_same(const Run& a, const Run& b) {
  require(a.status == b.status);
  require(a.consumed == b.consumed);
  if (a.status == Status::kError) require(a.error == b.error && a.reason == b.reason);
  if (a.status == Status::kComplete) require(same_head(a.head, b.head));
}

void check_targets(std::string_view text) {
  if (auto connect = openshell::proxy::parse_connect_target(text); connect.ok()) {
    require(!connect->host.empty() && clean(connect->host) && connect->port != 0);
  }
  if (auto uri = openshell::proxy::parse_proxy_uri(text); uri.ok()) {
    require(!uri->host.empty() && clean(uri->host) && clean(uri->path));
    require(!uri->path.empty() && uri->path.front() == '/');
    require(uri->path.find('#') == std::string::npos);
    require(clean(uri->host_header()));
  }
}

void check_input(std::string_view input, size_t limit) {
  const Run one_shot = run(input, limit, [](size_t) { return size_t{0}; });
  const Run bytewise = run(input, limit, [](size_t) { return size_t{1}; });
  const Run pieces = run(input, limit, [input](size_t offset) {
    return 1 + (static_cast<unsigned char>(input[offset]) * 31U + offset) % 13;
  });
  require_same(one_shot, bytewise);
  require_same(one_shot, pieces);
  require(one_shot.consumed <= input.size());

  if (one_shot.status == Status::kError) {
    require(!one_shot.reason.empty());
    const int status = openshell::proxy::head_error_status(one_shot.error);
    require(status == 400 || status == 431);
    require(status == 431 ? one_shot.consumed == limit : one_shot.consumed <= limit);
    return;
  }
  if (one_shot.status != Status::kComplete) {
    require(one_shot.consumed == input.size() && input.size() < limit);
    return;
  }
  const RequestHead& head = one_shot.head;
  require(head.head_size == one_shot.consumed && head.head_size <= limit);
  require(!head.method.empty() && clean(head.method) && head.method.find(' ') == head.method.npos);
  require(!head.target.empty() && clean(head.target) && head.target.find(' ') == head.target.npos);
  for (const auto& field : head.headers) {
    require(!field.name.empty() && clean(field.name) && clean(field.value));
  }
  require(!(head.chunked && head.content_length));
  const std::string wire = openshell::proxy::serialize_request_head(head);
  RequestHeadParser reparser(wire.size());
  require(reparser.feed(std::string_view(wire)).status == Status::kComplete);
  require(same_head(reparser.head(), head));
  check_targets(head.target);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_input(input, openshell::proxy::kProxyRequestHeadLimit);
  check_input(input, 96);  // small, so the fuzzer reaches the limit paths cheaply
  if (size <= 512) check_targets(input);
  return 0;
}
