// SPDX-License-Identifier: MIT
// Remote execute against a real rjitd, its real executors, the real client library and the real
// `rjit` CLI: typed calls of every value type, signature mismatches, code that crashes, hangs,
// runs out of memory, exits, breaks the sandbox or floods its output (each an error of its kind
// for that call only, then a fresh executor, and the same rjitd), executors that end with their
// client, concurrent clients, TCP and Unix, the shared segment, programs, and the limits.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <kj/common.h>
#include <kj/io.h>
#include <latch>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "fixture.h"

namespace rjit::test {
namespace {

/// Upper bound for the polling loops below: each iteration reads /proc or is a round trip to
/// rjitd, so they end long before on a working daemon; reaching it is a failure.
constexpr unsigned MAX_POLLS = 1'000'000;

/// rjitd's limits for the tests of misbehaving code: executors of 768 MiB address space (the
/// allocations exhaust it; still room for the executor itself and for a shared segment of up
/// to half of it), the default 8 MiB of output, and a deadline of 60 s, which only the code
/// that hangs reaches (filling 768 MiB can take seconds on a loaded machine); the deadline
/// tests (ExecuteDeadlineTest) run against an rjitd whose deadline is 1 s.
constexpr const char* EXECUTE_TIMEOUT_SECONDS = "60";
constexpr const char* SHORT_EXECUTE_TIMEOUT_SECONDS = "1";
constexpr uint64_t EXECUTOR_MEMORY = 768ull << 20;

/// Sanitizer builds (test/run-all.sh's build-asan) run executors without RLIMIT_AS (the
/// sanitizer's shadow memory is terabytes of address space; service/executor/sandbox.cpp):
/// their memory limit cannot be tested there, and is in the plain build.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool EXECUTOR_MEMORY_LIMITED = false;
#else
constexpr bool EXECUTOR_MEMORY_LIMITED = true;
#endif

/// rjitd's executor processes' name (/proc/PID/comm); an aarch64 executor is qemu's process
/// ("qemu-aarch64" or "qemu-aarch64-st", the static one's name cut to 15 characters).
constexpr std::string_view EXECUTOR_NAME = "rjitd-executor";
constexpr std::string_view EMULATED_EXECUTOR_NAME = "qemu-aarch64";

/// The aarch64 rjitd-executor of the cross build (meson -Daarch64_executor), "" when not built.
std::string aarch64Executor() {
  const char* path = std::getenv("RJITD_AARCH64_EXECUTOR_BIN");
  return path != nullptr ? path : "";
}

/// 64 MiB: the large-buffer case.
constexpr uint64_t BIG = 64ull << 20;

/// What a failed call threw: an ExecError's parts, or a plain Error's kind and message.
struct Failure {
  ErrorKind kind = ErrorKind::Internal;
  std::string message;
  int signal = 0;
  int exitStatus = 0;
  ExecOutput output;
};

/// The failure `call` throws; nullopt, with a recorded failure, when it returns.
template <typename Call> std::optional<Failure> catchFailure(Call&& call) {
  try {
    call();
  } catch (const ExecError& e) {
    return Failure{e.kind(), e.what(), e.signal(), e.exitStatus(), e.output()};
  } catch (const Error& e) {
    return Failure{e.kind(), e.what(), 0, 0, {}};
  }
  ADD_FAILURE() << "expected an rjit::Error, but the call succeeded";
  return std::nullopt;
}

/// `failure`'s kind is `expected` (compared by name, so that a failure shows both). Nothing
/// more to check without a failure: catchFailure has recorded that already.
void expectKind(const std::optional<Failure>& failure, ErrorKind expected) {
  if (!failure.has_value())
    return;
  EXPECT_STREQ(errorKindName(failure->kind), errorKindName(expected)) << failure->message;
}

/// A request for a module the build compiled from test/data (genPath name, e.g.
/// "exec-typed.ll").
CompileRequest moduleRequest(const std::string& name) {
  CompileRequest request;
  request.module = readFile(genPath(name));
  request.moduleName = name;
  request.optLevel = 1;
  return request;
}

/// The contents of a /proc file, "" when it cannot be read: the process may end while it is
/// read, and libstdc++'s streams throw on such a read error (ESRCH), so plain read(2).
std::string readProcFile(const std::string& path) {
  kj::AutoCloseFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::string text;
  if (fd.get() < 0)
    return text;
  char chunk[4096];
  for (unsigned reads = 0; reads < 1024; ++reads) {  // bounded: /proc files are small
    ssize_t n = ::read(fd.get(), chunk, sizeof chunk);
    if (n <= 0)
      break;
    text.append(chunk, static_cast<size_t>(n));
  }
  return text;
}

/// The command name of process `pid` (/proc/PID/comm), "" once gone.
std::string processName(pid_t pid) {
  std::string name = readProcFile("/proc/" + std::to_string(pid) + "/comm");
  if (!name.empty() && name.back() == '\n')
    name.pop_back();
  return name;
}

/// The state letter of process `pid` from /proc/PID/stat ('R', 'S', 'Z', ...); 0 once gone.
char processState(pid_t pid) {
  std::string stat = readProcFile("/proc/" + std::to_string(pid) + "/stat");
  size_t end = stat.rfind(')');  // after the command name, which may hold spaces
  return end == std::string::npos || end + 2 >= stat.size() ? 0 : stat[end + 2];
}

/// rjitd's (`daemon`'s) child processes named rjitd-executor, zombies included (an executor
/// not yet reaped is still left behind).
std::vector<pid_t> executorsOf(pid_t daemon) {
  std::vector<pid_t> pids;
  std::error_code ec;
  std::string tasks = "/proc/" + std::to_string(daemon) + "/task";
  // increment(ec), not ++: a task that ends meanwhile must not throw.
  for (std::filesystem::directory_iterator task(tasks, ec), end; !ec && task != end;
       task.increment(ec)) {
    std::istringstream children(readProcFile(task->path() / "children"));
    for (pid_t pid; children >> pid;)
      if (std::string name = processName(pid);
          name == EXECUTOR_NAME || name.starts_with(EMULATED_EXECUTOR_NAME))
        pids.push_back(pid);
  }
  std::sort(pids.begin(), pids.end());
  return pids;
}

/// Waits (bounded) until rjitd has exactly `count` executors; false, with a recorded failure,
/// when the bound passes first.
bool waitExecutors(pid_t daemon, size_t count) {
  size_t seen = 0;
  for (unsigned polls = 0; polls < MAX_POLLS; ++polls) {
    seen = executorsOf(daemon).size();
    if (seen == count)
      return true;
  }
  ADD_FAILURE() << "rjitd has " << seen << " executors, not " << count;
  return false;
}

/// Waits (bounded) until an executor of rjitd (`daemon`) has written `text` to its stdout, which
/// is a memfd rjitd holds (service/executor-process.cpp) and reads through /proc/PID/fd (the
/// executor itself is not dumpable); false, with a recorded failure, when the bound passes first.
bool waitExecutorStdout(pid_t daemon, std::string_view text) {
  std::string fds = "/proc/" + std::to_string(daemon) + "/fd";
  for (unsigned polls = 0; polls < MAX_POLLS; ++polls) {
    std::error_code ec;
    // increment(ec), not ++: a descriptor closed meanwhile must not throw.
    for (std::filesystem::directory_iterator fd(fds, ec), end; !ec && fd != end; fd.increment(ec)) {
      std::error_code linkError;
      auto target = std::filesystem::read_symlink(fd->path(), linkError).string();
      if (!linkError && target.starts_with("/memfd:rjitd-executor-stdout") &&
          readProcFile(fd->path()).find(text) != std::string::npos)
        return true;
    }
  }
  ADD_FAILURE() << "no executor of rjitd wrote " << text;
  return false;
}

/// `rjit ARGS...` run with RJIT_SERVER = `server`, stdin from `stdinPath`, env additions.
CommandResult runRjit(const TempDir& dir, std::vector<std::string> args, const std::string& server,
                      const std::string& stdinPath = "/dev/null",
                      std::vector<std::pair<std::string, std::string>> env = {}) {
  const char* bin = std::getenv("RJIT_BIN");
  EXPECT_NE(bin, nullptr) << "RJIT_BIN is not set (run the tests through meson test)";
  args.insert(args.begin(), bin != nullptr ? bin : "rjit");
  env.emplace_back("RJIT_SERVER", server);
  SpawnOptions spawn;
  spawn.argv = args;
  spawn.env = environmentWith(env, {"RJIT_TIMEOUT_MS", "RJIT_HASH_FIRST_BYTES"});
  spawn.stdinPath = stdinPath;
  spawn.stdoutPath = dir.file("rjit.out");
  spawn.stderrPath = dir.file("rjit.err");
  CommandResult result;
  auto child = ChildProcess::spawn(spawn);
  if (child == nullptr) {
    result.status.raw = 127 << 8;
    return result;
  }
  auto status = child->wait();
  EXPECT_TRUE(status.has_value()) << "rjit did not exit within the safety bound";
  result.status = status.value_or(ExitStatus{});
  result.out = readFile(dir.file("rjit.out"));
  result.err = readFile(dir.file("rjit.err"));
  return result;
}

class ExecuteTest : public DaemonTest {
protected:
  /// A client with an executor and exec-typed.ll loaded in it. Members are destroyed in
  /// reverse order: the module, then the executor, then the client.
  struct Session {
    std::unique_ptr<Client> client;
    std::optional<RemoteExecutor> executor;
    std::optional<RemoteModule> module;

    /// Releases all three (in that order): the client disconnects.
    void end() {
      module.reset();
      executor.reset();
      client.reset();
    }
  };

  /// The target of the suite's executors: "" for rjitd's own (x86_64), "aarch64".
  virtual std::string target() const { return ""; }

  /// The genPath name of test/data module `file` built for target(): "exec-typed.ll", or
  /// "exec-typed-aarch64.ll".
  std::string moduleFor(const std::string& file) const {
    if (target().empty())
      return file;
    return file.substr(0, file.rfind('.')) + "-" + target() + ".ll";
  }

  Session typedSession(const ClientOptions& options) {
    Session s;
    s.client = std::make_unique<Client>(options);
    s.executor.emplace(s.client->executor(target()));
    s.module.emplace(s.executor->load(moduleRequest(moduleFor("exec-typed.ll"))));
    return s;
  }

  /// Every scalar type through the typed API, results checked.
  static void expectScalarCalls(RemoteModule& module) {
    EXPECT_EQ(module.call<int64_t>("add", int64_t{2}, int64_t{40}), 42);
    EXPECT_EQ(module.call<bool>("flip", true), false);
    EXPECT_EQ(module.call<bool>("flip", false), true);
    EXPECT_EQ(module.call<int8_t>("neg_i8", int8_t{-127}), 127);
    EXPECT_EQ(module.call<uint8_t>("inc_u8", uint8_t{254}), 255);  // zeroext: not -1
    EXPECT_EQ(module.call<uint8_t>("inc_u8", uint8_t{255}), 0);
    EXPECT_EQ(module.call<int16_t>("neg_i16", int16_t{-300}), 300);
    EXPECT_EQ(module.call<uint16_t>("inc_u16", uint16_t{65534}), 65535);
    EXPECT_EQ(module.call<int32_t>("neg_i32", int32_t{INT32_MIN + 1}), INT32_MAX);
    EXPECT_EQ(module.call<uint32_t>("inc_u32", uint32_t{4294967294u}), 4294967295u);
    EXPECT_EQ(module.call<int64_t>("neg_i64", int64_t{INT64_MAX}), -INT64_MAX);
    EXPECT_EQ(module.call<uint64_t>("same_u64", UINT64_MAX), UINT64_MAX);
    EXPECT_EQ(module.call<uint64_t>("dec_u64", uint64_t{0}), UINT64_MAX);
    EXPECT_EQ(module.call<int32_t>("popcount_u64", UINT64_MAX), 64);
    EXPECT_EQ(module.call<float>("half_f32", 3.0f), 1.5f);
    EXPECT_EQ(module.call<double>("scale_f64", 1.25, 4.0), 5.0);
    EXPECT_EQ(module.call<int64_t>("length", "hello, world"), 12);
    EXPECT_EQ(module.call<int64_t>("length", std::string("four")), 4);
    EXPECT_EQ(module.call<int64_t>("length", ""), 0);
    EXPECT_EQ(module.call<int32_t>("is_null", nullptr), 1);
  }

  /// Buffers in, out and in-out through `executor` (shared or copied, as it decides).
  static void expectBufferCalls(RemoteExecutor& executor, RemoteModule& module) {
    Buffer in = executor.buffer(ElementType::F64, 4, Direction::In);
    EXPECT_EQ(in.count(), 4u);
    EXPECT_EQ(in.element(), ElementType::F64);
    EXPECT_EQ(in.direction(), Direction::In);
    EXPECT_EQ(in.shared(), executor.sharedMemory());
    for (size_t i = 0; i < 4; ++i)
      in.as<double>()[i] = 0.5 + static_cast<double>(i);  // 0.5 + 1.5 + 2.5 + 3.5
    EXPECT_EQ(module.call<double>("sum_f64", in, uint64_t{4}), 8.0);

    Buffer out = executor.buffer(ElementType::I32, 5, Direction::Out);
    EXPECT_EQ(out.shared(), executor.sharedMemory());
    module.call<void>("squares_i32", out, uint64_t{5});
    for (int32_t i = 0; i < 5; ++i)
      EXPECT_EQ(out.as<int32_t>()[i], i * i) << "element " << i;

    Buffer both = executor.buffer(ElementType::U16, 3, Direction::InOut);
    uint16_t* values = both.as<uint16_t>();
    values[0] = 1, values[1] = 300, values[2] = 32768;
    module.call<void>("double_u16", both, uint64_t{3});
    EXPECT_EQ(both.as<uint16_t>()[0], 2);
    EXPECT_EQ(both.as<uint16_t>()[1], 600);
    EXPECT_EQ(both.as<uint16_t>()[2], 0);  // wrapped as a uint16_t does
  }

  /// A 64 MiB in-buffer summed by the callee, then a 64 MiB out-buffer it fills.
  static void expectBigBuffer(RemoteExecutor& executor, RemoteModule& module) {
    Buffer in = executor.buffer(ElementType::U8, BIG, Direction::In);
    std::memset(in.data(), 1, BIG);
    in.as<uint8_t>()[BIG - 1] = 3;
    EXPECT_EQ(module.call<uint64_t>("sum_u8", in, BIG), BIG + 2);
    Buffer out = executor.buffer(ElementType::U8, BIG, Direction::Out);
    module.call<void>("fill_u8", out, BIG, uint8_t{0xa5});
    const uint8_t* bytes = out.as<uint8_t>();
    EXPECT_EQ(bytes[0], 0xa5);
    EXPECT_EQ(bytes[BIG / 2], 0xa5);
    EXPECT_EQ(bytes[BIG - 1], 0xa5);
    EXPECT_EQ(std::count(bytes, bytes + BIG, uint8_t{0xa5}), static_cast<ptrdiff_t>(BIG));
  }

  /// A daemon of this test's mode with TCP too.
  std::unique_ptr<DaemonProcess> startTcpDaemon() const {
    DaemonOptions options;
    options.tcpPort = freeTcpPort();
    return startDaemon(options);
  }

  /// rjitd (`of`) is the same process as at the start and alive (not a zombie).
  static void expectSameRjitd(const DaemonProcess& of) {
    EXPECT_EQ(processName(of.pid()), "rjitd") << "rjitd (pid " << of.pid() << ") is gone";
    char state = processState(of.pid());
    EXPECT_TRUE(state != 0 && state != 'Z') << "rjitd's state: " << state << "\n" << of.log();
  }
};

// --- Calls of every value type ------------------------------------------------------------------

TEST_P(ExecuteTest, TypedCallsOfEveryScalarType) {
  auto s = typedSession(clientOptions());
  expectScalarCalls(*s.module);
}

TEST_P(ExecuteTest, DynamicValuesKeepTheirKinds) {
  auto s = typedSession(clientOptions());
  RemoteModule& module = *s.module;

  auto sum = module.callValues("add", {Value::of(int64_t{-5}), Value::of(uint64_t{7})});
  EXPECT_EQ(sum.value.kind, Value::Kind::Signed);
  EXPECT_EQ(sum.value.i, 2);
  // An i64 without zeroext takes a literal in either range (IR does not say which C type it
  // was); the result is signed, as the wire says.
  auto same = module.callValues("same_u64", {Value::of(uint64_t{UINT64_MAX})});
  EXPECT_EQ(same.value.kind, Value::Kind::Signed);
  EXPECT_EQ(same.value.i, -1);
  auto inc = module.callValues("inc_u8", {Value::of(uint64_t{254})});
  EXPECT_EQ(inc.value.kind, Value::Kind::Unsigned);  // zeroext
  EXPECT_EQ(inc.value.u, 255u);
  auto half = module.callValues("half_f32", {Value::of(5.0f)});
  EXPECT_EQ(half.value.kind, Value::Kind::Float);
  EXPECT_EQ(half.value.f, 2.5f);
  auto scaled = module.callValues("scale_f64", {Value::of(2.0), Value::of(0.25)});
  EXPECT_EQ(scaled.value.kind, Value::Kind::Double);
  EXPECT_EQ(scaled.value.d, 0.5);
  auto length = module.callValues("length", {Value::of("abc")});
  EXPECT_EQ(length.value.i, 3);
  auto isNull = module.callValues("is_null", {Value::null()});
  EXPECT_EQ(isNull.value.i, 1);
  auto greeting = module.callValues("greeting", {});
  EXPECT_EQ(greeting.value.kind, Value::Kind::Pointer);
  EXPECT_NE(greeting.value.u, 0u);
  auto nothing = module.callValues("say", {Value::of("dynamic")});
  EXPECT_EQ(nothing.value.kind, Value::Kind::Void);
}

TEST_P(ExecuteTest, CallOutputIsCapturedPerCall) {
  auto s = typedSession(clientOptions());
  auto first = s.module->callValues("say", {Value::of("one")});
  EXPECT_EQ(first.output.out, "out: one\n");
  EXPECT_EQ(first.output.err, "err: one\n");
  auto second = s.module->callValues("say", {Value::of("two")});
  EXPECT_EQ(second.output.out, "out: two\n");  // only this call's
  EXPECT_EQ(second.output.err, "err: two\n");
  auto quiet = s.module->callValues("add", {Value::of(int64_t{1}), Value::of(int64_t{1})});
  EXPECT_EQ(quiet.output.out, "");
  EXPECT_EQ(quiet.output.err, "");
}

TEST_P(ExecuteTest, ExecutorKeepsModuleStateBetweenCalls) {
  auto s = typedSession(clientOptions());
  for (int64_t expected = 1; expected <= 3; ++expected)
    EXPECT_EQ(s.module->call<int64_t>("counter"), expected);
  ASSERT_EQ(executorsOf(daemon->pid()).size(), 1u) << "one executor per session and target";
}

TEST_P(ExecuteTest, ClientsNeverShareAnExecutor) {
  auto a = typedSession(clientOptions());
  auto b = typedSession(clientOptions());
  EXPECT_EQ(a.module->call<int64_t>("counter"), 1);
  EXPECT_EQ(b.module->call<int64_t>("counter"), 1);  // its own process, its own statics
  EXPECT_EQ(a.module->call<int64_t>("counter"), 2);
  EXPECT_EQ(executorsOf(daemon->pid()).size(), 2u);
}

// --- Buffers, Unix and TCP ----------------------------------------------------------------------

TEST_P(ExecuteTest, BuffersOverUnixLiveInTheSharedSegment) {
  auto s = typedSession(clientOptions());
  EXPECT_TRUE(s.executor->sharedMemory()) << "a Unix connection has a shared segment";
  expectBufferCalls(*s.executor, *s.module);
}

TEST_P(ExecuteTest, SharedBufferWrittenByCalleeIsSeenInPlace) {
  auto s = typedSession(clientOptions());
  ASSERT_TRUE(s.executor->sharedMemory());
  Buffer bytes = s.executor->buffer(ElementType::U8, 4096, Direction::Out);
  ASSERT_TRUE(bytes.shared());
  uint8_t* where = bytes.as<uint8_t>();
  std::memset(where, 0, 4096);
  s.module->call<void>("fill_u8", bytes, uint64_t{4096}, uint8_t{0x3c});
  // The same memory, not a copy: the pointer taken before the call sees the callee's writes.
  EXPECT_EQ(bytes.as<uint8_t>(), where);
  EXPECT_EQ(std::count(where, where + 4096, uint8_t{0x3c}), 4096);
  // And the callee reads what the client writes there afterwards.
  where[10] = 100;
  EXPECT_EQ(s.module->call<uint64_t>("sum_u8", bytes, uint64_t{11}), 10u * 0x3c + 100);
}

TEST_P(ExecuteTest, SixtyFourMiBBufferThroughTheSharedSegment) {
  auto s = typedSession(clientOptions());
  ASSERT_TRUE(s.executor->sharedMemory());
  expectBigBuffer(*s.executor, *s.module);
}

TEST_P(ExecuteTest, CallsOverTcpCopyBuffers) {
  auto tcp = startTcpDaemon();
  ASSERT_NE(tcp, nullptr);
  ClientOptions options = clientOptions();
  options.servers = {tcp->tcpEndpoint()};
  auto s = typedSession(options);
  EXPECT_FALSE(s.executor->sharedMemory()) << "TCP has no shared segment";
  expectScalarCalls(*s.module);
  expectBufferCalls(*s.executor, *s.module);
  expectSameRjitd(*tcp);
}

TEST_P(ExecuteTest, SixtyFourMiBBufferCopiedOverTcp) {
  auto tcp = startTcpDaemon();
  ASSERT_NE(tcp, nullptr);
  ClientOptions options = clientOptions();
  options.servers = {tcp->tcpEndpoint()};
  auto s = typedSession(options);
  ASSERT_FALSE(s.executor->sharedMemory());
  expectBigBuffer(*s.executor, *s.module);
  expectSameRjitd(*tcp);
}

// --- Signature mismatches -----------------------------------------------------------------------

TEST_P(ExecuteTest, MismatchedCallsAreSignatureMismatches) {
  auto s = typedSession(clientOptions());
  RemoteModule& module = *s.module;
  auto mismatch = [&](std::string_view what, std::string_view symbol, std::vector<Value> args) {
    SCOPED_TRACE(std::string(what));
    auto failure = catchFailure([&] { module.callValues(symbol, std::move(args)); });
    expectKind(failure, ErrorKind::SignatureMismatch);
  };
  mismatch("too few", "add", {Value::of(int64_t{1})});
  mismatch("too many", "add",
           {Value::of(int64_t{1}), Value::of(int64_t{2}), Value::of(int64_t{3})});
  mismatch("a string for an integer", "add", {Value::of(int64_t{1}), Value::of("x")});
  mismatch("a double for an integer", "neg_i32", {Value::of(1.5)});
  mismatch("an integer for a pointer", "length", {Value::of(int64_t{5})});
  mismatch("an integer for a double", "scale_f64", {Value::of(int64_t{1}), Value::of(2.0)});
  mismatch("out of range, unsigned", "inc_u8", {Value::of(uint64_t{256})});
  mismatch("out of range, negative for zeroext", "inc_u8", {Value::of(int64_t{-1})});
  mismatch("out of range, signed", "neg_i8", {Value::of(int64_t{-129})});
  mismatch("out of range, i32", "neg_i32", {Value::of(int64_t{INT64_MAX})});
  mismatch("not a function", "not_a_function", {});
  mismatch("unknown symbol", "no_such_function", {Value::of(int64_t{1})});

  // The typed API checks C++ types against the IR signature before anything is sent.
  auto typed = [&](std::string_view what, auto&& call) {
    SCOPED_TRACE(std::string(what));
    auto failure = catchFailure(call);
    expectKind(failure, ErrorKind::SignatureMismatch);
  };
  typed("double arguments for i64", [&] { module.call<int64_t>("add", 1.5, 2.5); });
  typed("a double result for i64", [&] { module.call<double>("add", int64_t{1}, int64_t{2}); });
  typed("one argument for two", [&] { module.call<int64_t>("add", int64_t{1}); });
  typed("a string for i64", [&] { module.call<int64_t>("neg_i64", "text"); });
  typed("unknown symbol", [&] { module.call<int64_t>("no_such_function"); });

  // None of these cost the executor: the module's state is still there.
  EXPECT_EQ(module.call<int64_t>("counter"), 1);
  EXPECT_EQ(module.call<int64_t>("counter"), 2);
}

// --- Executors end with their client ------------------------------------------------------------

TEST_P(ExecuteTest, ClientThatDisconnectsLeavesNoExecutor) {
  {
    auto s = typedSession(clientOptions());
    EXPECT_EQ(s.module->call<int64_t>("add", int64_t{1}, int64_t{2}), 3);
    ASSERT_EQ(executorsOf(daemon->pid()).size(), 1u);
  }
  EXPECT_TRUE(waitExecutors(daemon->pid(), 0));
}

TEST_P(ExecuteTest, KilledClientInTheMiddleOfACallLeavesNoExecutor) {
  // `rjit call --remote` of a function that never returns, killed while the call runs: rjitd
  // sees the connection break, cancels the call and kills the executor then, not at the call's
  // deadline (which would count an executor restart, of kind timeout).
  const char* bin = std::getenv("RJIT_BIN");
  ASSERT_NE(bin, nullptr);
  Client observer(clientOptions());
  uint64_t restartsBefore = observer.stats().executorRestarts;
  SpawnOptions spawn;
  spawn.argv = {bin, "call", "--remote", genPath("exec-hang.ll"), "announced_hang"};
  spawn.env = environmentWith({{"RJIT_SERVER", daemon->endpoint()}}, {"RJIT_TIMEOUT_MS"});
  spawn.stderrPath = work.file("hang.err");
  auto rjit = ChildProcess::spawn(spawn);
  ASSERT_NE(rjit, nullptr);
  ASSERT_TRUE(waitExecutors(daemon->pid(), 1)) << readFile(work.file("hang.err"));
  // In the call, not still loading the module: the function has said so.
  ASSERT_TRUE(waitExecutorStdout(daemon->pid(), "hanging\n")) << readFile(work.file("hang.err"));
  rjit->signal(SIGKILL);
  ASSERT_TRUE(rjit->wait().has_value());
  EXPECT_TRUE(waitExecutors(daemon->pid(), 0));
  EXPECT_EQ(observer.stats().executorRestarts, restartsBefore) << "the deadline ended the call";
  expectSameRjitd(*daemon);
}

TEST_P(ExecuteTest, StoppingRjitdEndsItsExecutors) {
  auto s = typedSession(clientOptions());
  EXPECT_EQ(s.module->call<int64_t>("add", int64_t{1}, int64_t{2}), 3);
  auto executors = executorsOf(daemon->pid());
  ASSERT_EQ(executors.size(), 1u);
  ASSERT_TRUE(daemon->waitReady());
  auto status = daemon->stop();
  EXPECT_TRUE(status.exitedWith(0)) << status.describe() << "\n" << daemon->log();
  // No user code outlives rjitd: the executor was killed (and, reparented or reaped, is gone).
  unsigned polls = 0;
  while (processState(executors[0]) != 0 && processName(executors[0]) == EXECUTOR_NAME &&
         ++polls < MAX_POLLS) {
  }
  EXPECT_NE(processName(executors[0]), EXECUTOR_NAME)
      << "executor " << executors[0] << " outlived rjitd (state " << processState(executors[0])
      << ")";
}

TEST_P(ExecuteTest, StoppingRjitdEndsAnExecutorInTheMiddleOfACall) {
  // An executor spinning in user code does not notice its channel closing: rjitd's drain must
  // kill it, and the call fails (the fixture's deadline is rjitd's default 30 s, far away).
  auto s = typedSession(clientOptions());
  RemoteModule hang = s.executor->load(moduleRequest("exec-hang.ll"));
  auto executors = executorsOf(daemon->pid());
  ASSERT_EQ(executors.size(), 1u);
  std::optional<Failure> failure;
  std::thread caller([&] { failure = catchFailure([&] { hang.callValues("hang", {}); }); });
  // The executor is in the call once it runs (an idle one sleeps in its event loop).
  unsigned polls = 0;
  while (processState(executors[0]) != 'R' && ++polls < MAX_POLLS) {
  }
  EXPECT_EQ(processState(executors[0]), 'R') << "the executor never ran the call";
  ASSERT_TRUE(daemon->waitReady());
  auto status = daemon->stop();
  EXPECT_TRUE(status.exitedWith(0)) << status.describe() << "\n" << daemon->log();
  caller.join();
  if (failure) {
    EXPECT_TRUE(failure->kind == ErrorKind::ShuttingDown || failure->kind == ErrorKind::Connection)
        << errorKindName(failure->kind) << ": " << failure->message;
  }
  polls = 0;
  while (processState(executors[0]) != 0 && processName(executors[0]) == EXECUTOR_NAME &&
         ++polls < MAX_POLLS) {
  }
  EXPECT_NE(processName(executors[0]), EXECUTOR_NAME)
      << "executor " << executors[0] << " outlived rjitd (state " << processState(executors[0])
      << ")";
}

// --- Concurrency --------------------------------------------------------------------------------

TEST_P(ExecuteTest, EightClientsCallAtOnce) {
  constexpr unsigned CLIENTS = 8;
  constexpr int64_t CALLS = 50;
  std::latch ready(CLIENTS);
  std::vector<std::string> errors(CLIENTS);
  std::vector<int64_t> lastCounter(CLIENTS, 0);
  std::vector<std::thread> threads;
  ClientOptions options = clientOptions();
  for (unsigned t = 0; t < CLIENTS; ++t)
    threads.emplace_back([&, t] {
      bool arrived = false;
      try {
        auto s = typedSession(options);
        ready.arrive_and_wait();
        arrived = true;
        for (int64_t i = 0; i < CALLS; ++i) {
          int64_t sum = s.module->call<int64_t>("add", int64_t{t}, i);
          if (sum != static_cast<int64_t>(t) + i)
            errors[t] = "add(" + std::to_string(t) + ", " + std::to_string(i) +
                        ") = " + std::to_string(sum);
          lastCounter[t] = s.module->call<int64_t>("counter");
        }
      } catch (const Error& e) {
        errors[t] = std::string(errorKindName(e.kind())) + ": " + e.what();
      }
      if (!arrived)
        ready.count_down();
    });
  for (auto& thread : threads)
    thread.join();
  for (unsigned t = 0; t < CLIENTS; ++t) {
    EXPECT_EQ(errors[t], "") << "client " << t;
    EXPECT_EQ(lastCounter[t], CALLS) << "client " << t << " saw another client's executor";
  }
  EXPECT_TRUE(waitExecutors(daemon->pid(), 0));
}

// --- Programs -----------------------------------------------------------------------------------

TEST_P(ExecuteTest, RunGivesMainItsArgvEnvironmentAndStdin) {
  Client client(clientOptions());
  RemoteExecutor executor = client.executor();
  RemoteModule program = executor.load(moduleRequest("exec-main.ll"));
  RunResult result = program.run({"exec-main", "alpha", "two words"},
                                 {"EXEC_TEST_VAR=from the test"}, "line 1\nline 2\n");
  EXPECT_EQ(result.exitStatus, 3);
  EXPECT_EQ(result.signal, 0);
  EXPECT_EQ(result.output.out, "arg 1: alpha\narg 2: two words\nEXEC_TEST_VAR=from the test\n"
                               "stdin: 14 bytes, 2 lines\n");
  EXPECT_EQ(result.output.err, "to stderr\n");
  // A run ends its executor; the next one gets a fresh one.
  RunResult again = program.run({"exec-main"});
  EXPECT_EQ(again.exitStatus, 1);
  EXPECT_EQ(again.output.out, "EXEC_TEST_VAR=(unset)\nstdin: 0 bytes, 0 lines\n");
}

TEST_P(ExecuteTest, RunOfACrashingProgramReportsTheSignal) {
  // A program whose main dies of SIGABRT: a result (signal), not an error.
  std::string ir = "declare void @abort()\n"
                   "define i32 @main() {\n"
                   "  call void @abort()\n"
                   "  unreachable\n"
                   "}\n";
  Client client(clientOptions());
  RemoteExecutor executor = client.executor();
  CompileRequest request;
  request.module = withNonce(ir);
  request.moduleName = "abort-main.ll";
  RemoteModule program = executor.load(request);
  RunResult result = program.run({"abort-main"});
  EXPECT_EQ(result.signal, SIGABRT);
  EXPECT_EQ(result.signalName, "SIGABRT");
}

// --- The CLI ------------------------------------------------------------------------------------

TEST_P(ExecuteTest, CliCallRemotePrintsWhatALocalCallPrints) {
  std::string file = genPath("exec-typed.ll");
  std::vector<std::vector<std::string>> calls = {
      {"add", "2", "40"},
      {"same_u64", "18446744073709551615"},  // a uint64 for an i64 parameter
      {"popcount_u64", "18446744073709551615"},
      {"dec_u64", "0"},
      {"inc_u8", "255"},
      {"neg_i8", "--", "-128"},
      {"inc_u16", "65535"},
      {"neg_i32", "--", "-2147483647"},
      {"inc_u32", "4294967295"},
      {"flip", "1"},
      {"half_f32", "3"},
      {"scale_f64", "1.5", "0.5"},
      {"length", "hello world"},
      {"say", "from the CLI"},
  };
  for (const auto& call : calls) {
    std::vector<std::string> local = {"call", file};
    local.insert(local.end(), call.begin(), call.end());
    std::vector<std::string> remote = {"call", "--remote", file};
    remote.insert(remote.end(), call.begin(), call.end());
    auto expected = runRjit(work, local, daemon->endpoint());
    auto actual = runRjit(work, remote, daemon->endpoint());
    SCOPED_TRACE(call[0]);
    EXPECT_TRUE(expected.status.exitedWith(0)) << expected.status.describe() << expected.err;
    EXPECT_TRUE(actual.status.exitedWith(0)) << actual.status.describe() << actual.err;
    EXPECT_EQ(actual.out, expected.out);
    EXPECT_EQ(actual.err, expected.err);
  }
  auto u64 = runRjit(work, {"call", "--remote", file, "popcount_u64", "18446744073709551615"},
                     daemon->endpoint());
  EXPECT_EQ(u64.out, "64\n");
  auto say = runRjit(work, {"call", "--remote", file, "say", "hi"}, daemon->endpoint());
  EXPECT_EQ(say.out, "out: hi\n");  // the function's stdout, then the (empty) void result
  EXPECT_EQ(say.err, "err: hi\n");
}

TEST_P(ExecuteTest, CliCallRemoteErrorsNameTheirKind) {
  auto expectKindError = [&](std::vector<std::string> args, std::string_view kind) {
    auto result = runRjit(work, args, daemon->endpoint());
    SCOPED_TRACE(args[3]);
    EXPECT_TRUE(result.status.exitedWith(1)) << result.status.describe() << "\n" << result.err;
    EXPECT_NE(result.err.find(std::string(kind) + ": "), std::string::npos)
        << "stderr: " << result.err;
  };
  expectKindError({"call", "--remote", genPath("exec-crash.ll"), "write_null", "1"}, "crashed");
  expectKindError({"call", "--remote", genPath("exec-exit.ll"), "exit_three"}, "exited");
  expectKindError({"call", "--remote", genPath("exec-sandbox.ll"), "open_socket"},
                  "sandbox-violation");
  // A crash's message names the signal.
  auto crash = runRjit(work, {"call", "--remote", genPath("exec-crash.ll"), "write_null", "1"},
                       daemon->endpoint());
  EXPECT_NE(crash.err.find("SIGSEGV"), std::string::npos) << crash.err;
  EXPECT_EQ(crash.out, "before the crash\n");  // what the code wrote before it died
}

TEST_P(ExecuteTest, RjitInfoShowsTheExecutes) {
  std::string file = genPath("exec-typed.ll");
  auto ok = runRjit(work, {"call", "--remote", file, "add", "1", "2"}, daemon->endpoint());
  EXPECT_TRUE(ok.status.exitedWith(0)) << ok.err;
  auto crash = runRjit(work, {"call", "--remote", genPath("exec-crash.ll"), "call_abort"},
                       daemon->endpoint());
  EXPECT_TRUE(crash.status.exitedWith(1)) << crash.err;
  auto result = runRjit(work, {"info", "--json"}, daemon->endpoint());
  ASSERT_TRUE(result.status.exitedWith(0)) << result.err;
  auto info = nlohmann::json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(info.is_discarded()) << "not JSON: " << result.out;
  ASSERT_TRUE(info.contains("execute")) << result.out;
  const auto& execute = info["execute"];
  EXPECT_EQ(execute.value("total", 0), 2) << result.out;
  EXPECT_EQ(execute.value("failures", 0), 1) << result.out;
  EXPECT_EQ(execute.value("executor_restarts", 0), 1) << result.out;
  uint64_t oks = 0, crashed = 0;
  for (const auto& [target, results] : execute["by_target"].items()) {
    oks += results.value("ok", uint64_t{0});
    crashed += results.value("crashed", uint64_t{0});
  }
  EXPECT_EQ(oks, 1u) << result.out;
  EXPECT_EQ(crashed, 1u) << result.out;
}

TEST_P(ExecuteTest, CliRunRemoteIsTheProgram) {
  std::string input = work.file("stdin.txt");
  writeFile(input, "a\nb\nc\n");
  auto result = runRjit(work, {"run", "--remote", genPath("exec-main.ll"), "--", "x", "y z"},
                        daemon->endpoint(), input, {{"EXEC_TEST_VAR", "via rjit"}});
  EXPECT_TRUE(result.status.exitedWith(3)) << result.status.describe() << "\n" << result.err;
  EXPECT_EQ(result.out, "arg 1: x\narg 2: y z\nEXEC_TEST_VAR=via rjit\nstdin: 6 bytes, 3 lines\n");
  EXPECT_EQ(result.err, "to stderr\n");
}

// --- Limits -------------------------------------------------------------------------------------

TEST_P(ExecuteTest, MaxExecutorsIsAnsweredOverloaded) {
  DaemonOptions options;
  options.extraArgs = {"--max-executors", "1"};
  auto limited = startDaemon(options);
  ASSERT_NE(limited, nullptr);
  auto first = typedSession(clientOptions(limited.get()));
  EXPECT_EQ(first.module->call<int64_t>("add", int64_t{1}, int64_t{1}), 2);
  {
    Client other(clientOptions(limited.get()));
    auto failure = catchFailure([&] {
      RemoteExecutor executor = other.executor();
      executor.load(moduleRequest("exec-typed.ll"));
    });
    expectKind(failure, ErrorKind::Overloaded);
  }
  // The first client's executor is unaffected, and once it is gone its slot is free again.
  EXPECT_EQ(first.module->call<int64_t>("add", int64_t{2}, int64_t{2}), 4);
  first.end();
  ASSERT_TRUE(waitExecutors(limited->pid(), 0));
  auto next = typedSession(clientOptions(limited.get()));
  EXPECT_EQ(next.module->call<int64_t>("add", int64_t{3}, int64_t{3}), 6);
  expectSameRjitd(*limited);
}

TEST_P(ExecuteTest, MaxExecutorsPerConnectionIsAnsweredOverloaded) {
  DaemonOptions options;
  options.extraArgs = {"--max-executors-per-connection", "1"};
  auto limited = startDaemon(options);
  ASSERT_NE(limited, nullptr);
  Client client(clientOptions(limited.get()));
  RemoteExecutor first = client.executor();
  RemoteModule module = first.load(moduleRequest("exec-typed.ll"));
  auto failure = catchFailure([&] {
    RemoteExecutor second = client.executor();
    second.load(moduleRequest("exec-typed.ll"));
  });
  expectKind(failure, ErrorKind::Overloaded);
  EXPECT_EQ(module.call<int64_t>("add", int64_t{1}, int64_t{1}), 2);
}

RJIT_INSTANTIATE_DAEMON_MODES(ExecuteTest);

// --- Code that misbehaves -----------------------------------------------------------------------

/// A daemon with a short deadline and small executors; each test makes one call misbehave and
/// checks the error's kind, that the next call gets a fresh executor (the module's state starts
/// over, the process is another) and that rjitd is the same process.
class ExecuteFaultTest : public ExecuteTest {
protected:
  /// rjitd_executes_total of `result` ("ok" or an error kind), summed over targets.
  static uint64_t executeCount(const ServerStats& stats, std::string_view result) {
    uint64_t total = 0;
    for (const auto& count : stats.executeCounts)
      total += count.result == result ? count.count : 0;
    return total;
  }

  DaemonOptions daemonOptions() const override {
    DaemonOptions options = DaemonTest::daemonOptions();
    options.extraArgs = {"--execute-timeout", EXECUTE_TIMEOUT_SECONDS, "--executor-memory",
                         std::to_string(EXECUTOR_MEMORY)};
    return options;
  }

  /// Calls `symbol` of test/data module `file` (no arguments but `args`) in an executor that
  /// already served a call, expects an error of `kind`, then a fresh executor for the next
  /// call. Returns the failure for further checks.
  std::optional<Failure> expectFault(const std::string& file, const std::string& symbol,
                                     ErrorKind kind, std::vector<Value> args = {}) {
    auto s = typedSession(clientOptions());
    RemoteModule faulty = s.executor->load(moduleRequest(moduleFor(file)));
    EXPECT_EQ(s.module->call<int64_t>("counter"), 1);
    EXPECT_EQ(s.module->call<int64_t>("counter"), 2);
    auto before = executorsOf(daemon->pid());
    EXPECT_EQ(before.size(), 1u);
    ServerStats statsBefore = s.client->stats();

    auto failure = catchFailure([&] { faulty.callValues(symbol, std::move(args)); });
    expectKind(failure, kind);

    // The next call: a fresh executor with the session's modules loaded again (the counter
    // starts over), in another process; rjitd itself unchanged.
    EXPECT_EQ(s.module->call<int64_t>("counter"), 1);
    EXPECT_EQ(s.module->call<int64_t>("add", int64_t{20}, int64_t{22}), 42);
    auto after = executorsOf(daemon->pid());
    EXPECT_EQ(after.size(), 1u);
    EXPECT_NE(after, before) << "the call after a fault ran in the same executor process";
    // rjitd counted the executor's end and the call's result (rjitd_executor_restarts_total,
    // rjitd_executes_total{result}).
    ServerStats statsAfter = s.client->stats();
    EXPECT_EQ(statsAfter.executorRestarts, statsBefore.executorRestarts + 1);
    EXPECT_EQ(executeCount(statsAfter, errorKindName(kind)),
              executeCount(statsBefore, errorKindName(kind)) + 1);
    EXPECT_EQ(statsAfter.executors, 1u);
    expectSameRjitd(*daemon);
    return failure;
  }
};

TEST_P(ExecuteFaultTest, NullWriteIsCrashedWithSigsegv) {
  auto failure =
      expectFault("exec-crash.ll", "write_null", ErrorKind::Crashed, {Value::of(int64_t{1})});
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->signal, SIGSEGV);
  EXPECT_NE(failure->message.find("SIGSEGV"), std::string::npos) << failure->message;
  EXPECT_EQ(failure->output.out, "before the crash\n");
}

TEST_P(ExecuteFaultTest, AbortIsCrashedWithSigabrt) {
  auto failure = expectFault("exec-crash.ll", "call_abort", ErrorKind::Crashed);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->signal, SIGABRT);
  EXPECT_NE(failure->message.find("SIGABRT"), std::string::npos) << failure->message;
}

/// The fault tests against an rjitd whose deadline is 1 s.
class ExecuteDeadlineTest : public ExecuteFaultTest {
protected:
  DaemonOptions daemonOptions() const override {
    DaemonOptions options = ExecuteFaultTest::daemonOptions();
    options.extraArgs = {"--execute-timeout", SHORT_EXECUTE_TIMEOUT_SECONDS, "--executor-memory",
                         std::to_string(EXECUTOR_MEMORY)};
    return options;
  }
};

TEST_P(ExecuteDeadlineTest, HangPastTheDeadlineIsTimeout) {
  expectFault("exec-hang.ll", "hang", ErrorKind::Timeout);
}

TEST_P(ExecuteFaultTest, MallocPastExecutorMemoryIsOutOfMemory) {
  if (!EXECUTOR_MEMORY_LIMITED)
    GTEST_SKIP() << "sanitizer build: executors run without RLIMIT_AS";
  expectFault("exec-alloc.ll", "allocate_forever", ErrorKind::OutOfMemory);
}

TEST_P(ExecuteFaultTest, CxxNewPastExecutorMemoryIsOutOfMemory) {
  if (!EXECUTOR_MEMORY_LIMITED)
    GTEST_SKIP() << "sanitizer build: executors run without RLIMIT_AS";
  expectFault("exec-alloc-cxx.ll", "new_forever", ErrorKind::OutOfMemory);
}

TEST_P(ExecuteFaultTest, UncaughtCxxExceptionIsCrashedWithSigabrt) {
  // As natively: the exception reaches std::terminate, which aborts. It must not be caught by
  // the executor's own code on its way out (the module's state would live on, half updated).
  auto failure = expectFault("exec-throw.ll", "throw_uncaught", ErrorKind::Crashed);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->signal, SIGABRT);
}

TEST_P(ExecuteFaultTest, ExitInsideAFunctionIsExitedWithItsStatus) {
  auto failure = expectFault("exec-exit.ll", "exit_three", ErrorKind::Exited);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->exitStatus, 3);
  EXPECT_EQ(failure->output.out, "exiting\n");  // stdio flushed by exit(), as natively
}

/// The forbidden system call is named in the message where the call's name goes (any of
/// `names`, or a name starting with one, e.g. clone3: glibc may use either); not merely anywhere
/// in it, where the function's name ("fork_bomb") would match too.
void expectNamesSyscall(const std::optional<Failure>& failure,
                        std::initializer_list<std::string_view> names) {
  ASSERT_TRUE(failure.has_value());
  constexpr std::string_view LEAD = "a system call executors may not make: ";
  size_t at = failure->message.find(LEAD);
  ASSERT_NE(at, std::string::npos) << failure->message;
  std::string_view named = std::string_view(failure->message).substr(at + LEAD.size());
  EXPECT_TRUE(std::any_of(names.begin(), names.end(), [&](std::string_view name) {
    return named.starts_with(name);
  })) << failure->message;
}

TEST_P(ExecuteFaultTest, ForkBombIsSandboxViolation) {
  expectNamesSyscall(expectFault("exec-sandbox.ll", "fork_bomb", ErrorKind::SandboxViolation),
                     {"clone", "fork"});
}

TEST_P(ExecuteFaultTest, SocketIsSandboxViolation) {
  expectNamesSyscall(expectFault("exec-sandbox.ll", "open_socket", ErrorKind::SandboxViolation),
                     {"socket"});
}

TEST_P(ExecuteFaultTest, OpeningEtcPasswdIsSandboxViolation) {
  expectNamesSyscall(expectFault("exec-sandbox.ll", "read_passwd", ErrorKind::SandboxViolation),
                     {"open"});
}

TEST_P(ExecuteFaultTest, HundredMiBOfOutputIsOutputLimit) {
  expectFault("exec-flood.ll", "flood", ErrorKind::OutputLimit);
}

TEST_P(ExecuteDeadlineTest, ProgramPastTheDeadlineIsTimeout) {
  // A main that never returns: `run` fails with timeout (a death rjitd caused is an error, not
  // the program's signal), and the next run of another program works.
  Client client(clientOptions());
  RemoteExecutor executor = client.executor();
  CompileRequest request;
  request.module = withNonce("define i32 @main() {\n"
                             "entry:\n"
                             "  br label %spin\n"
                             "spin:\n"
                             "  br label %spin\n"
                             "}\n");
  request.moduleName = "spin-main.ll";
  RemoteModule spin = executor.load(request);
  auto failure = catchFailure([&] { spin.run({"spin-main"}); });
  expectKind(failure, ErrorKind::Timeout);
  spin = RemoteModule();  // unloaded: exec-main defines main too
  RemoteModule program = executor.load(moduleRequest("exec-main.ll"));
  RunResult result = program.run({"exec-main", "again"});
  EXPECT_EQ(result.exitStatus, 2);
  expectSameRjitd(*daemon);
}

TEST_P(ExecuteDeadlineTest, EveryFaultInTurnOnOneSession) {
  // One session through all of them: each restart reloads what the session holds.
  auto s = typedSession(clientOptions());
  struct Fault {
    const char* file;
    const char* symbol;
    ErrorKind kind;
  };
  const Fault faults[] = {
      {"exec-crash.ll", "call_abort", ErrorKind::Crashed},
      {"exec-exit.ll", "exit_three", ErrorKind::Exited},
      {"exec-sandbox.ll", "open_socket", ErrorKind::SandboxViolation},
      {"exec-flood.ll", "flood", ErrorKind::OutputLimit},
      {"exec-hang.ll", "hang", ErrorKind::Timeout},
  };
  std::vector<RemoteModule> held;
  for (const auto& fault : faults) {
    SCOPED_TRACE(fault.symbol);
    held.push_back(s.executor->load(moduleRequest(fault.file)));
    auto failure = catchFailure([&] { held.back().callValues(fault.symbol, {}); });
    expectKind(failure, fault.kind);
    EXPECT_EQ(s.module->call<int64_t>("counter"), 1);
  }
  EXPECT_EQ(executorsOf(daemon->pid()).size(), 1u);
  expectSameRjitd(*daemon);
}

RJIT_INSTANTIATE_DAEMON_MODES(ExecuteFaultTest);
RJIT_INSTANTIATE_DAEMON_MODES(ExecuteDeadlineTest);

// --- aarch64 executors under qemu ---------------------------------------------------------------

/// The tests above for aarch64 code, which rjitd runs in the cross build's rjitd-executor under
/// qemu-user (docs/OPERATIONS.md "aarch64 executors"), with the same limits as x86_64 ones.
class Aarch64ExecuteTest : public ExecuteFaultTest {
protected:
  void SetUp() override {
    if (aarch64Executor().empty())
      GTEST_SKIP() << "no aarch64 rjitd-executor: configure the native build with "
                      "-Daarch64_executor=PATH/TO/build-arm64/service/executor/rjitd-executor";
    ExecuteFaultTest::SetUp();
  }

  std::string target() const override { return "aarch64"; }

  DaemonOptions daemonOptions() const override {
    DaemonOptions options = ExecuteFaultTest::daemonOptions();
    options.extraArgs.insert(options.extraArgs.end(), {"--aarch64-executor", aarch64Executor()});
    return options;
  }

  /// `rjit ARGS...` against the fixture's daemon.
  CommandResult rjit(std::vector<std::string> args, const std::string& stdinPath = "/dev/null",
                     std::vector<std::pair<std::string, std::string>> env = {}) {
    return runRjit(work, std::move(args), daemon->endpoint(), stdinPath, std::move(env));
  }
};

/// The same against an rjitd whose deadline is 1 s.
class Aarch64DeadlineTest : public Aarch64ExecuteTest {
protected:
  DaemonOptions daemonOptions() const override {
    DaemonOptions options = Aarch64ExecuteTest::daemonOptions();
    options.extraArgs = {"--execute-timeout",  SHORT_EXECUTE_TIMEOUT_SECONDS,
                         "--executor-memory",  std::to_string(EXECUTOR_MEMORY),
                         "--aarch64-executor", aarch64Executor()};
    return options;
  }
};

TEST_P(Aarch64ExecuteTest, TypedCallsOfEveryScalarType) {
  auto s = typedSession(clientOptions());
  expectScalarCalls(*s.module);
  // The process that ran them is qemu's (an aarch64 executor), a child of rjitd.
  auto executors = executorsOf(daemon->pid());
  ASSERT_EQ(executors.size(), 1u);
  EXPECT_TRUE(processName(executors[0]).starts_with(EMULATED_EXECUTOR_NAME))
      << processName(executors[0]);
}

TEST_P(Aarch64ExecuteTest, BuffersInOutAndInOut) {
  auto s = typedSession(clientOptions());
  expectBufferCalls(*s.executor, *s.module);
}

TEST_P(Aarch64ExecuteTest, CallOutputIsCapturedPerCall) {
  auto s = typedSession(clientOptions());
  auto first = s.module->callValues("say", {Value::of("one")});
  EXPECT_EQ(first.output.out, "out: one\n");
  EXPECT_EQ(first.output.err, "err: one\n");
  EXPECT_EQ(s.module->call<int64_t>("counter"), 1);
  EXPECT_EQ(s.module->call<int64_t>("counter"), 2);  // the module's state lives on
}

TEST_P(Aarch64ExecuteTest, X86ModuleIsATargetMismatch) {
  Client client(clientOptions());
  RemoteExecutor executor = client.executor("aarch64");
  auto failure = catchFailure([&] { executor.load(moduleRequest("exec-typed.ll")); });
  expectKind(failure, ErrorKind::TargetMismatch);
}

TEST_P(Aarch64ExecuteTest, PortableProgramGivesTheSameOutputOnBothTargets) {
  // exec-main.c compiled for each target: argv, environment, stdin, stdout, stderr and the
  // exit status are the same byte for byte.
  Client client(clientOptions());
  RunResult results[2];
  const char* targets[] = {"", "aarch64"};
  for (int i = 0; i < 2; ++i) {
    RemoteExecutor executor = client.executor(targets[i]);
    RemoteModule program =
        executor.load(moduleRequest(i == 0 ? "exec-main.ll" : moduleFor("exec-main.ll")));
    results[i] = program.run({"exec-main", "alpha", "two words"}, {"EXEC_TEST_VAR=from the test"},
                             "line 1\nline 2\n");
  }
  EXPECT_EQ(results[1].exitStatus, 3);
  EXPECT_EQ(results[1].output.out, "arg 1: alpha\narg 2: two words\nEXEC_TEST_VAR=from the test\n"
                                   "stdin: 14 bytes, 2 lines\n");
  EXPECT_EQ(results[1].output.err, "to stderr\n");
  EXPECT_EQ(results[1].exitStatus, results[0].exitStatus);
  EXPECT_EQ(results[1].signal, results[0].signal);
  EXPECT_EQ(results[1].output.out, results[0].output.out);
  EXPECT_EQ(results[1].output.err, results[0].output.err);
}

TEST_P(Aarch64ExecuteTest, RunOfACrashingProgramReportsTheSignal) {
  Client client(clientOptions());
  RemoteExecutor executor = client.executor("aarch64");
  CompileRequest request;
  request.module = withNonce("target triple = \"aarch64-unknown-linux-gnu\"\n"
                             "declare void @abort()\n"
                             "define i32 @main() {\n"
                             "  call void @abort()\n"
                             "  unreachable\n"
                             "}\n");
  request.moduleName = "abort-main.ll";
  RemoteModule program = executor.load(request);
  RunResult result = program.run({"abort-main"});
  EXPECT_EQ(result.signal, SIGABRT);
  EXPECT_EQ(result.signalName, "SIGABRT");
  EXPECT_EQ(result.output.err, "");  // qemu's own report of the signal is not the program's
}

TEST_P(Aarch64ExecuteTest, NullWriteIsCrashedWithSigsegv) {
  auto failure =
      expectFault("exec-crash.ll", "write_null", ErrorKind::Crashed, {Value::of(int64_t{1})});
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->signal, SIGSEGV);
  EXPECT_NE(failure->message.find("SIGSEGV"), std::string::npos) << failure->message;
  EXPECT_EQ(failure->output.out, "before the crash\n");
  EXPECT_EQ(failure->output.err, "");
}

TEST_P(Aarch64ExecuteTest, AbortIsCrashedWithSigabrt) {
  auto failure = expectFault("exec-crash.ll", "call_abort", ErrorKind::Crashed);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->signal, SIGABRT);
  EXPECT_NE(failure->message.find("SIGABRT"), std::string::npos) << failure->message;
}

TEST_P(Aarch64ExecuteTest, UncaughtCxxExceptionIsCrashedWithSigabrt) {
  auto failure = expectFault("exec-throw.ll", "throw_uncaught", ErrorKind::Crashed);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->signal, SIGABRT);
}

TEST_P(Aarch64DeadlineTest, HangPastTheDeadlineIsTimeout) {
  expectFault("exec-hang.ll", "hang", ErrorKind::Timeout);
}

TEST_P(Aarch64ExecuteTest, MallocPastExecutorMemoryIsOutOfMemory) {
  if (!EXECUTOR_MEMORY_LIMITED)
    GTEST_SKIP() << "sanitizer build: executors run without RLIMIT_AS";
  expectFault("exec-alloc.ll", "allocate_forever", ErrorKind::OutOfMemory);
}

TEST_P(Aarch64ExecuteTest, CxxNewPastExecutorMemoryIsOutOfMemory) {
  if (!EXECUTOR_MEMORY_LIMITED)
    GTEST_SKIP() << "sanitizer build: executors run without RLIMIT_AS";
  expectFault("exec-alloc-cxx.ll", "new_forever", ErrorKind::OutOfMemory);
}

TEST_P(Aarch64ExecuteTest, ExitInsideAFunctionIsExitedWithItsStatus) {
  auto failure = expectFault("exec-exit.ll", "exit_three", ErrorKind::Exited);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->exitStatus, 3);
  EXPECT_EQ(failure->output.out, "exiting\n");
}

TEST_P(Aarch64ExecuteTest, ForkBombIsSandboxViolation) {
  // qemu makes the guest's fork a host clone without CLONE_THREAD, which the filter refuses;
  // qemu has blocked its signals then, so the guest's handler cannot record the call, and the
  // message says so.
  auto failure = expectFault("exec-sandbox.ll", "fork_bomb", ErrorKind::SandboxViolation);
  ASSERT_TRUE(failure.has_value());
  EXPECT_NE(failure->message.find("a system call executors may not make: one qemu could not "
                                  "record (a fork, most likely)"),
            std::string::npos)
      << failure->message;
}

TEST_P(Aarch64ExecuteTest, SocketIsSandboxViolation) {
  // The host's system call, named by its host number (qemu passes the guest's socket through).
  expectNamesSyscall(expectFault("exec-sandbox.ll", "open_socket", ErrorKind::SandboxViolation),
                     {"socket"});
}

TEST_P(Aarch64ExecuteTest, OpeningEtcPasswdIsRefused) {
  // The launcher profile allows openat for reading (qemu reads the guest's files with it);
  // Landlock refuses every other file: fopen fails (EACCES) instead of a SIGSYS, and the
  // executor lives on.
  auto s = typedSession(clientOptions());
  RemoteModule sandbox = s.executor->load(moduleRequest(moduleFor("exec-sandbox.ll")));
  auto before = executorsOf(daemon->pid());
  EXPECT_EQ(sandbox.call<int64_t>("read_passwd"), -1);
  EXPECT_EQ(executorsOf(daemon->pid()), before);
}

TEST_P(Aarch64ExecuteTest, HundredMiBOfOutputIsOutputLimit) {
  expectFault("exec-flood.ll", "flood", ErrorKind::OutputLimit);
}

TEST_P(Aarch64DeadlineTest, EveryFaultInTurnOnOneSession) {
  auto s = typedSession(clientOptions());
  struct Fault {
    const char* file;
    const char* symbol;
    ErrorKind kind;
  };
  const Fault faults[] = {
      {"exec-crash.ll", "call_abort", ErrorKind::Crashed},
      {"exec-exit.ll", "exit_three", ErrorKind::Exited},
      {"exec-sandbox.ll", "open_socket", ErrorKind::SandboxViolation},
      {"exec-flood.ll", "flood", ErrorKind::OutputLimit},
      {"exec-hang.ll", "hang", ErrorKind::Timeout},
  };
  std::vector<RemoteModule> held;
  for (const auto& fault : faults) {
    SCOPED_TRACE(fault.symbol);
    held.push_back(s.executor->load(moduleRequest(moduleFor(fault.file))));
    auto failure = catchFailure([&] { held.back().callValues(fault.symbol, {}); });
    expectKind(failure, fault.kind);
    EXPECT_EQ(s.module->call<int64_t>("counter"), 1);
  }
  EXPECT_EQ(executorsOf(daemon->pid()).size(), 1u);
  expectSameRjitd(*daemon);
}

// The CLI: `rjit call --remote --target aarch64`, `rjit run --remote --target aarch64`.

TEST_P(Aarch64ExecuteTest, CliCallRemotePrintsWhatAnX86CallPrints) {
  std::vector<std::vector<std::string>> calls = {
      {"add", "2", "40"},        {"same_u64", "18446744073709551615"},
      {"inc_u8", "255"},         {"neg_i8", "--", "-128"},
      {"half_f32", "3"},         {"scale_f64", "1.5", "0.5"},
      {"length", "hello world"}, {"say", "from the CLI"},
  };
  for (const auto& call : calls) {
    std::vector<std::string> x86 = {"call", "--remote", genPath("exec-typed.ll")};
    x86.insert(x86.end(), call.begin(), call.end());
    std::vector<std::string> arm = {"call", "--remote", "--target", "aarch64",
                                    genPath(moduleFor("exec-typed.ll"))};
    arm.insert(arm.end(), call.begin(), call.end());
    auto expected = rjit(x86);
    auto actual = rjit(arm);
    SCOPED_TRACE(call[0]);
    EXPECT_TRUE(actual.status.exitedWith(0)) << actual.status.describe() << actual.err;
    EXPECT_EQ(actual.out, expected.out);
    EXPECT_EQ(actual.err, expected.err);
  }
}

TEST_P(Aarch64ExecuteTest, CliCallRemoteErrorsNameTheirKind) {
  std::string crash = genPath(moduleFor("exec-crash.ll"));
  auto crashed = rjit({"call", "--remote", "--target", "aarch64", crash, "write_null", "1"});
  EXPECT_TRUE(crashed.status.exitedWith(1)) << crashed.status.describe() << crashed.err;
  EXPECT_NE(crashed.err.find("crashed: "), std::string::npos) << crashed.err;
  EXPECT_NE(crashed.err.find("SIGSEGV"), std::string::npos) << crashed.err;
  EXPECT_EQ(crashed.out, "before the crash\n");
  auto violation = rjit({"call", "--remote", "--target", "aarch64",
                         genPath(moduleFor("exec-sandbox.ll")), "open_socket"});
  EXPECT_TRUE(violation.status.exitedWith(1)) << violation.err;
  EXPECT_NE(violation.err.find("sandbox-violation: "), std::string::npos) << violation.err;
}

TEST_P(Aarch64ExecuteTest, CliRunRemoteGivesTheSameOutputOnBothTargets) {
  std::string input = work.file("stdin.txt");
  writeFile(input, "a\nb\nc\n");
  auto x86 = rjit({"run", "--remote", genPath("exec-main.ll"), "--", "x", "y z"}, input,
                  {{"EXEC_TEST_VAR", "via rjit"}});
  auto arm = rjit({"run", "--remote", "--target", "aarch64", genPath(moduleFor("exec-main.ll")),
                   "--", "x", "y z"},
                  input, {{"EXEC_TEST_VAR", "via rjit"}});
  EXPECT_TRUE(arm.status.exitedWith(3)) << arm.status.describe() << "\n" << arm.err;
  EXPECT_EQ(arm.out, "arg 1: x\narg 2: y z\nEXEC_TEST_VAR=via rjit\nstdin: 6 bytes, 3 lines\n");
  EXPECT_EQ(arm.out, x86.out);
  EXPECT_EQ(arm.err, x86.err);
  EXPECT_EQ(arm.status.describe(), x86.status.describe());
}

TEST_P(Aarch64ExecuteTest, RjitInfoCountsTheExecutesOfEachTarget) {
  auto arm = rjit({"call", "--remote", "--target", "aarch64", genPath(moduleFor("exec-typed.ll")),
                   "add", "1", "2"});
  EXPECT_TRUE(arm.status.exitedWith(0)) << arm.err;
  auto x86 = rjit({"call", "--remote", genPath("exec-typed.ll"), "add", "1", "2"});
  EXPECT_TRUE(x86.status.exitedWith(0)) << x86.err;
  auto result = rjit({"info", "--json"});
  ASSERT_TRUE(result.status.exitedWith(0)) << result.err;
  auto info = nlohmann::json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(info.is_discarded()) << "not JSON: " << result.out;
  const auto& byTarget = info["execute"]["by_target"];
  ASSERT_TRUE(byTarget.contains("aarch64")) << result.out;
  EXPECT_EQ(byTarget["aarch64"].value("ok", uint64_t{0}), 1u) << result.out;
  ASSERT_TRUE(byTarget.contains("x86_64")) << result.out;
  EXPECT_EQ(byTarget["x86_64"].value("ok", uint64_t{0}), 1u) << result.out;
}

RJIT_INSTANTIATE_DAEMON_MODES(Aarch64ExecuteTest);
RJIT_INSTANTIATE_DAEMON_MODES(Aarch64DeadlineTest);

/// An rjitd that cannot run aarch64 code (no emulator where it was told to look) says so.
class Aarch64UnavailableTest : public ExecuteTest {
protected:
  DaemonOptions daemonOptions() const override {
    DaemonOptions options = ExecuteTest::daemonOptions();
    options.extraArgs = {"--qemu-aarch64", work.file("no-such-qemu")};
    return options;
  }
};

TEST_P(Aarch64UnavailableTest, ExecutorForAarch64NamesWhatIsMissing) {
  Client client(clientOptions());
  auto failure = catchFailure([&] { client.executor("aarch64"); });
  expectKind(failure, ErrorKind::UnknownTarget);
  ASSERT_TRUE(failure.has_value());
  EXPECT_NE(failure->message.find("no-such-qemu"), std::string::npos) << failure->message;
  // x86_64 execute is unaffected.
  auto s = typedSession(clientOptions());
  EXPECT_EQ(s.module->call<int64_t>("add", int64_t{2}, int64_t{40}), 42);
}

RJIT_INSTANTIATE_DAEMON_MODES(Aarch64UnavailableTest);

/// The kernel's MemoryDenyWriteExecute (prctl PR_SET_MDWE, Linux 6.3; what systemd 253 and
/// later use for MemoryDenyWriteExecute=yes, inherited like systemd 252's seccomp filter by
/// every child): not in Debian 12's kernel headers.
constexpr int SET_MDWE = 65;
constexpr unsigned long MDWE_REFUSE_EXEC_GAIN = 1;

TEST(Aarch64UnderMemoryDenyWriteExecute, RjitdSaysWhyAndX86ExecuteStillWorks) {
  // rjitd started with W+X memory denied to it and its children: qemu could never start, so
  // rjitd answers aarch64 executors with the reason; x86_64 executors map sealed memfds
  // read+execute, which the kernel still allows.
  const char* rjitd = std::getenv("RJITD_BIN");
  const char* executor = std::getenv("RJITD_EXECUTOR_BIN");
  ASSERT_NE(rjitd, nullptr);
  ASSERT_NE(executor, nullptr);
  TempDir dir;
  std::string socket = dir.file("rjitd.sock");
  std::vector<std::string> args = {rjitd, "--listen", "unix:" + socket, "--log-level", "warning",
                                   // any readable file: only the missing W+X memory may fail
                                   "--aarch64-executor", executor,
                                   // its own disk tier, not the default shared by every rjitd
                                   "--cache-dir", dir.file("cache")};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::prctl(SET_MDWE, MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0)
      ::_exit(126);
    ::execv(rjitd, argv.data());
    ::_exit(127);
  }
  KJ_DEFER({
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
  });
  bool listening = false;
  for (unsigned polls = 0; polls < MAX_POLLS && !listening; ++polls) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "rjitd ended: status " << status;
    listening = ::access(socket.c_str(), F_OK) == 0;
  }
  ASSERT_TRUE(listening) << "rjitd did not listen within the polling bound";

  ClientOptions options;
  options.servers = {"unix:" + socket};
  Client client(options);
  auto failure = catchFailure([&] { client.executor("aarch64"); });
  expectKind(failure, ErrorKind::UnknownTarget);
  ASSERT_TRUE(failure.has_value());
  EXPECT_NE(failure->message.find("MemoryDenyWriteExecute"), std::string::npos) << failure->message;
  RemoteExecutor x86 = client.executor();
  RemoteModule module = x86.load(moduleRequest("exec-typed.ll"));
  EXPECT_EQ(module.call<int64_t>("add", int64_t{2}, int64_t{40}), 42);
}

/// A child running `args`, with the kernel's MemoryDenyWriteExecute on it first when `mdwe`
/// (inherited by everything it starts, as systemd 252's filter is).
pid_t startProcess(std::vector<std::string> args, bool mdwe) {
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (mdwe && ::prctl(SET_MDWE, MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0)
      ::_exit(126);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

/// Waits (bounded) until `path` exists while process `pid` runs; false, with a recorded
/// failure, when it ends or the bound passes first.
bool waitForSocket(pid_t pid, const std::string& path) {
  for (unsigned polls = 0; polls < MAX_POLLS; ++polls) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) != 0) {
      ADD_FAILURE() << "process " << pid << " ended before " << path << " existed: status "
                    << status;
      return false;
    }
    if (::access(path.c_str(), F_OK) == 0)
      return true;
  }
  ADD_FAILURE() << path << " did not appear within the polling bound";
  return false;
}

/// The processes whose parent is `pid` (every thread's children).
size_t childrenOf(pid_t pid) {
  size_t count = 0;
  std::error_code ec;
  std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  for (std::filesystem::directory_iterator task(tasks, ec), end; !ec && task != end;
       task.increment(ec)) {
    std::istringstream children(readProcFile(task->path() / "children"));
    for (pid_t child; children >> child;)
      ++count;
  }
  return count;
}

/// rjitd under the kernel's MemoryDenyWriteExecute with aarch64 executors started through the
/// rjitd-launcher relay (docs/OPERATIONS.md "aarch64 executors"), served by
/// systemd-socket-activate --accept as rjitd-launcher.socket (Accept=yes) would, and running
/// without it: qemu gets its W+X memory while rjitd keeps the restriction.
class Aarch64ThroughLauncher : public ::testing::Test {
protected:
  void SetUp() override {
    if (aarch64Executor().empty())
      GTEST_SKIP() << "no aarch64 rjitd-executor: configure the native build with "
                      "-Daarch64_executor=PATH/TO/build-arm64/service/executor/rjitd-executor";
    const char* rjitd = std::getenv("RJITD_BIN");
    const char* executor = std::getenv("RJITD_EXECUTOR_BIN");
    ASSERT_NE(rjitd, nullptr);
    ASSERT_NE(executor, nullptr);
    std::string relay = std::filesystem::path(executor).parent_path() / "rjitd-launcher";
    std::string qemu = ::access("/usr/bin/qemu-aarch64-static", X_OK) == 0
                           ? "/usr/bin/qemu-aarch64-static"
                           : "/usr/bin/qemu-aarch64";
    std::vector<std::string> args = {"/usr/bin/systemd-socket-activate",
                                     "--listen=" + launcherSocket,
                                     "--accept",
                                     "--",
                                     relay,
                                     "--executor",
                                     executor,
                                     "--emulator",
                                     qemu,
                                     "--guest",
                                     aarch64Executor()};
    // A relay running as root (the test does in CI) must be told whom executors run as, as
    // rjitd as root runs its own as nobody.
    if (::geteuid() == 0)
      args.insert(args.end(), {"--uid", "65534", "--gid", "65534"});
    activator = startProcess(std::move(args), false);
    ASSERT_GT(activator, 0);
    ASSERT_TRUE(waitForSocket(activator, launcherSocket));
    daemon = startProcess({rjitd, "--listen", "unix:" + rjitdSocket, "--log-level", "warning",
                           "--execute-timeout", SHORT_EXECUTE_TIMEOUT_SECONDS, "--aarch64-launcher",
                           "unix:" + launcherSocket, "--cache-dir", dir.file("cache")},
                          true);
    ASSERT_GT(daemon, 0);
    ASSERT_TRUE(waitForSocket(daemon, rjitdSocket));
  }

  void TearDown() override {
    // rjitd first: its connections' ends end the relays and their executors.
    for (pid_t* pid : {&daemon, &activator}) {
      if (*pid > 0) {
        ::kill(*pid, SIGTERM);
        ::waitpid(*pid, nullptr, 0);
      }
    }
  }

  ClientOptions clientOptions() const {
    ClientOptions options;
    options.servers = {"unix:" + rjitdSocket};
    return options;
  }

  TempDir dir;
  std::string launcherSocket = dir.file("launcher.sock");
  std::string rjitdSocket = dir.file("rjitd.sock");
  pid_t activator = -1, daemon = -1;
};

TEST_F(Aarch64ThroughLauncher, CallCrashAndDeadlineWorkWhileRjitdKeepsMdwe) {
  Client client(clientOptions());
  {
    RemoteExecutor executor = client.executor("aarch64");
    RemoteModule module = executor.load(moduleRequest("exec-typed-aarch64.ll"));
    EXPECT_EQ(module.call<int64_t>("add", int64_t{2}, int64_t{40}), 42);
    auto said = module.callValues("say", {Value::of("one")});
    EXPECT_EQ(said.output.out, "out: one\n");
  }
  {
    RemoteExecutor executor = client.executor("aarch64");
    RemoteModule module = executor.load(moduleRequest("exec-crash-aarch64.ll"));
    auto failure = catchFailure([&] { module.callValues("write_null", {Value::of(int64_t{1})}); });
    expectKind(failure, ErrorKind::Crashed);
    ASSERT_TRUE(failure.has_value());
    EXPECT_EQ(failure->signal, SIGSEGV);
    EXPECT_NE(failure->message.find("SIGSEGV"), std::string::npos) << failure->message;
    EXPECT_EQ(failure->output.out, "before the crash\n");
    EXPECT_EQ(failure->output.err, "");  // qemu's report is left out, as when rjitd spawns
  }
  {
    RemoteExecutor executor = client.executor("aarch64");
    RemoteModule module = executor.load(moduleRequest("exec-hang-aarch64.ll"));
    auto failure = catchFailure([&] { module.callValues("hang", {}); });
    expectKind(failure, ErrorKind::Timeout);
    // The executor rjitd had the relay kill is replaced by a fresh one on the next call.
    RemoteModule typed = executor.load(moduleRequest("exec-typed-aarch64.ll"));
    EXPECT_EQ(typed.call<int64_t>("add", int64_t{1}, int64_t{2}), 3);
  }
  // rjitd's own executors stay in rjitd: x86_64 execute is unaffected.
  RemoteExecutor x86 = client.executor();
  RemoteModule module = x86.load(moduleRequest("exec-typed.ll"));
  EXPECT_EQ(module.call<int64_t>("add", int64_t{2}, int64_t{40}), 42);
}

TEST_F(Aarch64ThroughLauncher, NoRelayOrExecutorOutlivesItsClient) {
  {
    Client client(clientOptions());
    RemoteExecutor executor = client.executor("aarch64");
    RemoteModule module = executor.load(moduleRequest("exec-typed-aarch64.ll"));
    EXPECT_EQ(module.call<int64_t>("add", int64_t{2}, int64_t{40}), 42);
    EXPECT_EQ(childrenOf(activator), 1u);  // one relay (its executor is the relay's child)
  }
  // rjitd ends the executor with its client, closing the relay's connection: the relay kills
  // and reaps it, then exits.
  size_t left = 1;
  for (unsigned polls = 0; polls < MAX_POLLS && left != 0; ++polls)
    left = childrenOf(activator);
  EXPECT_EQ(left, 0u);
}

}  // namespace
}  // namespace rjit::test
