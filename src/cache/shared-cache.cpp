// SPDX-License-Identifier: MIT
// The shared tier on Redis (see shared-cache.h): a small pool of blocking hiredis connections,
// a backoff after errors, one writer thread, and a lease-renewal thread.
#include "shared-cache.h"

#include "endpoint.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdarg>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <kj/io.h>
#include <mutex>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace rjitd::cache {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// The fewest bytes of secret accepted: an HMAC key shorter than this is guessable.
constexpr size_t MIN_SECRET_BYTES = 16;
/// The shortest lease TTL accepted: renewal runs every TTL/3, which must stay above zero.
constexpr milliseconds MIN_LEASE_TTL{30};
/// Idle connections kept for reuse; more (after a burst of concurrent calls) are closed.
constexpr size_t POOL_IDLE_MAX = 8;

/// Renews a lease only while it is still ours: a lease that expired and was taken by another
/// server must not be extended (KEYS[1] lease key, ARGV[1] our token, ARGV[2] TTL in ms).
constexpr const char* RENEW_SCRIPT =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// Deletes a lease only while it is still ours, for the same reason.
constexpr const char* RELEASE_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                       "return redis.call('DEL', KEYS[1]) else return 0 end";

struct ContextFree {
  void operator()(redisContext* context) const { redisFree(context); }
};
using Context = std::unique_ptr<redisContext, ContextFree>;

struct ReplyFree {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

timeval toTimeval(milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

/// hiredis writes with write(), not send(MSG_NOSIGNAL): a write to a connection Redis has
/// closed raises SIGPIPE, which would kill a process that has not ignored it (rjitd ignores it,
/// a test program or another embedder need not). While one command runs, SIGPIPE is blocked in
/// this thread and one it raised is taken back before the mask is restored (the signal is
/// thread-directed, so no other thread sees it); hiredis reports the EPIPE as an I/O error.
class SigpipeGuard {
public:
  SigpipeGuard() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    wasPending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe, &previous_);
  }
  ~SigpipeGuard() {
    sigset_t pending;
    sigpending(&pending);
    if (!wasPending_ && sigismember(&pending, SIGPIPE) == 1) {
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      timespec zero{};
      sigtimedwait(&pipe, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

private:
  sigset_t previous_;
  bool wasPending_ = false;
};

std::string hex(const uint8_t* data, size_t size) {
  static constexpr char DIGITS[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * size);
  for (size_t i = 0; i < size; ++i) {
    out.push_back(DIGITS[data[i] >> 4]);
    out.push_back(DIGITS[data[i] & 0xf]);
  }
  return out;
}

/// This server's lease token: 16 random bytes (what makes it unique), then host and pid so that
/// a person looking at a lease in Redis sees who holds it.
std::string makeOwnerToken() {
  uint8_t random[16] = {};
  size_t got = 0;
  while (got < sizeof random) {
    ssize_t n = getrandom(random + got, sizeof random - got, 0);
    if (n > 0)
      got += static_cast<size_t>(n);
    else if (errno != EINTR)
      break;  // cannot happen after boot with a 16-byte request; the pid below still differs
  }
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return hex(random, sizeof random) + "@" + host + ":" + std::to_string(getpid());
}

std::string badAddress(std::string_view address) {
  return "shared cache address '" + std::string(address) +
         "' is not redis://HOST:PORT (a port from 1 to 65535, an IPv6 address in brackets) "
         "or unix:/ABSOLUTE/PATH";
}

/// `redis://HOST:PORT` or `unix:/ABSOLUTE/PATH`, parsed by the one address parser rjitd has
/// (parseEndpoint), with the shared tier's own spelling and limits on top.
std::variant<Endpoint, std::string> parseRedisAddress(std::string_view address) {
  std::string endpointText;
  if (address.starts_with("redis://"))
    endpointText = "tcp:" + std::string(address.substr(8));
  else if (address.starts_with("unix:/"))
    endpointText = std::string(address);
  else
    return badAddress(address);
  auto parsed = parseEndpoint(endpointText);
  auto* endpoint = std::get_if<Endpoint>(&parsed);
  if (endpoint == nullptr)
    return badAddress(address) + " (" + std::get<std::string>(parsed) + ")";
  if (endpoint->kind == Endpoint::Kind::Tcp) {
    bool hostOk = std::all_of(endpoint->host.begin(), endpoint->host.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
             c == ':';
    });
    if (endpoint->port == 0 || !hostOk)
      return badAddress(address);
  }
  return parsed;
}

/// Finishes a non-blocking connect() on `fd` by `deadline`: "" on success, else why not.
std::string finishConnect(int fd, Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  pollfd writable{fd, POLLOUT, 0};
  int n = ::poll(&writable, 1, static_cast<int>(std::max<long long>(left, 0)));
  if (n == 0)
    return "connect timed out";
  if (n < 0)
    return std::string("poll: ") + std::strerror(errno);
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0)
    error = errno;
  return error == 0 ? "" : std::string("connect: ") + std::strerror(error);
}

/// A socket connected to `endpoint` within `timeout` (the whole attempt, every address of a
/// host name included), CLOEXEC from birth and blocking once connected (hiredis's blocking
/// API; redisSetTimeout then bounds each command). Made here rather than by hiredis 0.14's
/// redisConnect*, which creates its sockets without SOCK_CLOEXEC: a child rjitd spawned
/// meanwhile would inherit them. A host name is resolved by getaddrinfo(), which the timeout
/// does not bound: a fleet names Redis by address or by a name in /etc/hosts.
std::variant<kj::AutoCloseFd, std::string> connectSocket(const Endpoint& endpoint,
                                                         milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  kj::AutoCloseFd fd;
  if (endpoint.kind == Endpoint::Kind::Unix) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    // parseEndpoint checked that the path fits sun_path with its NUL.
    std::memcpy(address.sun_path, endpoint.path.data(), endpoint.path.size());
    fd = kj::AutoCloseFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd == nullptr)
      return std::string("socket: ") + std::strerror(errno);
    // A Unix connect() completes at once or fails (EAGAIN: the server's backlog is full,
    // which a working Redis never lets happen).
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
      return std::string("connect: ") + std::strerror(errno);
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    int rc =
        ::getaddrinfo(endpoint.host.c_str(), std::to_string(endpoint.port).c_str(), &hints, &found);
    if (rc != 0)
      return "resolve " + endpoint.host + ": " + ::gai_strerror(rc);
    std::unique_ptr<addrinfo, void (*)(addrinfo*)> list(found, ::freeaddrinfo);
    std::string why = "no address";
    for (addrinfo* candidate = list.get(); candidate != nullptr && fd == nullptr;
         candidate = candidate->ai_next) {
      kj::AutoCloseFd attempt(::socket(candidate->ai_family,
                                       SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
                                       candidate->ai_protocol));
      if (attempt == nullptr) {
        why = std::string("socket: ") + std::strerror(errno);
        continue;
      }
      if (::connect(attempt.get(), candidate->ai_addr, candidate->ai_addrlen) != 0) {
        why = errno == EINPROGRESS ? finishConnect(attempt.get(), deadline)
                                   : std::string("connect: ") + std::strerror(errno);
        if (!why.empty())
          continue;
      }
      fd = kj::mv(attempt);
    }
    if (fd == nullptr)
      return why;
    // One small command per round trip: Nagle must not hold it back (hiredis does the same).
    int on = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  }
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
    return std::string("fcntl: ") + std::strerror(errno);
  return kj::mv(fd);
}

class RedisSharedCache final : public SharedCache {
public:
  RedisSharedCache(SharedCacheConfig config, Endpoint endpoint)
      : config_(std::move(config)), endpoint_(std::move(endpoint)), token_(makeOwnerToken()),
        backoff_(config_.backoffFirst) {
    writer_ = std::thread([this]() { writeLoop(); });
    renewer_ = std::thread([this]() { renewLoop(); });
  }

  ~RedisSharedCache() override {
    // Leases still held: their compiles will never put() now; let the other servers go on at
    // once instead of after the TTL. Queued behind the pending writes, so each goes after its
    // value.
    if (!config_.readOnly) {
      std::vector<std::string> held;
      {
        std::lock_guard lock(leaseMutex_);
        for (auto& [leaseKey, lease] : held_)
          held.push_back(leaseKey);
      }
      std::lock_guard lock(queueMutex_);
      for (auto& leaseKey : held)
        queue_.push_back(WriteItem{std::nullopt, {}, leaseKey, false});
    }
    {
      std::lock_guard lock(queueMutex_);
      stopping_ = true;
    }
    queueCv_.notify_all();
    writer_.join();
    {
      std::lock_guard lock(leaseMutex_);
      leaseStop_ = true;
    }
    leaseCv_.notify_all();
    renewer_.join();
  }

  RedisSharedCache(const RedisSharedCache&) = delete;
  RedisSharedCache& operator=(const RedisSharedCache&) = delete;

  std::optional<std::string> get(const Key& key) override {
    std::string valueKey = sharedValueKey(key);
    Reply reply = command("GET %b", valueKey.data(), valueKey.size());
    if (reply == nullptr)
      return std::nullopt;
    if (reply->type == REDIS_REPLY_NIL) {
      count([](SharedCacheStats& s) { ++s.misses; });
      return std::nullopt;
    }
    if (reply->type != REDIS_REPLY_STRING) {
      fail("redis " + config_.address + ": unexpected reply type " + std::to_string(reply->type) +
           " to GET");
      return std::nullopt;
    }
    auto opened = openEnvelope(std::string_view(reply->str, reply->len), key, config_.secret);
    if (auto* payload = std::get_if<std::string_view>(&opened)) {
      count([](SharedCacheStats& s) { ++s.hits; });
      return std::string(*payload);
    }
    auto error = std::get<EnvelopeError>(opened);
    count([error](SharedCacheStats& s) { ++s.rejected[static_cast<size_t>(error)]; });
    // A bad value would be refused by every server on every read: remove it, so that the next
    // compile's put() replaces it. (A good value written between our GET and this DEL is lost
    // too: one more compile, never a wrong answer.)
    if (!config_.readOnly)
      command("DEL %b", valueKey.data(), valueKey.size());
    return std::nullopt;
  }

  void put(const Key& key, std::string payload, bool releaseLease) override {
    if (config_.readOnly)
      return count([](SharedCacheStats& s) { ++s.notStored; });
    bool tooLarge =
        ENVELOPE_HEADER_BYTES + ENVELOPE_MAC_BYTES + payload.size() > config_.maxValueBytes;
    bool queued = false;
    {
      std::lock_guard lock(queueMutex_);
      if (!tooLarge && pendingPuts_ < config_.writeQueue) {
        ++pendingPuts_;
        queue_.push_back(WriteItem{key, std::move(payload), {}, releaseLease});
        queued = true;
      } else if (releaseLease) {
        // The value is dropped but the lease must still go (in order, after earlier writes).
        // Release items are never dropped: there are at most as many as leases held.
        queue_.push_back(WriteItem{std::nullopt, {}, sharedLeaseKey(key), false});
      }
    }
    if (!queued)
      count([](SharedCacheStats& s) { ++s.notStored; });
    queueCv_.notify_all();
  }

  LeaseResult tryLease(const Key& key) override {
    if (config_.readOnly)
      return LeaseResult::Unavailable;
    std::string leaseKey = sharedLeaseKey(key);
    Reply reply = command("SET %b %b NX PX %lld", leaseKey.data(), leaseKey.size(), token_.data(),
                          token_.size(), static_cast<long long>(config_.leaseTtl.count()));
    if (reply == nullptr)
      return LeaseResult::Unavailable;
    if (reply->type == REDIS_REPLY_NIL)
      return LeaseResult::Held;
    if (reply->type != REDIS_REPLY_STATUS) {
      fail("redis " + config_.address + ": unexpected reply type " + std::to_string(reply->type) +
           " to SET NX");
      return LeaseResult::Unavailable;
    }
    count([](SharedCacheStats& s) { ++s.leasesTaken; });
    {
      std::lock_guard lock(leaseMutex_);
      held_[leaseKey] = Held{++leaseGeneration_, Clock::now() + config_.maxLeaseHold};
    }
    return LeaseResult::Acquired;
  }

  void releaseLease(const Key& key) override {
    if (config_.readOnly)
      return;
    {
      std::lock_guard lock(queueMutex_);
      queue_.push_back(WriteItem{std::nullopt, {}, sharedLeaseKey(key), false});
    }
    queueCv_.notify_all();
  }

  bool leaseHeld(const Key& key) override {
    std::string leaseKey = sharedLeaseKey(key);
    Reply reply = command("EXISTS %b", leaseKey.data(), leaseKey.size());
    return reply != nullptr && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0;
  }

  void noteLeaseWait() override {
    count([](SharedCacheStats& s) { ++s.leaseWaits; });
  }

  SharedCacheStats stats() const override {
    std::lock_guard lock(stateMutex_);
    return stats_;
  }

  const SharedCacheConfig& config() const override { return config_; }

  void flush(milliseconds bound) override {
    std::unique_lock lock(queueMutex_);
    drainedCv_.wait_for(lock, bound, [this]() { return queue_.empty() && !writing_; });
  }

private:
  /// A queued write: a value (`key` set) and/or a lease release (`leaseKey` set, or
  /// `releaseAfter` for the value's own lease).
  struct WriteItem {
    std::optional<Key> key;
    std::string payload;
    std::string leaseKey;
    bool releaseAfter = false;
  };

  template <typename F> void count(F&& update) {
    std::lock_guard lock(stateMutex_);
    update(stats_);
  }

  /// Whether calls are suspended by the backoff now; counts the skipped call.
  bool backingOff() {
    std::lock_guard lock(stateMutex_);
    if (Clock::now() < backoffUntil_) {
      ++stats_.skipped;
      return true;
    }
    return false;
  }

  /// Counts an error and starts (or, after a failed retry, doubles) the backoff. Calls that
  /// were already under way when another failed do not double it again.
  void fail(std::string what) {
    // Transitions and their reports in one order: a report is made before the next transition
    // (notifyMutex_ first, then stateMutex_; nothing else takes notifyMutex_).
    std::lock_guard notify(notifyMutex_);
    bool wasAvailable;
    {
      std::lock_guard lock(stateMutex_);
      ++stats_.errors;
      wasAvailable = stats_.available;
      stats_.available = false;
      stats_.lastError = what;
      auto now = Clock::now();
      if (now >= backoffUntil_) {
        backoffUntil_ = now + backoff_;
        backoff_ = std::min(backoff_ * 2, config_.backoffMax);
      }
    }
    // Once per outage, not once per failed call: the first error says why.
    if (wasAvailable && config_.onAvailability)
      config_.onAvailability(what);
  }

  void succeed() {
    std::lock_guard notify(notifyMutex_);
    bool wasAvailable;
    {
      std::lock_guard lock(stateMutex_);
      wasAvailable = stats_.available;
      stats_.available = true;
      backoff_ = config_.backoffFirst;
    }
    if (!wasAvailable && config_.onAvailability)
      config_.onAvailability(std::string());
  }

  /// AUTH on a new connection when a password is configured; false (counted, with Redis's
  /// words) when Redis refuses it. The password is never logged.
  bool authenticate(redisContext* context) {
    if (config_.authPassword.empty())
      return true;
    Reply reply;
    {
      SigpipeGuard guard;
      const std::string& user = config_.authUser;
      const std::string& password = config_.authPassword;
      reply.reset(static_cast<redisReply*>(
          user.empty() ? redisCommand(context, "AUTH %b", password.data(), password.size())
                       : redisCommand(context, "AUTH %b %b", user.data(), user.size(),
                                      password.data(), password.size())));
    }
    if (reply == nullptr) {
      fail("redis " + config_.address +
           ": AUTH: " + (context->err != 0 ? context->errstr : "no reply"));
      return false;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      // The user is not named: from a password file missing its "default " it would be the
      // password's first word.
      fail("redis " + config_.address + " refused AUTH" +
           (config_.authUser.empty() ? std::string() : " (with the configured user)") + ": " +
           std::string(reply->str, reply->len) + " (check --shared-cache-auth-file)");
      return false;
    }
    return true;
  }

  /// A pooled connection, or a new one (nullptr after a failure, which is counted).
  Context takeConnection() {
    {
      std::lock_guard lock(poolMutex_);
      if (!pool_.empty()) {
        Context context = std::move(pool_.back());
        pool_.pop_back();
        return context;
      }
    }
    auto connected = connectSocket(endpoint_, config_.connectTimeout);
    if (auto* why = std::get_if<std::string>(&connected)) {
      fail("redis " + config_.address + ": " + *why);
      return nullptr;
    }
    kj::AutoCloseFd fd = kj::mv(std::get<kj::AutoCloseFd>(connected));
    Context context(redisConnectFd(fd.get()));
    if (context == nullptr) {
      fail("redis " + config_.address + ": cannot allocate a connection");
      return nullptr;  // `fd` still owns the socket and closes it
    }
    fd.release();  // now the context's: redisFree() closes it
    if (context->err != 0 ||
        redisSetTimeout(context.get(), toTimeval(config_.operationTimeout)) != REDIS_OK) {
      fail("redis " + config_.address + ": set up the connection: " +
           (context->err != 0 ? context->errstr : std::strerror(errno)));
      return nullptr;
    }
    if (!authenticate(context.get()))
      return nullptr;
    return context;
  }

  void returnConnection(Context context) {
    std::lock_guard lock(poolMutex_);
    if (pool_.size() < POOL_IDLE_MAX)
      pool_.push_back(std::move(context));
  }

  /// Runs one command (binary-safe %b arguments) on a pooled connection. nullptr when the
  /// tier is backing off (counted as skipped) or on a failure: no connection, an I/O error or
  /// timeout (the connection is closed, never reused), or an error reply (counted as errors,
  /// and the backoff starts). Any other reply is a success and ends the backoff.
  Reply command(const char* format, ...) {
    if (backingOff())
      return nullptr;
    Context context = takeConnection();
    if (context == nullptr)
      return nullptr;
    Reply reply;
    {
      SigpipeGuard guard;
      va_list args;
      va_start(args, format);
      reply.reset(static_cast<redisReply*>(redisvCommand(context.get(), format, args)));
      va_end(args);
    }
    if (reply == nullptr) {
      fail("redis " + config_.address + ": " + (context->err != 0 ? context->errstr : "no reply"));
      // The connection may hold half a reply: closed with `context`. The idle ones went to
      // the same Redis, which has most likely gone away (or restarted) for them too: closed
      // as well, so that a Redis that comes back costs one failed call, not one per
      // connection (each doubling the backoff).
      std::lock_guard lock(poolMutex_);
      pool_.clear();
      return nullptr;
    }
    returnConnection(std::move(context));
    if (reply->type == REDIS_REPLY_ERROR) {
      std::string said(reply->str, reply->len);
      // A Redis that wants a password and got none: say what would give it one.
      bool noAuth = said.rfind("NOAUTH", 0) == 0;
      fail("redis " + config_.address + " replied: " + said +
           (noAuth ? " (give rjitd its password with --shared-cache-auth-file)" : ""));
      return nullptr;
    }
    succeed();
    return reply;
  }

  void writeLoop() {
    std::unique_lock lock(queueMutex_);
    while (true) {
      queueCv_.wait(lock, [this]() { return stopping_ || !queue_.empty(); });
      if (queue_.empty())
        break;  // stopping, and everything pending has been tried
      WriteItem item = std::move(queue_.front());
      queue_.pop_front();
      if (item.key)
        --pendingPuts_;
      writing_ = true;
      lock.unlock();
      write(item);
      lock.lock();
      writing_ = false;
      if (queue_.empty())
        drainedCv_.notify_all();
    }
    drainedCv_.notify_all();
  }

  void write(const WriteItem& item) {
    if (item.key) {
      std::string valueKey = sharedValueKey(*item.key);
      // Sealed here, not in put(): the SHA-256 and HMAC of a large object are not the
      // caller's to wait for. No TTL: Redis's maxmemory with allkeys-lru evicts.
      std::string sealed = sealEnvelope(*item.key, item.payload, config_.secret);
      Reply reply =
          command("SET %b %b", valueKey.data(), valueKey.size(), sealed.data(), sealed.size());
      if (reply != nullptr)
        count([](SharedCacheStats& s) { ++s.stored; });
      else
        count([](SharedCacheStats& s) { ++s.notStored; });
      if (item.releaseAfter)
        release(sharedLeaseKey(*item.key));
    }
    if (!item.leaseKey.empty())
      release(item.leaseKey);
  }

  /// Stops renewing `leaseKey` and deletes it if it is still ours. On failure the lease
  /// expires after its TTL.
  void release(const std::string& leaseKey) {
    {
      std::lock_guard lock(leaseMutex_);
      held_.erase(leaseKey);
    }
    command("EVAL %s 1 %b %b", RELEASE_SCRIPT, leaseKey.data(), leaseKey.size(), token_.data(),
            token_.size());
  }

  void renewLoop() {
    std::unique_lock lock(leaseMutex_);
    while (true) {
      leaseCv_.wait_for(lock, config_.leaseTtl / 3, [this]() { return leaseStop_; });
      if (leaseStop_)
        break;
      // Leases past their longest hold are no longer renewed: they expire within a TTL.
      auto now = Clock::now();
      std::erase_if(held_, [now](const auto& entry) { return entry.second.renewUntil <= now; });
      std::vector<std::pair<std::string, uint64_t>> held;
      for (const auto& [leaseKey, lease] : held_)
        held.emplace_back(leaseKey, lease.generation);
      lock.unlock();
      std::vector<std::pair<std::string, uint64_t>> lost;
      for (auto& [leaseKey, generation] : held) {
        Reply reply =
            command("EVAL %s 1 %b %b %lld", RENEW_SCRIPT, leaseKey.data(), leaseKey.size(),
                    token_.data(), token_.size(), static_cast<long long>(config_.leaseTtl.count()));
        // 0: expired or taken by another server meanwhile; renewing it would be pointless.
        // (A failure keeps it: the next round tries again while the TTL lasts.)
        if (reply != nullptr && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
          lost.emplace_back(leaseKey, generation);
      }
      lock.lock();
      for (auto& [leaseKey, generation] : lost) {
        // Only the lease we tried: a release and a new tryLease meanwhile made a new one.
        auto it = held_.find(leaseKey);
        if (it != held_.end() && it->second.generation == generation)
          held_.erase(it);
      }
    }
  }

  const SharedCacheConfig config_;
  const Endpoint endpoint_;
  const std::string token_;

  /// Held across a change of stats_.available and its report (config_.onAvailability).
  std::mutex notifyMutex_;
  mutable std::mutex stateMutex_;  ///< stats_, the backoff
  SharedCacheStats stats_;
  Clock::time_point backoffUntil_{};
  milliseconds backoff_;

  std::mutex poolMutex_;
  std::vector<Context> pool_;  ///< idle connections, each with no error so far

  std::mutex queueMutex_;
  std::condition_variable queueCv_;    ///< an item was queued, or stopping_
  std::condition_variable drainedCv_;  ///< the queue became empty
  std::deque<WriteItem> queue_;
  size_t pendingPuts_ = 0;  ///< values in queue_ (against config_.writeQueue)
  bool writing_ = false;    ///< the writer is working on an item taken from queue_
  bool stopping_ = false;

  std::mutex leaseMutex_;
  std::condition_variable leaseCv_;  ///< leaseStop_
  /// Leases we hold, by lease key, each with the generation of its tryLease.
  struct Held {
    uint64_t generation;  ///< which tryLease took it (a release and a new take make a new one)
    Clock::time_point renewUntil;  ///< SharedCacheConfig::maxLeaseHold after it was taken
  };
  std::unordered_map<std::string, Held> held_;
  uint64_t leaseGeneration_ = 0;
  bool leaseStop_ = false;

  std::thread writer_;
  std::thread renewer_;
};

}  // namespace

std::variant<std::unique_ptr<SharedCache>, std::string> SharedCache::create(SharedCacheConfig c) {
  auto endpoint = parseRedisAddress(c.address);
  if (auto* error = std::get_if<std::string>(&endpoint))
    return std::move(*error);
  if (c.secret.size() < MIN_SECRET_BYTES)
    return "the shared cache secret has " + std::to_string(c.secret.size()) + " bytes; at least " +
           std::to_string(MIN_SECRET_BYTES) + " are required";
  if (c.connectTimeout.count() <= 0 || c.operationTimeout.count() <= 0)
    return std::string("the shared cache's connect and operation timeouts must be positive");
  if (c.backoffFirst.count() <= 0 || c.backoffMax < c.backoffFirst)
    return std::string("the shared cache's backoff must be positive, its maximum at least its "
                       "first step");
  if (c.maxLeaseHold.count() <= 0)
    return std::string("the shared cache's longest lease hold must be positive");
  if (c.leaseTtl < MIN_LEASE_TTL)
    return "the shared cache lease TTL of " + std::to_string(c.leaseTtl.count()) +
           " ms is below the minimum of " + std::to_string(MIN_LEASE_TTL.count()) + " ms";
  return std::unique_ptr<SharedCache>(
      std::make_unique<RedisSharedCache>(std::move(c), std::get<Endpoint>(std::move(endpoint))));
}

std::string sharedValueKey(const Key& key) {
  return "rjitd:v" + std::to_string(STORED_FORMAT) + ":" + toHex(key);
}

std::string sharedLeaseKey(const Key& key) {
  return "rjitd:v" + std::to_string(STORED_FORMAT) + ":lease:" + toHex(key);
}

}  // namespace rjitd::cache
