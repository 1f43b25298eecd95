// The main process's terminal shared with attached SSH clients: a retained tail of its output,
// one queue per attachment (woken through an eventfd), one stdin lease.
#include "openshell/runtime/main_session.hpp"

#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdint>

namespace openshell::runtime {
namespace {

// What one attachment may have waiting: a full replay plus as much live output again.
constexpr size_t kMaxPending = 2 * kMainOutputRetained;

// Keeps the last `limit` bytes of `text`.
void keep_tail(std::string& text, size_t limit) {
  if (text.size() > limit) text.erase(0, text.size() - limit);
}

}  // namespace

void MainSession::wake_locked(Subscriber& subscriber) {
  const uint64_t one = 1;
  (void)::write(subscriber.wake.get(), &one, sizeof one);
}

void MainSession::publish(std::string_view output) {
  const std::lock_guard lock(mutex_);
  retained_.append(output);
  keep_tail(retained_, kMainOutputRetained);
  for (Subscriber& subscriber : subscribers_) {
    if (subscriber.fell_behind) continue;
    if (subscriber.pending.size() + output.size() > kMaxPending) {
      subscriber.fell_behind = true;
      subscriber.pending.clear();
    } else {
      subscriber.pending.append(output);
    }
    wake_locked(subscriber);
  }
}

void MainSession::finish(int exit_code) {
  const std::lock_guard lock(mutex_);
  exit_code_ = exit_code;
  for (Subscriber& subscriber : subscribers_)
    wake_locked(subscriber);
}

std::unique_ptr<MainSession::Attachment> MainSession::attach(bool read_only) {
  const std::lock_guard lock(mutex_);
  Subscriber& subscriber = subscribers_.emplace_back();
  subscriber.wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  subscriber.pending = retained_;
  if (!read_only && lease_holder_ == nullptr) lease_holder_ = &subscriber;
  wake_locked(subscriber);
  return std::unique_ptr<Attachment>(new Attachment(*this, std::prev(subscribers_.end())));
}

void MainSession::wait_detached(std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex_);
  detached_.wait_for(lock, limit, [this] { return subscribers_.empty(); });
}

MainSession::Attachment::~Attachment() {
  const std::lock_guard lock(session_.mutex_);
  if (session_.lease_holder_ == &*subscriber_) session_.lease_holder_ = nullptr;
  session_.subscribers_.erase(subscriber_);
  session_.detached_.notify_all();
}

std::string MainSession::Attachment::take() {
  const std::lock_guard lock(session_.mutex_);
  uint64_t count = 0;
  (void)::read(subscriber_->wake.get(), &count, sizeof count);
  std::string output;
  output.swap(subscriber_->pending);
  return output;
}

bool MainSession::Attachment::fell_behind() const {
  const std::lock_guard lock(session_.mutex_);
  return subscriber_->fell_behind;
}

std::optional<int> MainSession::Attachment::exit_code() const {
  const std::lock_guard lock(session_.mutex_);
  if (!subscriber_->pending.empty()) return std::nullopt;
  return session_.exit_code_;
}

bool MainSession::Attachment::owns_stdin() const {
  const std::lock_guard lock(session_.mutex_);
  return session_.lease_holder_ == &*subscriber_;
}

ssize_t MainSession::Attachment::write_input(std::string_view bytes) const {
  if (!owns_stdin()) return static_cast<ssize_t>(bytes.size());  // read-only: dropped
  return ::write(session_.master_, bytes.data(), bytes.size());
}

void MainSession::Attachment::resize(unsigned short columns, unsigned short rows) const {
  if (!owns_stdin()) return;  // the lease holder's terminal decides the size
  winsize size{};
  size.ws_col = columns < 1 ? 1 : columns;
  size.ws_row = rows < 1 ? 1 : rows;
  ::ioctl(session_.master_, TIOCSWINSZ, &size);
}

void MainSession::Attachment::send_signal(int signal) const {
  ::ioctl(session_.master_, TIOCSIG, signal);
}

}  // namespace openshell::runtime
