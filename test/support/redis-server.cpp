// SPDX-License-Identifier: MIT
// A real redis-server for tests (see redis-server.h).
#include "redis-server.h"

#include <cstdlib>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>

namespace rjit::test {
namespace {

using Clock = std::chrono::steady_clock;

struct ContextFree {
  void operator()(redisContext* context) const { redisFree(context); }
};
struct ReplyFree {
  void operator()(redisReply* reply) const { freeReplyObject(reply); }
};

RedisReply flatten(const redisReply* reply) {
  RedisReply out;
  switch (reply->type) {
  case REDIS_REPLY_NIL: out.kind = RedisReply::Kind::Nil; break;
  case REDIS_REPLY_STRING: out.kind = RedisReply::Kind::String; break;
  case REDIS_REPLY_STATUS: out.kind = RedisReply::Kind::Status; break;
  case REDIS_REPLY_INTEGER: out.kind = RedisReply::Kind::Integer; break;
  case REDIS_REPLY_ERROR: out.kind = RedisReply::Kind::Error; break;
  case REDIS_REPLY_ARRAY: out.kind = RedisReply::Kind::Array; break;
  default: out.kind = RedisReply::Kind::Failed; break;
  }
  if (reply->str != nullptr)
    out.text.assign(reply->str, reply->len);
  out.integer =
      reply->type == REDIS_REPLY_ARRAY ? static_cast<long long>(reply->elements) : reply->integer;
  return out;
}

/// One command on a fresh connection to `socketPath` (after AUTH `password` unless empty),
/// bounded by `timeout` per step.
RedisReply runCommand(const std::string& socketPath, const std::vector<std::string>& args,
                      std::chrono::milliseconds timeout, const std::string& password) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  std::unique_ptr<redisContext, ContextFree> context(
      redisConnectUnixWithTimeout(socketPath.c_str(), tv));
  RedisReply out;
  if (context == nullptr || context->err != 0) {
    out.text = context == nullptr ? "cannot allocate a context" : context->errstr;
    return out;
  }
  redisSetTimeout(context.get(), tv);
  if (!password.empty()) {
    std::unique_ptr<redisReply, ReplyFree> auth(static_cast<redisReply*>(
        redisCommand(context.get(), "AUTH %b", password.data(), password.size())));
    if (auth == nullptr || auth->type == REDIS_REPLY_ERROR)
      return auth == nullptr ? (out.text = context->errstr, out) : flatten(auth.get());
  }
  std::vector<const char*> argv;
  std::vector<size_t> lengths;
  for (auto& arg : args) {
    argv.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  std::unique_ptr<redisReply, ReplyFree> reply(static_cast<redisReply*>(
      redisCommandArgv(context.get(), static_cast<int>(argv.size()), argv.data(), lengths.data())));
  if (reply == nullptr) {
    out.text = context->errstr;
    return out;
  }
  return flatten(reply.get());
}

}  // namespace

RedisServer::RedisServer(Key, RedisOptions options)
    : options_(std::move(options)), socketPath_(dir_.file("redis.sock")),
      logPath_(dir_.file("redis.log")) {}

std::unique_ptr<RedisServer> RedisServer::start(RedisOptions options) {
  auto server = std::make_unique<RedisServer>(Key{}, std::move(options));
  if (!server->launch())
    return nullptr;
  return server;
}

RedisServer::~RedisServer() {
  if (running()) {
    // SIGKILL ends a stopped process too; ChildProcess's destructor sends it and reaps.
    child_.reset();
  }
  if (::testing::Test::HasFailure())
    std::cerr << "--- redis-server log (" << logPath_ << ") ---\n" << log() << "---\n";
}

std::string RedisServer::tcpAddress() const {
  return options_.tcpPort == 0 ? "" : "redis://127.0.0.1:" + std::to_string(options_.tcpPort);
}

bool RedisServer::launch() {
  const char* binary = std::getenv("REDIS_SERVER_BIN");
  std::string program = binary != nullptr && binary[0] != '\0' ? binary : "/usr/bin/redis-server";
  // Everything on the command line (no config file): a private socket only this user may use,
  // no persistence (each start is empty), a working directory of its own.
  std::vector<std::string> argv = {program,
                                   "--port",
                                   std::to_string(options_.tcpPort),
                                   "--bind",
                                   "127.0.0.1",
                                   "--unixsocket",
                                   socketPath_,
                                   "--unixsocketperm",
                                   "700",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--dir",
                                   dir_.path(),
                                   "--daemonize",
                                   "no"};
  if (!options_.password.empty())
    argv.insert(argv.end(), {"--requirepass", options_.password});
  argv.insert(argv.end(), options_.extraArgs.begin(), options_.extraArgs.end());
  SpawnOptions spawn;
  spawn.argv = argv;
  spawn.env = environmentWith({});
  spawn.stdoutPath = logPath_;
  spawn.stderrPath = logPath_;
  spawn.appendOutput = true;
  child_ = ChildProcess::spawn(spawn);
  if (child_ == nullptr)
    return false;
  paused_ = false;

  // Ready once it answers PING; polled every 10 ms, and the child's exit ends the wait at once.
  auto deadline = Clock::now() + SAFETY_BOUND;
  while (Clock::now() < deadline) {
    RedisReply pong =
        runCommand(socketPath_, {"PING"}, std::chrono::milliseconds(1000), options_.password);
    if (pong.kind == RedisReply::Kind::Status && pong.text == "PONG")
      return true;
    pollfd exit{child_->exitFd(), POLLIN, 0};
    if (::poll(&exit, 1, 10) > 0) {
      auto status = child_->wait();
      ADD_FAILURE() << "redis-server exited before it answered PING ("
                    << (status ? status->describe() : "?") << "); its log:\n"
                    << log();
      return false;
    }
  }
  ADD_FAILURE() << "redis-server did not answer PING within the safety bound; its log:\n" << log();
  return false;
}

void RedisServer::stop() {
  if (!running())
    return;
  if (paused_)
    resume();
  bool killed = false;
  child_->terminate(SAFETY_BOUND, &killed);
  if (killed)
    ADD_FAILURE() << "redis-server did not stop on SIGTERM within the safety bound";
}

void RedisServer::kill() {
  if (!running())
    return;
  child_->signal(SIGKILL);
  child_->wait();
  paused_ = false;
}

void RedisServer::pause() {
  child_->signal(SIGSTOP);
  paused_ = true;
}

void RedisServer::resume() {
  child_->signal(SIGCONT);
  paused_ = false;
}

bool RedisServer::restart() {
  if (running()) {
    ADD_FAILURE() << "RedisServer::restart() while the server runs: stop() or kill() it first";
    return false;
  }
  return launch();
}

RedisReply RedisServer::command(const std::vector<std::string>& args) const {
  return runCommand(socketPath_, args, std::chrono::milliseconds(5000), options_.password);
}

std::string RedisServer::log() const {
  return process::readWholeFile(logPath_);
}

}  // namespace rjit::test
