// SPDX-License-Identifier: MIT
// soak: rjitd under load and fault injection for a bounded time. Starts the real rjitd (with
// --metrics on loopback); client threads compile, load and call natively, and run code remotely
// through libremotejit-client, with valid modules and bad ones; a fault injector kills compile
// workers, executors and rjitd itself (SIGKILL and restart on the same socket, or SIGTERM) at
// random. Reports requests made, ok, failed by error kind and lost (no answer, or a wrong one:
// must be 0), with rjitd's RSS, descriptors and children sampled from /proc. Not run by meson
// test (docs/RELIABILITY.md has the command and a run's figures). Exit status 1 when a request
// was lost.
#include "bench-common.h"
#include "http-get.h"

#include <remotejit/client.h>

#include <CLI/CLI.hpp>
#include <kj/exception.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using rjitbench::Clock;
using rjitbench::fixed;
using std::chrono::milliseconds;

struct Config {
  double minutes = 10;
  unsigned clients = 16;
  uint64_t seed = 1;
  double faultSeconds = 3;      ///< mean time between faults (exponential)
  unsigned timeoutMs = 30'000;  ///< each client call's deadline
  bool killRjitd = true;        ///< false: faults in workers and executors only
  std::string rjitd;            ///< default: service/rjitd of this build directory
  std::vector<std::string> rjitdArgs;
};

/// What a client thread does in one step.
enum class Op : uint8_t {
  CompileGood,  ///< compile a valid module: an object defining its function
  CompileBad,   ///< compile invalid IR: invalid-module
  LoadCall,     ///< load through the fast path and call natively: the exact value
  RemoteCall,   ///< load into an executor and call: the exact value
  RemoteRun,    ///< run a main() in an executor: its exit status
  RemoteCrash,  ///< call code that dereferences null in an executor: crashed
  COUNT
};
constexpr const char* OP_NAMES[] = {"compile",     "compile-bad", "load+call",
                                    "remote-call", "remote-run",  "remote-crash"};
constexpr size_t OPS = static_cast<size_t>(Op::COUNT);

/// Kinds that blame the request itself: a valid request answered with one of them is wrong,
/// not failed (a fault elsewhere must never be reported as the module's or the call's fault).
bool blamesTheRequest(rjit::ErrorKind kind) {
  switch (kind) {
  case rjit::ErrorKind::InvalidModule:
  case rjit::ErrorKind::UnknownTarget:
  case rjit::ErrorKind::TargetMismatch:
  case rjit::ErrorKind::TooLarge:
  case rjit::ErrorKind::InvalidRequest:
  case rjit::ErrorKind::LinkFailed:
  case rjit::ErrorKind::Exited:
  case rjit::ErrorKind::OutputLimit:
  case rjit::ErrorKind::SandboxViolation:
  case rjit::ErrorKind::SignatureMismatch: return true;
  default: return false;
  }
}

/// Every outcome, shared by the threads.
class Tally {
public:
  void made(Op op) { count(op).made++; }
  void ok(Op op) { count(op).ok++; }
  void failed(Op op, rjit::ErrorKind kind, const std::string& message) {
    std::lock_guard lock(mutex);
    if (failures[{op, rjit::errorKindName(kind)}]++ == 0)
      failureExamples[{op, rjit::errorKindName(kind)}] = message;
  }
  void lost(Op op, const std::string& what) {
    std::lock_guard lock(mutex);
    count(op).lost++;
    if (lostExamples.size() < 20)
      lostExamples.push_back(std::string(OP_NAMES[static_cast<size_t>(op)]) + ": " + what);
  }

  struct Counts {
    std::atomic<uint64_t> made{0}, ok{0}, lost{0};
  };
  Counts& count(Op op) { return counts[static_cast<size_t>(op)]; }

  std::mutex mutex;
  std::map<std::pair<Op, std::string>, uint64_t> failures;
  /// The first message of each (request, kind).
  std::map<std::pair<Op, std::string>, std::string> failureExamples;
  std::vector<std::string> lostExamples;

private:
  Counts counts[OPS];
};

/// rjitd for the run: one private socket and metrics port kept across restarts.
class SoakDaemon {
public:
  /// `directory` is a fresh private directory for the socket and the log; removed at the end.
  SoakDaemon(const fs::path& binary, const std::vector<std::string>& extra, fs::path directory)
      : dir(std::move(directory)) {
    metricsPort = rjitbench::freeTcpPort();
    argv = {binary.string(), "--listen", "unix:" + (dir / "rjitd.sock").string(), "--metrics",
            "127.0.0.1:" + std::to_string(metricsPort), "--jobs", "2", "--log-level", "warning",
            // Its own disk cache, kept across the run's restarts (warm restarts, SIGKILLs
            // during disk writes): never the user's ~/.cache/rjitd.
            "--cache-dir", (dir / "cache").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    start(false);
  }
  ~SoakDaemon() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }

  std::string address() const { return "unix:" + (dir / "rjitd.sock").string(); }
  pid_t pid() const { return pidNow.load(); }

  /// SIGKILL (or SIGTERM, waiting for the drain) and start again on the same socket. How the
  /// stopped one ended and how long that took.
  std::string restart(bool graceful) {
    auto start = Clock::now();
    std::string how;
    if (graceful) {
      bool killed = false;
      auto status = child->terminate(std::chrono::seconds(90), &killed);
      how = status.describe() + (killed ? " (SIGKILL after 90 s)" : "");
    } else {
      ::kill(child->pid(), SIGKILL);
      auto status = child->wait(std::chrono::seconds(30));
      how = status ? status->describe() : "not reaped in 30 s";
    }
    how += " in " + fixed(rjitbench::msSince(start), 0) + " ms";
    this->start(true);
    return how;
  }

  /// Stops for good (SIGTERM): how it ended.
  std::string stop() {
    bool killed = false;
    auto status = child->terminate(std::chrono::seconds(90), &killed);
    pidNow = -1;
    return status.describe() + (killed ? " (SIGKILL after 90 s)" : "");
  }

  fs::path dir;
  uint16_t metricsPort = 0;

private:
  void start(bool append) {
    rjitd::process::SpawnOptions options;
    options.argv = argv;
    options.env = rjitbench::childEnvironment();
    options.stdoutPath = options.stderrPath = (dir / "rjitd.log").string();
    options.appendOutput = append;
    child = rjitd::process::Subprocess::spawn(options);
    pidNow = child->pid();
  }

  std::vector<std::string> argv;
  std::unique_ptr<rjitd::process::Subprocess> child;
  std::atomic<pid_t> pidNow{-1};
};

/// The parent pid and command line of process `pid` (empty when it is gone).
std::pair<pid_t, std::string> processInfo(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line))
    return {0, ""};
  size_t paren = line.rfind(')');
  if (paren == std::string::npos)
    return {0, ""};
  std::istringstream rest(line.substr(paren + 2));
  char state;
  pid_t ppid = 0;
  rest >> state >> ppid;
  std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline");
  std::string cmdline((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
  std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
  return {ppid, cmdline};
}

/// rjitd's compile workers and executors (descendants within two generations).
struct Children {
  std::vector<pid_t> workers, executors;
};

Children childrenOf(pid_t daemon) {
  Children found;
  std::map<pid_t, std::pair<pid_t, std::string>> all;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0])))
      continue;
    pid_t pid = std::atoi(name.c_str());
    auto info = processInfo(pid);
    if (info.first != 0)
      all[pid] = info;
  }
  for (const auto& [pid, info] : all) {
    bool child = info.first == daemon;
    auto parent = all.find(info.first);
    bool grandchild = parent != all.end() && parent->second.first == daemon;
    if (!child && !grandchild)
      continue;
    if (info.second.find("--compile-worker") != std::string::npos)
      found.workers.push_back(pid);
    else if (info.second.find("rjitd-executor") != std::string::npos)
      found.executors.push_back(pid);
  }
  return found;
}

/// Compile workers and executors whose rjitd is gone (parent init or a subreaper), matched by
/// this run's binaries: a killed rjitd must not leave them behind.
size_t orphans(const std::string& rjitdPath, pid_t current) {
  size_t count = 0;
  std::string executorDir = fs::path(rjitdPath).parent_path().string();
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0])))
      continue;
    auto [ppid, cmdline] = processInfo(std::atoi(name.c_str()));
    bool ours =
        (cmdline.starts_with(rjitdPath + " ") &&
         cmdline.find("--compile-worker") != std::string::npos) ||
        (cmdline.starts_with(executorDir) && cmdline.find("rjitd-executor") != std::string::npos);
    if (ours && ppid != current && processInfo(ppid).second.find("rjitd") == std::string::npos)
      count++;
  }
  return count;
}

struct Sample;
void addRow(rjitbench::Table& table, const Sample& s);

/// One /proc sample of rjitd.
struct Sample {
  double seconds = 0;
  pid_t pid = 0;
  uint64_t rssKiB = 0;
  size_t fds = 0, workers = 0, executors = 0;
  /// The object cache's bytes and entries, from the same second's /metrics scrape.
  uint64_t cacheBytes = 0, cacheEntries = 0;
};

/// The value of the sample line `series` in a Prometheus text exposition, or 0.
uint64_t scraped(const std::string& exposition, const std::string& series) {
  size_t at = exposition.find("\n" + series + " ");
  return at == std::string::npos ? 0
                                 : static_cast<uint64_t>(std::strtod(
                                       exposition.c_str() + at + series.size() + 2, nullptr));
}

void addRow(rjitbench::Table& table, const Sample& s) {
  table.add({fixed(s.seconds, 0), std::to_string(s.pid), fixed(s.rssKiB / 1024.0, 1),
             std::to_string(s.fds), std::to_string(s.workers), std::to_string(s.executors),
             fixed(s.cacheBytes / 1048576.0, 1), std::to_string(s.cacheEntries)});
}

std::optional<Sample> sample(pid_t pid, double seconds) {
  Sample s;
  s.seconds = seconds;
  s.pid = pid;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  bool found = false;
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmRSS:")) {
      s.rssKiB = std::strtoull(line.c_str() + 6, nullptr, 10);
      found = true;
    }
  }
  if (!found)
    return std::nullopt;
  std::error_code error;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error);
       !error && it != fs::directory_iterator(); it.increment(error))
    s.fds++;
  auto children = childrenOf(pid);
  s.workers = children.workers.size();
  s.executors = children.executors.size();
  return s;
}

std::string functionModule(unsigned k) {
  return "define i64 @f" + std::to_string(k) + "(i64 %a, i64 %b) {\n  %m = mul i64 %a, " +
         std::to_string(k) + "\n  %s = add i64 %m, %b\n  ret i64 %s\n}\n";
}

rjit::CompileRequest request(const std::string& name, std::string module, unsigned level) {
  rjit::CompileRequest r;
  r.module = std::move(module);
  r.moduleName = name + ".ll";
  r.optLevel = level;
  return r;
}

/// One client thread: random steps until `end`.
class ClientThread {
public:
  ClientThread(unsigned index, const Config& config, const std::string& address, Tally& tally)
      : index(index), tally(tally), rng(config.seed * 1000003 + index) {
    rjit::ClientOptions options;
    options.servers = {address};
    options.timeout = milliseconds(config.timeoutMs);
    options.clientName = "soak-" + std::to_string(index);
    client = std::make_unique<rjit::Client>(options);
  }

  void run(Clock::time_point end) {
    while (Clock::now() < end) {
      Op op = static_cast<Op>(std::uniform_int_distribution<size_t>(0, OPS - 1)(rng));
      tally.made(op);
      step(op);
      // While rjitd restarts, connecting is refused at once: back off as a real client would
      // (50 ms doubling to 1 s), or the failed count measures only how fast a loop spins.
      if (backoff.count() > 0)
        std::this_thread::sleep_for(std::min(backoff, milliseconds(1000)));
    }
    executor.reset();
  }

private:
  void step(Op op) {
    // Often a module the cache has (k < 32 repeats), sometimes a new one (a real compile).
    bool fresh = std::bernoulli_distribution(0.3)(rng);
    unsigned k = fresh ? 1000 + static_cast<unsigned>(++nonce) * 64 + index
                       : std::uniform_int_distribution<unsigned>(1, 31)(rng);
    unsigned level = std::uniform_int_distribution<unsigned>(0, 3)(rng);
    int64_t a = std::uniform_int_distribution<int64_t>(-1000000, 1000000)(rng);
    int64_t b = std::uniform_int_distribution<int64_t>(-1000000, 1000000)(rng);
    int64_t expected = a * static_cast<int64_t>(k) + b;
    std::string symbol = "f" + std::to_string(k);
    bool valid = op != Op::CompileBad && op != Op::RemoteCrash;
    try {
      switch (op) {
      case Op::CompileGood: {
        auto object = client->compile(request(symbol, functionModule(k), level));
        bool defines = std::any_of(object.defines.begin(), object.defines.end(),
                                   [&](const rjit::Symbol& s) { return s.name == symbol; });
        if (object.object.empty() || !defines)
          return tally.lost(op, "object without " + symbol);
        break;
      }
      case Op::CompileBad: {
        std::string bad = "define i64 @g" + std::to_string(k) + "(i64 %a) {\n  ret i64 %nope\n}\n";
        client->compile(request("bad" + std::to_string(k), bad, level));
        return tally.lost(op, "invalid IR compiled");
      }
      case Op::LoadCall: {
        rjit::Module module = client->load(request(symbol, functionModule(k), level));
        auto f = module.lookup<int64_t(int64_t, int64_t)>(symbol);
        if (f == nullptr)
          return tally.lost(op, "no " + symbol + " in the loaded module");
        int64_t got = f(a, b);
        if (got != expected)
          return tally.lost(op, symbol + " returned " + std::to_string(got) + ", not " +
                                    std::to_string(expected));
        break;
      }
      case Op::RemoteCall: {
        auto module = remote().load(request(symbol, functionModule(k), level));
        int64_t got = module.call<int64_t>(symbol, a, b);
        if (got != expected)
          return tally.lost(op, "remote " + symbol + " returned " + std::to_string(got) + ", not " +
                                    std::to_string(expected));
        break;
      }
      case Op::RemoteRun: {
        unsigned status = k % 100;
        std::string program =
            "define i32 @main() {\n  ret i32 " + std::to_string(status) + "\n}\n; " + symbol;
        auto module = remote().load(request("main" + std::to_string(k), program, level));
        rjit::RunResult result = module.run({"soak"});
        if (result.signal != 0) {
          // Only the injector's SIGKILL can end this main with a signal: a fault, not a loss.
          executor.reset();
          tally.failed(op, rjit::ErrorKind::Crashed, "main died of " + result.signalName);
          return;
        }
        if (result.exitStatus != static_cast<int>(status))
          return tally.lost(op, "main returned " + std::to_string(result.exitStatus) + ", not " +
                                    std::to_string(status));
        break;
      }
      case Op::RemoteCrash: {
        std::string crash = "define i64 @crash" + std::to_string(k) +
                            "() {\n  %v = load volatile i64, ptr null\n  ret i64 %v\n}\n";
        auto module = remote().load(request("crash" + std::to_string(k), crash, level));
        module.call<int64_t>("crash" + std::to_string(k));
        return tally.lost(op, "a null dereference returned");
      }
      case Op::COUNT: break;
      }
      tally.ok(op);
    } catch (const rjit::Error& e) {
      // A remote call whose executor broke (killed, crashed): a new one for the next step.
      if (op >= Op::RemoteCall)
        executor.reset();
      if ((op == Op::CompileBad && e.kind() == rjit::ErrorKind::InvalidModule) ||
          (op == Op::RemoteCrash && e.kind() == rjit::ErrorKind::Crashed)) {
        backoff = milliseconds(0);
        return tally.ok(op);
      }
      if (valid && blamesTheRequest(e.kind()))
        return tally.lost(op, std::string("blamed on the request: ") +
                                  rjit::errorKindName(e.kind()) + ": " + e.what());
      tally.failed(op, e.kind(), e.what());
      if (e.kind() == rjit::ErrorKind::Connection || e.kind() == rjit::ErrorKind::ShuttingDown ||
          e.kind() == rjit::ErrorKind::Overloaded)
        backoff = std::max(milliseconds(50), backoff * 2);
      return;
    }
    backoff = milliseconds(0);
  }

  rjit::RemoteExecutor& remote() {
    if (!executor)
      executor = std::make_unique<rjit::RemoteExecutor>(client->executor());
    return *executor;
  }

  unsigned index;
  Tally& tally;
  std::mt19937_64 rng;
  uint64_t nonce = 0;
  std::unique_ptr<rjit::Client> client;
  std::unique_ptr<rjit::RemoteExecutor> executor;
  milliseconds backoff{0};
};

/// The fault injector's record.
struct Faults {
  uint64_t workers = 0, executors = 0, killed = 0, terminated = 0, none = 0;
  std::vector<std::string> restarts;  ///< how each stopped rjitd ended
};

int soak(const Config& config) {
  fs::path rjitd = config.rjitd.empty() ? rjitbench::selfDirectory() / ".." / "service" / "rjitd"
                                        : fs::path(config.rjitd);
  rjitd = fs::weakly_canonical(rjitd);
  if (::access(rjitd.c_str(), X_OK) != 0) {
    std::cerr << "error: no rjitd at " << rjitd.string()
              << " (meson compile -C BUILDDIR service/rjitd, or pass --rjitd)\n";
    return 1;
  }
  std::string pattern = (fs::temp_directory_path() / "rjit-soak.XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::cerr << "error: mkdtemp " << pattern << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  SoakDaemon daemon(rjitd, config.rjitdArgs, pattern);
  rjitbench::waitUntilServing(daemon.address(), nullptr);

  rjitbench::RunConditions conditions;
  auto begin = Clock::now();
  auto end = begin + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(config.minutes * 60));
  auto secondsNow = [&]() { return rjitbench::msSince(begin) / 1000; };
  std::cout << "soak: " << config.clients << " clients for " << config.minutes << " min, seed "
            << config.seed << ", a fault every " << config.faultSeconds << " s on average; rjitd "
            << rjitd.string() << " at " << daemon.address()
            << ", metrics on 127.0.0.1:" << daemon.metricsPort << std::endl;

  Tally tally;
  std::mutex doneMutex;
  std::condition_variable doneSignal;
  unsigned done = 0;
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < config.clients; ++i) {
    threads.emplace_back([&, i]() {
      ClientThread client(i, config, daemon.address(), tally);
      client.run(end);
      std::lock_guard lock(doneMutex);
      done++;
      doneSignal.notify_all();
    });
  }

  // The sampler and fault injector share this thread: a fault and a sample never overlap, so a
  // sample never reads a half-restarted rjitd.
  Faults faults;
  std::vector<Sample> samples;
  uint64_t scrapes = 0, scrapeFailures = 0;
  std::mt19937_64 rng(config.seed);
  std::exponential_distribution<double> gap(1.0 / config.faultSeconds);
  auto nextFault = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(gap(rng)));
  auto nextSample = Clock::now();
  while (Clock::now() < end) {
    auto now = Clock::now();
    if (now >= nextSample) {
      auto s = sample(daemon.pid(), secondsNow());
      std::string error;
      scrapes++;
      auto scrape = rjit::test::httpGet(daemon.metricsPort, "/metrics", &error);
      if (!scrape || scrape->status != 200)
        scrapeFailures++;
      if (s && scrape) {
        s->cacheBytes = scraped(scrape->body, R"(rjitd_cache_bytes{tier="memory"})");
        s->cacheEntries = scraped(scrape->body, R"(rjitd_cache_entries{tier="memory"})");
      }
      if (s)
        samples.push_back(*s);
      nextSample += std::chrono::seconds(1);
    }
    if (now >= nextFault) {
      double roll = std::uniform_real_distribution<double>(0, 1)(rng);
      auto children = childrenOf(daemon.pid());
      auto pick = [&](std::vector<pid_t>& pids) {
        return pids[std::uniform_int_distribution<size_t>(0, pids.size() - 1)(rng)];
      };
      if (!config.killRjitd)
        roll *= 0.8;  // the workers' and executors' share only
      if (roll < 0.4 && !children.workers.empty()) {
        ::kill(pick(children.workers), SIGKILL);
        faults.workers++;
      } else if (roll < 0.8 && !children.executors.empty()) {
        ::kill(pick(children.executors), SIGKILL);
        faults.executors++;
      } else if (roll >= 0.8 && roll < 0.92) {
        faults.restarts.push_back("t=" + fixed(secondsNow(), 0) +
                                  " s SIGKILL: " + daemon.restart(false));
        faults.killed++;
      } else if (roll >= 0.92) {
        faults.restarts.push_back("t=" + fixed(secondsNow(), 0) +
                                  " s SIGTERM: " + daemon.restart(true));
        faults.terminated++;
      } else {
        faults.none++;  // nothing of that kind was running
      }
      nextFault = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(gap(rng)));
    }
    std::this_thread::sleep_until(std::min({nextSample, nextFault, end}));
  }

  // The clients finish their last step within their deadline (a restart in it included); one
  // that does not is a request that never got an answer.
  auto bound = std::chrono::milliseconds(config.timeoutMs) * 2 + std::chrono::seconds(30);
  uint64_t hung = 0;
  {
    std::unique_lock lock(doneMutex);
    doneSignal.wait_for(lock, bound, [&]() { return done == config.clients; });
    hung = config.clients - done;
  }
  conditions.finish();
  auto leftAfterRun = orphans(rjitd.string(), daemon.pid());
  std::string stopped = daemon.stop();

  // --- report ---
  std::cout << "\nran " << fixed(conditions.wallSeconds, 0) << " s; " << conditions.describe()
            << "\nmachine: " << rjitbench::machineInfo().dump() << "\n\n";
  uint64_t made = 0, ok = 0, lost = hung, failed = 0;
  rjitbench::Table table({"request", "made", "ok", "failed", "lost"});
  for (size_t i = 0; i < OPS; ++i) {
    auto& c = tally.count(static_cast<Op>(i));
    uint64_t f = 0;
    for (const auto& [key, n] : tally.failures)
      if (key.first == static_cast<Op>(i))
        f += n;
    table.add({OP_NAMES[i], std::to_string(c.made), std::to_string(c.ok), std::to_string(f),
               std::to_string(c.lost)});
    made += c.made;
    ok += c.ok;
    failed += f;
    lost += c.lost;
  }
  table.add({"total", std::to_string(made), std::to_string(ok), std::to_string(failed),
             std::to_string(lost)});
  table.print(std::cout);
  std::cout << "\nfailed, by request and kind:\n";
  for (const auto& [key, n] : tally.failures)
    std::cout << "  " << OP_NAMES[static_cast<size_t>(key.first)] << " " << key.second << ": " << n
              << " (first: " << tally.failureExamples[key] << ")\n";
  std::cout << "lost: " << lost << " (" << hung << " never answered)\n";
  for (const auto& example : tally.lostExamples)
    std::cout << "  " << example << "\n";
  std::cout << "\nfaults: " << faults.workers << " compile workers and " << faults.executors
            << " executors SIGKILLed, rjitd SIGKILLed " << faults.killed << " and SIGTERMed "
            << faults.terminated << " times (restarted each time), " << faults.none
            << " picks found nothing of their kind running\n";
  for (const auto& r : faults.restarts)
    std::cout << "  " << r << "\n";
  std::cout << "metrics scrapes: " << scrapes << ", failed " << scrapeFailures
            << " (failures only while rjitd restarts)\n";
  std::cout << "final stop: " << stopped
            << "; orphaned workers/executors after the run: " << leftAfterRun << "\n\n";

  // RSS and fds over time: every sample's maximum per tenth of the run, and overall.
  rjitbench::Table over(
      {"t (s)", "rjitd pid", "RSS MiB", "fds", "workers", "executors", "cache MiB", "entries"});
  Sample peak;
  size_t peakFds = 0;
  if (!samples.empty()) {
    size_t step = std::max<size_t>(1, samples.size() / 10);
    for (size_t i = 0; i < samples.size(); i += step) {
      const Sample& s = samples[i];
      addRow(over, s);
    }
    addRow(over, samples.back());
    for (const Sample& x : samples) {
      if (x.rssKiB > peak.rssKiB)
        peak = x;
      peakFds = std::max(peakFds, x.fds);
    }
  }
  over.print(std::cout);
  // Growth within each rjitd that lived a minute or more: a leak shows here, not in the peaks.
  std::cout << "\nrjitd processes that lived 60 s or more (first and last sample):\n";
  rjitbench::Table lives({"rjitd pid", "from (s)", "to (s)", "RSS MiB", "fds", "cache MiB"});
  for (size_t first = 0; first < samples.size();) {
    size_t last = first;
    while (last + 1 < samples.size() && samples[last + 1].pid == samples[first].pid)
      last++;
    const Sample& a = samples[first];
    const Sample& b = samples[last];
    if (b.seconds - a.seconds >= 60)
      lives.add({std::to_string(a.pid), fixed(a.seconds, 0), fixed(b.seconds, 0),
                 fixed(a.rssKiB / 1024.0, 1) + " -> " + fixed(b.rssKiB / 1024.0, 1),
                 std::to_string(a.fds) + " -> " + std::to_string(b.fds),
                 fixed(a.cacheBytes / 1048576.0, 1) + " -> " + fixed(b.cacheBytes / 1048576.0, 1)});
    first = last + 1;
  }
  lives.print(std::cout);
  std::cout << "peak: RSS " << fixed(peak.rssKiB / 1024.0, 1)
            << " MiB (t=" << fixed(peak.seconds, 0) << " s), " << peakFds << " fds; "
            << samples.size() << " samples\n";
  if (hung > 0) {
    // A thread stuck in a call cannot be joined: report and leave.
    std::cout.flush();
    std::_Exit(1);
  }
  for (auto& t : threads)
    t.join();
  return lost == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Config config;
  CLI::App app{"soak: rjitd under load and fault injection (docs/RELIABILITY.md)"};
  app.add_option("--minutes", config.minutes, "how long the clients run")->capture_default_str();
  app.add_option("--clients", config.clients, "client threads")->capture_default_str();
  app.add_option("--seed", config.seed, "seed of every random choice (clients and faults)")
      ->capture_default_str();
  app.add_option("--fault-seconds", config.faultSeconds, "mean time between faults, seconds")
      ->capture_default_str();
  app.add_option("--timeout-ms", config.timeoutMs, "each client call's deadline")
      ->capture_default_str();
  app.add_flag("!--no-kill-rjitd", config.killRjitd,
               "kill only compile workers and executors (rjitd lives the whole run, so its RSS "
               "and fds over time show any leak)");
  app.add_option("--rjitd", config.rjitd, "rjitd binary (default: this build's service/rjitd)");
  app.add_option("--rjitd-arg", config.rjitdArgs, "appended to rjitd's command line")
      ->allow_extra_args(false);
  CLI11_PARSE(app, argc, argv);
  if (config.clients == 0 || config.minutes <= 0 || config.faultSeconds <= 0) {
    std::cerr << "error: --clients, --minutes and --fault-seconds must be positive\n";
    return 2;
  }
  // A client whose connection is cut by a restart must not die of SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  try {
    return soak(config);
  } catch (const std::exception& e) {
    // The run's own setup failed (rjitd not found, no such directory): say why and stop.
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const kj::Exception& e) {
    // Subprocess::spawn reports a child that cannot be started this way.
    std::cerr << "error: " << e.getDescription().cStr() << "\n";
    return 1;
  }
}
