// SPDX-License-Identifier: MIT
// rjitd: the remote JIT compilation daemon. Wires the parts together (cache, metrics, worker
// pools, compile service, listeners, metrics endpoint) and runs the event loop until
// SIGTERM/SIGINT, then drains.
#include "build-id.h"
#include "cache-key.h"
#include "compile-backend.h"
#include "compile-service.h"
#include "compiler.h"
#include "disk-cache.h"
#include "endpoint.h"
#include "execute-service.h"
#include "exposer.h"
#include "listeners.h"
#include "log.h"
#include "metrics.h"
#include "object-cache.h"
#include "peer-policy.h"
#include "rjitd-config.h"
#include "rpc-edge.h"
#include "rpc-server.h"
#include "shared-cache.h"
#include "tiered-cache.h"
#include "worker-pool.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <memory>
#include <optional>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <thread>
#include <unistd.h>
#include <variant>

namespace rjitd::service {
namespace {

struct Options {
  std::vector<std::string> listen;
  std::string metrics;  // HOST:PORT of the /metrics endpoint; "" = none
  uint64_t cacheBytes = 256ull << 20;
  uint64_t maxModuleBytes = 64ull << 20;
  uint64_t maxClientMemory = 1ull << 30;
  unsigned jobs = 0;
  unsigned compileTimeoutSeconds = 300;
  int compileWorkerFd = -1;     // internal: run as a compile worker on this fd
  std::string testCompileGate;  // test-only: see ServiceConfig::compileGate
  std::string testWorkerGate;   // test-only: see runCompileWorker()
  std::string logLevel = "info";
  std::string executorPath;  // "" = found next to rjitd or in RJITD_EXECUTOR_DIR
  uint32_t maxExecutors = 64;
  uint32_t maxExecutorsPerConnection = 4;
  uint64_t executorMemory = 1ull << 30;
  uint64_t executorOutput = 8ull << 20;
  uint64_t maxCallBytes = 128ull << 20;
  std::string executeTimeout = "30s";
  std::string executorUser;     // "" = nobody (used only when rjitd runs as root)
  std::string aarch64Executor;  // "" = aarch64/rjitd-executor next to the executor
  std::string qemuAarch64;      // "" = qemu-aarch64-static or qemu-aarch64 in /usr/bin
  std::string aarch64Launcher;  // "" = rjitd spawns aarch64 executors; unix:PATH = the relay
  // Issue 12 (hostile load). Connections and peers (listeners.cpp):
  uint32_t maxConnections = 1024;
  uint32_t maxConnectionsPerUser = 128;    // per peer uid (Unix), per peer address (TCP)
  std::string handshakeTimeout = "10s";    // a new connection must have said hello by then
  std::string readTimeout = "30s";         // a message once started must have arrived by then
  uint64_t maxInflightBytes = 1ull << 30;  // request bodies being received or served, all peers
  std::string socketMode = "0660";         // of the Unix sockets rjitd creates itself
  std::vector<std::string> allowUsers;     // "" = root, rjitd's own user
  std::vector<std::string> allowGroups;    // "" = the rjitd group (when it exists)
  // Admission (compile-service.cpp, load-service.cpp):
  uint32_t maxQueued = 64;  // requests waiting for a worker, per target; more are overloaded
  uint64_t maxHeldRequestBytes = 1ull << 30;  // modules held after receipt, all requests
  // Compile workers (compile-backend.cpp) and the drain:
  uint64_t maxObjectBytes = 64ull << 20;
  uint64_t compileMemory = 4ull << 30;  // RLIMIT_AS of each compile worker
  std::string drainTimeout = "60s";     // below the unit's TimeoutStopSec=90
  // Issue 13 (durable and shared cache). Disk tier (src/cache/disk-cache.h):
  std::string cacheDir;                  // "" = defaultCacheDir()
  uint64_t diskCacheBytes = 2ull << 30;  // 0 = no disk tier
  // Shared tier on Redis (src/cache/shared-cache.h):
  std::string sharedCache;          // redis://HOST:PORT or unix:/PATH; "" = off
  std::string sharedCacheKeyFile;   // the HMAC secret; required with --shared-cache
  std::string sharedCacheAuthFile;  // Redis AUTH: PASSWORD or USER PASSWORD; optional
  bool sharedCacheReadOnly = false;
  uint64_t sharedCacheMaxValueBytes = 16ull << 20;
  std::string sharedCacheTimeout = "500ms";  // each Redis command; connects get 200 ms at most
  std::string sharedCacheLeaseTtl = "30s";
};

/// The disk cache's directory when --cache-dir is not given: systemd's CacheDirectory= (it
/// sets $CACHE_DIRECTORY), /var/cache/rjitd for root, else $XDG_CACHE_HOME/rjitd or
/// ~/.cache/rjitd (../shared/MISSION.md). "" when there is no such place (no HOME).
std::string defaultCacheDir() {
  if (const char* systemd = std::getenv("CACHE_DIRECTORY"); systemd != nullptr && *systemd == '/')
    return std::string(systemd).substr(0, std::string(systemd).find(':'));
  if (::geteuid() == 0)
    return "/var/cache/rjitd";
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg == '/')
    return std::string(xdg) + "/rjitd";
  if (const char* home = std::getenv("HOME"); home != nullptr && *home == '/')
    return std::string(home) + "/.cache/rjitd";
  return "";
}

/// A secret from the file `path` given to `option`: the file's bytes, without a final newline.
/// Refuses a file others may read (the secret is what keeps code out of the fleet's cache, or
/// others out of Redis), over 4096 bytes, or (after the newline) shorter than `minBytes`.
/// Returns the error, or nullopt with `secret` set.
std::optional<std::string> readSecretFile(const char* option, const std::string& path,
                                          size_t minBytes, std::string& secret) {
  std::string named = std::string(option) + " " + path;
  kj::AutoCloseFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0)
    return "cannot open " + named + ": " + strerror(errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return named + " is not a regular file";
  if ((st.st_mode & 0077) != 0)
    return named + " may be read by others (mode " + [&] {
      char m[8];
      std::snprintf(m, sizeof m, "%04o", st.st_mode & 07777);
      return std::string(m);
    }() + "); make it readable by rjitd only (chmod 0600)";
  if (st.st_size > 4096)
    return named + " is " + std::to_string(st.st_size) + " bytes; at most 4096 are read";
  secret.assign(static_cast<size_t>(st.st_size), '\0');
  ssize_t n = ::read(fd.get(), secret.data(), secret.size());
  if (n < 0)
    return "cannot read " + named + ": " + strerror(errno);
  secret.resize(static_cast<size_t>(n));
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r'))
    secret.pop_back();
  if (secret.size() < minBytes)
    return named + " holds " + std::to_string(secret.size()) + " bytes; at least " +
           std::to_string(minBytes) + " are needed" +
           (minBytes > 1 ? " (e.g. head -c 32 /dev/urandom | base64 > " + path + ")"
                         : std::string());
  return std::nullopt;
}

/// --shared-cache-auth-file: "PASSWORD" (Redis's requirepass) or "USER PASSWORD" (a Redis 6
/// ACL user) on one line. A password with a space in it takes the second form (user
/// `default`). Returns the error, or nullopt with `user` and `password` set.
std::optional<std::string> readRedisAuth(const std::string& path, std::string& user,
                                         std::string& password) {
  std::string text;
  if (auto err = readSecretFile("--shared-cache-auth-file", path, 1, text))
    return err;
  if (text.find('\n') != std::string::npos || text.find('\r') != std::string::npos)
    return "--shared-cache-auth-file " + path +
           " has more than one line; it holds PASSWORD or USER PASSWORD on one line";
  size_t space = text.find(' ');
  if (space == std::string::npos) {
    user.clear();
    password = std::move(text);
  } else {
    user = text.substr(0, space);
    password = text.substr(space + 1);
  }
  if (user.empty() && space != std::string::npos)
    return "--shared-cache-auth-file " + path +
           " starts with a space; it holds PASSWORD or "
           "USER PASSWORD on one line";
  // Neither field is echoed: a password with a space in it, written without the user, is
  // exactly what would land here.
  if (password.empty())
    return "--shared-cache-auth-file " + path +
           " has a first word but nothing after it; it "
           "holds PASSWORD, or USER PASSWORD (a password with a space takes the second form, "
           "user default)";
  return std::nullopt;
}

/// A duration as the options take it: a number of seconds, or a number with `ms`, `s` or `m`
/// ("500ms", "30s", "2m"). nullopt when malformed or zero.
std::optional<std::chrono::milliseconds> parseDuration(const std::string& text) {
  uint64_t number = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (error != std::errc())
    return std::nullopt;
  std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  uint64_t factor = 0;
  if (unit.empty() || unit == "s")
    factor = 1000;
  else if (unit == "ms")
    factor = 1;
  else if (unit == "m")
    factor = 60000;
  if (factor == 0 || number == 0 || number > (1ull << 40))
    return std::nullopt;
  return std::chrono::milliseconds(number * factor);
}

/// --socket-mode: octal digits (a leading 0 optional) up to 0777. nullopt when malformed.
std::optional<uint32_t> parseSocketMode(const std::string& text) {
  uint32_t mode = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), mode, 8);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || mode > 0777)
    return std::nullopt;
  return mode;
}

/// The executor binary: --executor-path, else rjitd-executor next to rjitd's own binary (or in
/// its executor/ subdirectory: the build tree), else the installed one.
std::string findExecutor(const std::string& configured) {
  if (!configured.empty())
    return configured;
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string dir(self, static_cast<size_t>(n));
    dir = dir.substr(0, dir.rfind('/'));
    for (const char* relative : {"/rjitd-executor", "/executor/rjitd-executor"}) {
      std::string candidate = dir + relative;
      if (::access(candidate.c_str(), X_OK) == 0)
        return candidate;
    }
  }
  return std::string(RJITD_EXECUTOR_DIR) + "/rjitd-executor";
}

/// Logs and counts a background task's failure (an unload sent to a dying executor).
class TaskErrors final : public kj::TaskSet::ErrorHandler {
public:
  explicit TaskErrors(metrics::Metrics& metrics) : metrics(metrics) {}
  void taskFailed(kj::Exception&& exception) override {
    if (exception.getType() == kj::Exception::Type::DISCONNECTED)
      return;  // the executor died (or was killed) first: nothing is left to unload
    log::warning("executor task failed: ", exception.getDescription().cStr());
    metrics.daemonError(metrics::DaemonError::Internal);
  }

private:
  metrics::Metrics& metrics;
};

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items)
    out += (out.empty() ? "" : ", ") + s;
  return out;
}

/// Sends `assignments` ("STATUS=...") to the service manager, or drops them when its queue is
/// full. sd_notify() waits for room in the receiver's queue (net.unix.max_dgram_qlen datagrams)
/// with no bound, on the event loop's thread: a NOTIFY_SOCKET whose owner stopped reading after
/// READY=1 (a supervisor, a test harness) froze rjitd once the 5 s status updates had filled it,
/// and so did the STOPPING=1 sent on SIGTERM. Status lines are advisory and systemd reads its
/// socket at once, so losing one to a full queue is harmless; READY=1, which a unit's start
/// waits for, still goes through sd_notify(). Addresses other than a path or an abstract name
/// (`@name`) go through sd_notify() too.
void notifyWithoutWaiting(const std::string& assignments) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0')
    return;
  sockaddr_un address{};
  size_t length = std::strlen(path);
  if ((path[0] != '/' && path[0] != '@') || length >= sizeof(address.sun_path)) {
    sd_notify(0, assignments.c_str());
    return;
  }
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path, length);
  if (path[0] == '@')
    address.sun_path[0] = '\0';  // an abstract name: no terminating NUL in the address
  socklen_t size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
  kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0 || ::sendto(fd.get(), assignments.data(), assignments.size(), MSG_NOSIGNAL,
                               reinterpret_cast<const sockaddr*>(&address), size) < 0)
    log::debug("service manager notification not sent (", strerror(errno), "): ", assignments);
}

void notifyStatus(const DaemonState& state, const std::string& prefix) {
  auto c = state.metrics.totals();
  auto cs = state.service.cacheStats();
  std::string status = "STATUS=" + prefix + "; " + std::to_string(c.compiles) + " compiles, " +
                       std::to_string(cs.hits) + " cache hits, " + std::to_string(cs.entries) +
                       " cached objects (" + std::to_string(cs.bytes >> 10) + " KiB), " +
                       std::to_string(c.sessions) + " sessions";
  notifyWithoutWaiting(status);
}

kj::Promise<void> statusLoop(kj::Timer& timer, const DaemonState& state,
                             const Listeners& listeners) {
  return timer.afterDelay(5 * kj::SECONDS).then([&timer, &state, &listeners]() {
    notifyStatus(state, "serving on " + joined(listeners.describe()));
    return statusLoop(timer, state, listeners);
  });
}

// Every connection, worker socket and loaded image's memfd is a descriptor, and the usual soft
// limit (1024) is far below what the hard limit allows a daemon; nothing here uses select(), so
// descriptors past 1024 are safe. Raising it is best effort: the old limit still works.
void raiseOpenFileLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max)
    return;
  rlim_t old = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    log::warning("cannot raise the open file limit from ", old, " to ", limit.rlim_max, ": ",
                 strerror(errno));
    return;
  }
  log::debug("raised the open file limit from ", old, " to ", limit.rlim_max);
}

int run(const Options& opt) {
  log::Level level;
  if (!log::parseLevel(opt.logLevel, level)) {
    std::fprintf(stderr, "error: unknown log level '%s'; use debug, info, warning or error\n",
                 opt.logLevel.c_str());
    return 2;
  }
  log::setLevel(level);
  raiseOpenFileLimit();

  std::vector<Endpoint> endpoints;
  for (const auto& text : opt.listen) {
    auto parsed = parseEndpoint(text);
    if (auto* err = std::get_if<std::string>(&parsed)) {
      std::fprintf(stderr, "error: --listen: %s\n", err->c_str());
      return 2;
    }
    endpoints.push_back(std::get<Endpoint>(parsed));
  }
  std::optional<metrics::HttpAddress> metricsAddress;
  if (!opt.metrics.empty()) {
    auto parsed = metrics::parseHttpAddress(opt.metrics);
    if (auto* err = std::get_if<std::string>(&parsed)) {
      std::fprintf(stderr, "error: --metrics: %s\n", err->c_str());
      return 2;
    }
    metricsAddress = std::get<metrics::HttpAddress>(parsed);
  }
  if (opt.maxModuleBytes == 0 || opt.cacheBytes == 0 || opt.maxClientMemory == 0) {
    std::fprintf(stderr, "error: --max-module-bytes, --cache-bytes and --max-client-memory must "
                         "be positive\n");
    return 2;
  }

  // The duration options were checked while parsing (DURATION below): these cannot fail.
  auto drainTimeout = parseDuration(opt.drainTimeout);

  // A compile worker maps libLLVM and its own heap before it compiles anything: below this it
  // could not start, and every compile would read as out of memory.
  constexpr uint64_t MIN_COMPILE_MEMORY = 256ull << 20;
  if (opt.maxObjectBytes == 0 || opt.compileMemory < MIN_COMPILE_MEMORY) {
    std::fprintf(stderr, "error: --max-object-bytes must be positive and --compile-memory at "
                         "least 256M\n");
    return 2;
  }

  auto executeTimeout = parseDuration(opt.executeTimeout);
  if (opt.executorMemory < (16u << 20) || opt.executorOutput == 0 || opt.maxExecutors == 0 ||
      opt.maxCallBytes == 0) {
    std::fprintf(stderr, "error: --executor-memory must be at least 16M, --executor-output, "
                         "--max-call-bytes and --max-executors positive\n");
    return 2;
  }
  ExecutorConfig executorConfig;
  executorConfig.path = findExecutor(opt.executorPath);
  executorConfig.memoryBytes = opt.executorMemory;
  executorConfig.outputBytes = opt.executorOutput;
  std::string launcherPath;
  if (!opt.aarch64Launcher.empty()) {
    constexpr std::string_view UNIX_PREFIX = "unix:";
    if (!opt.aarch64Launcher.starts_with(UNIX_PREFIX) ||
        opt.aarch64Launcher.size() == UNIX_PREFIX.size() ||
        opt.aarch64Launcher[UNIX_PREFIX.size()] != '/') {
      std::fprintf(stderr,
                   "error: --aarch64-launcher: expected unix:/ABSOLUTE/PATH (the socket of "
                   "rjitd-launcher.socket), not '%s'\n",
                   opt.aarch64Launcher.c_str());
      return 2;
    }
    launcherPath = opt.aarch64Launcher.substr(UNIX_PREFIX.size());
  }
  executorConfig.emulated =
      findEmulatedTargets(executorConfig.path, opt.aarch64Executor, opt.qemuAarch64, launcherPath);
  // A backstop behind the deadlines, which rjitd enforces by the wall clock, over an
  // executor's whole life (an rlimit cannot be renewed per call from outside without
  // CAP_SYS_RESOURCE): a day of CPU, or 1000 calls at the longest deadline, so that a long
  // session of legitimate calls never meets it. An executor whose rjitd is gone dies with it
  // (PR_SET_PDEATHSIG), so nothing relies on this limit alone.
  executorConfig.cpuSeconds =
      std::max<uint64_t>(86400, 1000 * static_cast<uint64_t>(executeTimeout->count() / 1000 + 1));
  if (::geteuid() == 0) {
    std::string user = opt.executorUser.empty() ? "nobody" : opt.executorUser;
    passwd entry{};
    passwd* found = nullptr;
    char buffer[4096];
    if (::getpwnam_r(user.c_str(), &entry, buffer, sizeof buffer, &found) != 0 ||
        found == nullptr) {
      std::fprintf(stderr, "error: --executor-user: no user '%s'\n", user.c_str());
      return 2;
    }
    if (found->pw_uid == 0) {
      std::fprintf(stderr, "error: --executor-user: executors never run as root\n");
      return 2;
    }
    executorConfig.uid = found->pw_uid;
    executorConfig.gid = found->pw_gid;
  } else if (!opt.executorUser.empty()) {
    std::fprintf(stderr, "error: --executor-user needs rjitd to run as root (executors run as "
                         "rjitd's own user otherwise)\n");
    return 2;
  }

  auto handshakeTimeout = parseDuration(opt.handshakeTimeout);
  auto readTimeout = parseDuration(opt.readTimeout);
  auto socketMode = parseSocketMode(opt.socketMode);
  if (!socketMode) {
    std::fprintf(stderr,
                 "error: --socket-mode: expected an octal file mode from 0 to 0777 such as 0660, "
                 "not '%s'\n",
                 opt.socketMode.c_str());
    return 2;
  }
  if (opt.maxConnections == 0 || opt.maxConnectionsPerUser == 0 || opt.maxInflightBytes == 0 ||
      opt.maxHeldRequestBytes == 0) {
    std::fprintf(stderr, "error: --max-connections, --max-connections-per-user, "
                         "--max-inflight-bytes and --max-held-request-bytes must be positive\n");
    return 2;
  }
  auto peers = makePeerPolicy(opt.allowUsers, opt.allowGroups);
  if (auto* err = std::get_if<std::string>(&peers)) {
    std::fprintf(stderr, "error: %s\n", err->c_str());
    return 2;
  }
  ConnectionLimits connectionLimits;
  connectionLimits.maxConnections = opt.maxConnections;
  connectionLimits.maxConnectionsPerUser = opt.maxConnectionsPerUser;
  connectionLimits.handshakeTimeout = handshakeTimeout->count() * kj::MILLISECONDS;
  connectionLimits.readTimeout = readTimeout->count() * kj::MILLISECONDS;
  connectionLimits.maxInflightBytes = opt.maxInflightBytes;
  connectionLimits.socketMode = *socketMode;
  connectionLimits.peers = std::get<PeerPolicy>(std::move(peers));
  // Per connection, Cap'n Proto stops reading once the calls it has not answered yet add up to
  // more than this: four of the largest messages a request may be (a module, or one call's
  // copied buffers, plus framing). Enough for a client's concurrent large requests; a limit
  // near one message could stall a load whose symbol question's answer then cannot be read
  // (the flow limit holds back every message, returns too).
  connectionLimits.flowLimitWords =
      4 * ((std::max(opt.maxModuleBytes, opt.maxCallBytes) + (1u << 20)) / 8);

  // Signals must be captured before any thread starts (the cache tiers start theirs), so that only
  // the loop receives them.
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  std::signal(SIGPIPE, SIG_IGN);  // a vanished client is an error on its connection, not a kill

  // The cache tiers (issue 13), after every other option is checked: a bad option must not
  // take the cache directory's lock, empty its tmp/ or start its scan. A directory the operator
  // named must work; the default one is best effort (a user without a home still gets a memory
  // cache).
  std::unique_ptr<cache::DiskCache> diskCache;
  if (opt.diskCacheBytes != 0) {
    bool named = !opt.cacheDir.empty();
    std::string dir = named ? opt.cacheDir : defaultCacheDir();
    if (dir.empty()) {
      log::warning("no disk cache: no --cache-dir and no default place for one (no HOME); "
                   "objects are kept in memory only");
    } else {
      auto opened = cache::DiskCache::open(dir, opt.diskCacheBytes);
      if (auto* err = std::get_if<std::string>(&opened)) {
        if (named) {
          std::fprintf(stderr, "error: --cache-dir: %s\n", err->c_str());
          return 2;
        }
        log::warning("no disk cache: ", *err, "; objects are kept in memory only");
      } else {
        diskCache = std::get<std::unique_ptr<cache::DiskCache>>(std::move(opened));
      }
    }
  }
  std::unique_ptr<cache::SharedCache> sharedCache;
  auto leaseTtl = parseDuration(opt.sharedCacheLeaseTtl);
  auto sharedTimeout = parseDuration(opt.sharedCacheTimeout);
  if (!opt.sharedCache.empty()) {
    if (opt.sharedCacheKeyFile.empty()) {
      std::fprintf(stderr, "error: --shared-cache needs --shared-cache-key-file: the fleet's "
                           "secret, without which anyone who can write to Redis could make "
                           "rjitd hand out their code\n");
      return 2;
    }
    std::string secret;
    if (auto err = readSecretFile("--shared-cache-key-file", opt.sharedCacheKeyFile, 16, secret)) {
      std::fprintf(stderr, "error: %s\n", err->c_str());
      return 2;
    }
    cache::SharedCacheConfig shared;
    shared.address = opt.sharedCache;
    shared.secret = std::move(secret);
    if (!opt.sharedCacheAuthFile.empty()) {
      if (auto err = readRedisAuth(opt.sharedCacheAuthFile, shared.authUser, shared.authPassword)) {
        std::fprintf(stderr, "error: %s\n", err->c_str());
        return 2;
      }
    }
    // Once per outage and once when Redis answers again: a misconfigured or lost Redis is
    // visible in the log (why) as well as in rjitd_cache_available (since when).
    shared.onAvailability = [address = opt.sharedCache](const std::string& error) {
      if (error.empty())
        log::info("shared cache ", address, " answers again");
      else
        log::warning("shared cache unavailable (requests go on, compiling on a miss): ", error);
    };
    shared.readOnly = opt.sharedCacheReadOnly;
    shared.maxValueBytes = opt.sharedCacheMaxValueBytes;
    shared.operationTimeout = *sharedTimeout;
    shared.connectTimeout = std::min(*sharedTimeout, std::chrono::milliseconds(200));
    shared.leaseTtl = *leaseTtl;
    // As long as the servers waiting for a lease wait (ServiceConfig::leaseWaitBound below).
    shared.maxLeaseHold = std::chrono::seconds(std::max(1u, opt.compileTimeoutSeconds) + 5);
    auto created = cache::SharedCache::create(std::move(shared));
    if (auto* err = std::get_if<std::string>(&created)) {
      std::fprintf(stderr, "error: --shared-cache: %s\n", err->c_str());
      return 2;
    }
    sharedCache = std::get<std::unique_ptr<cache::SharedCache>>(std::move(created));
  } else if (!opt.sharedCacheKeyFile.empty() || opt.sharedCacheReadOnly ||
             !opt.sharedCacheAuthFile.empty()) {
    std::fprintf(stderr, "error: --shared-cache-key-file, --shared-cache-auth-file and "
                         "--shared-cache-read-only need --shared-cache\n");
    return 2;
  }

  auto io = kj::setupAsyncIo();
  unsigned jobs = opt.jobs != 0 ? opt.jobs : std::max(1u, std::thread::hardware_concurrency());

  cache::ObjectCache objects(opt.cacheBytes);
  // Always kept, served only with --metrics: `rjit info` reads its figures from here too.
  metrics::BuildInfo build{RJITD_VERSION, compiler::llvmVersion(), {}};
  for (const TargetName& t : compiler::servedTargets())
    build.targets.push_back(t.name);
  metrics::Metrics metrics(build, objects);
  // Compiles run in worker processes started from this same binary (see compile-backend.h).
  WorkerLimits workerLimits;
  workerLimits.maxObjectBytes = opt.maxObjectBytes;
  workerLimits.memoryBytes = opt.compileMemory;
  ProcessBackend backend("/proc/self/exe",
                         std::chrono::seconds(std::max(1u, opt.compileTimeoutSeconds)), metrics,
                         opt.testWorkerGate, workerLimits);
  if (!opt.testWorkerGate.empty())
    log::warning("test worker gate at ", opt.testWorkerGate,
                 ": compile workers wait for a test to let each compile go (a test-only option)");
  WorkerPool compilePool("rjitd-compile", jobs);
  WorkerPool hashPool("rjitd-hash", 1);
  // Links take milliseconds (a compile takes up to seconds): two threads keep a burst of loads
  // from queueing behind one large link without competing much with the compiles.
  WorkerPool linkPool("rjitd-link", std::min(jobs, 2u));
  ServiceConfig config;
  config.maxModuleBytes = opt.maxModuleBytes;
  config.compilerIdentity =
      cache::compilerIdentity(RJITD_VERSION, compiler::llvmVersion(), buildIdentity());
  config.compileGate = opt.testCompileGate;
  config.maxQueued = opt.maxQueued;
  config.maxHeldRequestBytes = opt.maxHeldRequestBytes;
  if (!config.compileGate.empty())
    log::warning("test compile gate at ", config.compileGate,
                 ": compiles wait for a test to let them go (a test-only option)");
  // Blocking disk and Redis calls run on the cache's own threads, never on the loop: four
  // threads let a slow Redis or disk delay a few lookups without stalling all of them.
  TieredCache tiers(objects, std::move(diskCache), std::move(sharedCache), 4,
                    &io.provider->getTimer());
  metrics.setLowerTiers([&tiers]() { return tiers.snapshots(); });
  // A compile another server holds the lease for is awaited as long as a compile may take.
  config.leaseWaitBound = std::max(1u, opt.compileTimeoutSeconds) * kj::SECONDS + 5 * kj::SECONDS;
  CompileService service(config, objects, backend, compilePool, hashPool, metrics, &tiers);
  DaemonState state{service, metrics, RJITD_VERSION, compiler::llvmVersion()};
  state.workers = jobs;
  LoadLimits loadLimits;
  loadLimits.maxClientImageBytes = opt.maxClientMemory;
  LoadedTotals loadedTotals;
  // Links wait for a link worker in bounded queues, fair across clients, like compiles. A link
  // takes milliseconds: that is the retry hint's basis until links were timed.
  Admission linkAdmission(
      {"link", linkPool.threads(), opt.maxQueued, std::chrono::milliseconds(20)},
      targetNames(service.targets()),
      [&metrics](const std::string& target, size_t depth) {
        metrics.queueDepth(target, "link", depth);
      },
      [&metrics]() { metrics.cancelled("link"); });
  LoadEnvironment load{service,    linkPool,     metrics,       io.provider->getTimer(),
                       loadLimits, loadedTotals, &linkAdmission};
  state.load = &load;

  TaskErrors taskErrors(metrics);
  kj::TaskSet executeTasks(taskErrors);
  ExecuteLimits executeLimits;
  executeLimits.maxExecutors = opt.maxExecutors;
  executeLimits.maxExecutorsPerConnection = opt.maxExecutorsPerConnection;
  executeLimits.executorMemory = opt.executorMemory;
  executeLimits.executorOutput = opt.executorOutput;
  executeLimits.maxCallBytes = opt.maxCallBytes;
  executeLimits.executeTimeout = *executeTimeout;
  capnp::ReaderOptions executorReader;
  // Answers carry copied out-buffers back (at most --max-call-bytes, read at most three times:
  // checked, relayed), executors' own loads far less.
  executorReader.traversalLimitInWords = (3 * opt.maxCallBytes + (1u << 20)) / 8;
  ExecuteEnvironment execute{state,
                             *io.lowLevelProvider,
                             io.unixEventPort,
                             io.provider->getTimer(),
                             executorConfig,
                             executeLimits,
                             executorReader,
                             0,
                             {},
                             executeTasks};
  state.execute = &execute;

  // A message carries one module, or one call's copied buffers, plus a little framing; allow that
  // much and no more. Cap'n Proto charges a Data field against the limit each time it is read,
  // and a call's buffers are read three times (checked, summed, relayed to the executor).
  // The same limit bounds what rjitd sends: TwoPartyVatNetwork refuses to send a message of
  // this size or more ("larger than our single-message size limit"), so an answer carrying an
  // object of up to --max-object-bytes (plus its symbol lists) must fit too. Clients read
  // answers with a far larger limit (16 GiB, src/client/connection.cpp), so whatever rjitd
  // sends, they can read.
  capnp::ReaderOptions reader;
  reader.traversalLimitInWords =
      (std::max({opt.maxModuleBytes, 3 * opt.maxCallBytes, opt.maxObjectBytes}) + (16u << 20)) / 8;
  Listeners listeners(io, state, reader, connectionLimits);

  // Declared after everything it reads (metrics, cache), so it stops serving first.
  std::unique_ptr<metrics::Exposer> exposer;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                 size_t inherited = listeners.adoptActivated();
                 if (inherited == 0 && endpoints.empty())
                   endpoints.push_back(std::get<Endpoint>(parseEndpoint(defaultSocketPath())));
                 for (const auto& ep : endpoints)
                   listeners.listen(ep);
                 if (metricsAddress)
                   exposer = metrics::Exposer::create(metrics, *metricsAddress);
               })) {
    log::error("cannot start: ", e->getDescription().cStr());
    sd_notifyf(0, "STATUS=cannot start: %s", e->getDescription().cStr());
    return 1;
  }
  listeners.start();

  log::info("rjitd ", RJITD_VERSION, " (LLVM ", state.llvmVersion, ") listening on ",
            joined(listeners.describe()), "; ", jobs, " compile workers, cache budget ",
            opt.cacheBytes >> 20, " MiB, max module ", opt.maxModuleBytes >> 20, " MiB");
  if (::access(executorConfig.path.c_str(), X_OK) != 0)
    log::warning("no executor binary at ", executorConfig.path, " (", strerror(errno),
                 "): remote calls will fail until --executor-path names one");
  else
    log::info("executors: ", executorConfig.path, ", at most ", opt.maxExecutors, " (",
              opt.maxExecutorsPerConnection, " per connection), ", opt.executorMemory >> 20,
              " MiB each, deadline ", executeTimeout->count(), " ms",
              executorConfig.uid ? ", as uid " + std::to_string(*executorConfig.uid) : "");
  for (const EmulatedTarget& emulated : executorConfig.emulated) {
    if (!emulated.launcher.empty())
      log::info(emulated.name, " executors: through the launcher at ", emulated.launcher);
    else if (emulated.unavailable.empty())
      log::info(emulated.name, " executors: ", emulated.guest, " under ", emulated.emulator);
    else
      log::info(emulated.name, " execute unavailable: ", emulated.unavailable);
  }
  log::info(
      "connections: at most ", opt.maxConnections, " (", opt.maxConnectionsPerUser,
      " per user), hello within ", handshakeTimeout->count(), " ms, a message within ",
      readTimeout->count(), " ms, ", opt.maxInflightBytes >> 20,
      " MiB of messages in flight; Unix peers allowed: ", describePolicy(connectionLimits.peers));
  if (exposer) {
    log::info("serving metrics at http://", exposer->address().text(), "/metrics");
    if (!exposer->address().loopback())
      log::warning("the metrics endpoint ", exposer->address().text(),
                   " is reachable from other hosts and does not authenticate; bind it to "
                   "127.0.0.1 or restrict access with a firewall");
  }
  sd_notifyf(0, "READY=1\nSTATUS=serving on %s", joined(listeners.describe()).c_str());

  // Keep the status line current for `systemctl status` (only when systemd listens).
  kj::Promise<void> status = kj::READY_NOW;
  if (std::getenv("NOTIFY_SOCKET") != nullptr)
    status = statusLoop(io.provider->getTimer(), state, listeners)
                 .eagerlyEvaluate([](kj::Exception&& e) {
                   log::warning("status updates stopped: ", e.getDescription().cStr());
                 });

  auto& port = io.unixEventPort;
  int signal =
      port.onSignal(SIGTERM).exclusiveJoin(port.onSignal(SIGINT)).wait(io.waitScope).si_signo;
  log::info("received ", signal == SIGTERM ? "SIGTERM" : "SIGINT", "; finishing ",
            state.requests.inProgress(), " requests in progress for at most ",
            drainTimeout->count(), " ms (--drain-timeout), refusing new ones");
  // Without waiting: a full notify queue must not keep rjitd from stopping.
  notifyWithoutWaiting("STOPPING=1\nSTATUS=draining");
  state.draining = true;
  // No user code outlives rjitd: the calls they were running answer as their executors die.
  execute.killAll();
  listeners.stopAccepting();
  // Work nobody has started is not worth the wait: its clients may retry elsewhere at once.
  // Compiles and links still waiting for a worker would hold the drain for their whole run;
  // both queues stay closed from now on.
  size_t abandoned = service.abandonQueued() + linkAdmission.abandonQueued(shuttingDown());
  if (abandoned != 0)
    log::info("answered ", abandoned, " queued compiles and links with shutting-down");
  // The drain is bounded so that rjitd exits before the service manager's stop timeout
  // (TimeoutStopSec=90 in rjitd.service, --drain-timeout 60 s by default): running work gets
  // the grace period, then the compiles still running are cut off and answered shutting-down,
  // and their answers get a few seconds to be written.
  auto& timer = io.provider->getTimer();
  bool finished =
      state.requests.drained()
          .then([]() { return true; })
          .exclusiveJoin(timer.afterDelay(drainTimeout->count() * kj::MILLISECONDS).then([]() {
            return false;
          }))
          .wait(io.waitScope);
  if (!finished) {
    log::warning("drain timeout (", drainTimeout->count(), " ms) passed with ",
                 state.requests.inProgress(),
                 " requests in progress; stopping compile workers and executors");
    backend.stop();
    execute.killAll();
    constexpr kj::Duration ANSWER_GRACE = 5 * kj::SECONDS;
    state.requests.drained()
        .exclusiveJoin(timer.afterDelay(ANSWER_GRACE).then([&state]() {
          log::warning(state.requests.inProgress(),
                       " requests still in progress after the compile workers stopped; exiting "
                       "without their answers");
        }))
        .wait(io.waitScope);
  }
  listeners.closeConnections(5 * kj::SECONDS).wait(io.waitScope);
  // Objects compiled during the drain reach the disk (and Redis) before rjitd exits: the next
  // rjitd finds them. Bounded like the rest of the drain.
  tiers.flush(5 * kj::SECONDS).wait(io.waitScope);
  log::info("drained; exiting");
  return 0;
}

}  // namespace
}  // namespace rjitd::service

int main(int argc, char** argv) {
  rjitd::service::Options opt;
  CLI::App app{"rjitd: remote JIT compilation daemon (LLVM IR in, relocatable objects out)",
               "rjitd"};
  app.set_version_flag("--version", std::string("rjitd ") + RJITD_VERSION);
  // Every duration option is checked while parsing: a bad one is an error naming the option
  // (exit 2) before anything starts, and run() parses them without a failure path of its own.
  const CLI::Validator DURATION(
      [](std::string& text) -> std::string {
        if (rjitd::service::parseDuration(text))
          return {};
        return "expected a positive duration such as 30s, 500ms or 2m (a number alone is "
               "seconds), not '" +
               text + "'";
      },
      "DURATION");
  app.add_option("--listen", opt.listen,
                 "unix:/PATH or tcp:HOST:PORT (repeatable); default: " +
                     rjitd::defaultSocketPath() + ", or the sockets systemd passes");
  app.add_option("--metrics", opt.metrics,
                 "serve Prometheus metrics at http://HOST:PORT/metrics (default: off; the "
                 "endpoint is unauthenticated, so keep it on loopback)");
  app.add_option("--cache-bytes", opt.cacheBytes, "in-memory cache budget in bytes")
      ->capture_default_str();
  app.add_option("--cache-dir", opt.cacheDir,
                 "the disk cache's directory (default: $CACHE_DIRECTORY under systemd, "
                 "/var/cache/rjitd for root, else $XDG_CACHE_HOME/rjitd or ~/.cache/rjitd)");
  app.add_option("--disk-cache-bytes", opt.diskCacheBytes,
                 "the disk cache's byte budget (K, M, G); 0 turns the disk tier off")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("2G");
  app.add_option("--shared-cache", opt.sharedCache,
                 "a Redis shared by a fleet of rjitd: redis://HOST:PORT or unix:/PATH "
                 "(default: off; trusted network or Unix socket only, see docs/FLEET.md)");
  app.add_option("--shared-cache-key-file", opt.sharedCacheKeyFile,
                 "file (mode 0600) holding the fleet's secret (16+ bytes) that signs every "
                 "value in Redis; required with --shared-cache");
  app.add_option("--shared-cache-auth-file", opt.sharedCacheAuthFile,
                 "file (mode 0600) holding the password for a Redis that asks for one: "
                 "PASSWORD, or USER PASSWORD for a Redis 6 ACL user");
  app.add_flag("--shared-cache-read-only", opt.sharedCacheReadOnly,
               "use the shared cache's objects but never write to it");
  app.add_option("--shared-cache-max-value-bytes", opt.sharedCacheMaxValueBytes,
                 "objects larger than this (K, M, G) are not stored in Redis")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("16M");
  app.add_option("--shared-cache-timeout", opt.sharedCacheTimeout,
                 "longest a Redis command may take before it counts as a miss")
      ->check(DURATION)
      ->capture_default_str();
  app.add_option("--shared-cache-lease-ttl", opt.sharedCacheLeaseTtl,
                 "how long a compile lease outlives a server that died holding it")
      ->check(DURATION)
      ->capture_default_str();
  app.add_option("--max-module-bytes", opt.maxModuleBytes, "largest module accepted, in bytes")
      ->capture_default_str();
  app.add_option("--max-client-memory", opt.maxClientMemory,
                 "shared memory the modules one client has loaded may hold, in bytes")
      ->capture_default_str();
  app.add_option("--jobs", opt.jobs,
                 "compiles that run at once, each in a compile worker process (default: number "
                 "of CPUs)");
  app.add_option("--compile-timeout", opt.compileTimeoutSeconds,
                 "longest a single compile may take, in seconds")
      ->capture_default_str();
  app.add_option("--executor-path", opt.executorPath,
                 "the rjitd-executor binary (default: next to rjitd, else " RJITD_EXECUTOR_DIR
                 "/rjitd-executor)");
  app.add_option("--aarch64-executor", opt.aarch64Executor,
                 "the aarch64 rjitd-executor, run under qemu for aarch64 code (default: "
                 "aarch64/rjitd-executor next to the executor)");
  app.add_option("--qemu-aarch64", opt.qemuAarch64,
                 "qemu-user for aarch64 executors (default: /usr/bin/qemu-aarch64-static, else "
                 "/usr/bin/qemu-aarch64)");
  app.add_option("--aarch64-launcher", opt.aarch64Launcher,
                 "unix:PATH: start aarch64 executors through the rjitd-launcher relay listening "
                 "there (rjitd-launcher.socket), outside rjitd's MemoryDenyWriteExecute");
  app.add_option("--max-executors", opt.maxExecutors,
                 "executor processes (remote execute) all clients together may hold")
      ->capture_default_str();
  app.add_option("--max-executors-per-connection", opt.maxExecutorsPerConnection,
                 "executor processes one client connection may hold")
      ->capture_default_str();
  app.add_option("--executor-memory", opt.executorMemory,
                 "address space of each executor process, in bytes (suffixes K, M, G)")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("1G");
  app.add_option("--executor-output", opt.executorOutput,
                 "stdout and stderr one call may write, and a run's stdin, in bytes (K, M, G)")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("8M");
  app.add_option("--max-call-bytes", opt.maxCallBytes,
                 "bytes of copied buffers and strings one remote call may pass (K, M, G); "
                 "same-host clients pass larger arrays in their shared segment")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("128M");
  app.add_option("--execute-timeout", opt.executeTimeout,
                 "longest a remote call or run may take (and the cap on a client's deadline): "
                 "seconds, or with ms, s or m")
      ->check(DURATION)
      ->capture_default_str();
  app.add_option("--executor-user", opt.executorUser,
                 "user executors run as when rjitd runs as root (default: nobody)");
  app.add_option("--max-connections", opt.maxConnections,
                 "client connections open at once; more are refused with `overloaded`")
      ->capture_default_str();
  app.add_option("--max-connections-per-user", opt.maxConnectionsPerUser,
                 "connections one peer (a Unix user, a TCP address) may hold open at once")
      ->capture_default_str();
  app.add_option("--handshake-timeout", opt.handshakeTimeout,
                 "a new connection that has not said hello by then is closed (s, ms or m)")
      ->check(DURATION)
      ->capture_default_str();
  app.add_option("--read-timeout", opt.readTimeout,
                 "a request message, once its first byte arrived, must arrive whole within this "
                 "(s, ms or m); slower connections are closed")
      ->check(DURATION)
      ->capture_default_str();
  app.add_option("--max-inflight-bytes", opt.maxInflightBytes,
                 "bytes of request messages all connections together may be receiving at once "
                 "(K, M, G); a message that does not fit waits until others have arrived")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("1G");
  // Its own option, not --max-inflight-bytes: that budget makes a message being received wait
  // (backpressure on one peer); this one refuses a request whose module rjitd would keep
  // (a waiting request would hold its message anyway), and the two phases follow each other.
  app.add_option("--max-held-request-bytes", opt.maxHeldRequestBytes,
                 "bytes of modules all compile and load requests together may make rjitd hold "
                 "while they wait for the hash or a compile worker, or compile (K, M, G); a "
                 "request that does not fit is answered `overloaded` with a retry-after hint")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("1G");
  app.add_option("--socket-mode", opt.socketMode,
                 "file mode of the Unix sockets rjitd creates (octal, set as they are created); "
                 "socket-activated ones take "
                 "SocketMode= from rjitd.socket")
      ->capture_default_str();
  app.add_option("--allow-users", opt.allowUsers,
                 "users (names or uids) that may connect over Unix sockets, besides "
                 "--allow-groups (default: root and rjitd's own user; a list given replaces it; "
                 "socket-activated sockets are checked only when a list is given)")
      ->delimiter(',');
  app.add_option("--allow-groups", opt.allowGroups,
                 "groups (names or gids) whose members may connect over Unix sockets (default: "
                 "the rjitd group, when it exists)")
      ->delimiter(',');
  app.add_option("--max-queued", opt.maxQueued,
                 "requests per target that may wait for a compile or link worker; more are "
                 "answered `overloaded` with a retry-after hint")
      ->capture_default_str();
  app.add_option("--max-object-bytes", opt.maxObjectBytes,
                 "largest compiled object rjitd keeps or sends (K, M, G); larger ones are "
                 "`too-large`")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("64M");
  app.add_option("--compile-memory", opt.compileMemory,
                 "address space of each compile worker process (K, M, G)")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("4G");
  app.add_option("--drain-timeout", opt.drainTimeout,
                 "on SIGTERM: how long running work may finish before rjitd kills it and exits "
                 "(keep it below the unit's TimeoutStopSec)")
      ->check(DURATION)
      ->capture_default_str();
  app.add_option("--log-level", opt.logLevel, "debug, info, warning or error")
      ->capture_default_str();
  app.add_option("--compile-worker", opt.compileWorkerFd)->group("");  // internal
  // Test-only and hidden from --help: holds each compile until a test lets it go (see
  // ServiceConfig::compileGate). Off by default; clients cannot reach it.
  app.add_option("--test-compile-gate", opt.testCompileGate)->group("");
  // Test-only and hidden too: the same hold, inside each compile worker after it has read the
  // request (see runCompileWorker()), so a test can kill a worker mid-compile.
  app.add_option("--test-worker-gate", opt.testWorkerGate)->group("");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0)
      return app.exit(e);
    std::fprintf(stderr, "error: %s\n(see rjitd --help)\n", e.what());
    return 2;
  }
  if (opt.compileWorkerFd >= 0)
    return rjitd::service::runCompileWorker(opt.compileWorkerFd, opt.testWorkerGate,
                                            opt.maxObjectBytes);
  return rjitd::service::run(opt);
}
