// One SSH connection on one thread: public-key authentication (libssh server callbacks), then an
// event loop over the connection's socket and every channel's descriptors. Channels are session
// channels (ssh_session_channel.cpp) and direct-tcpip forwards to the sandbox's loopback
// (ssh_forward.cpp); everything else (remote forwarding, X11, agent) is refused.
#include "ssh_connection.hpp"

#include <libssh/callbacks.h>
#include <libssh/server.h>

#include <algorithm>
#include <chrono>
#include <list>
#include <memory>
#include <thread>

#include "ssh_auth.hpp"
#include "ssh_forward.hpp"
#include "ssh_session_channel.hpp"

namespace openshell::runtime::ssh {
namespace {

using Clock = std::chrono::steady_clock;

// The longest the loop sleeps: how soon it notices the stop flag and its deadlines.
constexpr int kLoopSliceMs = 100;
// Channels one connection may hold (OpenSSH's MaxSessions is 10).
constexpr size_t kMaxSessionChannels = 10;
constexpr size_t kMaxForwardChannels = 64;

class Connection {
 public:
  Connection(ssh_session session, const ConnectionContext& context, const std::string& peer,
             uint64_t id)
      : session_(session), context_(context), peer_(peer), id_(id) {
    ssh_callbacks_init(&callbacks_);
    callbacks_.userdata = this;
    callbacks_.auth_pubkey_function = on_auth_pubkey;
    callbacks_.channel_open_request_session_function = on_session_open;
    ssh_set_server_callbacks(session_, &callbacks_);
    // What the server callbacks do not cover: direct-tcpip opens and global requests.
    ssh_set_message_callback(session_, on_message, this);
    ssh_set_auth_methods(session_, SSH_AUTH_METHOD_PUBLICKEY);
  }

  void serve();

 private:
  static int on_auth_pubkey(ssh_session, const char* user, ssh_key_struct* key,
                            char signature_state, void* self);
  static ssh_channel on_session_open(ssh_session, void* self);
  static int on_message(ssh_session, ssh_message message, void* self);

  bool open_forward(ssh_message message);
  size_t count_sessions() const;
  // Registers with the event exactly the descriptors the channels want now.
  void update_watches(ssh_event event);
  bool deadline_passed(Clock::time_point now);

  ssh_session session_;
  const ConnectionContext& context_;
  const std::string& peer_;
  uint64_t id_;
  ssh_server_callbacks_struct callbacks_{};
  bool authenticated_ = false;
  int refused_ = 0;
  Clock::time_point auth_deadline_ = Clock::now() + kSshAuthTimeout;
  Clock::time_point idle_since_ = Clock::now();
  // A list: callbacks may open channels while the loop walks it (appending keeps iterators).
  std::list<std::unique_ptr<ChannelHandler>> channels_;
  Watches registered_;
};

int ignore_event(socket_t, int, void*) {
  return 0;  // the loop pumps every channel after each round: waking up is all that is needed
}

int Connection::on_auth_pubkey(ssh_session, const char* user, ssh_key_struct* key,
                               char signature_state, void* self) {
  Connection& connection = *static_cast<Connection*>(self);
  const ConnectionContext& context = connection.context_;
  const std::string user_name = user != nullptr ? user : "";
  if (signature_state != SSH_PUBLICKEY_STATE_WRONG &&
      key_authorized(context.options.authorized_keys_path, key)) {
    // NONE: "would this key do?" (answered yes); VALID: signed with it: in.
    if (signature_state == SSH_PUBLICKEY_STATE_VALID) {
      connection.authenticated_ = true;
      connection.idle_since_ = Clock::now();
      context.log.info("ssh: connection {} authenticated (user {}, {})", connection.id_, user_name,
                       connection.peer_);
    }
    return SSH_AUTH_SUCCESS;
  }
  ++connection.refused_;
  context.log.warn("ssh: connection {}: public key refused (user {}, {})", connection.id_,
                   user_name, connection.peer_);
  std::this_thread::sleep_for(kSshAuthFailureDelay);
  return SSH_AUTH_DENIED;
}

size_t Connection::count_sessions() const {
  size_t count = 0;
  for (const auto& channel : channels_)
    count += dynamic_cast<const SessionChannel*>(channel.get()) != nullptr ? 1 : 0;
  return count;
}

ssh_channel Connection::on_session_open(ssh_session session, void* self) {
  Connection& connection = *static_cast<Connection*>(self);
  if (!connection.authenticated_) return nullptr;
  if (connection.count_sessions() >= kMaxSessionChannels) {
    connection.context_.log.warn("ssh: connection {}: {} session channels already; refused one",
                                 connection.id_, kMaxSessionChannels);
    return nullptr;
  }
  ssh_channel channel = ssh_channel_new(session);
  if (channel == nullptr) return nullptr;
  connection.channels_.push_back(
      std::make_unique<SessionChannel>(channel, connection.context_, connection.id_));
  return channel;
}

int Connection::on_message(ssh_session, ssh_message message, void* self) {
  Connection& connection = *static_cast<Connection*>(self);
  if (connection.authenticated_ && ssh_message_type(message) == SSH_REQUEST_CHANNEL_OPEN &&
      ssh_message_subtype(message) == SSH_CHANNEL_DIRECT_TCPIP) {
    return connection.open_forward(message) ? 0 : 1;
  }
  return 1;  // libssh's default answer: refused
}

bool Connection::open_forward(ssh_message message) {
  const char* host = ssh_message_channel_request_open_destination(message);
  const int port = ssh_message_channel_request_open_destination_port(message);
  const std::string target = std::string(host != nullptr ? host : "") + ":" + std::to_string(port);
  if (channels_.size() - count_sessions() >= kMaxForwardChannels) {
    context_.log.warn("ssh: connection {}: forward to {} refused: {} forwards already", id_, target,
                      kMaxForwardChannels);
    return false;
  }
  const auto destination =
      loopback_destination(host != nullptr ? host : "", static_cast<uint32_t>(port));
  if (!destination) {
    context_.log.warn(
        "ssh: connection {}: forward to {} refused: only the sandbox's loopback is reachable", id_,
        target);
    return false;
  }
  auto socket = context_.launcher.connect(*destination);
  if (!socket.ok()) {
    context_.log.info("ssh: connection {}: forward to {} in the sandbox: {}", id_, target,
                      socket.error().message);
    return false;
  }
  ssh_channel channel = ssh_message_channel_request_open_reply_accept(message);
  if (channel == nullptr) return false;
  context_.log.info("ssh: connection {}: forwarding to {} in the sandbox", id_, target);
  channels_.push_back(std::make_unique<ForwardChannel>(channel, std::move(*socket)));
  return true;
}

void Connection::update_watches(ssh_event event) {
  Watches wanted;
  bool awaits_exit = false;
  for (const auto& channel : channels_) {
    channel->watch(wanted);
    awaits_exit = awaits_exit || channel->awaits_exit();
  }
  if (awaits_exit) watch(wanted, context_.launcher.event_fd(), POLLIN);
  for (const pollfd& old : registered_) {
    const bool kept = std::any_of(wanted.begin(), wanted.end(), [&](const pollfd& now) {
      return now.fd == old.fd && now.events == old.events;
    });
    if (!kept) ssh_event_remove_fd(event, old.fd);
  }
  for (const pollfd& now : wanted) {
    const bool present = std::any_of(
        registered_.begin(), registered_.end(),
        [&](const pollfd& old) { return now.fd == old.fd && now.events == old.events; });
    if (!present) ssh_event_add_fd(event, now.fd, now.events, ignore_event, nullptr);
  }
  registered_ = std::move(wanted);
}

bool Connection::deadline_passed(Clock::time_point now) {
  if (!authenticated_) {
    if (refused_ >= kSshMaxAuthAttempts) {
      context_.log.warn("ssh: connection {}: {} keys refused; closed", id_, refused_);
      return true;
    }
    if (now >= auth_deadline_) {
      context_.log.warn("ssh: connection {}: not authenticated in {} s; closed", id_,
                        kSshAuthTimeout.count());
      return true;
    }
    return false;
  }
  if (!channels_.empty()) {
    idle_since_ = now;
    return false;
  }
  const auto idle = context_.options.idle_timeout;
  if (idle.count() > 0 && now - idle_since_ >= idle) {
    context_.log.info("ssh: connection {}: idle for {} s with no channel open; closed", id_,
                      idle.count());
    return true;
  }
  return false;
}

void Connection::serve() {
  ssh_event event = ssh_event_new();
  if (event == nullptr || ssh_event_add_session(event, session_) != SSH_OK) {
    context_.log.error("ssh: connection {}: no event loop", id_);
    if (event != nullptr) ssh_event_free(event);
    return;
  }
  while (!context_.stop.load() && ssh_is_connected(session_) != 0) {
    update_watches(event);
    const bool backlog = std::any_of(channels_.begin(), channels_.end(),
                                     [](const auto& channel) { return channel->backlog(); });
    if (ssh_event_dopoll(event, backlog ? 0 : kLoopSliceMs) == SSH_ERROR) break;
    for (auto it = channels_.begin(); it != channels_.end();) {
      it = (*it)->pump() ? std::next(it) : channels_.erase(it);
    }
    if (deadline_passed(Clock::now())) break;
  }
  // One failure per connection that ended without getting in after a refused key (as
  // OpenSSH's PerSourcePenalties counts authfail): an agent offering five keys before the right
  // one is not five strikes.
  if (!authenticated_ && refused_ > 0) context_.throttle.record_failure(peer_);
  for (const pollfd& old : registered_)
    ssh_event_remove_fd(event, old.fd);
  registered_.clear();
  channels_.clear();  // sessions still running are killed
  ssh_event_remove_session(event, session_);
  ssh_event_free(event);
}

}  // namespace

void serve_connection(ssh_session session, const ConnectionContext& context,
                      const std::string& peer, uint64_t id) {
  const long timeout_seconds = static_cast<long>(kSshAuthTimeout.count());
  ssh_options_set(session, SSH_OPTIONS_TIMEOUT, &timeout_seconds);
  {
    Connection connection(session, context, peer, id);
    if (ssh_handle_key_exchange(session) != SSH_OK) {
      context.log.warn("ssh: connection {}: key exchange: {}", id, ssh_get_error(session));
    } else {
      connection.serve();
      if (!context.stop.load()) context.log.info("ssh: connection {} ended", id);
    }
  }
  ssh_disconnect(session);
  ssh_free(session);
}

}  // namespace openshell::runtime::ssh
