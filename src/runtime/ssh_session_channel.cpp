// Session channels: requests, then a sandbox session relayed over pipes or a PTY, or an
// attachment to the main process's terminal.
#include "ssh_session_channel.hpp"

#include <fcntl.h>
#include <libssh/server.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "openshell/runtime/pty.hpp"

namespace openshell::runtime::ssh {
namespace {

constexpr char kCtrlP = 0x10;
constexpr char kCtrlQ = 0x11;
// Bounds on what env requests may add to a session.
constexpr size_t kMaxEnvEntries = 64;
constexpr size_t kMaxEnvEntryBytes = 4096;
constexpr const char* kReadOnlyVariable = "OPENSHELL_MAIN_READ_ONLY";

int exit_code_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return kExitSetupFailed;
}

void set_size(winsize& size, int columns, int rows) {
  if (columns > 0 && rows > 0 && columns <= 0xffff && rows <= 0xffff) {
    size.ws_col = static_cast<unsigned short>(columns);
    size.ws_row = static_cast<unsigned short>(rows);
  }
}

SessionChannel& self_of(void* self) {
  return *static_cast<SessionChannel*>(self);
}

struct Pipe {
  UniqueFd read, write;
};
Result<Pipe> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Error::from_errno("pipe2");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// The session's ends of its stdio and ours: three pipes, or a PTY (the slave three times on its
// side; the master twice on ours, so the client's EOF can close our writing end alone).
struct Stdio {
  UniqueFd child_in, child_out, child_err;
  UniqueFd in, out, err;
};
Result<Stdio> make_stdio(bool tty, const winsize& size) {
  Stdio stdio;
  if (tty) {
    auto pty = open_pty();
    if (!pty.ok()) return pty.error();
    ::ioctl(pty->master.get(), TIOCSWINSZ, &size);
    stdio.child_in = std::move(pty->slave);
    stdio.in.reset(::fcntl(pty->master.get(), F_DUPFD_CLOEXEC, 0));
    if (!stdio.in) return Error::from_errno("fcntl F_DUPFD_CLOEXEC");
    stdio.out = std::move(pty->master);
    return stdio;
  }
  auto in = make_pipe();
  auto out = make_pipe();
  auto err = make_pipe();
  if (!in.ok()) return in.error();
  if (!out.ok()) return out.error();
  if (!err.ok()) return err.error();
  stdio.child_in = std::move(in->read);
  stdio.child_out = std::move(out->write);
  stdio.child_err = std::move(err->write);
  stdio.in = std::move(in->write);
  stdio.out = std::move(out->read);
  stdio.err = std::move(err->read);
  for (int fd : {stdio.in.get(), stdio.out.get(), stdio.err.get()})
    set_nonblocking(fd);
  return stdio;
}

// Copies `fd` to the channel for this round; resets it at its end.
void drain_output(UniqueFd& fd, ssh_channel channel, bool extended) {
  if (fd && drain_fd_to_channel(fd.get(), channel, extended) == Flow::kEnd) fd.reset();
}

}  // namespace

bool env_allowed(std::string_view name) {
  static constexpr std::string_view kAllowed[] = {
      "LANG", "LANGUAGE", "TZ", "COLORTERM", "TERM_PROGRAM", "TERM_PROGRAM_VERSION"};
  return name.starts_with("LC_") ||
         std::find(std::begin(kAllowed), std::end(kAllowed), name) != std::end(kAllowed);
}

std::string DetachScanner::scan(std::string_view input) {
  std::string passed;
  for (const char byte : input) {
    if (detached_) break;
    if (held_ctrl_p_) {
      held_ctrl_p_ = false;
      if (byte == kCtrlQ) {
        detached_ = true;
        break;
      }
      passed.push_back(kCtrlP);
    }
    if (byte == kCtrlP) {
      held_ctrl_p_ = true;
    } else {
      passed.push_back(byte);
    }
  }
  return passed;
}

SessionChannel::SessionChannel(ssh_channel channel, const ConnectionContext& context,
                               uint64_t connection_id)
    : channel_(channel), context_(context), id_(connection_id) {
  size_.ws_row = kDefaultPtyRows;
  size_.ws_col = kDefaultPtyColumns;
  ssh_callbacks_init(&callbacks_);
  callbacks_.userdata = this;
  callbacks_.channel_pty_request_function = on_pty_request;
  callbacks_.channel_pty_window_change_function = on_window_change;
  callbacks_.channel_env_request_function = on_env;
  callbacks_.channel_shell_request_function = on_shell;
  callbacks_.channel_exec_request_function = on_exec;
  callbacks_.channel_subsystem_request_function = on_subsystem;
  callbacks_.channel_signal_function = on_signal;
  ssh_set_channel_callbacks(channel_, &callbacks_);
}

SessionChannel::~SessionChannel() {
  if (session_ && !exit_status_) {
    (void)session_->signal(SIGKILL);  // nobody is left to read its output
    context_.launcher.discard(session_->pid());
  }
  attachment_.reset();
  ssh_remove_channel_callbacks(channel_, &callbacks_);
  ssh_channel_free(channel_);
}

int SessionChannel::on_pty_request(ssh_session, ssh_channel, const char* term, int columns,
                                   int rows, int, int, void* self) {
  SessionChannel& channel = self_of(self);
  if (channel.started_) return -1;
  channel.term_ = term != nullptr ? term : "xterm";
  set_size(channel.size_, columns, rows);
  return 0;
}

int SessionChannel::on_window_change(ssh_session, ssh_channel, int columns, int rows, int, int,
                                     void* self) {
  SessionChannel& channel = self_of(self);
  set_size(channel.size_, columns, rows);
  // The kernel sends SIGWINCH to the PTY's foreground group.
  if (channel.session_ && channel.term_ && channel.out_) {
    ::ioctl(channel.out_.get(), TIOCSWINSZ, &channel.size_);
  }
  if (channel.attachment_) channel.attachment_->resize(channel.size_.ws_col, channel.size_.ws_row);
  return 0;
}

int SessionChannel::on_env(ssh_session, ssh_channel, const char* name, const char* value,
                           void* self) {
  SessionChannel& channel = self_of(self);
  const std::string_view key = name != nullptr ? name : "";
  const std::string_view text = value != nullptr ? value : "";
  if (key == kReadOnlyVariable) {
    channel.main_read_only_ = text == "1";
    return 0;
  }
  if (channel.started_ || !env_allowed(key) || channel.env_.size() >= kMaxEnvEntries ||
      key.size() + text.size() + 1 > kMaxEnvEntryBytes) {
    channel.context_.log.debug("ssh: connection {}: env request {} ignored", channel.id_, key);
    return -1;
  }
  channel.env_.push_back(std::string(key) + "=" + std::string(text));
  return 0;
}

int SessionChannel::on_shell(ssh_session, ssh_channel, void* self) {
  SessionChannel& channel = self_of(self);
  SessionCommand command;
  command.kind = SessionCommand::Kind::kShell;
  return channel.start(std::move(command)) ? 0 : -1;
}

int SessionChannel::on_exec(ssh_session, ssh_channel, const char* text, void* self) {
  SessionChannel& channel = self_of(self);
  SessionCommand command;
  command.kind = SessionCommand::Kind::kExec;
  command.command = text != nullptr ? text : "";
  return channel.start(std::move(command)) ? 0 : -1;
}

int SessionChannel::on_subsystem(ssh_session, ssh_channel, const char* name, void* self) {
  SessionChannel& channel = self_of(self);
  const std::string_view subsystem = name != nullptr ? name : "";
  if (subsystem == "sftp") {
    SessionCommand command;
    command.kind = SessionCommand::Kind::kSftp;
    channel.term_.reset();  // SFTP is binary: never over a PTY
    return channel.start(std::move(command)) ? 0 : -1;
  }
  if (subsystem == "openshell-main") return channel.attach_main() ? 0 : -1;
  channel.context_.log.warn("ssh: connection {}: subsystem {} refused", channel.id_, subsystem);
  return -1;
}

// Signals only reach the main process (its terminal's foreground group), and only these (spec
// §5.2); on exec and shell channels they are ignored, as the reference does.
void SessionChannel::on_signal(ssh_session, ssh_channel, const char* name, void* self) {
  static constexpr std::pair<std::string_view, int> kForwarded[] = {
      {"HUP", SIGHUP}, {"INT", SIGINT}, {"KILL", SIGKILL}, {"QUIT", SIGQUIT}, {"TERM", SIGTERM}};
  SessionChannel& channel = self_of(self);
  const std::string_view signal_name = name != nullptr ? name : "";
  for (const auto& [known, number] : kForwarded) {
    if (channel.attachment_ && signal_name == known) {
      channel.context_.log.info("ssh: connection {}: SIG{} to the main process", channel.id_,
                                signal_name);
      channel.attachment_->send_signal(number);
      return;
    }
  }
  channel.context_.log.debug("ssh: connection {}: signal {} ignored", channel.id_, signal_name);
}

bool SessionChannel::start(SessionCommand command) {
  if (started_) return false;
  started_ = true;
  command.tty = term_.has_value();
  command.env = env_;
  if (term_) command.env.push_back("TERM=" + *term_);
  if (context_.options.credentials) {
    for (std::string& entry : context_.options.credentials->session_environment())
      command.env.push_back(std::move(entry));
  }
  const std::string shown = command.kind == SessionCommand::Kind::kExec   ? command.command
                            : command.kind == SessionCommand::Kind::kSftp ? "(sftp)"
                                                                          : "(shell)";
  auto stdio = make_stdio(command.tty, size_);
  if (!stdio.ok()) {
    context_.log.error("ssh: connection {}: {}", id_, stdio.error().message);
    return false;
  }
  const int child_in = stdio->child_in.get();
  const SandboxStdio child{child_in, stdio->child_out ? stdio->child_out.get() : child_in,
                           stdio->child_err ? stdio->child_err.get() : child_in};
  auto started = context_.launcher.spawn(command, child);
  if (!started.ok()) {
    context_.log.warn("ssh: connection {}: session not started: {}", id_, started.error().message);
    // The request succeeded; the client learns why from stderr and the exit status.
    failure_ = "openshell: " + started.error().message + "\n";
    exit_status_ = started.error().exit_code << 8;
    return true;
  }
  context_.log.info("ssh: connection {}: session {} runs{}: {}", id_, started->pid(),
                    command.tty ? " on a PTY" : "", shown);
  session_ = std::move(*started);
  in_ = std::move(stdio->in);
  out_ = std::move(stdio->out);
  err_ = std::move(stdio->err);
  return true;
}

bool SessionChannel::attach_main() {
  if (started_) return false;
  started_ = true;
  if (!context_.options.main_session) {
    failure_ =
        "openshell: the main process has no terminal to attach to (start the sandbox with a "
        "terminal or --tty)\n";
    exit_status_ = 1 << 8;
    return true;
  }
  attachment_ = context_.options.main_session->attach(main_read_only_);
  if (term_) attachment_->resize(size_.ws_col, size_.ws_row);
  const bool owner = attachment_->owns_stdin();
  context_.log.info("ssh: connection {}: attached to the main process{}", id_,
                    owner ? "" : " (read-only)");
  if (!owner) {
    failure_ = main_read_only_ ? "" : "openshell: another client holds the input: read-only\r\n";
  }
  return true;
}

bool SessionChannel::pump() {
  if (lingering_) return true;
  if (ssh_channel_is_closed(channel_) != 0) return false;
  if (!failure_.empty() && !send_within_window(channel_, failure_, true)) return false;
  if (attachment_) return pump_attachment();
  if (session_) return pump_process();
  if (exit_status_ && failure_.empty()) return finish(exit_code_of(*exit_status_));
  return true;
}

bool SessionChannel::pump_process() {
  backlog_ = false;
  if (in_) {
    const Flow flow = inbound_.drain_to_fd(channel_, in_.get());
    if (flow == Flow::kEnd) in_.reset();
    backlog_ = flow == Flow::kMoved;
  } else {
    inbound_.fill(channel_);  // the session closed its stdin: what the client sends is dropped
    inbound_.pending().clear();
  }
  drain_output(out_, channel_, false);
  drain_output(err_, channel_, true);
  if (term_ && !out_) in_.reset();  // the PTY ended: nothing reads its input
  if (out_ || err_) return true;
  if (!exit_status_) {
    bool gone = false;
    exit_status_ = context_.launcher.exit_status(session_->pid(), gone);
    if (!exit_status_ && !gone) return true;
    if (!exit_status_) exit_status_ = kExitSetupFailed << 8;
  }
  const int code = exit_code_of(*exit_status_);
  context_.log.info("ssh: connection {}: session {} exited with {}", id_, session_->pid(), code);
  return finish(code);
}

bool SessionChannel::pump_attachment() {
  backlog_ = false;
  for (int reads = 0; !detach_.detached() && !inbound_.eof(); ++reads) {
    if (reads == kReadsPerRound) {
      backlog_ = true;
      break;
    }
    if (to_main_.empty()) {
      inbound_.fill(channel_);
      to_main_ = detach_.scan(inbound_.pending());
      inbound_.pending().clear();
    }
    if (to_main_.empty()) break;
    const ssize_t put = attachment_->write_input(to_main_);
    if (put > 0) to_main_.erase(0, static_cast<size_t>(put));
    if (put < 0 && errno != EAGAIN && errno != EINTR) to_main_.clear();
    if (!to_main_.empty()) break;  // the PTY is full: watch() waits for it to drain
  }
  if (detach_.detached()) {
    context_.log.info("ssh: connection {}: detached from the main process", id_);
    return finish(0);
  }
  if (to_client_.empty()) to_client_ = attachment_->take();
  if (!send_within_window(channel_, to_client_)) return false;
  if (attachment_->fell_behind()) {
    std::string notice = "\r\nopenshell: this attachment fell behind the main process's output\r\n";
    send_within_window(channel_, notice, true);
    return finish(1);
  }
  if (!to_client_.empty()) return true;
  const auto code = attachment_->exit_code();
  if (!code) return true;
  // The attachment stays until the client has left: the sandbox waits for that (at most
  // kAttachedGoodbye) before its server says goodbye, which would otherwise race the exit
  // status in the client.
  finish(*code);
  lingering_ = true;
  return true;
}

bool SessionChannel::finish(int exit_code) {
  ssh_channel_request_send_exit_status(channel_, std::max(exit_code, 0));
  ssh_channel_send_eof(channel_);
  ssh_channel_close(channel_);
  return false;
}

void SessionChannel::watch(Watches& watches) const {
  if (lingering_) return;
  const bool window = ssh_channel_window_size(channel_) > 0;
  if (attachment_) {
    if (to_client_.empty() && window) ssh::watch(watches, attachment_->wake_fd(), POLLIN);
    if (!to_main_.empty()) ssh::watch(watches, attachment_->input_fd(), POLLOUT);
    return;
  }
  if (!inbound_.pending().empty()) ssh::watch(watches, in_.get(), POLLOUT);
  if (window) {
    ssh::watch(watches, out_.get(), POLLIN);
    ssh::watch(watches, err_.get(), POLLIN);
  }
}

}  // namespace openshell::runtime::ssh
