// Test helpers for identity and egress relay tests: loopback listeners and a forked client
// process that holds a connection open until told to exit.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/ip/tcp.hpp>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace openshell::test {

// An owned fd (tests only).
class TestFd {
 public:
  explicit TestFd(int fd = -1) : fd_(fd) {}
  ~TestFd() { reset(); }
  TestFd(TestFd&& other) noexcept : fd_(other.release()) {}
  TestFd& operator=(TestFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

inline asio::ip::tcp::endpoint to_endpoint(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET6) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, &address, sizeof in6);
    asio::ip::address_v6::bytes_type bytes{};
    std::memcpy(bytes.data(), &in6.sin6_addr, bytes.size());
    return {asio::ip::address_v6(bytes), ntohs(in6.sin6_port)};
  }
  sockaddr_in in{};
  std::memcpy(&in, &address, sizeof in);
  return {asio::ip::address_v4(ntohl(in.sin_addr.s_addr)), ntohs(in.sin_port)};
}

inline asio::ip::tcp::endpoint local_endpoint(int fd) {
  sockaddr_storage address{};
  socklen_t size = sizeof address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    throw std::runtime_error("getsockname failed");
  }
  return to_endpoint(address);
}

inline asio::ip::tcp::endpoint peer_endpoint(int fd) {
  sockaddr_storage address{};
  socklen_t size = sizeof address;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    throw std::runtime_error("getpeername failed");
  }
  return to_endpoint(address);
}

// A listening TCP socket on 127.0.0.1 (or ::1) with a kernel-chosen port.
inline TestFd listen_loopback(bool v6 = false, int flags = SOCK_CLOEXEC) {
  TestFd fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | flags, 0));
  if (fd.get() < 0) return fd;
  sockaddr_storage address{};
  socklen_t size = 0;
  if (v6) {
    sockaddr_in6 in6{};
    in6.sin6_family = AF_INET6;
    in6.sin6_addr = in6addr_loopback;
    std::memcpy(&address, &in6, sizeof in6);
    size = sizeof in6;
  } else {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::memcpy(&address, &in, sizeof in);
    size = sizeof in;
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), size) != 0 ||
      ::listen(fd.get(), 16) != 0) {
    return TestFd();
  }
  return fd;
}

// Connects to `target` (the socket is not close-on-exec, so an exec'd program keeps it).
inline int connect_to(const asio::ip::tcp::endpoint& target) {
  const int fd = ::socket(target.address().is_v6() ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (::connect(fd, target.data(), static_cast<socklen_t>(target.size())) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// What a forked client does once connected: returns its exit code. `release_fd` reads EOF when
// the parent calls release().
using ClientBody = std::function<int(int socket, int release_fd)>;

inline int hold_until_released(int /*socket*/, int release_fd) {
  char byte = 0;
  while (::read(release_fd, &byte, 1) < 0 && errno == EINTR) {
  }
  return 0;
}

// Replaces the child with `argv` (absolute program path first); the socket stays open in it.
// The argument array is built before fork: the child of a threaded test must not allocate.
inline ClientBody exec_program(const std::vector<std::string>& argv) {
  struct Args {
    std::vector<std::string> strings;
    std::vector<char*> pointers;
  };
  auto args = std::make_shared<Args>();
  args->strings = argv;
  for (std::string& arg : args->strings)
    args->pointers.push_back(arg.data());
  args->pointers.push_back(nullptr);
  return [args](int, int) {
    ::execv(args->pointers[0], args->pointers.data());
    return 127;
  };
}

// A forked child that connects to `target` and runs `body`. The child never returns into the
// test framework; the destructor kills and reaps it if the test did not wait for it.
class ClientProcess {
 public:
  explicit ClientProcess(const asio::ip::tcp::endpoint& target,
                         const ClientBody& body = hold_until_released) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::close(fds[1]);
      const int socket = connect_to(target);
      ::_exit(socket < 0 ? 100 : body(socket, fds[0]));
    }
    ::close(fds[0]);
    release_ = TestFd(fds[1]);
  }
  ~ClientProcess() {
    if (pid_ > 0) ::kill(pid_, SIGKILL);
    wait_exit();
  }
  ClientProcess(const ClientProcess&) = delete;
  ClientProcess& operator=(const ClientProcess&) = delete;

  pid_t pid() const { return pid_; }
  void release() { release_.reset(); }
  // Releases the child and reaps it: its exit code, or 128 + signal.
  int wait_exit() {
    release();
    if (pid_ <= 0) return code_;
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return code_;
  }

 private:
  pid_t pid_ = -1;
  int code_ = -1;
  TestFd release_;
};

}  // namespace openshell::test
