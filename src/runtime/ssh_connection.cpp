// One SSH connection: authentication against authorized_keys, then one `exec` channel whose
// command runs as a session inside the sandbox, its stdio relayed over pipes (stderr as extended
// data) or a PTY (pty-req, window-change) and its exit status returned. `shell` runs /bin/sh.
// env, subsystems and forwarding are refused.
#include "ssh_connection.hpp"

#include <fcntl.h>
#include <libssh/callbacks.h>
#include <libssh/server.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "openshell/runtime/pty.hpp"
#include "openshell/runtime/ssh_server.hpp"
#include "ssh_auth.hpp"

namespace openshell::runtime::ssh {
namespace {

using Clock = std::chrono::steady_clock;

// One read from a pipe or the channel; below the channel's initial window.
constexpr size_t kRelayChunk = size_t{32} * 1024;
// How long the relay sleeps when nothing moves (it also polls the channel, which libssh reads
// without a readiness callback here).
constexpr int kRelaySliceMs = 50;

struct MessageFree {
  void operator()(ssh_message message) const { ssh_message_free(message); }
};
using Message = std::unique_ptr<ssh_message_struct, MessageFree>;

int exit_code_of(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return kExitSetupFailed;
}

// The message API's key and PTY accessors are deprecated in libssh 0.10 in favour of server
// callbacks; they still work, and keep the whole exchange in one readable loop. TODO: move to
// callbacks (ssh_server_callbacks_struct::auth_pubkey_function) together with the shell/PTY
// channels.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
bool authenticate(ssh_session session, const ConnectionContext& context, uint64_t id) {
  ssh_set_auth_methods(session, SSH_AUTH_METHOD_PUBLICKEY);
  const auto deadline = Clock::now() + kSshAuthTimeout;
  int refused = 0;
  while (!context.stop.load() && Clock::now() < deadline) {
    Message message(ssh_message_get(session));
    if (!message) return false;  // gone, or silent past the session timeout
    if (ssh_message_type(message.get()) == SSH_REQUEST_AUTH &&
        ssh_message_subtype(message.get()) == SSH_AUTH_METHOD_PUBLICKEY) {
      ssh_key key = ssh_message_auth_pubkey(message.get());
      const char* user = ssh_message_auth_user(message.get());
      if (key_authorized(context.authorized_keys_path, key)) {
        const auto state = ssh_message_auth_publickey_state(message.get());
        if (state == SSH_PUBLICKEY_STATE_NONE) {  // "would this key do?": yes
          ssh_message_auth_reply_pk_ok_simple(message.get());
          continue;
        }
        if (state == SSH_PUBLICKEY_STATE_VALID) {
          ssh_message_auth_reply_success(message.get(), 0);
          context.log.info("ssh: connection {} authenticated (user {})", id,
                           user != nullptr ? user : "");
          return true;
        }
      }
      ++refused;
      context.log.warn("ssh: connection {}: public key refused (user {})", id,
                       user != nullptr ? user : "");
      std::this_thread::sleep_for(kSshAuthFailureDelay);
      if (refused >= kSshMaxAuthAttempts) return false;
    }
    ssh_message_auth_set_methods(message.get(), SSH_AUTH_METHOD_PUBLICKEY);
    ssh_message_reply_default(message.get());
  }
  return false;
}

// Waits for the client's session channel; nullptr when it leaves first.
ssh_channel open_channel(ssh_session session, const ConnectionContext& context) {
  while (!context.stop.load()) {
    Message message(ssh_message_get(session));
    if (!message) return nullptr;
    if (ssh_message_type(message.get()) == SSH_REQUEST_CHANNEL_OPEN &&
        ssh_message_subtype(message.get()) == SSH_CHANNEL_SESSION) {
      return ssh_message_channel_request_open_reply_accept(message.get());
    }
    ssh_message_reply_default(message.get());  // forwarding and the rest: refused
  }
  return nullptr;
}

// What the channel asked for, once it asked to run something.
struct Request {
  std::optional<std::string> command;  // `exec`; nullopt: `shell`
  bool pty = false;                    // a `pty-req` came first
  winsize size{kDefaultPtyRows, kDefaultPtyColumns, 0, 0};
};

void set_size(winsize& size, int columns, int rows) {
  if (columns > 0 && rows > 0 && columns <= 0xffff && rows <= 0xffff) {
    size.ws_col = static_cast<unsigned short>(columns);
    size.ws_row = static_cast<unsigned short>(rows);
  }
}

// Waits for the channel's `exec` or `shell` request, remembering a `pty-req` before it; nullopt
// when the client leaves or asks for something we do not offer (a subsystem).
std::optional<Request> await_request(ssh_session session, const ConnectionContext& context,
                                     uint64_t id) {
  Request request;
  while (!context.stop.load()) {
    Message message(ssh_message_get(session));
    if (!message) return std::nullopt;
    if (ssh_message_type(message.get()) == SSH_REQUEST_CHANNEL) {
      const int subtype = ssh_message_subtype(message.get());
      if (subtype == SSH_CHANNEL_REQUEST_PTY || subtype == SSH_CHANNEL_REQUEST_WINDOW_CHANGE) {
        request.pty = request.pty || subtype == SSH_CHANNEL_REQUEST_PTY;
        set_size(request.size, ssh_message_channel_request_pty_width(message.get()),
                 ssh_message_channel_request_pty_height(message.get()));
        ssh_message_channel_request_reply_success(message.get());
        continue;
      }
      if (subtype == SSH_CHANNEL_REQUEST_EXEC) {
        const char* command = ssh_message_channel_request_command(message.get());
        request.command = command != nullptr ? command : "";
        ssh_message_channel_request_reply_success(message.get());
        return request;
      }
      if (subtype == SSH_CHANNEL_REQUEST_SHELL) {
        ssh_message_channel_request_reply_success(message.get());
        return request;
      }
      if (subtype == SSH_CHANNEL_REQUEST_SUBSYSTEM) {
        context.log.warn("ssh: connection {}: subsystems are not supported yet", id);
        ssh_message_reply_default(message.get());
        return std::nullopt;
      }
    }
    ssh_message_reply_default(message.get());  // env, x11, agent: refused
  }
  return std::nullopt;
}
#pragma GCC diagnostic pop

// window-change during the session: the kernel sends SIGWINCH to the PTY's foreground group.
int on_window_change(ssh_session, ssh_channel, int width, int height, int, int, void* userdata) {
  const int master = *static_cast<const int*>(userdata);
  winsize size{};
  ::ioctl(master, TIOCGWINSZ, &size);
  set_size(size, width, height);
  ::ioctl(master, TIOCSWINSZ, &size);
  return 0;
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};
Result<Pipe> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Error::from_errno("pipe2");
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

void set_nonblocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// Copies client -> stdin and stdout/stderr -> client until both outputs end. False when the
// client went away (or the server stops) first.
bool relay(ssh_session session, ssh_channel channel, UniqueFd& in, UniqueFd& out, UniqueFd& err,
           const ConnectionContext& context) {
  std::string pending;  // client bytes the child has not read yet
  char buffer[kRelayChunk];
  bool client_eof = false;
  while (out || err) {
    if (context.stop.load() || ssh_channel_is_closed(channel) != 0) return false;
    if (pending.empty() && !client_eof) {
      const int got = ssh_channel_read_nonblocking(channel, buffer, sizeof buffer, 0);
      if (got == SSH_ERROR) return false;
      if (got > 0 && in) pending.assign(buffer, static_cast<size_t>(got));
      // SSH_EOF once the client's input ended and was read: `cat | tar xf -` needs the EOF.
      if (got == SSH_EOF || (got == 0 && ssh_channel_is_eof(channel) != 0)) client_eof = true;
    }
    if (client_eof && pending.empty()) in.reset();
    if (!pending.empty() && in) {
      const ssize_t put = ::write(in.get(), pending.data(), pending.size());
      if (put > 0) pending.erase(0, static_cast<size_t>(put));
      if (put < 0 && errno != EAGAIN && errno != EINTR) {
        pending.clear();  // the child closed its stdin: drop what it will never read
        in.reset();
      }
    }
    if (!in) pending.clear();
    pollfd fds[4] = {{out.get(), POLLIN, 0},
                     {err.get(), POLLIN, 0},
                     // After the client's EOF libssh reads no more until we write: not polled
                     // (a client that leaves meanwhile is noticed on the next output).
                     {client_eof ? -1 : ssh_get_fd(session), POLLIN, 0},
                     {pending.empty() ? -1 : in.get(), POLLOUT, 0}};
    if (::poll(fds, 4, kRelaySliceMs) < 0 && errno != EINTR) return false;
    for (int stream = 0; stream < 2; ++stream) {
      UniqueFd& source = stream == 0 ? out : err;
      if (!source || (fds[stream].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const ssize_t got = ::read(source.get(), buffer, sizeof buffer);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
        source.reset();
        continue;
      }
      if (got < 0) continue;
      const uint32_t size = static_cast<uint32_t>(got);
      const int sent = stream == 0 ? ssh_channel_write(channel, buffer, size)
                                   : ssh_channel_write_stderr(channel, buffer, size);
      if (sent == SSH_ERROR) return false;
    }
  }
  return true;
}

// The session's end of its stdio and ours: three pipes, or a PTY (stdin, stdout and stderr all
// on the slave; ours is the master, twice, so the client's EOF can close our writing end).
struct Stdio {
  UniqueFd child_in, child_out, child_err;
  UniqueFd in, out, err;
};
Result<Stdio> make_stdio(const Request& request) {
  Stdio stdio;
  if (request.pty) {
    auto pty = open_pty();
    if (!pty.ok()) return pty.error();
    ::ioctl(pty->master.get(), TIOCSWINSZ, &request.size);
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

void run_session(ssh_session session, ssh_channel channel, const Request& request,
                 const ConnectionContext& context, uint64_t id) {
  int code = kExitSetupFailed;
  auto stdio = make_stdio(request);
  if (!stdio.ok()) {
    context.log.error("ssh: connection {}: {}", id, stdio.error().message);
  } else {
    const int child_in = stdio->child_in.get();
    const SandboxStdio child{child_in, stdio->child_out ? stdio->child_out.get() : child_in,
                             stdio->child_err ? stdio->child_err.get() : child_in};
    auto started = context.launcher.spawn(request.command, request.pty, child);
    stdio->child_in.reset();
    stdio->child_out.reset();
    stdio->child_err.reset();
    if (!started.ok()) {
      const std::string text = "openshell: " + started.error().message + "\n";
      ssh_channel_write_stderr(channel, text.data(), static_cast<uint32_t>(text.size()));
      context.log.warn("ssh: connection {}: session not started: {}", id, started.error().message);
      code = started.error().exit_code;
    } else {
      context.log.info("ssh: connection {}: session {} runs{}: {}", id, started->pid(),
                       request.pty ? " on a PTY" : "", request.command.value_or("(shell)"));
      int master = stdio->out.get();
      ssh_channel_callbacks_struct callbacks{};
      ssh_callbacks_init(&callbacks);
      callbacks.userdata = &master;
      callbacks.channel_pty_window_change_function = on_window_change;
      if (request.pty) ssh_set_channel_callbacks(channel, &callbacks);
      const bool finished = relay(session, channel, stdio->in, stdio->out, stdio->err, context);
      if (request.pty) ssh_remove_channel_callbacks(channel, &callbacks);
      stdio->in.reset();
      stdio->out.reset();
      if (!finished) (void)started->signal(SIGKILL);  // nobody is left to read its output
      const auto status = context.launcher.wait(started->pid(), context.stop);
      code = status ? exit_code_of(*status) : kExitSetupFailed;
      context.log.info("ssh: connection {}: session {} exited with {}", id, started->pid(), code);
      if (!finished) return;
    }
  }
  ssh_channel_request_send_exit_status(channel, code);
  ssh_channel_send_eof(channel);
  ssh_channel_close(channel);
}

}  // namespace

void serve_connection(ssh_session session, const ConnectionContext& context, uint64_t id) {
  const long timeout_seconds = static_cast<long>(kSshAuthTimeout.count());
  ssh_options_set(session, SSH_OPTIONS_TIMEOUT, &timeout_seconds);
  if (ssh_handle_key_exchange(session) != SSH_OK) {
    context.log.warn("ssh: connection {}: key exchange: {}", id, ssh_get_error(session));
  } else if (!authenticate(session, context, id)) {
    context.log.warn("ssh: connection {}: not authenticated; closed", id);
  } else if (ssh_channel channel = open_channel(session, context)) {
    if (auto request = await_request(session, context, id)) {
      run_session(session, channel, *request, context, id);
    }
    ssh_channel_free(channel);
  }
  ssh_disconnect(session);
  ssh_free(session);
}

}  // namespace openshell::runtime::ssh
