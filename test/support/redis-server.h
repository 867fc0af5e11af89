// SPDX-License-Identifier: MIT
// A real redis-server for tests, on a private Unix socket (and optionally a loopback TCP port)
// in its own temporary directory, which a test can stop, kill, pause (SIGSTOP), resume and
// restart, and talk to directly through hiredis.
#pragma once

#include "daemon-process.h"
#include "temp-dir.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace rjit::test {

struct RedisOptions {
  /// Nonzero: also serve TCP on 127.0.0.1 (e.g. freeTcpPort()).
  uint16_t tcpPort = 0;
  /// Appended to redis-server's command line, e.g. {"--maxmemory", "1mb"}.
  std::vector<std::string> extraArgs;
  /// Nonempty: the server asks for it (--requirepass); command() and the readiness check
  /// authenticate with it.
  std::string password;
};

/// One reply of a raw command (RedisServer::command), flattened for assertions.
struct RedisReply {
  enum class Kind : uint8_t { Failed, Nil, String, Status, Integer, Error, Array };
  Kind kind = Kind::Failed;
  std::string text;  ///< String, Status and Error replies; hiredis's message for Failed
  long long integer = 0;
};

/// redis-server (path from $REDIS_SERVER_BIN, else /usr/bin/redis-server) with no persistence
/// (`--save ""`, `--appendonly no`), its working directory, socket and log in a TempDir. The
/// destructor kills a server still running (a paused one too).
class RedisServer final {
public:
  /// Starts the server and returns once it answers PING on its Unix socket. Records a failure
  /// carrying the server's log and returns nullptr when it cannot start or does not answer
  /// within SAFETY_BOUND.
  static std::unique_ptr<RedisServer> start(RedisOptions options = {});
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  const std::string& socketPath() const { return socketPath_; }
  /// "unix:/tmp/rjit-test-XXXXXX/redis.sock" (SharedCacheConfig::address, rjitd's
  /// --shared-cache).
  std::string address() const { return "unix:" + socketPath_; }
  /// "redis://127.0.0.1:PORT", or "" without TCP.
  std::string tcpAddress() const;
  pid_t pid() const { return child_->pid(); }
  bool running() const { return child_ != nullptr && !child_->status().has_value(); }

  /// SIGTERM, then waits (bounded; SIGKILL and a recorded failure past SAFETY_BOUND).
  void stop();
  /// SIGKILL and reap.
  void kill();
  /// SIGSTOP: the server keeps its sockets and accepts connections (the kernel's backlog) but
  /// answers nothing: a hung Redis.
  void pause();
  /// SIGCONT after pause().
  void resume();
  /// After stop() or kill(): starts a new server on the same socket, port and directory (an
  /// empty one: nothing persists). Returns false (with a recorded failure) if it does not come
  /// up.
  bool restart();

  /// Runs one command on a fresh connection (binary-safe arguments), bounded by a 5 s socket
  /// timeout. Kind::Failed when the server cannot be reached or did not answer.
  RedisReply command(const std::vector<std::string>& args) const;
  /// Everything the server logged so far.
  std::string log() const;

private:
  struct Key {
    explicit Key() = default;
  };

public:
  /// Only start() constructs (the key is private).
  RedisServer(Key, RedisOptions options);

private:
  bool launch();
  bool paused_ = false;
  RedisOptions options_;
  TempDir dir_;
  std::string socketPath_;
  std::string logPath_;
  std::unique_ptr<ChildProcess> child_;
};

}  // namespace rjit::test
