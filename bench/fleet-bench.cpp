// SPDX-License-Identifier: MIT
// fleet-bench: what the cache tiers and a fleet of rjitd cost and save (issue 13), against real
// rjitd processes and a real redis-server started by the bench on private sockets:
//
//  1. Latency, request to object in hand, of a memory hit, a disk hit, a Redis (shared-tier) hit
//     and a compile, for the small module (test/data/sieve.c, -O2) and the large one (stb_image,
//     -O0: its -O2 compile takes seconds). Each tier is forced: memory = the same request
//     repeated to one rjitd; disk = an rjitd with --cache-bytes 1 (nothing stays in memory) and
//     no Redis, asked for two modules in turn that it compiled before; Redis = an rjitd with
//     --cache-bytes 1 and --disk-cache-bytes 0 asked for two modules another rjitd compiled;
//     compile = a new module each time (a "; nonce" line) on an rjitd with disk and Redis.
//  2. Hit ratio of a workload of M distinct modules, each requested R times in a random order
//     (fixed seed), over three rjitd, with and without a shared Redis, for three client models:
//     routing by key (one client listing the three servers); ordered, same order (every client
//     lists A, B, C: first-available, so A takes everything while it answers); ordered, mixed
//     orders (each request made by one of six clients, one per order of A, B, C, picked at
//     random: many clients whose RJIT_SERVER lists differ).
//  3. Restart to first hit: from spawning rjitd on a warm --cache-dir (N objects) to the first
//     answer for one of them, vs spawning rjitd on an empty one to the first compile answered.
//
// Each rjitd runs with --jobs 1 (bench-common's Daemon) and its own temporary --cache-dir.
#include "bench-common.h"

#include <remotejit/client.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <kj/debug.h>
#include <kj/io.h>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

namespace fs = std::filesystem;
using rjitbench::Clock;
using rjitbench::Daemon;
using rjitbench::fixed;
using rjitbench::json;
using rjitbench::msSince;
using rjitbench::readFile;
using rjitbench::Series;
using rjitbench::Table;
using rjitbench::withNonce;

/// Upper bound of every polling loop (stats polls, connection attempts); reaching it is an error.
constexpr unsigned MAX_POLLS = 20'000;

struct Config {
  std::string rjitd, redis = "/usr/bin/redis-server", jsonPath;
  unsigned repetitions = 30, modules = 200, repeats = 5, warmObjects = 200, restarts = 5;
  unsigned seed = 13;
};

/// A temporary directory, removed at destruction.
class TempDir {
public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "rjit-fleet-bench.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr)
      KJ_FAIL_SYSCALL("mkdtemp", errno, pattern.c_str());
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
  fs::path path_;
};

/// True once something accepts connections on the Unix socket `path`.
bool accepts(const std::string& path) {
  kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (fd == nullptr || path.size() >= sizeof addr.sun_path)
    return false;
  std::copy(path.begin(), path.end(), addr.sun_path);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

/// redis-server on a private Unix socket (no TCP, no persistence), as test/support's
/// RedisServer starts it; that one reports through GoogleTest, so the bench has its own.
class Redis {
public:
  Redis(const std::string& binary, const TempDir& dir) : socket_(dir.file("redis.sock")) {
    rjitd::process::SpawnOptions options;
    options.argv = {binary,       "--port",      "0", "--unixsocket", socket_, "--unixsocketperm",
                    "700",        "--save",      "",  "--appendonly", "no",    "--dir",
                    dir.file(""), "--daemonize", "no"};
    options.env = rjitbench::childEnvironment();
    options.stdoutPath = dir.file("redis.log");
    options.stderrPath = dir.file("redis.log");
    child_ = rjitd::process::Subprocess::spawn(options);
    for (unsigned i = 0; i < MAX_POLLS / 10 && !accepts(socket_); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!accepts(socket_))
      KJ_FAIL_REQUIRE("redis-server did not listen", socket_.c_str(),
                      readFile(dir.file("redis.log")).c_str());
  }
  ~Redis() { child_->terminate(std::chrono::seconds(10)); }
  std::string address() const { return "unix:" + socket_; }

private:
  std::string socket_;
  std::unique_ptr<rjitd::process::Subprocess> child_;
};

struct Module {
  std::string name, what, text;
  unsigned level = 0;
};

const rjit::ServerStats::TierStats& tier(const rjit::ServerStats& stats, const std::string& name) {
  for (const auto& t : stats.tiers)
    if (t.tier == name)
      return t;
  static const rjit::ServerStats::TierStats NONE;
  return NONE;
}

rjit::ClientOptions clientFor(const std::vector<std::string>& servers, rjit::ServerPolicy policy) {
  rjit::ClientOptions options;
  options.servers = servers;
  options.serverPolicy = policy;
  options.timeout = std::chrono::milliseconds(120000);
  options.clientName = "fleet-bench";
  return options;
}

rjit::ServerStats statsOf(const Daemon& daemon) {
  return rjit::Client(clientFor({daemon.address()}, rjit::ServerPolicy::Ordered)).stats();
}

/// Polls until `daemon` has written `count` objects to tier `name` ("disk", "shared"): both
/// write asynchronously.
void waitStored(const Daemon& daemon, const std::string& name, uint64_t count) {
  rjit::Client client(clientFor({daemon.address()}, rjit::ServerPolicy::Ordered));
  for (unsigned i = 0; i < MAX_POLLS; ++i) {
    if (tier(client.stats(), name).stored >= count)
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  KJ_FAIL_REQUIRE("rjitd did not store the objects in time", count, name.c_str());
}

/// Requests of a row that the tier it names did not serve.
unsigned missing(unsigned requests, uint64_t served) {
  return served >= requests ? 0 : requests - static_cast<unsigned>(served);
}

void progress(const std::string& what) {
  std::fprintf(stderr, "  %s\n", what.c_str());
}

class Bench {
public:
  Bench(const Config& config, fs::path rjitd) : config_(config), rjitd_(std::move(rjitd)) {
    std::random_device random;
    run_ = std::to_string(random()) + "-" + std::to_string(getpid());
    keyFile_ = dir_.file("fleet.key");
    std::ofstream(keyFile_) << "fleet-bench-secret-" << run_ << "\n";
    ::chmod(keyFile_.c_str(), 0600);
    redis_.emplace(config.redis, dir_);
  }

  std::string redisAddress() const { return redis_->address(); }

  /// An rjitd with its own new --cache-dir (unless `cacheDir` names one), on the bench's Redis
  /// when `shared`, `extra` appended; returned once it answers.
  std::unique_ptr<Daemon> start(bool shared, std::vector<std::string> extra = {},
                                std::string cacheDir = {}) {
    if (cacheDir.empty())
      cacheDir = dir_.file("cache-" + std::to_string(daemons_++));
    std::vector<std::string> args = {"--cache-dir", cacheDir};
    if (shared)
      args.insert(args.end(),
                  {"--shared-cache", redis_->address(), "--shared-cache-key-file", keyFile_});
    args.insert(args.end(), extra.begin(), extra.end());
    auto daemon = std::make_unique<Daemon>(rjitd_, args);
    rjitbench::waitUntilServing(daemon->address(), daemon.get());
    return daemon;
  }

  rjit::CompileRequest fresh(const Module& m) {
    return rjitbench::textRequest(m.name, withNonce(m.text, run_, nonce_++), m.level);
  }

  struct Latency {
    std::string module, path;
    Series ms;
    unsigned unexpected = 0;  ///< answers not served by the tier the row names
  };

  /// Part 1 for one module: compile, memory, disk and Redis hits.
  std::vector<Latency> latency(const Module& m) {
    std::vector<Latency> rows;
    unsigned n = config_.repetitions;
    auto full = start(true);
    rjit::Client onFull(clientFor({full->address()}, rjit::ServerPolicy::Ordered));

    Latency compile{m.name, "compile (disk + Redis miss)", {}, 0};
    for (unsigned i = 0; i < n; ++i) {
      rjit::CompileRequest r = fresh(m);
      auto t0 = Clock::now();
      rjit::CompiledObject object = onFull.compile(r);
      compile.ms.add(msSince(t0));
      compile.unexpected += object.fromCache ? 1 : 0;
    }
    progress(m.name + ": compile");

    // Two modules, on `full`'s disk and in Redis.
    std::array<rjit::CompileRequest, 2> pair = {fresh(m), fresh(m)};
    for (auto& r : pair)
      onFull.compile(r);
    waitStored(*full, "shared", n + 2);

    Latency memory{m.name, "memory hit", {}, 0};
    rjit::ServerStats before = onFull.stats();
    for (unsigned i = 0; i < n; ++i) {
      auto t0 = Clock::now();
      onFull.compile(pair[0]);
      memory.ms.add(msSince(t0));
    }
    rjit::ServerStats after = onFull.stats();
    memory.unexpected = missing(n, after.cacheHits - before.cacheHits);
    progress(m.name + ": memory hit");

    // Hits of one tier below memory: --cache-bytes 1 keeps nothing in memory, so each request
    // of the two modules in turn asks the next tier.
    auto tierHits = [&](const std::string& path, const std::string& tierName, bool shared,
                        std::vector<std::string> extra) {
      auto daemon = start(shared, extra);
      rjit::Client client(clientFor({daemon->address()}, rjit::ServerPolicy::Ordered));
      if (!shared) {  // put both on its disk first
        for (auto& r : pair)
          client.compile(r);
        waitStored(*daemon, "disk", 2);
      }
      Latency row{m.name, path, {}, 0};
      uint64_t hitsBefore = tier(client.stats(), tierName).hits;
      uint64_t compilesBefore = client.stats().compiles;
      for (unsigned i = 0; i < n; ++i) {
        auto t0 = Clock::now();
        client.compile(pair[i % 2]);
        row.ms.add(msSince(t0));
      }
      rjit::ServerStats s = client.stats();
      row.unexpected = missing(n, tier(s, tierName).hits - hitsBefore) +
                       static_cast<unsigned>(s.compiles - compilesBefore);
      progress(m.name + ": " + path);
      return row;
    };
    rows.push_back(memory);
    rows.push_back(tierHits("disk hit", "disk", false, {"--cache-bytes", "1"}));
    rows.push_back(
        tierHits("Redis hit", "shared", true, {"--cache-bytes", "1", "--disk-cache-bytes", "0"}));
    rows.push_back(compile);
    return rows;
  }

  struct Workload {
    std::string policy;
    bool shared = false;
    uint64_t requests = 0, compiles = 0, sharedHits = 0;
    std::array<uint64_t, 3> served{}, compilesPer{};
    double seconds = 0;
  };

  /// Part 2: M modules x R requests in a seeded random order over three new rjitd.
  Workload workload(const Module& m, const std::string& policy, bool shared) {
    std::vector<std::unique_ptr<Daemon>> servers;
    for (int i = 0; i < 3; ++i)
      servers.push_back(start(shared));
    std::vector<std::string> addresses;
    for (auto& s : servers)
      addresses.push_back(s->address());
    // A, B, C in the order their addresses sort: next_permutation below starts from there.
    std::sort(addresses.begin(), addresses.end());
    std::vector<size_t> byAddress;
    for (const std::string& a : addresses)
      for (size_t i = 0; i < servers.size(); ++i)
        if (servers[i]->address() == a)
          byAddress.push_back(i);

    std::vector<rjit::CompileRequest> modules;
    for (unsigned i = 0; i < config_.modules; ++i)
      modules.push_back(fresh(m));
    std::vector<unsigned> order;
    for (unsigned i = 0; i < config_.modules; ++i)
      for (unsigned k = 0; k < config_.repeats; ++k)
        order.push_back(i);
    std::mt19937 random(config_.seed);
    std::shuffle(order.begin(), order.end(), random);

    // The clients: one for "key" and "ordered, same order"; one per order of A, B, C for
    // "ordered, mixed orders", each request made by one of them picked at random.
    std::vector<std::unique_ptr<rjit::Client>> clients;
    if (policy == "key") {
      clients.push_back(
          std::make_unique<rjit::Client>(clientFor(addresses, rjit::ServerPolicy::Key)));
    } else {
      std::vector<std::string> permutation = addresses;
      do {
        clients.push_back(
            std::make_unique<rjit::Client>(clientFor(permutation, rjit::ServerPolicy::Ordered)));
      } while (policy == "ordered, mixed orders" &&
               std::next_permutation(permutation.begin(), permutation.end()));
    }
    std::uniform_int_distribution<size_t> pick(0, clients.size() - 1);
    auto t0 = Clock::now();
    for (unsigned index : order)
      clients[pick(random)]->compile(modules[index]);

    Workload w;
    w.seconds = msSince(t0) / 1000.0;
    w.policy = policy;
    w.shared = shared;
    w.requests = order.size();
    for (size_t i = 0; i < servers.size(); ++i) {
      rjit::ServerStats s = statsOf(*servers[byAddress[i]]);
      w.compilesPer[i] = s.compiles;
      w.compiles += s.compiles;
      w.served[i] = s.cacheHits + s.cacheMisses;
      w.sharedHits += tier(s, "shared").hits;
    }
    progress("workload: " + policy + (shared ? ", Redis" : ", no Redis"));
    return w;
  }

  struct Restart {
    Series warm, cold, serving;  ///< serving: spawn to the first serverInfo() answered
    unsigned warmHits = 0;       ///< warm first answers that were cache hits
    uint64_t objectsOnDisk = 0;
  };

  /// Spawns rjitd with `extra` and returns the time until `request` is answered (the first
  /// attempts meet no socket yet; retried every millisecond, bounded).
  /// A null `request` asks serverInfo() instead.
  double toFirstAnswer(const std::vector<std::string>& args, const rjit::CompileRequest* request,
                       bool& fromCache) {
    auto t0 = Clock::now();
    Daemon daemon(rjitd_, args);
    for (unsigned i = 0; i < MAX_POLLS; ++i) {
      try {
        rjit::Client client(clientFor({daemon.address()}, rjit::ServerPolicy::Ordered));
        if (request == nullptr)
          client.serverInfo();
        else
          fromCache = client.compile(*request).fromCache;
        return msSince(t0);
      } catch (const rjit::Error&) {
        std::string exited = daemon.exitedEarly();
        if (!exited.empty())
          KJ_FAIL_REQUIRE("rjitd exited", exited.c_str(), daemon.logText().c_str());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    KJ_FAIL_REQUIRE("rjitd did not answer within the bound", MAX_POLLS);
  }

  /// Part 3.
  Restart restart(const Module& m) {
    Restart r;
    std::string warmDir = dir_.file("warm");
    std::vector<rjit::CompileRequest> stored;
    {
      auto daemon = start(false, {}, warmDir);
      rjit::Client client(clientFor({daemon->address()}, rjit::ServerPolicy::Ordered));
      for (unsigned i = 0; i < config_.warmObjects; ++i) {
        stored.push_back(fresh(m));
        client.compile(stored.back());
      }
      waitStored(*daemon, "disk", config_.warmObjects);
      r.objectsOnDisk = tier(client.stats(), "disk").entries;
      daemon->stop();
    }
    for (unsigned i = 0; i < config_.restarts; ++i) {
      bool fromCache = false;
      r.warm.add(
          toFirstAnswer({"--cache-dir", warmDir}, &stored[(i * 37) % stored.size()], fromCache));
      r.warmHits += fromCache ? 1 : 0;
      std::string coldDir = dir_.file("cold-" + std::to_string(i));
      rjit::CompileRequest request = fresh(m);
      r.cold.add(toFirstAnswer({"--cache-dir", coldDir}, &request, fromCache));
      r.serving.add(toFirstAnswer({"--cache-dir", coldDir + "-info"}, nullptr, fromCache));
    }
    progress("restart");
    return r;
  }

private:
  const Config& config_;
  fs::path rjitd_;
  TempDir dir_;
  std::string run_, keyFile_;
  uint64_t nonce_ = 0;
  unsigned daemons_ = 0;
  std::optional<Redis> redis_;
};

std::string ms(const Series& s) {
  return s.median() < 10 ? fixed(s.median(), 3) : fixed(s.median(), 1);
}
std::string p90(const Series& s) {
  return s.percentile(90) < 10 ? fixed(s.percentile(90), 3) : fixed(s.percentile(90), 1);
}

int run(const Config& config) {
  fs::path self = rjitbench::selfDirectory();
  fs::path rjitd =
      config.rjitd.empty() ? self.parent_path() / "service" / "rjitd" : fs::path(config.rjitd);
  std::vector<Module> modules = {
      {"small", "test/data/sieve.c, -O2", readFile(self / "sieve-bench.ll"), 2},
      {"large", "stb_image 2.27 + bench/stb-driver.c, -O0", readFile(self / "stb-bench.ll"), 0},
  };
  // The workload's and the restart's modules: the small one at -O0 (many compiles).
  Module workloadModule{"small-O0", "test/data/sieve.c, -O0", modules[0].text, 0};

  rjitbench::RunConditions conditions;
  conditions.warnIfBusy();
  Bench bench(config, rjitd);
  std::fprintf(stderr, "redis-server on %s\n", bench.redisAddress().c_str());

  std::vector<Bench::Latency> latency;
  for (const Module& m : modules)
    for (auto& row : bench.latency(m))
      latency.push_back(std::move(row));
  std::vector<Bench::Workload> workloads;
  for (bool shared : {false, true})
    for (const char* policy : {"key", "ordered, same order", "ordered, mixed orders"})
      workloads.push_back(bench.workload(workloadModule, policy, shared));
  Bench::Restart restart = bench.restart(workloadModule);
  conditions.finish();

  json out;
  out["machine"] = rjitbench::machineInfo();
  rjit::ServerInfo info;
  {
    auto probe = bench.start(false);
    info = rjitbench::waitUntilServing(probe->address(), probe.get());
  }
  out["rjitd"] = {{"version", info.rjitdVersion}, {"llvm", info.llvmVersion}};
  json machine = out["machine"];
  std::cout << "fleet-bench: rjitd " << info.rjitdVersion << ", LLVM " << info.llvmVersion
            << ", --jobs 1 each; redis-server on a Unix socket\n"
            << "machine: " << machine["cpu"].get<std::string>() << ", "
            << machine["cpus"].get<unsigned>() << " CPUs, " << machine["memory"].get<std::string>()
            << ", " << machine["kernel"].get<std::string>() << "\n";
  for (const Module& m : modules)
    std::cout << "module " << m.name << ": " << m.what << ", " << m.text.size() / 1024
              << " KiB of IR\n";

  std::cout << "\n1. Latency, request to object in hand (default client: hash-first from 64 KiB, "
               "so the large module is asked for by key); ms\n\n";
  Table t1({"module", "served by", "N", "median", "p90", "not as labelled"});
  for (const auto& row : latency)
    t1.add({row.module, row.path, std::to_string(row.ms.count()), ms(row.ms), p90(row.ms),
            std::to_string(row.unexpected)});
  t1.print(std::cout);

  std::cout << "\n2. Workload: " << config.modules << " modules (sieve.c -O0, each unique) x "
            << config.repeats << " requests, random order (seed " << config.seed
            << "), 3 rjitd\n\n";
  Table t2({"client model", "Redis", "requests", "compiles (A/B/C)", "hit ratio",
            "requests served by A/B/C", "Redis hits", "s"});
  for (const auto& w : workloads)
    t2.add({w.policy, w.shared ? "yes" : "no", std::to_string(w.requests),
            std::to_string(w.compiles) + " (" + std::to_string(w.compilesPer[0]) + "/" +
                std::to_string(w.compilesPer[1]) + "/" + std::to_string(w.compilesPer[2]) + ")",
            fixed(100.0 * (1.0 - rjitbench::ratio(static_cast<double>(w.compiles),
                                                  static_cast<double>(w.requests))),
                  1) +
                " %",
            std::to_string(w.served[0]) + "/" + std::to_string(w.served[1]) + "/" +
                std::to_string(w.served[2]),
            std::to_string(w.sharedHits), fixed(w.seconds, 1)});
  t2.print(std::cout);
  std::cout << "  hit ratio = 1 - compiles / requests; the best possible is "
            << fixed(100.0 * (1.0 - 1.0 / config.repeats), 1) << " %\n";

  std::cout << "\n3. Restart: spawn to first answer; ms over " << config.restarts << " starts\n\n";
  Table t3({"start", "median", "max", "first answer"});
  t3.add({"warm --cache-dir (" + std::to_string(restart.objectsOnDisk) + " objects), first hit",
          ms(restart.warm), fixed(restart.warm.max(), 1),
          std::to_string(restart.warmHits) + "/" + std::to_string(restart.warm.count()) +
              " from the cache"});
  t3.add({"empty --cache-dir, first compile", ms(restart.cold), fixed(restart.cold.max(), 1),
          "compiled"});
  t3.add({"empty --cache-dir, first serverInfo()", ms(restart.serving),
          fixed(restart.serving.max(), 1), "(start-up alone)"});
  t3.print(std::cout);
  std::cout << "\n" << conditions.describe() << "\n";

  for (const auto& row : latency)
    out["latency"].push_back({{"module", row.module},
                              {"served_by", row.path},
                              {"ms", row.ms.toJson()},
                              {"not_as_labelled", row.unexpected}});
  for (const auto& w : workloads)
    out["workload"].push_back(
        {{"client_model", w.policy},
         {"redis", w.shared},
         {"requests", w.requests},
         {"compiles", w.compiles},
         {"compiles_per_server", w.compilesPer},
         {"served_per_server", w.served},
         {"redis_hits", w.sharedHits},
         {"hit_ratio",
          1.0 - rjitbench::ratio(static_cast<double>(w.compiles), static_cast<double>(w.requests))},
         {"seconds", w.seconds}});
  out["workload_shape"] = {
      {"modules", config.modules}, {"repeats", config.repeats}, {"seed", config.seed}};
  out["restart"] = {{"objects_on_disk", restart.objectsOnDisk},
                    {"warm_first_hit", restart.warm.toJson()},
                    {"warm_first_answers_from_cache", restart.warmHits},
                    {"cold_first_compile", restart.cold.toJson()},
                    {"cold_first_server_info", restart.serving.toJson()}};
  conditions.toJson(out);
  if (!config.jsonPath.empty()) {
    std::ofstream file(config.jsonPath);
    file << out.dump(2) << "\n";
    if (!file)
      KJ_FAIL_REQUIRE("cannot write the JSON file", config.jsonPath.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  Config config;
  CLI::App app{"fleet-bench: cache tier latencies, fleet hit ratio, restart to first hit"};
  app.add_option("--rjitd", config.rjitd,
                 "rjitd binary (default: <builddir>/service/rjitd next to this bench)");
  app.add_option("--redis-server", config.redis, "redis-server binary")->capture_default_str();
  app.add_option("--json", config.jsonPath, "also write the results as JSON to this file");
  app.add_option("--repetitions", config.repetitions, "requests per latency row")
      ->capture_default_str();
  app.add_option("--modules", config.modules, "distinct modules of the workload")
      ->capture_default_str();
  app.add_option("--repeats", config.repeats, "requests per module in the workload")
      ->capture_default_str();
  app.add_option("--seed", config.seed, "the workload's random order")->capture_default_str();
  app.add_option("--warm-objects", config.warmObjects, "objects on disk before the warm restart")
      ->capture_default_str();
  app.add_option("--restarts", config.restarts, "starts of each kind")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(config);
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.getDescription().cStr());
    return 1;
  } catch (const std::exception& e) {  // bench-common reports with std exceptions
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return 1;
  }
}
