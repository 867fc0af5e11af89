// SPDX-License-Identifier: MIT
// The test end of rjitd's test-only compile gates (rjitd --test-compile-gate PATH, or
// --test-worker-gate PATH): holds each compile rjitd starts (or only those of one module) until
// the test lets it go, so a test sees a compile in flight as an event and decides when it ends,
// whatever the module's size or the machine's speed.
#pragma once

#include "daemon-process.h"

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace rjit::test {

/// A Unix socket rjitd connects to before each compile, writing the module's name: from a
/// compile thread before the compile worker gets the module (daemonArgs(), see
/// rjitd::service::ServiceConfig::compileGate), or from the compile worker process after it has
/// read the request (workerDaemonArgs(), see rjitd::service::runCompileWorker). Both speak the
/// same protocol (rjitd::service::waitAtTestGate). A compile is held while its connection
/// is open; closing the connection lets it go. A thread of the gate's own takes each arrival as
/// it comes: it lets the compiles of other modules go at once (when the gate holds only one
/// module's) and queues the others for waitArrival(). The methods are for one test thread.
class CompileGate final {
public:
  /// Listens at `path` (which must not exist). Holds the compiles of `onlyModule` (a module
  /// name as the client sent it), or of every module when it is nullopt; lets the others go as
  /// soon as they arrive, so that a test can hold one compile while a load runs beside it.
  /// nullptr, with a recorded failure, on error.
  static std::unique_ptr<CompileGate> create(std::string path,
                                             std::optional<std::string> onlyModule = std::nullopt);
  /// Lets every compile go (open()).
  ~CompileGate();
  CompileGate(const CompileGate&) = delete;
  CompileGate& operator=(const CompileGate&) = delete;

  /// rjitd's arguments for this gate: {"--test-compile-gate", path}.
  std::vector<std::string> daemonArgs() const;
  /// rjitd's arguments for this gate inside the compile workers: {"--test-worker-gate", path}.
  /// A compile held there has its worker process, which the test can kill.
  std::vector<std::string> workerDaemonArgs() const;

  /// Waits (bounded by SAFETY_BOUND) for the next compile the gate holds to arrive and keeps
  /// holding it; returns its module name. nullopt, with a recorded failure, when none arrives
  /// within the bound.
  std::optional<std::string> waitArrival();
  /// Whether a compile the gate holds has arrived that waitArrival() has not taken yet. Does
  /// not wait for compiles still to come, only (bounded) for the gate's thread to read the names
  /// of those that have already connected.
  bool arrivalPending();
  /// Compiles taken by waitArrival() and held now.
  size_t held() const { return holding.size(); }
  /// Lets the compiles taken by waitArrival() go; compiles arriving later are held again.
  void releaseHeld();
  /// Stops holding for good: lets the held compiles and any that knock go, and closes the
  /// socket, so that rjitd compiles at once from then on.
  void open();

private:
  struct Key {
    explicit Key() = default;
  };

public:
  /// Only create() constructs (the key is private).
  CompileGate(Key, std::string path, std::optional<std::string> onlyModule,
              kj::AutoCloseFd listener, kj::AutoCloseFd stopEvent);

private:
  /// The gate's thread: accepts each arrival, reads its module name, and queues it in
  /// `arrivals` or lets it go. Ends when `stopEvent` is signalled.
  void serve();
  /// The module name rjitd writes after connecting; nullopt when it sends none or the gate stops.
  std::optional<std::string> readName(int fd);
  bool backlogWaiting() const;

  const std::string path;
  const std::optional<std::string> onlyModule;
  kj::AutoCloseFd listener;
  kj::AutoCloseFd stopEvent;  ///< an eventfd; written once, by open()
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<std::pair<std::string, kj::AutoCloseFd>> arrivals;  // guarded by mutex
  bool reading = false;                                          // guarded by mutex: serve() has
                                                                 // accepted one and reads its name
  bool serving = true;                                           // guarded by mutex
  std::vector<kj::AutoCloseFd> holding;                          // the test thread's only
  std::thread thread;                                            // last: it uses everything above
};

}  // namespace rjit::test
