// SPDX-License-Identifier: MIT
#include "metrics.h"

#include "object-cache.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <utility>

namespace rjitd::metrics {

namespace {

using prometheus::ClientMetric;
using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr std::array<Method, 10> METHODS = {
    Method::Hello,    Method::Compile,    Method::Lookup, Method::Stats, Method::Load,
    Method::Executor, Method::RemoteLoad, Method::Attach, Method::Call,  Method::Run};

std::string resultLabel(std::optional<ErrorKind> error) {
  return error ? errorKindName(*error) : "ok";
}

const char* daemonErrorName(DaemonError kind) {
  switch (kind) {
  case DaemonError::Connection: return "connection";
  case DaemonError::Accept: return "accept";
  case DaemonError::Internal: return "internal";
  }
  return "internal";
}

}  // namespace

const char* connectionRefusalName(ConnectionRefusal reason) {
  switch (reason) {
  case ConnectionRefusal::Limit: return "limit";
  case ConnectionRefusal::PerUser: return "per-user";
  case ConnectionRefusal::Permission: return "permission";
  case ConnectionRefusal::HandshakeTimeout: return "handshake-timeout";
  case ConnectionRefusal::ReadTimeout: return "read-timeout";
  }
  return "limit";
}

namespace {

double seconds(Metrics::Duration d) {
  return std::chrono::duration<double>(d).count();
}

/// Sum of a family's counter or gauge values over the series whose labels pass `keep`.
template <typename T>
double sum(const Family<T>& family,
           const std::function<bool(const std::vector<ClientMetric::Label>&)>& keep = {}) {
  double total = 0;
  for (const MetricFamily& f : family.Collect()) {
    for (const ClientMetric& m : f.metric) {
      if (keep && !keep(m.label))
        continue;
      total += f.type == MetricType::Counter ? m.counter.value : m.gauge.value;
    }
  }
  return total;
}

/// Sum of a histogram family's observations (in seconds) over the series whose labels pass
/// `keep`.
double observedSeconds(const Family<Histogram>& family,
                       const std::function<bool(const std::vector<ClientMetric::Label>&)>& keep) {
  double total = 0;
  for (const MetricFamily& f : family.Collect())
    for (const ClientMetric& m : f.metric)
      if (keep(m.label))
        total += m.histogram.sample_sum;
  return total;
}

bool hasLabel(const std::vector<ClientMetric::Label>& labels, std::string_view name,
              std::string_view value) {
  for (const auto& l : labels) {
    if (l.name == name)
      return l.value == value;
  }
  return false;
}

template <typename N> N whole(double v) {
  // Counters hold doubles; they are exact integers up to 2^53, far beyond any real figure.
  return v <= 0 ? N(0) : static_cast<N>(std::llround(v));
}

/// One scrape-time family with a single series.
MetricFamily family(std::string name, std::string help, MetricType type,
                    std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  return MetricFamily{std::move(name), std::move(help), type, {std::move(m)}};
}

/// The registry's families followed by every cache tier's figures: memory's from the object
/// cache, disk's and shared's from the provider main() sets, each tier read once per scrape so
/// that its figures are consistent with each other. Lookups are counted by the call sites
/// (rjitd_cache_lookups_total): only they know the target a lookup was for.
class Collector final : public prometheus::Collectable {
public:
  Collector(std::shared_ptr<prometheus::Registry> registry, const cache::ObjectCache& cache)
      : registry(std::move(registry)), cache(cache) {}

  void setLowerTiers(std::function<std::vector<TierSnapshot>()> provider) {
    std::lock_guard<std::mutex> lock(mutex);
    lowerTiers = std::move(provider);
  }

  std::vector<TierSnapshot> tiers() const {
    std::vector<TierSnapshot> all;
    cache::CacheStats s = cache.stats();
    TierSnapshot memory;
    memory.tier = CacheTier::Memory;
    memory.entries = s.entries;
    memory.bytes = s.bytes;
    memory.budgetBytes = s.budgetBytes;
    memory.hits = s.hits;
    memory.misses = s.misses;
    memory.evictions = s.evictions;
    all.push_back(std::move(memory));
    std::lock_guard<std::mutex> lock(mutex);
    if (lowerTiers)
      for (TierSnapshot& t : lowerTiers())
        all.push_back(std::move(t));
    return all;
  }

  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out = registry->Collect();
    std::vector<TierSnapshot> all = tiers();
    // One family per name with a series per tier: a name may appear only once in an exposition.
    auto perTier = [&](std::string name, std::string help, MetricType type, auto value,
                       bool lowerOnly = false) {
      MetricFamily f{std::move(name), std::move(help), type, {}};
      for (const TierSnapshot& t : all) {
        if (lowerOnly && t.tier == CacheTier::Memory)
          continue;
        ClientMetric m;
        m.label = {{"tier", cacheTierName(t.tier)}};
        double v = static_cast<double>(value(t));
        if (type == MetricType::Counter)
          m.counter.value = v;
        else
          m.gauge.value = v;
        f.metric.push_back(std::move(m));
      }
      if (!f.metric.empty())
        out.push_back(std::move(f));
    };
    perTier("rjitd_cache_entries", "Objects in the cache tier", MetricType::Gauge,
            [](const TierSnapshot& t) { return t.entries; });
    perTier("rjitd_cache_bytes", "Bytes the tier's objects occupy", MetricType::Gauge,
            [](const TierSnapshot& t) { return t.bytes; });
    perTier("rjitd_cache_budget_bytes",
            "Byte budget of the tier (--cache-bytes, --disk-cache-bytes)", MetricType::Gauge,
            [](const TierSnapshot& t) { return t.budgetBytes; });
    perTier("rjitd_cache_evictions_total", "Objects evicted to keep the tier within its budget",
            MetricType::Counter, [](const TierSnapshot& t) { return t.evictions; });
    perTier(
        "rjitd_cache_stored_total", "Objects written to the tier", MetricType::Counter,
        [](const TierSnapshot& t) { return t.stored; }, true);
    perTier(
        "rjitd_cache_not_stored_total",
        "Objects not written to the tier (too large, read-only, queue full, write failed)",
        MetricType::Counter, [](const TierSnapshot& t) { return t.notStored; }, true);
    perTier(
        "rjitd_cache_errors_total",
        "I/O errors of the tier (disk reads and writes; Redis errors and timeouts)",
        MetricType::Counter, [](const TierSnapshot& t) { return t.errors; }, true);
    MetricFamily rejected{"rjitd_cache_rejected_total",
                          "Stored values refused on read (truncated, corrupt, wrong key, bad MAC) "
                          "and deleted",
                          MetricType::Counter,
                          {}};
    for (const TierSnapshot& t : all) {
      if (t.tier == CacheTier::Memory)
        continue;
      // Every reason of every lower tier, zeros included, so that rate() starts from zero.
      for (const char* reason : {"truncated", "foreign", "wrong-key", "bad-checksum", "bad-mac",
                                 "unexpected-mac", "undecodable"}) {
        uint64_t n = 0;
        for (const auto& r : t.rejected)
          if (r.first == reason)
            n += r.second;
        ClientMetric m;
        m.label = {{"tier", cacheTierName(t.tier)}, {"reason", reason}};
        m.counter.value = static_cast<double>(n);
        rejected.metric.push_back(std::move(m));
      }
    }
    if (!rejected.metric.empty())
      out.push_back(std::move(rejected));
    for (const TierSnapshot& t : all) {
      if (t.tier != CacheTier::Shared)
        continue;
      std::vector<ClientMetric::Label> tier = {{"tier", cacheTierName(t.tier)}};
      out.push_back(family("rjitd_cache_available",
                           "1 while the tier is used; 0 while rjitd backs off after errors",
                           MetricType::Gauge, tier, t.available ? 1 : 0));
      out.push_back(family("rjitd_cache_skipped_total",
                           "Shared-tier calls not made because rjitd was backing off",
                           MetricType::Counter, tier, static_cast<double>(t.skipped)));
      out.push_back(family("rjitd_cache_leases_taken_total",
                           "Compile leases this server took (cross-server single flight)",
                           MetricType::Counter, tier, static_cast<double>(t.leasesTaken)));
      out.push_back(family("rjitd_cache_lease_waits_total",
                           "Compiles that waited for another server's lease instead of compiling",
                           MetricType::Counter, tier, static_cast<double>(t.leaseWaits)));
    }
    return out;
  }

private:
  std::shared_ptr<prometheus::Registry> registry;
  const cache::ObjectCache& cache;
  mutable std::mutex mutex;  // guards lowerTiers (set once at start-up, read by scrapes)
  std::function<std::vector<TierSnapshot>()> lowerTiers;
};

}  // namespace

const char* methodName(Method method) {
  switch (method) {
  case Method::Hello: return "hello";
  case Method::Compile: return "compile";
  case Method::Lookup: return "lookup";
  case Method::Stats: return "stats";
  case Method::Load: return "load";
  case Method::Executor: return "executor";
  case Method::RemoteLoad: return "remote-load";
  case Method::Attach: return "attach";
  case Method::Call: return "call";
  case Method::Run: return "run";
  }
  return "unknown";
}

const char* cacheTierName(CacheTier tier) {
  switch (tier) {
  case CacheTier::Memory: return "memory";
  case CacheTier::Disk: return "disk";
  case CacheTier::Shared: return "shared";
  }
  return "memory";
}

const std::vector<double>& durationBuckets() {
  static const std::vector<double> buckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                              0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                              1,      2.5,     5,      10,    30,     60};
  return buckets;
}

struct Metrics::Impl {
  Impl(const cache::ObjectCache& cache, std::vector<std::string> targets)
      : registry(std::make_shared<prometheus::Registry>()),
        collector(std::make_shared<Collector>(registry, cache)), targets(std::move(targets)) {}

  // Family<T>::Add returns the existing series for known labels, so call sites add with their
  // labels each time: series appear when first used and no table of pointers can go stale.
  Counter& request(Method method, std::string_view target, std::optional<ErrorKind> error) {
    return requests.Add({{"method", methodName(method)},
                         {"target", std::string(target)},
                         {"result", resultLabel(error)}});
  }
  Histogram& requestTime(Method method, std::string_view target) {
    return requestDuration.Add({{"method", methodName(method)}, {"target", std::string(target)}},
                               durationBuckets());
  }
  Counter& compile(std::string_view target, std::optional<ErrorKind> error) {
    return compiles.Add({{"target", std::string(target)}, {"result", resultLabel(error)}});
  }
  Histogram& compileTime(std::string_view target, unsigned optLevel) {
    return compileDuration.Add(
        {{"target", std::string(target)}, {"opt_level", std::to_string(optLevel)}},
        durationBuckets());
  }
  Counter& link(std::string_view target, std::optional<ErrorKind> error) {
    return links.Add({{"target", std::string(target)}, {"result", resultLabel(error)}});
  }
  Histogram& linkTime(std::string_view target) {
    return linkDuration.Add({{"target", std::string(target)}}, durationBuckets());
  }
  Counter& execute(std::string_view target, std::optional<ErrorKind> error) {
    return executes.Add({{"target", std::string(target)}, {"result", resultLabel(error)}});
  }
  Histogram& executeTime(std::string_view target) {
    return executeDuration.Add({{"target", std::string(target)}}, durationBuckets());
  }
  Counter& cacheLookup(CacheTier tier, std::string_view target, bool hit) {
    return cacheLookups.Add({{"tier", cacheTierName(tier)},
                             {"target", std::string(target)},
                             {"result", hit ? "hit" : "miss"}});
  }
  Counter& hashFirst(std::string_view target, bool hit) {
    return hashFirstLookups.Add(
        {{"target", std::string(target)}, {"result", hit ? "hit" : "miss"}});
  }

  std::shared_ptr<prometheus::Registry> registry;
  std::shared_ptr<Collector> collector;
  /// The served targets' short names (BuildInfo::targets): the per-target totals list these.
  const std::vector<std::string> targets;

  Family<Counter>& requests =
      prometheus::BuildCounter()
          .Name("rjitd_requests_total")
          .Help("Requests answered, by RPC method, target and result (ok or the error kind)")
          .Register(*registry);
  Family<Histogram>& requestDuration =
      prometheus::BuildHistogram()
          .Name("rjitd_request_duration_seconds")
          .Help("Time from receiving a request to its answer, by method and target")
          .Register(*registry);
  Family<Counter>& compiles =
      prometheus::BuildCounter()
          .Name("rjitd_compiles_total")
          .Help("Compiles run (cache misses; identical concurrent requests share one), by "
                "target and result")
          .Register(*registry);
  Family<Histogram>& compileDuration =
      prometheus::BuildHistogram()
          .Name("rjitd_compile_duration_seconds")
          .Help("Time a compile took in its compile worker, by target and optimization level")
          .Register(*registry);
  Family<Counter>& links =
      prometheus::BuildCounter()
          .Name("rjitd_links_total")
          .Help("Links of a cached object for a client's address space (loads), by target and "
                "result")
          .Register(*registry);
  Family<Histogram>& linkDuration =
      prometheus::BuildHistogram()
          .Name("rjitd_link_duration_seconds")
          .Help("Time a link for a client's address space took, by target")
          .Register(*registry);
  Gauge& loadedImages = prometheus::BuildGauge()
                            .Name("rjitd_loaded_images")
                            .Help("Modules linked for clients and not yet unloaded")
                            .Register(*registry)
                            .Add({});
  Gauge& loadedImageBytes =
      prometheus::BuildGauge()
          .Name("rjitd_loaded_image_bytes")
          .Help("Shared memory held by loaded modules (code, data and bss pages)")
          .Register(*registry)
          .Add({});
  Counter& symbolQuestions =
      prometheus::BuildCounter()
          .Name("rjitd_symbol_questions_total")
          .Help("Questions rjitd asked clients for the addresses of their symbols during loads "
                "(round trips to the client); imports rjitd answered itself need none")
          .Register(*registry)
          .Add({});
  Family<Counter>& executes =
      prometheus::BuildCounter()
          .Name("rjitd_executes_total")
          .Help("Calls and runs in executor processes answered, by target and result (ok or "
                "the error kind)")
          .Register(*registry);
  Family<Histogram>& executeDuration =
      prometheus::BuildHistogram()
          .Name("rjitd_execute_duration_seconds")
          .Help("Time a call or run took in its executor (a restart and the reload of its "
                "modules included), by target")
          .Register(*registry);
  Gauge& executors = prometheus::BuildGauge()
                         .Name("rjitd_executors")
                         .Help("Executor processes running")
                         .Register(*registry)
                         .Add({});
  Family<Counter>& executorRestarts =
      prometheus::BuildCounter()
          .Name("rjitd_executor_restarts_total")
          .Help("Executor processes a call or run ended (the next call starts a fresh one), "
                "by reason: timeout, crashed, out-of-memory, exited, output-limit, "
                "sandbox-violation, internal")
          .Register(*registry);
  Gauge& compilesInFlight = prometheus::BuildGauge()
                                .Name("rjitd_compiles_in_flight")
                                .Help("Compiles running or waiting for a compile worker")
                                .Register(*registry)
                                .Add({});
  Family<Gauge>& queued =
      prometheus::BuildGauge()
          .Name("rjitd_queued")
          .Help("Requests waiting for a worker (bounded by --max-queued per target), by target "
                "and kind (compile, link, hash: a large module waiting for the hash worker)")
          .Register(*registry);
  Family<Counter>& cancelledWork =
      prometheus::BuildCounter()
          .Name("rjitd_cancelled_total")
          .Help("Work nobody waited for any more (callers cancelled or disconnected), dropped "
                "from its queue or called off while running, by kind (compile, link, hash)")
          .Register(*registry);
  Gauge& requestBytesHeld =
      prometheus::BuildGauge()
          .Name("rjitd_request_bytes_held")
          .Help("Bytes of request modules rjitd holds after receiving them (waiting for the hash "
                "or a compile worker, or compiling), bounded by --max-held-request-bytes")
          .Register(*registry)
          .Add({});
  Counter& moduleBytes = prometheus::BuildCounter()
                             .Name("rjitd_module_bytes_received_total")
                             .Help("Bytes of module bodies received by compile requests")
                             .Register(*registry)
                             .Add({});
  Family<Counter>& cacheLookups =
      prometheus::BuildCounter()
          .Name("rjitd_cache_lookups_total")
          .Help("Cache lookups (compile requests and lookups by key) by tier, target and result")
          .Register(*registry);
  Family<Counter>& hashFirstLookups =
      prometheus::BuildCounter()
          .Name("rjitd_hash_first_lookups_total")
          .Help("Hash-first lookups (a client asking by key before sending a large module), by "
                "target and result")
          .Register(*registry);
  Gauge& sessions = prometheus::BuildGauge()
                        .Name("rjitd_client_sessions")
                        .Help("Open client sessions (one per handshake)")
                        .Register(*registry)
                        .Add({});
  Gauge& connections = prometheus::BuildGauge()
                           .Name("rjitd_connections")
                           .Help("Open client connections")
                           .Register(*registry)
                           .Add({});
  Counter& workerRestarts =
      prometheus::BuildCounter()
          .Name("rjitd_compile_worker_restarts_total")
          .Help("Compile worker processes replaced after a crash, an LLVM fatal error, an "
                "overrun of --compile-timeout or a death from outside (killed while idle or busy)")
          .Register(*registry)
          .Add({});
  Family<Counter>& errors =
      prometheus::BuildCounter()
          .Name("rjitd_errors_total")
          .Help("Errors by kind: failed requests by their error kind, and connection, accept "
                "and internal errors outside requests")
          .Register(*registry);
  Family<Counter>& connectionsRefused =
      prometheus::BuildCounter()
          .Name("rjitd_connections_refused_total")
          .Help("Client connections rjitd refused or closed itself, by reason: limit, per-user, "
                "permission, handshake-timeout, read-timeout")
          .Register(*registry);
  Family<Gauge>& buildInfo = prometheus::BuildGauge()
                                 .Name("rjitd_build_info")
                                 .Help("Always 1; the labels name the rjitd and LLVM versions")
                                 .Register(*registry);
};

Metrics::Metrics(const BuildInfo& info, const cache::ObjectCache& cache)
    : impl(std::make_unique<Impl>(cache, info.targets)) {
  impl->buildInfo.Add({{"version", info.rjitdVersion}, {"llvm_version", info.llvmVersion}}).Set(1);
  // Series every running rjitd has, so that rate() and the dashboard start from zero.
  impl->request(Method::Hello, NO_TARGET, std::nullopt);
  impl->request(Method::Stats, NO_TARGET, std::nullopt);
  impl->hashFirst(NO_TARGET, false);
  impl->cacheLookup(CacheTier::Memory, NO_TARGET, false);
  impl->requestTime(Method::Hello, NO_TARGET);
  impl->requestTime(Method::Stats, NO_TARGET);
  impl->requestTime(Method::Lookup, NO_TARGET);
  for (const std::string& target : info.targets) {
    for (Method m : METHODS)
      if (m != Method::Hello && m != Method::Stats)
        impl->request(m, target, std::nullopt);
    for (bool hit : {true, false}) {
      impl->cacheLookup(CacheTier::Memory, target, hit);
      impl->hashFirst(target, hit);
    }
    impl->requestTime(Method::Compile, target);
    impl->requestTime(Method::Lookup, target);
    impl->requestTime(Method::Load, target);
    impl->link(target, std::nullopt);
    impl->linkTime(target);
    impl->execute(target, std::nullopt);
    impl->executeTime(target);
    impl->compile(target, std::nullopt);
    for (unsigned opt = 0; opt <= 3; ++opt)
      impl->compileTime(target, opt);
  }
}

Metrics::~Metrics() = default;

void Metrics::requestDone(Method method, std::string_view target, std::optional<ErrorKind> error,
                          Duration elapsed) {
  impl->request(method, target, error).Increment();
  impl->requestTime(method, target).Observe(seconds(elapsed));
  if (error)
    impl->errors.Add({{"kind", errorKindName(*error)}}).Increment();
}

void Metrics::moduleReceived(uint64_t bytes) {
  impl->moduleBytes.Increment(static_cast<double>(bytes));
}

void Metrics::compileStarted() {
  impl->compilesInFlight.Increment();
}

void Metrics::compileDone(std::string_view target, unsigned optLevel,
                          std::optional<ErrorKind> error, Duration elapsed) {
  impl->compilesInFlight.Decrement();
  impl->compile(target, error).Increment();
  impl->compileTime(target, optLevel).Observe(seconds(elapsed));
}

void Metrics::linkDone(std::string_view target, std::optional<ErrorKind> error, Duration elapsed) {
  impl->link(target, error).Increment();
  impl->linkTime(target).Observe(seconds(elapsed));
}

void Metrics::imageLoaded(uint64_t bytes) {
  impl->loadedImages.Increment();
  impl->loadedImageBytes.Increment(static_cast<double>(bytes));
}

void Metrics::imageReleased(uint64_t bytes) {
  impl->loadedImages.Decrement();
  impl->loadedImageBytes.Decrement(static_cast<double>(bytes));
}

void Metrics::symbolQuestionAsked() {
  impl->symbolQuestions.Increment();
}

void Metrics::executeDone(std::string_view target, std::optional<ErrorKind> error,
                          Duration elapsed) {
  impl->execute(target, error).Increment();
  impl->executeTime(target).Observe(seconds(elapsed));
}

void Metrics::executorStarted() {
  impl->executors.Increment();
}

void Metrics::executorEnded() {
  impl->executors.Decrement();
}

void Metrics::executorRestarted(ErrorKind reason) {
  impl->executorRestarts.Add({{"reason", errorKindName(reason)}}).Increment();
}

void Metrics::cacheLookup(CacheTier tier, std::string_view target, bool hit) {
  impl->cacheLookup(tier, target, hit).Increment();
}

void Metrics::hashFirstLookup(std::string_view target, bool hit) {
  impl->hashFirst(target, hit).Increment();
}

void Metrics::sessionOpened() {
  impl->sessions.Increment();
}

void Metrics::sessionClosed() {
  impl->sessions.Decrement();
}

void Metrics::connectionOpened() {
  impl->connections.Increment();
}

void Metrics::connectionClosed() {
  impl->connections.Decrement();
}

void Metrics::compileWorkerLost() {
  impl->workerRestarts.Increment();
}

void Metrics::queueDepth(std::string_view target, std::string_view kind, size_t depth) {
  impl->queued.Add({{"target", std::string(target)}, {"kind", std::string(kind)}})
      .Set(static_cast<double>(depth));
}

void Metrics::cancelled(std::string_view kind) {
  impl->cancelledWork.Add({{"kind", std::string(kind)}}).Increment();
}

void Metrics::compileCancelled() {
  impl->compilesInFlight.Decrement();
  cancelled("compile");
}

void Metrics::daemonError(DaemonError kind) {
  impl->errors.Add({{"kind", daemonErrorName(kind)}}).Increment();
}

void Metrics::connectionRefused(ConnectionRefusal reason) {
  impl->connectionsRefused.Add({{"reason", connectionRefusalName(reason)}}).Increment();
}

void Metrics::requestBytesHeld(int64_t delta) {
  impl->requestBytesHeld.Increment(static_cast<double>(delta));
}

Totals Metrics::totals() const {
  auto method = [](Method m) {
    return [name = methodName(m)](const std::vector<ClientMetric::Label>& labels) {
      return hasLabel(labels, "method", name);
    };
  };
  auto failed = [](const std::vector<ClientMetric::Label>& labels) {
    return !hasLabel(labels, "result", "ok");
  };
  auto hit = [](const std::vector<ClientMetric::Label>& labels) {
    return hasLabel(labels, "result", "hit");
  };
  Totals t;
  t.requests = whole<uint64_t>(sum(impl->requests, method(Method::Compile)) +
                               sum(impl->requests, method(Method::Lookup)));
  t.compiles = whole<uint64_t>(sum(impl->compiles));
  t.compileFailures = whole<uint64_t>(sum(impl->compiles, failed));
  t.compilesInFlight = whole<uint32_t>(impl->compilesInFlight.Value());
  t.moduleBytesReceived = whole<uint64_t>(impl->moduleBytes.Value());
  t.lookups = whole<uint64_t>(sum(impl->hashFirstLookups));
  t.lookupHits = whole<uint64_t>(sum(impl->hashFirstLookups, hit));
  t.sessions = whole<uint32_t>(impl->sessions.Value());
  t.connections = whole<uint32_t>(impl->connections.Value());
  t.compileWorkerRestarts = whole<uint64_t>(impl->workerRestarts.Value());
  t.loads = whole<uint64_t>(sum(impl->requests, method(Method::Load)));
  t.links = whole<uint64_t>(sum(impl->links));
  t.linkFailures = whole<uint64_t>(sum(impl->links, failed));
  t.loadedImages = whole<uint32_t>(impl->loadedImages.Value());
  t.loadedImageBytes = whole<uint64_t>(impl->loadedImageBytes.Value());
  t.symbolQuestions = whole<uint64_t>(impl->symbolQuestions.Value());
  t.executes = whole<uint64_t>(sum(impl->executes));
  t.executeFailures = whole<uint64_t>(sum(impl->executes, failed));
  t.executors = whole<uint32_t>(impl->executors.Value());
  t.executorRestarts = whole<uint64_t>(sum(impl->executorRestarts));
  auto label = [](const std::vector<ClientMetric::Label>& labels, std::string_view name) {
    for (const auto& l : labels)
      if (l.name == name)
        return l.value;
    return std::string();
  };
  // Summed over targets: ServerStats.requestCounts is by (method, result); the per-target
  // figures are in t.targets.
  std::map<std::pair<std::string, std::string>, double> byMethod;
  for (const MetricFamily& f : impl->requests.Collect())
    for (const ClientMetric& m : f.metric)
      byMethod[{label(m.label, "method"), label(m.label, "result")}] += m.counter.value;
  for (const auto& [key, count] : byMethod)
    t.requestCounts.push_back({key.first, key.second, whole<uint64_t>(count)});
  for (const MetricFamily& f : impl->errors.Collect())
    for (const ClientMetric& m : f.metric)
      t.errorCounts.push_back({label(m.label, "kind"), whole<uint64_t>(m.counter.value)});
  for (const MetricFamily& f : impl->executes.Collect())
    for (const ClientMetric& m : f.metric)
      t.executeCounts.push_back(
          {label(m.label, "target"), label(m.label, "result"), whole<uint64_t>(m.counter.value)});
  // The memory tier's: every request asks it first, so its lookups count requests once. The
  // lower tiers' lookups are in tiers() (ServerStats.tiers).
  auto memoryTier = [](const std::vector<ClientMetric::Label>& labels) {
    return hasLabel(labels, "tier", cacheTierName(CacheTier::Memory));
  };
  auto memoryHit = [&](const std::vector<ClientMetric::Label>& labels) {
    return memoryTier(labels) && hit(labels);
  };
  t.cacheHits = whole<uint64_t>(sum(impl->cacheLookups, memoryHit));
  t.cacheMisses = whole<uint64_t>(sum(impl->cacheLookups, memoryTier)) - t.cacheHits;
  for (const std::string& target : impl->targets) {
    auto of = [&target](const std::vector<ClientMetric::Label>& labels) {
      return hasLabel(labels, "target", target);
    };
    auto both = [](auto a, auto b) {
      return
          [a, b](const std::vector<ClientMetric::Label>& labels) { return a(labels) && b(labels); };
    };
    auto loadOf = both(of, method(Method::Load));
    Totals::TargetTotals x;
    x.target = target;
    x.cacheLookups = whole<uint64_t>(sum(impl->cacheLookups, both(of, memoryTier)));
    x.cacheHits = whole<uint64_t>(sum(impl->cacheLookups, both(of, memoryHit)));
    x.compiles = whole<uint64_t>(sum(impl->compiles, of));
    x.compileFailures = whole<uint64_t>(sum(impl->compiles, both(of, failed)));
    x.loads = whole<uint64_t>(sum(impl->requests, loadOf));
    x.loadFailures = whole<uint64_t>(sum(impl->requests, both(loadOf, failed)));
    x.links = whole<uint64_t>(sum(impl->links, of));
    x.linkFailures = whole<uint64_t>(sum(impl->links, both(of, failed)));
    x.executes = whole<uint64_t>(sum(impl->executes, of));
    x.executeFailures = whole<uint64_t>(sum(impl->executes, both(of, failed)));
    x.compileSeconds = observedSeconds(impl->compileDuration, of);
    x.loadSeconds = observedSeconds(impl->requestDuration, loadOf);
    x.linkSeconds = observedSeconds(impl->linkDuration, of);
    x.executeSeconds = observedSeconds(impl->executeDuration, of);
    t.targets.push_back(std::move(x));
  }
  return t;
}

void Metrics::setLowerTiers(std::function<std::vector<TierSnapshot>()> provider) {
  impl->collector->setLowerTiers(std::move(provider));
}

std::vector<TierSnapshot> Metrics::tiers() const {
  return impl->collector->tiers();
}

std::shared_ptr<prometheus::Collectable> Metrics::collectable() const {
  return impl->collector;
}

std::string Metrics::exposition() const {
  return prometheus::TextSerializer().Serialize(impl->collector->Collect());
}

}  // namespace rjitd::metrics
