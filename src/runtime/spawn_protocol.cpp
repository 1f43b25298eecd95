// Runtime <-> spawner messages: framing, fd passing and the (host-local, native-endian) encoding of
// the few structures that cross.
#include "spawn_protocol.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

namespace openshell::runtime::protocol {
namespace {

// Every datagram starts with this; kMore says another fragment of the same message follows.
struct FragmentHeader {
  uint32_t type;
  uint32_t flags;
};
constexpr uint32_t kMore = 1;

// Bounded counts for decoded lists: a corrupt message must not make us allocate wildly.
constexpr uint32_t kMaxListEntries = 1u << 20;

class Writer {
 public:
  void u32(uint32_t value) { raw(&value, sizeof value); }
  void i32(int32_t value) { raw(&value, sizeof value); }
  void boolean(bool value) { u32(value ? 1 : 0); }
  void str(std::string_view text) {
    u32(static_cast<uint32_t>(text.size()));
    out_.append(text);
  }
  void strs(const std::vector<std::string>& list) {
    u32(static_cast<uint32_t>(list.size()));
    for (const std::string& text : list)
      str(text);
  }
  void u32s(const std::vector<uint32_t>& list) {
    u32(static_cast<uint32_t>(list.size()));
    for (uint32_t value : list)
      u32(value);
  }
  std::string take() { return std::move(out_); }

 private:
  void raw(const void* data, size_t size) { out_.append(static_cast<const char*>(data), size); }
  std::string out_;
};

// Reads what Writer wrote; any overrun marks the reader failed and yields zero values.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  uint32_t u32() {
    uint32_t value = 0;
    raw(&value, sizeof value);
    return value;
  }
  int32_t i32() {
    int32_t value = 0;
    raw(&value, sizeof value);
    return value;
  }
  bool boolean() { return u32() != 0; }
  std::string str() {
    const uint32_t size = u32();
    if (!ok_ || size > in_.size()) {
      ok_ = false;
      return {};
    }
    std::string text(in_.substr(0, size));
    in_.remove_prefix(size);
    return text;
  }
  std::vector<std::string> strs() {
    const uint32_t count = u32();
    std::vector<std::string> list;
    if (count > kMaxListEntries) ok_ = false;
    for (uint32_t i = 0; ok_ && i < count; ++i)
      list.push_back(str());
    return list;
  }
  std::vector<uint32_t> u32s() {
    const uint32_t count = u32();
    std::vector<uint32_t> list;
    if (count > kMaxListEntries) ok_ = false;
    for (uint32_t i = 0; ok_ && i < count; ++i)
      list.push_back(u32());
    return list;
  }
  // True when everything was read and nothing is left over.
  bool done() const { return ok_ && in_.empty(); }

 private:
  void raw(void* data, size_t size) {
    if (!ok_ || in_.size() < size) {
      ok_ = false;
      return;
    }
    std::memcpy(data, in_.data(), size);
    in_.remove_prefix(size);
  }
  std::string_view in_;
  bool ok_ = true;
};

Result<void> send_fragment(int socket_fd, const FragmentHeader& header, std::string_view chunk,
                           std::span<const int> fds) {
  iovec parts[2];
  parts[0].iov_base = const_cast<FragmentHeader*>(&header);  // sendmsg only reads
  parts[0].iov_len = sizeof header;
  parts[1].iov_base = const_cast<char*>(chunk.data());
  parts[1].iov_len = chunk.size();
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = chunk.empty() ? 1 : 2;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  if (!fds.empty()) {
    message.msg_control = control;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&message);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    if (::sendmsg(socket_fd, &message, MSG_NOSIGNAL) >= 0) return {};
    if (errno != EINTR) return Error::from_errno("sendmsg");
  }
}

}  // namespace

Result<void> send_message(int socket_fd, Type type, std::string_view payload,
                          std::span<const int> fds) {
  if (fds.size() > kMaxFds) return make_error(Errc::kLimit, "too many file descriptors to pass");
  if (payload.size() > kMaxMessageBytes) {
    return make_error(Errc::kLimit, "the command line and environment are too large");
  }
  size_t offset = 0;
  bool first = true;  // fds ride on the first fragment
  do {
    const std::string_view chunk = payload.substr(offset, kFragmentBytes);
    offset += chunk.size();
    const FragmentHeader header{static_cast<uint32_t>(type), offset < payload.size() ? kMore : 0};
    auto sent = send_fragment(socket_fd, header, chunk, first ? fds : std::span<const int>{});
    if (!sent.ok()) return sent;
    first = false;
  } while (offset < payload.size());
  return {};
}

Result<std::optional<Message>> receive_message(int socket_fd) {
  Message message;
  bool first = true;
  std::string buffer(sizeof(FragmentHeader) + kFragmentBytes, '\0');
  for (;;) {
    iovec part{buffer.data(), buffer.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
    msghdr header{};
    header.msg_iov = &part;
    header.msg_iovlen = 1;
    header.msg_control = control;
    header.msg_controllen = sizeof control;
    const ssize_t got = ::recvmsg(socket_fd, &header, MSG_CMSG_CLOEXEC);
    if (got < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno("recvmsg");
    }
    // Take ownership of passed fds before any check can return early.
    for (cmsghdr* cmsg = CMSG_FIRSTHDR(&header); cmsg != nullptr;
         cmsg = CMSG_NXTHDR(&header, cmsg)) {
      if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof fd);
        message.fds.emplace_back(fd);
      }
    }
    if (got == 0) {
      if (first) return std::optional<Message>{};
      return make_error(Errc::kIo, "spawner channel closed in the middle of a message");
    }
    if ((header.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
        static_cast<size_t>(got) < sizeof(FragmentHeader)) {
      return make_error(Errc::kParse, "malformed spawner message (truncated)");
    }
    FragmentHeader fragment{};
    std::memcpy(&fragment, buffer.data(), sizeof fragment);
    if (first) message.type = static_cast<Type>(fragment.type);
    if (static_cast<Type>(fragment.type) != message.type) {
      return make_error(Errc::kParse, "malformed spawner message (mixed fragments)");
    }
    first = false;
    const size_t chunk = static_cast<size_t>(got) - sizeof fragment;
    if (message.payload.size() + chunk > kMaxMessageBytes) {
      return make_error(Errc::kLimit, "spawner message too large");
    }
    message.payload.append(buffer.data() + sizeof fragment, chunk);
    if ((fragment.flags & kMore) == 0) return std::optional<Message>{std::move(message)};
  }
}

std::string encode_spec(const SandboxSpec& spec) {
  Writer out;
  out.str(spec.program);
  out.strs(spec.argv);
  out.strs(spec.env);
  out.str(spec.workdir);
  out.u32(spec.uid);
  out.u32(spec.gid);
  out.u32s(spec.groups);
  out.boolean(spec.user_namespace);
  out.u32(static_cast<uint32_t>(spec.network));
  out.boolean(spec.tty);
  out.strs(spec.private_dirs);
  out.strs(spec.masked_dirs);
  return out.take();
}

std::optional<SandboxSpec> decode_spec(std::string_view payload) {
  Reader in(payload);
  SandboxSpec spec;
  spec.program = in.str();
  spec.argv = in.strs();
  spec.env = in.strs();
  spec.workdir = in.str();
  spec.uid = in.u32();
  spec.gid = in.u32();
  spec.groups = in.u32s();
  spec.user_namespace = in.boolean();
  const uint32_t network = in.u32();
  spec.tty = in.boolean();
  spec.private_dirs = in.strs();
  spec.masked_dirs = in.strs();
  if (!in.done() || network > static_cast<uint32_t>(SandboxNetwork::kHost)) return std::nullopt;
  spec.network = static_cast<SandboxNetwork>(network);
  return spec;
}

std::string encode_spawned(const Spawned& spawned) {
  Writer out;
  out.i32(spawned.pid);
  out.strs(spawned.warnings);
  out.boolean(spawned.has_listener);
  out.boolean(spawned.has_bypass_monitor);
  out.boolean(spawned.has_socket_diag);
  return out.take();
}

std::optional<Spawned> decode_spawned(std::string_view payload) {
  Reader in(payload);
  Spawned spawned;
  spawned.pid = in.i32();
  spawned.warnings = in.strs();
  spawned.has_listener = in.boolean();
  spawned.has_bypass_monitor = in.boolean();
  spawned.has_socket_diag = in.boolean();
  if (!in.done()) return std::nullopt;
  return spawned;
}

std::string encode_failure(const SpawnFailure& failure) {
  Writer out;
  out.i32(failure.exit_code);
  out.str(failure.message);
  out.strs(failure.warnings);
  return out.take();
}

std::optional<SpawnFailure> decode_failure(std::string_view payload) {
  Reader in(payload);
  SpawnFailure failure;
  failure.exit_code = in.i32();
  failure.message = in.str();
  failure.warnings = in.strs();
  if (!in.done()) return std::nullopt;
  return failure;
}

std::string encode_exit(const SandboxExit& exit) {
  Writer out;
  out.i32(exit.pid);
  out.i32(exit.wait_status);
  return out.take();
}

std::optional<SandboxExit> decode_exit(std::string_view payload) {
  Reader in(payload);
  SandboxExit exit;
  exit.pid = in.i32();
  exit.wait_status = in.i32();
  if (!in.done()) return std::nullopt;
  return exit;
}

}  // namespace openshell::runtime::protocol
