// SPDX-License-Identifier: MIT
// rjitd's Prometheus metrics: one registry with every rjitd metric family, updated by the
// daemon's call sites, plus the cache's size figures read from the object cache when scraped. The
// counters `rjit info` shows (ServerStats) are read back from here, so both show one figure.
// This header carries no prometheus-cpp types: only metrics/*.cpp include prometheus-cpp.
#pragma once

#include "compiled-object.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace prometheus {
class Collectable;
}  // namespace prometheus

namespace rjitd::cache {
class ObjectCache;
}  // namespace rjitd::cache

namespace rjitd::metrics {

/// The RPC methods, the `method` label of the request metrics.
/// Executor (Session.executor), RemoteLoad (Executor.load), Attach (Executor.attachSegment),
/// Call and Run (RemoteModule) are the remote-execute methods.
enum class Method : uint8_t {
  Hello,
  Compile,
  Lookup,
  Stats,
  Load,
  Executor,
  RemoteLoad,
  Attach,
  Call,
  Run
};

/// "hello", "compile", "lookup", "stats", "load", "executor", "remote-load", "attach", "call",
/// "run".
const char* methodName(Method method);

/// `target` label of a request that names no target (hello, stats, a lookup that missed).
inline constexpr std::string_view NO_TARGET = "none";
/// `target` label of a compile request whose target rjitd does not serve. Client-chosen
/// strings never become label values: that would let clients create unbounded series.
inline constexpr std::string_view UNKNOWN_TARGET = "unknown";

/// The cache tier a lookup asked (the `tier` label): memory, then disk (--cache-dir), then
/// shared (Redis, --shared-cache).
enum class CacheTier : uint8_t { Memory, Disk, Shared };

/// "memory", "disk", "shared".
const char* cacheTierName(CacheTier tier);

/// One tier's figures, read at scrape time (rjitd_cache_* with its `tier` label) and for
/// ServerStats.tiers. What a tier does not have stays 0 (Redis is not asked for its entries).
struct TierSnapshot {
  CacheTier tier = CacheTier::Memory;
  std::string address;  ///< disk: the directory; shared: the Redis address
  uint64_t entries = 0, bytes = 0, budgetBytes = 0;
  uint64_t hits = 0, misses = 0, evictions = 0, stored = 0, notStored = 0, errors = 0;
  uint64_t skipped = 0;  ///< shared: calls not made while backing off
  /// Stored values refused on read, by reason ("bad-checksum", "bad-mac", ...): only nonzero.
  std::vector<std::pair<std::string, uint64_t>> rejected;
  uint64_t leasesTaken = 0, leaseWaits = 0;  ///< shared
  bool available = true;                     ///< shared: false while backing off
  bool scanned = true;                       ///< disk: the start-up scan has finished
  uint64_t rejectedTotal() const {
    uint64_t n = 0;
    for (const auto& r : rejected)
      n += r.second;
    return n;
  }
};

/// Errors that are not the answer to a request; counted in rjitd_errors_total with these kinds.
enum class DaemonError : uint8_t {
  Connection,  ///< a client connection ended with an error instead of a clean close
  Accept,      ///< accepting a connection failed
  Internal,    ///< a fault inside rjitd outside any request (logged)
};

/// Why rjitd closed a client connection itself; counted in rjitd_connections_refused_total.
enum class ConnectionRefusal : uint8_t {
  Limit,             ///< over --max-connections
  PerUser,           ///< over --max-connections-per-user
  Permission,        ///< a Unix peer not in --allow-users/--allow-groups
  HandshakeTimeout,  ///< no hello within --handshake-timeout
  ReadTimeout,       ///< a started message not whole within --read-timeout
};

/// "limit", "per-user", "permission", "handshake-timeout", "read-timeout".
const char* connectionRefusalName(ConnectionRefusal reason);

struct BuildInfo {
  std::string rjitdVersion;
  std::string llvmVersion;
  /// Short names of the served targets ("x86_64", "aarch64"): their label values exist from
  /// the start, so dashboards show zeros rather than "no data" before the first request.
  std::vector<std::string> targets;
};

/// The figures `rjit info` shows, read from the metric families (see Metrics::totals()).
struct Totals {
  uint64_t requests = 0;         ///< compile and lookup requests answered
  uint64_t compiles = 0;         ///< compiles run (single flight: one per distinct key)
  uint64_t compileFailures = 0;  ///< compiles run that failed
  uint32_t compilesInFlight = 0;
  uint64_t moduleBytesReceived = 0;
  uint64_t lookups = 0;  ///< hash-first lookups that reached the cache
  uint64_t lookupHits = 0;
  uint32_t sessions = 0;
  uint32_t connections = 0;
  uint64_t compileWorkerRestarts = 0;
  uint64_t loads = 0;  ///< load requests answered
  uint64_t links = 0;  ///< links for clients run
  uint64_t linkFailures = 0;
  uint32_t loadedImages = 0;
  uint64_t loadedImageBytes = 0;
  uint64_t symbolQuestions = 0;   ///< SymbolResolver calls rjitd made to clients
  uint64_t executes = 0;          ///< calls and runs answered (rjitd_executes_total)
  uint64_t executeFailures = 0;   ///< ... that did not end with a result
  uint32_t executors = 0;         ///< executor processes running
  uint64_t executorRestarts = 0;  ///< executors ended by a call (rjitd_executor_restarts_total)
  /// rjitd_requests_total by (method, result), summed over targets, and rjitd_errors_total by
  /// kind: every series.
  struct RequestCount {
    std::string method, result;
    uint64_t count = 0;
  };
  struct ErrorCount {
    std::string kind;
    uint64_t count = 0;
  };
  std::vector<RequestCount> requestCounts;
  std::vector<ErrorCount> errorCounts;
  /// rjitd_executes_total by (target, result): the target in `method`.
  std::vector<RequestCount> executeCounts;
  uint64_t cacheHits = 0;  ///< rjitd_cache_lookups_total{tier="memory"}, every target
  uint64_t cacheMisses = 0;
  /// The figures of one served target. `...Seconds` are the sums of the latency histograms,
  /// whose counts are the matching totals (compiles, loads, links, executes): their quotient
  /// is the mean.
  struct TargetTotals {
    std::string target;  ///< a served target's short name
    uint64_t cacheLookups = 0, cacheHits = 0;
    uint64_t compiles = 0, compileFailures = 0;
    uint64_t loads = 0, loadFailures = 0;  ///< load requests answered (rjitd_requests_total)
    uint64_t links = 0, linkFailures = 0;
    uint64_t executes = 0, executeFailures = 0;
    double compileSeconds = 0, loadSeconds = 0, linkSeconds = 0, executeSeconds = 0;
  };
  /// One per served target (BuildInfo::targets, in that order), zeros included.
  std::vector<TargetTotals> targets;
};

/// Histogram buckets of every rjitd duration, in seconds: 100 µs (a cache hit over a Unix
/// socket) to 60 s (a large module at -O3).
const std::vector<double>& durationBuckets();

/// Owns the registry and the rjitd metric families. Every method is thread-safe and never
/// waits on I/O: an update is an atomic add, or a lookup under prometheus-cpp's per-family
/// mutex, which a scrape holds only while it copies that family's values.
class Metrics final {
public:
  using Duration = std::chrono::steady_clock::duration;

  /// `cache` outlives this object (its figures are read at every scrape).
  Metrics(const BuildInfo& info, const cache::ObjectCache& cache);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  /// A request was answered: `error` is its error kind, or nullopt when it succeeded.
  /// `target` is a served target's short name, NO_TARGET or UNKNOWN_TARGET.
  void requestDone(Method method, std::string_view target, std::optional<ErrorKind> error,
                   Duration elapsed);
  /// A compile request carried a module of `bytes` bytes.
  void moduleReceived(uint64_t bytes);
  /// A compile is about to run (a cache miss that no compile in flight could answer).
  void compileStarted();
  /// A compile that compileStarted() announced ended after `elapsed` on its worker.
  void compileDone(std::string_view target, unsigned optLevel, std::optional<ErrorKind> error,
                   Duration elapsed);
  /// A link for a client's address space (load) ended after `elapsed`.
  void linkDone(std::string_view target, std::optional<ErrorKind> error, Duration elapsed);
  /// A loaded image was handed to a client (`bytes` of shared memory) or released by it.
  void imageLoaded(uint64_t bytes);
  void imageReleased(uint64_t bytes);
  /// rjitd asked a client for the addresses of its symbols (one SymbolResolver call).
  void symbolQuestionAsked();
  /// A call or run in an executor was answered (`error`: its error kind, nullopt for a result)
  /// after `elapsed`. `target` is a served target's short name.
  void executeDone(std::string_view target, std::optional<ErrorKind> error, Duration elapsed);
  /// An executor process was started, or ended (reaped) for whatever reason.
  void executorStarted();
  void executorEnded();
  /// A call or run ended its executor (`reason`: timeout, crashed, out-of-memory, exited,
  /// output-limit, sandbox-violation, internal; a run's normal end is not counted).
  void executorRestarted(ErrorKind reason);
  /// A lookup in the object cache's `tier` found (or did not find) the object. `target` is
  /// the found object's target, or on a miss the target the request named (NO_TARGET when it
  /// named none, as a hash-first lookup by key does).
  void cacheLookup(CacheTier tier, std::string_view target, bool hit);
  /// A hash-first lookup found (or did not find) the object in the cache; `target` as for
  /// cacheLookup().
  void hashFirstLookup(std::string_view target, bool hit);
  void sessionOpened();
  void sessionClosed();
  void connectionOpened();
  void connectionClosed();
  /// A compile worker process ended abnormally (crash, LLVM fatal error, time limit) and is
  /// replaced for the next compile.
  void compileWorkerLost();
  void daemonError(DaemonError kind);
  /// Requests of `kind` ("compile", "link", "hash") waiting for a worker for `target` now.
  void queueDepth(std::string_view target, std::string_view kind, size_t depth);
  /// Work of `kind` ("compile", "link", "hash") that nobody waited for any more was dropped
  /// from its queue or called off while running (its callers cancelled or disconnected).
  void cancelled(std::string_view kind);
  /// A compile that compileStarted() announced was cancelled (counted in cancelled("compile"),
  /// not as a compile: it is no module's fault).
  void compileCancelled();
  /// rjitd refused or closed a client connection for `reason`.
  void connectionRefused(ConnectionRefusal reason);
  /// The bytes of request bodies rjitd holds (module copies, --max-held-request-bytes) changed
  /// by `delta` (+ charged, - released). Called on any thread.
  void requestBytesHeld(int64_t delta);

  /// The ServerStats figures, summed over the label values of the families they come from.
  Totals totals() const;

  /// The disk and shared tiers' figures for scrapes, from `provider` (thread-safe; called on
  /// the scrape's thread). Without one, only the memory tier is shown.
  void setLowerTiers(std::function<std::vector<TierSnapshot>()> provider);
  /// Every tier's figures, memory first (ServerStats.tiers).
  std::vector<TierSnapshot> tiers() const;

  /// Everything a scrape returns: the registry's families and the cache's figures. The
  /// collectable refers to this object and its cache; stop serving it before they go away.
  std::shared_ptr<prometheus::Collectable> collectable() const;

  /// The Prometheus text exposition of collectable(), as /metrics serves it.
  std::string exposition() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

}  // namespace rjitd::metrics
