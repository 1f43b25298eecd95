// Load generator and origin server for the side-by-side proxy benchmark (proxy_bench.py): drives
// CONNECT tunnels, forward requests or direct connections and prints one JSON line per run.

#include <algorithm>
#include <array>
#include <asio.hpp>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace openshell::bench {
namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// A request or response head larger than this is a protocol error here, not a workload.
constexpr std::size_t kMaxHead = std::size_t{16} * 1024;
// Bulk transfers move this much per read/write call: large enough that per-call cost is noise.
constexpr std::size_t kBulkChunk = std::size_t{256} * 1024;
// The bulk command is fixed-size and longer than the 24 bytes a proxy may peek at to classify a
// tunnel, so a peeking proxy never waits for more bytes before it starts relaying.
constexpr std::size_t kBulkCommandSize = 32;

// Every flag any mode takes, with its default; an unknown flag is a usage error.
const std::map<std::string, std::string> kDefaults = {
    {"clients", "64"},
    {"duration", "10"},
    {"warmup", "1"},
    {"count", "0"},
    {"threads", "1"},
    {"request-bytes", "1024"},
    {"body-bytes", "1024"},
    {"timeout", "10"},
    {"bytes", "1073741824"},
    {"direction", "down"},
    {"tunnels", "1000"},
    {"warm", "1"},
    {"open-concurrency", "32"},
    {"listen", "127.0.0.1:0"},
    {"label", ""},
    {"proxy", ""},
    {"target", ""},
};

class Options {
 public:
  static Options parse(int argc, char** argv) {
    Options o;
    for (int i = 2; i < argc; i += 2) {
      std::string key = argv[i];
      if (key.rfind("--", 0) != 0 || i + 1 >= argc) throw std::invalid_argument("bad flag " + key);
      key.erase(0, 2);
      if (!kDefaults.contains(key)) throw std::invalid_argument("unknown flag --" + key);
      o.values_[key] = argv[i + 1];
    }
    return o;
  }
  std::string str(const std::string& key) const {
    auto it = values_.find(key);
    return it != values_.end() ? it->second : kDefaults.at(key);
  }
  std::uint64_t num(const std::string& key) const { return std::stoull(str(key)); }
  double real(const std::string& key) const { return std::stod(str(key)); }

 private:
  std::map<std::string, std::string> values_;
};

tcp::endpoint parse_endpoint(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("expected HOST:PORT, got " + text);
  return {asio::ip::make_address(text.substr(0, colon)),
          static_cast<unsigned short>(std::stoul(text.substr(colon + 1)))};
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  }
  return out;
}

std::string lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Value of Content-Length in a response or request head; nullopt when absent.
std::optional<std::size_t> content_length(const std::string& head) {
  const std::string lowered = lower(head);
  auto pos = lowered.find("\r\ncontent-length:");
  if (pos == std::string::npos) return std::nullopt;
  return std::stoull(lowered.substr(pos + 17, lowered.find("\r\n", pos + 2) - pos - 17));
}

// Closes the socket when the deadline passes, so a stalled proxy turns into an error instead of a
// hung client. The handler holds only a weak pointer, so it is safe after the socket is gone.
class Deadline {
 public:
  Deadline(const std::shared_ptr<tcp::socket>& sock, double seconds)
      : timer_(sock->get_executor(), std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(seconds))) {
    timer_.async_wait([weak = std::weak_ptr<tcp::socket>(sock)](std::error_code ec) {
      if (ec) return;
      if (auto s = weak.lock()) s->close(ec);
    });
  }

 private:
  asio::steady_timer timer_;
};

// What one client connection is pointed at: a proxy to CONNECT through, or the origin itself.
struct Route {
  std::optional<tcp::endpoint> proxy;
  tcp::endpoint target;
  std::string target_text;
};

Route make_route(const Options& o) {
  Route r;
  if (!o.str("proxy").empty()) r.proxy = parse_endpoint(o.str("proxy"));
  r.target_text = o.str("target");
  if (r.target_text.empty()) throw std::invalid_argument("--target HOST:PORT is required");
  r.target = parse_endpoint(r.target_text);
  return r;
}

void expect_status_200(const std::string& head, const char* what) {
  if (head.size() < 12 || head.compare(0, 7, "HTTP/1.") != 0 || head.compare(9, 3, "200") != 0) {
    throw std::runtime_error(std::string(what) + ": " + head.substr(0, head.find('\r')));
  }
}

// Connects to the origin, either directly or through a CONNECT tunnel. Bytes read past the proxy's
// 200 head stay in `buf` for the next reader.
awaitable<void> open_stream(tcp::socket& sock, const Route& route, std::string& buf) {
  co_await sock.async_connect(route.proxy ? *route.proxy : route.target, use_awaitable);
  sock.set_option(tcp::no_delay(true));
  if (!route.proxy) co_return;
  const std::string req =
      "CONNECT " + route.target_text + " HTTP/1.1\r\nHost: " + route.target_text + "\r\n\r\n";
  co_await asio::async_write(sock, asio::buffer(req), use_awaitable);
  auto n = co_await asio::async_read_until(sock, asio::dynamic_buffer(buf, kMaxHead), "\r\n\r\n",
                                           use_awaitable);
  expect_status_200(buf.substr(0, n), "CONNECT refused");
  buf.erase(0, n);
}

// Sends one request and reads one complete response with the expected body size.
awaitable<void> exchange(tcp::socket& sock, std::string& buf, const std::string& request,
                         std::size_t body_bytes) {
  co_await asio::async_write(sock, asio::buffer(request), use_awaitable);
  auto n = co_await asio::async_read_until(sock, asio::dynamic_buffer(buf, kMaxHead), "\r\n\r\n",
                                           use_awaitable);
  const std::string head = buf.substr(0, n);
  expect_status_200(head, "request failed");
  auto length = content_length(head);
  if (!length || *length != body_bytes) throw std::runtime_error("unexpected response length");
  if (buf.size() < n + *length) {
    co_await asio::async_read(sock, asio::dynamic_buffer(buf),
                              asio::transfer_exactly(n + *length - buf.size()), use_awaitable);
  }
  buf.erase(0, n + *length);
}

// A POST whose head plus body is exactly `total` bytes (the head alone is about 110 bytes).
std::string make_request(const std::string& request_target, const std::string& host,
                         std::size_t total) {
  auto head_for = [&](std::size_t body) {
    return "POST " + request_target + " HTTP/1.1\r\nHost: " + host +
           "\r\nContent-Type: application/octet-stream\r\nContent-Length: " + std::to_string(body) +
           "\r\n\r\n";
  };
  std::size_t body = total > 200 ? total - head_for(total).size() : 0;
  while (head_for(body).size() + body < total)
    ++body;  // digit count may have shrunk
  return head_for(body) + std::string(body, 'q');
}

// ---------------------------------------------------------------- request/response load

enum class RrKind { kConnect, kDirect, kForward };

struct RrShared {
  RrKind kind;
  Route route;
  std::string request;
  std::size_t body_bytes;
  double timeout;
  Clock::time_point measure_from;
  Clock::time_point stop_at;
  std::uint64_t count_limit;  // 0 = run for the duration
  std::atomic<std::uint64_t> started{0};
};

struct RrStats {
  std::vector<std::uint32_t> latencies_us;
  std::uint64_t errors = 0;
  std::string first_error;
};

awaitable<void> rr_client(RrShared& sh, RrStats& st) {
  auto ex = co_await asio::this_coro::executor;
  for (;;) {
    const auto t0 = Clock::now();
    if (t0 >= sh.stop_at) break;
    if (sh.count_limit != 0 && sh.started.fetch_add(1) >= sh.count_limit) break;
    bool failed = false;
    try {
      auto sock = std::make_shared<tcp::socket>(ex);
      Deadline deadline(sock, sh.timeout);
      std::string buf;
      if (sh.kind == RrKind::kConnect) {
        co_await open_stream(*sock, sh.route, buf);
      } else {
        co_await sock->async_connect(sh.route.proxy ? *sh.route.proxy : sh.route.target,
                                     use_awaitable);
        sock->set_option(tcp::no_delay(true));
      }
      co_await exchange(*sock, buf, sh.request, sh.body_bytes);
      std::error_code ignored;
      sock->close(ignored);
    } catch (const std::exception& e) {
      failed = true;
      if (t0 >= sh.measure_from) {
        ++st.errors;
        if (st.first_error.empty()) st.first_error = e.what();
      }
    }
    const auto t1 = Clock::now();
    if (t0 >= sh.measure_from && !failed) {
      st.latencies_us.push_back(static_cast<std::uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count()));
    }
    if (failed) {  // keep a refused port from turning into a busy loop
      asio::steady_timer pause(ex, std::chrono::milliseconds(10));
      co_await pause.async_wait(use_awaitable);
    }
  }
}

double percentile(const std::vector<std::uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  auto rank =
      static_cast<std::size_t>(std::lround(p / 100.0 * static_cast<double>(sorted.size() - 1)));
  return sorted[std::min(rank, sorted.size() - 1)];
}

void run_on_threads(asio::io_context& io, std::uint64_t threads) {
  std::vector<std::thread> extra;
  for (std::uint64_t i = 1; i < threads; ++i)
    extra.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : extra)
    t.join();
}

int run_rr(const std::string& mode, const Options& o) {
  RrShared sh;
  sh.kind = mode == "connect-rr"   ? RrKind::kConnect
            : mode == "forward-rr" ? RrKind::kForward
                                   : RrKind::kDirect;
  sh.route = make_route(o);
  if (sh.kind != RrKind::kDirect && !sh.route.proxy) throw std::invalid_argument("--proxy needed");
  if (sh.kind == RrKind::kDirect) sh.route.proxy.reset();
  const std::string path =
      sh.kind == RrKind::kForward ? "http://" + sh.route.target_text + "/bench" : "/bench";
  sh.request = make_request(path, sh.route.target_text, o.num("request-bytes"));
  sh.body_bytes = o.num("body-bytes");
  sh.timeout = o.real("timeout");
  sh.count_limit = o.num("count");
  const double warmup = sh.count_limit != 0 ? 0.0 : o.real("warmup");
  const double duration = sh.count_limit != 0 ? 3600.0 : o.real("duration");
  const auto start = Clock::now();
  auto secs = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  sh.measure_from = start + secs(warmup);
  sh.stop_at = sh.measure_from + secs(duration);

  asio::io_context io;
  std::vector<RrStats> stats(o.num("clients"));
  for (auto& st : stats)
    asio::co_spawn(asio::make_strand(io), rr_client(sh, st), asio::detached);
  run_on_threads(io, std::max<std::uint64_t>(1, o.num("threads")));
  const double elapsed =
      std::chrono::duration<double>(std::min(Clock::now(), sh.stop_at) - sh.measure_from).count();

  std::vector<std::uint32_t> all;
  std::uint64_t errors = 0;
  std::string first_error;
  for (auto& st : stats) {
    all.insert(all.end(), st.latencies_us.begin(), st.latencies_us.end());
    errors += st.errors;
    if (first_error.empty()) first_error = st.first_error;
  }
  std::sort(all.begin(), all.end());
  const double mean =
      all.empty() ? 0.0
                  : std::accumulate(all.begin(), all.end(), 0.0) / static_cast<double>(all.size());
  std::ostringstream out;
  out << "{\"mode\":\"" << mode << "\",\"label\":\"" << json_escape(o.str("label"))
      << "\",\"clients\":" << stats.size() << ",\"seconds\":" << elapsed
      << ",\"requests\":" << all.size() << ",\"errors\":" << errors
      << ",\"rps\":" << (elapsed > 0 ? static_cast<double>(all.size()) / elapsed : 0.0)
      << ",\"p50_us\":" << percentile(all, 50) << ",\"p90_us\":" << percentile(all, 90)
      << ",\"p99_us\":" << percentile(all, 99) << ",\"mean_us\":" << mean
      << ",\"max_us\":" << (all.empty() ? 0U : all.back()) << ",\"first_error\":\""
      << json_escape(first_error) << "\"}";
  std::cout << out.str() << std::endl;
  return all.empty() ? 1 : 0;
}

// ---------------------------------------------------------------- bulk throughput

std::string bulk_command(const std::string& verb, std::uint64_t bytes) {
  std::string cmd = verb + " " + std::to_string(bytes);
  cmd.resize(kBulkCommandSize - 1, ' ');
  return cmd + "\n";
}

awaitable<void> throughput_client(const Options& o, const Route& route, std::ostringstream& out) {
  auto ex = co_await asio::this_coro::executor;
  const std::uint64_t total = o.num("bytes");
  const bool down = o.str("direction") == "down";
  auto sock = std::make_shared<tcp::socket>(ex);
  Deadline deadline(sock, o.real("timeout"));
  std::string buf;
  const auto t_open = Clock::now();
  co_await open_stream(*sock, route, buf);
  const auto t_start = Clock::now();
  co_await asio::async_write(*sock, asio::buffer(bulk_command(down ? "DOWN" : "UP", total)),
                             use_awaitable);
  std::vector<char> chunk(kBulkChunk, 'b');
  std::uint64_t moved = 0;
  Clock::time_point t_first{};
  if (down) {
    moved = buf.size();
    if (moved > 0) t_first = Clock::now();
    while (moved < total) {
      auto n = co_await sock->async_read_some(asio::buffer(chunk), use_awaitable);
      if (moved == 0) t_first = Clock::now();
      moved += n;
    }
  } else {
    t_first = t_start;
    while (moved < total) {
      auto n = std::min<std::uint64_t>(total - moved, chunk.size());
      co_await asio::async_write(*sock, asio::buffer(chunk.data(), n), use_awaitable);
      moved += n;
    }
    co_await asio::async_read_until(*sock, asio::dynamic_buffer(buf, kMaxHead), "\n",
                                    use_awaitable);
  }
  const auto t_end = Clock::now();
  auto secs = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  // Rate from the first payload byte: tunnel setup is what the latency runs measure.
  const double transfer = secs(t_end - t_first);
  out << "{\"mode\":\"throughput\",\"label\":\"" << json_escape(o.str("label"))
      << "\",\"direction\":\"" << (down ? "down" : "up") << "\",\"bytes\":" << moved
      << ",\"seconds\":" << transfer << ",\"total_seconds\":" << secs(t_end - t_start)
      << ",\"setup_ms\":" << secs(t_start - t_open) * 1e3
      << ",\"mb_per_s\":" << static_cast<double>(moved) / transfer / 1e6 << ",\"errors\":0}";
}

int run_throughput(const Options& o) {
  asio::io_context io;
  Route route = make_route(o);
  std::ostringstream out;
  std::string error;
  asio::co_spawn(io, throughput_client(o, route, out), [&](const std::exception_ptr& e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      error = ex.what();
    }
  });
  io.run();
  if (!error.empty()) {
    std::cout << "{\"mode\":\"throughput\",\"label\":\"" << json_escape(o.str("label"))
              << "\",\"errors\":1,\"first_error\":\"" << json_escape(error) << "\"}" << std::endl;
    return 1;
  }
  std::cout << out.str() << std::endl;
  return 0;
}

// ---------------------------------------------------------------- idle tunnels

struct Tunnel {
  std::shared_ptr<tcp::socket> sock;
  std::string buf;
  bool open = false;
};

// Runs `step` on every tunnel with bounded concurrency, so 1,000 tunnels do not arrive as one
// burst that overflows a peer's accept backlog.
template <typename Step>
void for_each_tunnel(asio::io_context& io, std::vector<Tunnel>& tunnels, std::uint64_t workers,
                     Step step) {
  std::size_t next = 0;
  for (std::uint64_t w = 0; w < workers; ++w) {
    asio::co_spawn(
        io,
        [&]() -> awaitable<void> {
          while (next < tunnels.size())
            co_await step(tunnels[next++]);
        },
        asio::detached);
  }
  io.run();
  io.restart();
}

int run_idle(const Options& o) {
  asio::io_context io;
  const Route route = make_route(o);
  if (!route.proxy) throw std::invalid_argument("--proxy needed");
  const std::string request = make_request("/bench", route.target_text, o.num("request-bytes"));
  const std::size_t body = o.num("body-bytes");
  const bool warm = o.num("warm") != 0;
  const double timeout = o.real("timeout");
  std::vector<Tunnel> tunnels(o.num("tunnels"));
  std::string first_error;
  auto note = [&](const std::exception& e) {
    if (first_error.empty()) first_error = e.what();
  };

  for_each_tunnel(io, tunnels, o.num("open-concurrency"), [&](Tunnel& t) -> awaitable<void> {
    t.sock = std::make_shared<tcp::socket>(io);
    try {
      Deadline deadline(t.sock, timeout);
      co_await open_stream(*t.sock, route, t.buf);
      if (warm) co_await exchange(*t.sock, t.buf, request, body);
      t.open = true;
    } catch (const std::exception& e) {
      note(e);
    }
  });
  auto opened = std::count_if(tunnels.begin(), tunnels.end(), [](auto& t) { return t.open; });
  std::cout << "{\"mode\":\"idle\",\"event\":\"ready\",\"label\":\"" << json_escape(o.str("label"))
            << "\",\"tunnels\":" << tunnels.size() << ",\"open\":" << opened
            << ",\"errors\":" << tunnels.size() - static_cast<std::size_t>(opened)
            << ",\"first_error\":\"" << json_escape(first_error) << "\"}" << std::endl;

  // The driver reads the proxy's RSS now, then writes a line (or closes stdin) to continue.
  std::string line;
  std::getline(std::cin, line);

  // Each tunnel must still carry a request: a proxy that dropped idle tunnels would look cheap.
  for_each_tunnel(io, tunnels, o.num("open-concurrency"), [&](Tunnel& t) -> awaitable<void> {
    if (!t.open) co_return;
    try {
      Deadline deadline(t.sock, timeout);
      co_await exchange(*t.sock, t.buf, request, body);
    } catch (const std::exception& e) {
      t.open = false;
      note(e);
    }
  });
  auto alive = std::count_if(tunnels.begin(), tunnels.end(), [](auto& t) { return t.open; });
  std::cout << "{\"mode\":\"idle\",\"event\":\"done\",\"label\":\"" << json_escape(o.str("label"))
            << "\",\"tunnels\":" << tunnels.size() << ",\"alive\":" << alive
            << ",\"first_error\":\"" << json_escape(first_error) << "\"}" << std::endl;
  return alive == static_cast<long>(tunnels.size()) ? 0 : 1;
}

// ---------------------------------------------------------------- origin servers

awaitable<void> serve_http(tcp::socket sock, const std::string& response) {
  sock.set_option(tcp::no_delay(true));
  std::string buf;
  try {
    for (;;) {  // keep-alive: one response per request until the client closes
      auto n = co_await asio::async_read_until(sock, asio::dynamic_buffer(buf, kMaxHead),
                                               "\r\n\r\n", use_awaitable);
      const std::size_t need = n + content_length(buf.substr(0, n)).value_or(0);
      if (buf.size() < need) {
        co_await asio::async_read(sock, asio::dynamic_buffer(buf),
                                  asio::transfer_exactly(need - buf.size()), use_awaitable);
      }
      buf.erase(0, need);
      co_await asio::async_write(sock, asio::buffer(response), use_awaitable);
    }
  } catch (const std::exception&) {
    // Client closed or sent garbage: either way this connection is over.
  }
}

awaitable<void> serve_bulk(tcp::socket sock) {
  sock.set_option(tcp::no_delay(true));
  try {
    std::array<char, kBulkCommandSize> cmd{};
    co_await asio::async_read(sock, asio::buffer(cmd), use_awaitable);
    std::istringstream in(std::string(cmd.data(), cmd.size()));
    std::string verb;
    std::uint64_t total = 0;
    in >> verb >> total;
    std::vector<char> chunk(kBulkChunk, 'd');
    for (std::uint64_t moved = 0; moved < total;) {
      const auto n = std::min<std::uint64_t>(total - moved, chunk.size());
      if (verb == "DOWN") {
        moved += co_await asio::async_write(sock, asio::buffer(chunk.data(), n), use_awaitable);
      } else {
        moved += co_await sock.async_read_some(asio::buffer(chunk.data(), n), use_awaitable);
      }
    }
    if (verb != "DOWN") co_await asio::async_write(sock, asio::buffer("DONE\n", 5), use_awaitable);
    // Half-close and wait for the client, so the last bytes are never lost to a reset.
    sock.shutdown(tcp::socket::shutdown_send);
    for (;;)
      co_await sock.async_read_some(asio::buffer(chunk), use_awaitable);
  } catch (const std::exception&) {
    // EOF from the client ends the exchange.
  }
}

int run_server(const std::string& mode, const Options& o) {
  asio::io_context io(1);
  tcp::acceptor acceptor(io, parse_endpoint(o.str("listen")));
  acceptor.listen(4096);
  const std::size_t body = o.num("body-bytes");
  const std::string response =
      "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
      "Content-Length: " +
      std::to_string(body) + "\r\n\r\n" + std::string(body, 'r');
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        for (;;) {
          auto sock = co_await acceptor.async_accept(use_awaitable);
          if (mode == "origin") {
            asio::co_spawn(io, serve_http(std::move(sock), response), asio::detached);
          } else {
            asio::co_spawn(io, serve_bulk(std::move(sock)), asio::detached);
          }
        }
      },
      asio::detached);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](std::error_code, int) { io.stop(); });
  std::cout << "{\"mode\":\"" << mode
            << "\",\"event\":\"listening\",\"port\":" << acceptor.local_endpoint().port() << "}"
            << std::endl;
  io.run();
  return 0;
}

int usage() {
  std::cerr << "usage: proxy_load MODE [--flag value]...\n"
               "  origin      --listen H:P [--body-bytes N]        HTTP/1.1 keep-alive origin\n"
               "  bulk        --listen H:P                         DOWN/UP byte source and sink\n"
               "  connect-rr  --proxy H:P --target H:P [--clients N --duration S --warmup S\n"
               "              --count N --threads N --request-bytes N --body-bytes N]\n"
               "  forward-rr  same flags, absolute-form POST through the proxy\n"
               "  direct-rr   --target H:P, same flags without a proxy\n"
               "  throughput  [--proxy H:P] --target H:P [--bytes N --direction down|up]\n"
               "  idle        --proxy H:P --target H:P [--tunnels N --warm 0|1]; prints ready,\n"
               "              reads one stdin line, checks every tunnel still works\n"
               "All client modes accept --label TEXT and --timeout S; output is JSON lines.\n";
  return 2;
}

}  // namespace
}  // namespace openshell::bench

int main(int argc, char** argv) {
  using namespace openshell::bench;
  std::signal(SIGPIPE, SIG_IGN);
  if (argc < 2) return usage();
  const std::string mode = argv[1];
  try {
    const Options o = Options::parse(argc, argv);
    if (mode == "origin" || mode == "bulk") return run_server(mode, o);
    if (mode == "connect-rr" || mode == "direct-rr" || mode == "forward-rr") return run_rr(mode, o);
    if (mode == "throughput") return run_throughput(o);
    if (mode == "idle") return run_idle(o);
  } catch (const std::exception& e) {
    std::cerr << "proxy_load: " << e.what() << "\n";
    return 2;
  }
  return usage();
}
