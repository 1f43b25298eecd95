// A `session` channel: remembers `pty-req`, allowed `env` requests and window sizes, then runs
// what `exec`, `shell` or `subsystem sftp` asks for as a session in the sandbox, or attaches to
// the main process's terminal for `subsystem openshell-main` (detach: Ctrl-P Ctrl-Q).
#pragma once

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <sys/ioctl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "openshell/runtime/main_session.hpp"
#include "ssh_channel.hpp"
#include "ssh_connection.hpp"

namespace openshell::runtime::ssh {

// Environment variables a client may set with `env` requests (OpenSSH's SendEnv/SetEnv):
// locale and display preferences only, never what the sandbox's isolation or proxy rely on.
bool env_allowed(std::string_view name);

// Finds the detach sequence (Ctrl-P Ctrl-Q) in input split across reads.
class DetachScanner {
 public:
  // The bytes of `input` to pass on; sets detached() when the sequence completed (what follows
  // it is dropped). A lone Ctrl-P is held back until the next byte decides.
  std::string scan(std::string_view input);
  bool detached() const { return detached_; }

 private:
  bool held_ctrl_p_ = false;
  bool detached_ = false;
};

class SessionChannel : public ChannelHandler {
 public:
  SessionChannel(ssh_channel channel, const ConnectionContext& context, uint64_t connection_id);
  ~SessionChannel() override;
  SessionChannel(const SessionChannel&) = delete;
  SessionChannel& operator=(const SessionChannel&) = delete;

  bool pump() override;
  void watch(Watches& watches) const override;
  bool awaits_exit() const override { return session_ && !exit_status_; }
  bool backlog() const override { return backlog_; }

 private:
  static int on_pty_request(ssh_session, ssh_channel, const char* term, int columns, int rows, int,
                            int, void* self);
  static int on_window_change(ssh_session, ssh_channel, int columns, int rows, int, int,
                              void* self);
  static int on_env(ssh_session, ssh_channel, const char* name, const char* value, void* self);
  static int on_shell(ssh_session, ssh_channel, void* self);
  static int on_exec(ssh_session, ssh_channel, const char* command, void* self);
  static int on_subsystem(ssh_session, ssh_channel, const char* name, void* self);
  static void on_signal(ssh_session, ssh_channel, const char* name, void* self);

  // Starts the session; false (the request is refused) when something already runs or it failed.
  bool start(SessionCommand command);
  bool attach_main();
  bool pump_process();
  bool pump_attachment();
  // exit-status, EOF and close: the channel is done.
  bool finish(int exit_code);

  ssh_channel channel_;
  const ConnectionContext& context_;
  uint64_t id_;
  ssh_channel_callbacks_struct callbacks_{};
  bool started_ = false;
  std::optional<std::string> term_;  // set by pty-req
  winsize size_{};
  std::vector<std::string> env_;
  bool main_read_only_ = false;  // OPENSHELL_MAIN_READ_ONLY=1 came as an env request
  std::string failure_;          // for the client's stderr before the channel closes

  // A session process: its pid, our ends of its stdio (on a PTY, `in` and `out` are the master).
  std::optional<Session> session_;
  UniqueFd in_, out_, err_;
  Inbound inbound_;
  std::optional<int> exit_status_;

  // An attachment to the main process.
  std::unique_ptr<MainSession::Attachment> attachment_;
  std::string to_client_;
  std::string to_main_;
  DetachScanner detach_;
  bool lingering_ = false;
  bool backlog_ = false;  // the last round stopped at its read bound  // the main process's end was
                          // delivered; kept until the client leaves
};

}  // namespace openshell::runtime::ssh
