// The main process's terminal, shared between the supervisor (which relays it to the caller's
// terminal) and SSH clients attached with the `openshell-main` subsystem (runtime-spec §5.1,
// issue 9): output is retained (the last kMainOutputRetained bytes) and replayed to each new
// attachment, then streamed live; one attachment at a time holds the stdin lease.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "openshell/runtime/unique_fd.hpp"

namespace openshell::runtime {

// Output kept for replay; an attachment may fall behind by this much beyond its replay before it
// is closed.
inline constexpr size_t kMainOutputRetained = size_t{1} << 20;

class MainSession {
 public:
  class Attachment;

  // `pty_master` is borrowed: it must stay open while attachments exist.
  explicit MainSession(int pty_master) : master_(pty_master) {}

  // Supervisor side: each chunk the main process wrote, then its end.
  void publish(std::string_view output);
  void finish(int exit_code);

  // A new attachment, holding the stdin lease unless `read_only` or another one holds it.
  std::unique_ptr<Attachment> attach(bool read_only);

  // After finish(): waits (at most `limit`) until every attachment has taken the end and left,
  // so clients get the exit status before the server closes their connections.
  void wait_detached(std::chrono::milliseconds limit);

 private:
  struct Subscriber {
    UniqueFd wake;        // eventfd: readable when output or the end waits
    std::string pending;  // published, not yet taken
    bool fell_behind = false;
  };
  void wake_locked(Subscriber& subscriber);

  int master_;
  std::mutex mutex_;
  std::condition_variable detached_;
  std::string retained_;
  std::list<Subscriber> subscribers_;
  const Subscriber* lease_holder_ = nullptr;
  std::optional<int> exit_code_;
};

class MainSession::Attachment {
 public:
  ~Attachment();
  Attachment(const Attachment&) = delete;
  Attachment& operator=(const Attachment&) = delete;

  // Readable (poll) when output or the end waits; read() it down with take().
  int wake_fd() const { return subscriber_->wake.get(); }
  // Output since the last call (the retained output first). Clears the wake-up.
  std::string take();
  // True once this attachment fell too far behind (output was lost): it should be closed.
  bool fell_behind() const;
  // The main process's exit code once it ended and every byte was taken.
  std::optional<int> exit_code() const;

  bool owns_stdin() const;
  // Input for the main process (only with the lease); what the PTY took, or -1 with errno.
  ssize_t write_input(std::string_view bytes) const;
  // Writable (poll) when the PTY takes input again after write_input() fell short.
  int input_fd() const { return session_.master_; }
  void resize(unsigned short columns, unsigned short rows) const;
  // Sends `signal` to the terminal's foreground process group.
  void send_signal(int signal) const;

 private:
  friend class MainSession;
  Attachment(MainSession& session, std::list<Subscriber>::iterator subscriber)
      : session_(session), subscriber_(subscriber) {}
  MainSession& session_;
  std::list<Subscriber>::iterator subscriber_;
};

}  // namespace openshell::runtime
