// SPDX-License-Identifier: MIT
// The same-host fast path end to end: modules compiled and linked by a real rjitd, mapped into
// this test process through the real client library, and called natively.
#include <dirent.h>
#include <dlfcn.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "compile-gate.h"
#include "fixture.h"

namespace {

// What the loaded modules report through host_record (see test/data/fastpath*.c).
std::mutex eventsMutex;
std::vector<std::string> events;

extern "C" void host_record(const char* event) {
  std::lock_guard<std::mutex> lock(eventsMutex);
  events.emplace_back(event);
}

extern "C" int host_twice(int x) {
  return 2 * x;
}

std::vector<std::string> takeEvents() {
  std::lock_guard<std::mutex> lock(eventsMutex);
  return std::exchange(events, {});
}

int hostTriple(int x) {
  return 3 * x;
}

extern "C" int fakeGetpid() {
  return 4242;
}

}  // namespace

namespace rjit::test {
namespace {

/// One line of /proc/self/maps.
struct Mapping {
  uint64_t start = 0, end = 0;
  std::string perms, path;
};

std::vector<Mapping> selfMaps() {
  std::ifstream in("/proc/self/maps");
  std::vector<Mapping> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    Mapping m;
    std::string range, offset, device, inode;
    fields >> range >> m.perms >> offset >> device >> inode;
    std::getline(fields, m.path);
    m.path.erase(0, m.path.find_first_not_of(' '));
    m.start = std::stoull(range.substr(0, range.find('-')), nullptr, 16);
    m.end = std::stoull(range.substr(range.find('-') + 1), nullptr, 16);
    out.push_back(m);
  }
  return out;
}

/// Fails the test for every mapping of this process that is writable and executable at once.
void expectNoWritableExecutableMapping() {
  for (const Mapping& m : selfMaps())
    EXPECT_FALSE(m.perms[1] == 'w' && m.perms[2] == 'x')
        << "writable and executable: " << std::hex << m.start << "-" << m.end << " " << m.perms
        << " " << m.path;
}

/// Image memfds rjitd (process `pid`) holds open.
size_t imageFdsOf(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  size_t n = 0;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr)
    return 0;
  while (struct dirent* entry = ::readdir(d)) {
    char target[512];
    std::string link = dir + "/" + entry->d_name;
    ssize_t len = ::readlink(link.c_str(), target, sizeof(target) - 1);
    if (len > 0 && std::string_view(target, len).starts_with("/memfd:rjitd:"))
      ++n;
  }
  ::closedir(d);
  return n;
}

/// Waits until `pred` holds, checking it once and then after each round trip through the
/// event loop of rjitd at `endpoint` (a stats request), at most `MAX_ROUND_TRIPS` times and
/// within the safety bound. For figures rjitd changes on its loop without an event a test
/// could wait on (an image freed when a connection ends, a load answered to a client that has
/// gone): the round trip is the pace, and the figure itself ends the wait.
template <typename Pred> bool waitThroughRjitd(const std::string& endpoint, Pred&& pred) {
  constexpr unsigned MAX_ROUND_TRIPS = 100'000;
  ClientOptions options;
  options.servers = {endpoint};
  options.clientName = "load-test-observer";
  Client observer(options);
  auto deadline = std::chrono::steady_clock::now() + SAFETY_BOUND;
  for (unsigned i = 0; i < MAX_ROUND_TRIPS && std::chrono::steady_clock::now() < deadline; ++i) {
    if (pred(observer))
      return true;
    observer.stats();
  }
  return pred(observer);
}

/// Waits until rjitd holds no image memfd (it frees them when a connection ends); false after
/// the bound.
bool waitNoImages(const DaemonProcess& daemon) {
  return waitThroughRjitd(daemon.endpoint(),
                          [&](Client&) { return imageFdsOf(daemon.pid()) == 0; });
}

CompileRequest moduleRequest(const std::string& name, unsigned optLevel = 2) {
  CompileRequest request;
  request.module = readFile(genPath(name));
  request.moduleName = name;
  request.optLevel = optLevel;
  return request;
}

LoadOptions hostSymbols() {
  LoadOptions options;
  options.symbols["host_record"] = reinterpret_cast<void*>(&host_record);
  options.symbols["host_twice"] = reinterpret_cast<void*>(&host_twice);
  return options;
}

class LoadTest : public DaemonTest {
protected:
  void SetUp() override {
    DaemonTest::SetUp();
    takeEvents();
  }
};

TEST_P(LoadTest, CCodeRunsNativelyInThisProcess) {
  Client client(clientOptions());
  for (unsigned opt : {0u, 2u}) {
    SCOPED_TRACE("-O" + std::to_string(opt));
    Module module = client.load(moduleRequest("fastpath.ll", opt), hostSymbols());
    ASSERT_TRUE(module);
    EXPECT_EQ(takeEvents(), std::vector<std::string>{"ctor"});
    EXPECT_EQ(module.lookup<int(int, int)>("add")(40, 2), 42);
    EXPECT_EQ(module.lookup<double(double, double)>("scale")(1.5, 4), 6.0);
    EXPECT_EQ(*module.lookup<int>("counter"), 7);
    module.lookup<void()>("bump_counter")();
    EXPECT_EQ(module.lookup<int()>("read_counter")(), 8);
    *module.lookup<int>("counter") = 100;  // data is writable
    EXPECT_EQ(module.lookup<int()>("read_counter")(), 100);
    EXPECT_STREQ(module.lookup<const char*()>("get_banner")(), "fastpath");
    EXPECT_EQ(module.lookup<int(int)>("twice_via_host")(10), 21);
    EXPECT_EQ(module.lookup<int(int (*)(int), int)>("apply")(&hostTriple, 5), 45);
    EXPECT_EQ(module.lookup<int64_t()>("sorted_digits")(), 12345789);
    EXPECT_EQ(module.lookup<int()>("scratch_sum")(), 0);
    EXPECT_EQ(module.lookup<int()>("scratch_sum")(), 100);
    EXPECT_EQ(module.lookup<int(int, int)>("call_through_table")(2, 3), 5);
    EXPECT_EQ(module.address("no_such_symbol"), nullptr);
    auto missing = catchError([&] { module.lookup<int()>("no_such_symbol"); });
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->kind(), ErrorKind::NotFound);
    EXPECT_NE(std::string(missing->what()).find("no_such_symbol"), std::string::npos);
    EXPECT_EQ(module.lookup<int()>("register_atexit")(), 0);
    expectNoWritableExecutableMapping();
    module.unload();
    // atexit handlers of the module run at unload (before its destructor functions, as at the
    // exit of a native program), not at process exit when its code is gone.
    EXPECT_EQ(takeEvents(), (std::vector<std::string>{"atexit", "dtor"}));
  }
  expectServes(client);
}

TEST_P(LoadTest, CodeIsNeverWritableAndCannotBeMadeWritable) {
  Client client(clientOptions());
  Module module = client.load(moduleRequest("fastpath.ll"), hostSymbols());
  uint64_t code = reinterpret_cast<uint64_t>(module.lookup<int(int, int)>("add"));
  bool found = false;
  for (const Mapping& m : selfMaps()) {
    if (code < m.start || code >= m.end)
      continue;
    found = true;
    EXPECT_EQ(m.perms, "r-xs") << m.path;
    EXPECT_NE(m.path.find("memfd:rjitd:"), std::string::npos) << m.path;
    // The image file is sealed: its shared pages can never become writable here.
    void* page = reinterpret_cast<void*>(m.start);
    EXPECT_NE(::mprotect(page, 4096, PROT_READ | PROT_WRITE), 0);
    EXPECT_NE(::mprotect(page, 4096, PROT_READ | PROT_WRITE | PROT_EXEC), 0);
  }
  EXPECT_TRUE(found) << "no mapping holds the code of add()";
  expectNoWritableExecutableMapping();
  // The module's pages lie inside the reported image.
  EXPECT_GE(code, module.base());
  EXPECT_LT(code, module.base() + module.size());
}

TEST_P(LoadTest, CppExceptionsVirtualCallsAndStaticObjects) {
  Client client(clientOptions());
  {
    Module module = client.load(moduleRequest("fastpath-cxx.ll"), hostSymbols());
    EXPECT_EQ(takeEvents(), std::vector<std::string>{"static-ctor"});
    // 1 + 3*4 + 9 + 3*16 + 25 = 95
    EXPECT_EQ(module.lookup<double(int)>("total_area")(5), 95.0);
    EXPECT_EQ(module.lookup<int(int)>("catch_inside")(1), 8);
    EXPECT_EQ(module.lookup<int(int)>("catch_inside")(0), 0);
    try {
      module.lookup<void(const char*)>("throw_to_host")("from JIT code");
      ADD_FAILURE() << "no exception reached the host";
    } catch (const std::invalid_argument& e) {
      EXPECT_STREQ(e.what(), "from JIT code");
    }
    auto hostThrows = +[] { throw std::runtime_error("from the host"); };
    EXPECT_EQ(module.lookup<int(void (*)())>("catch_from_host")(hostThrows), 42);
    try {
      module.lookup<void(void (*)())>("pass_through")(hostThrows);
      ADD_FAILURE() << "the host's exception did not come back through JIT frames";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "from the host");
    }
    EXPECT_EQ(module.lookup<int(const char*)>("lookup_table")("two"), 2);
    EXPECT_EQ(module.lookup<int(const char*)>("lookup_table")("three"), -1);
    EXPECT_TRUE(takeEvents().empty());
  }
  EXPECT_EQ(takeEvents(), std::vector<std::string>{"static-dtor"});
}

TEST_P(LoadTest, ThreadLocalStorageIsPerThread) {
  Client client(clientOptions());
  Module module = client.load(moduleRequest("fastpath.ll"), hostSymbols());
  auto tlsAdd = module.lookup<int(int)>("tls_add");
  EXPECT_EQ(tlsAdd(1), 4);
  EXPECT_EQ(tlsAdd(1), 5);
  int other = 0;
  std::thread([&] { other = tlsAdd(10); }).join();
  EXPECT_EQ(other, 13);  // a fresh copy, initialised to 3
  EXPECT_EQ(tlsAdd(0), 5);
}

TEST_P(LoadTest, ManyThreadsCallLoadedCodeAtOnce) {
  Client client(clientOptions());
  Module module = client.load(moduleRequest("fastpath.ll"), hostSymbols());
  auto add = module.lookup<int(int, int)>("add");
  auto sorted = module.lookup<int64_t()>("sorted_digits");
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i)
        if (add(i, t) != i + t || (i % 1000 == 0 && sorted() != 12345789))
          ++wrong;
    });
  for (auto& thread : threads)
    thread.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_P(LoadTest, LaterModuleCallsEarlierOneAndUnloadReloadWorks) {
  Client client(clientOptions());
  Module lib = client.load(moduleRequest("fastpath-lib.ll"));
  Module user = client.load(moduleRequest("fastpath-user.ll"));
  EXPECT_EQ(user.lookup<int(int)>("sum_of_squares")(3), 14);
  EXPECT_EQ(user.lookup<int()>("calls_seen")(), 3);  // the earlier module's data, shared
  EXPECT_EQ(*lib.lookup<int>("lib_calls"), 3);

  // The same symbols again in this session: a clear error, and the session goes on.
  auto duplicate = catchError([&] { client.load(moduleRequest("fastpath-lib.ll")); });
  ASSERT_TRUE(duplicate);
  EXPECT_EQ(duplicate->kind(), ErrorKind::LinkFailed);
  EXPECT_NE(std::string(duplicate->what()).find("lib_"), std::string::npos) << duplicate->what();
  EXPECT_NE(std::string(duplicate->what()).find("already defined"), std::string::npos);

  // A module stays loaded while a later one uses it, whatever happens to its handle.
  uint64_t firstBase = lib.base();
  lib.unload();
  EXPECT_FALSE(lib);
  EXPECT_EQ(user.lookup<int(int)>("sum_of_squares")(2), 5);
  EXPECT_EQ(user.lookup<int()>("calls_seen")(), 5);
  // Unload both; they load again (reusing the freed address range) and work.
  user.unload();
  EXPECT_FALSE(lib);
  for (int round = 0; round < 3; ++round) {
    Module lib2 = client.load(moduleRequest("fastpath-lib.ll"));
    Module user2 = client.load(moduleRequest("fastpath-user.ll"));
    EXPECT_EQ(lib2.base(), firstBase);
    EXPECT_EQ(user2.lookup<int(int)>("sum_of_squares")(4), 30);
    EXPECT_EQ(user2.lookup<int()>("calls_seen")(), 4);  // fresh data for each load
  }
  expectServes(client);
}

TEST_P(LoadTest, UnresolvedSymbolsAreNamed) {
  Client client(clientOptions());
  auto error = catchError([&] { client.load(moduleRequest("fastpath-unresolved.ll")); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::LinkFailed);
  std::string message = error->what();
  EXPECT_NE(message.find("rjit_test_missing_function"), std::string::npos) << message;
  EXPECT_NE(message.find("rjit_test_missing_data"), std::string::npos) << message;
  EXPECT_NE(message.find("fastpath-unresolved.ll"), std::string::npos) << message;
  // A host symbol missing from the process (processSymbols off) is named the same way.
  LoadOptions noProcess;
  noProcess.processSymbols = false;
  auto error2 = catchError([&] { client.load(moduleRequest("fastpath.ll"), noProcess); });
  ASSERT_TRUE(error2);
  EXPECT_EQ(error2->kind(), ErrorKind::LinkFailed);
  EXPECT_NE(std::string(error2->what()).find("host_record"), std::string::npos) << error2->what();
  // The failed loads left nothing behind, and the session still loads.
  Module module = client.load(moduleRequest("fastpath.ll"), hostSymbols());
  EXPECT_EQ(module.lookup<int(int, int)>("add")(1, 2), 3);
  expectServes(client);
}

TEST_P(LoadTest, WarmLoadsAskTheClientNothing) {
  Client client(clientOptions());
  auto questions = [&] { return client.stats().symbolQuestions; };
  LoadOptions offered;
  offered.symbols["host_twice"] = reinterpret_cast<void*>(&host_twice);
  uint64_t before = questions();
  {
    Module module = client.load(moduleRequest("fastpath-imports.ll"), offered);
    EXPECT_EQ(module.lookup<int()>("pid_via_libc")(), getpid());
    EXPECT_EQ(module.lookup<int(int)>("twice_plus_one")(20), 41);
  }
  // One question, for getpid; host_twice travelled with the request.
  uint64_t first = questions();
  EXPECT_EQ(first, before + 1);
  for (int i = 0; i < 3; ++i) {
    Module module = client.load(moduleRequest("fastpath-imports.ll"), offered);
    EXPECT_EQ(module.lookup<int()>("pid_via_libc")(), getpid());
  }
  EXPECT_EQ(questions(), first) << "rjitd asked again for a process symbol it had been told";

  // What the request offers wins over the process symbol rjitd remembers.
  LoadOptions fake = offered;
  fake.symbols["getpid"] = reinterpret_cast<void*>(&fakeGetpid);
  {
    Module module = client.load(moduleRequest("fastpath-imports.ll"), fake);
    EXPECT_EQ(module.lookup<int()>("pid_via_libc")(), 4242);
  }
  // Without process symbols, the remembered ones are not used either.
  LoadOptions none = offered;
  none.processSymbols = false;
  auto error = catchError([&] { client.load(moduleRequest("fastpath-imports.ll"), none); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::LinkFailed);
  EXPECT_NE(std::string(error->what()).find("getpid"), std::string::npos) << error->what();
  EXPECT_EQ(questions(), first + 1);
  {
    Module module = client.load(moduleRequest("fastpath-imports.ll"), offered);
    EXPECT_EQ(module.lookup<int()>("pid_via_libc")(), getpid());
  }
  EXPECT_EQ(questions(), first + 1);

  // A module loaded on the connection wins over the process symbol rjitd remembers.
  {
    Module own = client.load(moduleRequest("fastpath-getpid.ll"));
    Module module = client.load(moduleRequest("fastpath-imports.ll"), offered);
    EXPECT_EQ(module.lookup<int()>("pid_via_libc")(), 777);
  }
  EXPECT_EQ(questions(), first + 1);

  // Another connection has its own answers: it is asked once too.
  Client other(clientOptions());
  Module module = other.load(moduleRequest("fastpath-imports.ll"), offered);
  EXPECT_EQ(module.lookup<int()>("pid_via_libc")(), getpid());
  EXPECT_EQ(questions(), first + 2);
  expectServes(client);
}

TEST_P(LoadTest, TooManyOfferedSymbolsAreRefused) {
  Client client(clientOptions());
  LoadOptions many;
  for (int i = 0; i <= 16384; ++i)
    many.symbols["offered_" + std::to_string(i)] = reinterpret_cast<void*>(&host_twice);
  auto error = catchError([&] { client.load(moduleRequest("fastpath-imports.ll"), many); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::InvalidRequest);
  EXPECT_NE(std::string(error->what()).find("16385 symbols"), std::string::npos) << error->what();
  LoadOptions longNames;
  for (int i = 0; i < 3; ++i)
    longNames.symbols[std::string(400 * 1024, static_cast<char>('a' + i))] =
        reinterpret_cast<void*>(&host_twice);
  auto error2 = catchError([&] { client.load(moduleRequest("fastpath-imports.ll"), longNames); });
  ASSERT_TRUE(error2);
  EXPECT_EQ(error2->kind(), ErrorKind::InvalidRequest);
  EXPECT_NE(std::string(error2->what()).find("bytes"), std::string::npos) << error2->what();
  LoadOptions offered;
  offered.symbols["host_twice"] = reinterpret_cast<void*>(&host_twice);
  Module module = client.load(moduleRequest("fastpath-imports.ll"), offered);
  EXPECT_EQ(module.lookup<int(int)>("twice_plus_one")(1), 3);
  expectServes(client);
}

TEST_P(LoadTest, CallCutShortWhileHashingLeavesTheModuleAlone) {
  // A module large enough that hashing it (hash-first) outlasts the deadline: the call ends
  // while the hash worker reads the caller's bytes, which must then be left alone (this test
  // is for the AddressSanitizer build, where reading them after they are freed would fail it).
  auto options = clientOptions();
  options.timeout = std::chrono::milliseconds(10);
  Client client(options);
  // Connected (socket activation starts rjitd first), so that the deadline is for the hash.
  expectServes();
  bool connected = false;
  for (int attempt = 0; attempt < 50 && !connected; ++attempt) {
    try {
      client.serverInfo();
      connected = true;
    } catch (const Error&) {
    }
  }
  ASSERT_TRUE(connected) << "no handshake within 10 ms in 50 attempts";
  int timedOut = 0;
  for (int round = 0; round < 3; ++round) {
    auto request = std::make_unique<CompileRequest>();
    request->module.assign(60u << 20, static_cast<char>('a' + round));
    request->moduleName = "big";
    auto error = catchError([&] { client.compile(*request); });
    ASSERT_TRUE(error);
    timedOut += error->kind() == ErrorKind::Timeout;
    request->module.assign(request->module.size(), 'z');  // overwritten, then freed
    request.reset();
  }
  EXPECT_GT(timedOut, 0) << "no call was cut short: the test exercised nothing";
  Client fresh(clientOptions());
  expectServes(fresh);
}

TEST_P(LoadTest, LibraryAModuleImportsFromStaysLoaded) {
  const char* built = std::getenv("RJIT_TEST_PLUGIN");
  ASSERT_NE(built, nullptr) << "RJIT_TEST_PLUGIN is not set (run under meson test)";
  // A copy of its own for every run (a file of its own is a library of its own).
  std::string copy = work.path() + "/plugin.so";
  std::filesystem::copy_file(built, copy, std::filesystem::copy_options::overwrite_existing);
  const char* path = copy.c_str();
  ASSERT_EQ(::dlopen(path, RTLD_NOW | RTLD_NOLOAD), nullptr);
  void* plugin = ::dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  ASSERT_NE(plugin, nullptr) << ::dlerror();
  // The process's plugin_value is this copy's unless an earlier run's copy is still loaded
  // (pinned by that run, and first in the global scope): then the module uses that one, and
  // this copy may go.
  bool ours = ::dlsym(RTLD_DEFAULT, "plugin_value") == ::dlsym(plugin, "plugin_value");
  Client client(clientOptions());
  {
    Module module = client.load(moduleRequest("fastpath-plugin-user.ll"));
    EXPECT_EQ(module.lookup<int()>("plugin_plus_one")(), 42);
  }
  // The loaded code kept a pointer into the library, so the client pinned it: closing the
  // program's handle does not unload it, and rjitd's remembered address stays right.
  ASSERT_EQ(::dlclose(plugin), 0);
  void* still = ::dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  if (ours) {
    EXPECT_NE(still, nullptr) << "the library was unloaded under the address rjitd remembers";
  }
  if (still != nullptr)
    ::dlclose(still);
  Module again = client.load(moduleRequest("fastpath-plugin-user.ll"));
  EXPECT_EQ(again.lookup<int()>("plugin_plus_one")(), 42);
}

TEST_P(LoadTest, ModuleOverTheMemoryQuotaIsRefused) {
  auto options = clientOptions();
  options.memoryQuota = 1 << 20;  // 1 MiB; the module needs 4 MiB of bss
  Client client(options);
  auto error = catchError([&] { client.load(moduleRequest("fastpath-big.ll")); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::TooLarge);
  EXPECT_NE(std::string(error->what()).find("RJIT_MEMORY_QUOTA"), std::string::npos)
      << error->what();
  // Smaller modules still fit.
  Module module = client.load(moduleRequest("fastpath.ll"), hostSymbols());
  EXPECT_EQ(module.lookup<int(int, int)>("add")(1, 2), 3);
}

TEST_P(LoadTest, DaemonLimitsWhatOneClientMayHold) {
  DaemonOptions options = daemonOptions();
  options.extraArgs.push_back("--max-client-memory=2097152");  // 2 MiB
  auto small = startDaemon(options);
  ASSERT_TRUE(small);
  Client client(clientOptions(small.get()));
  auto error = catchError([&] { client.load(moduleRequest("fastpath-big.ll")); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::TooLarge);
  EXPECT_NE(std::string(error->what()).find("--max-client-memory"), std::string::npos)
      << error->what();
}

TEST_P(LoadTest, UnloadAndClientDeathFreeWhatRjitdHeld) {
  {
    Client client(clientOptions());
    Module a = client.load(moduleRequest("fastpath.ll"), hostSymbols());
    Module b = client.load(moduleRequest("fastpath-lib.ll"));
    EXPECT_EQ(imageFdsOf(daemon->pid()), 2u);
    a.unload();
    // The release travels to rjitd asynchronously; it is done once the next call is answered.
    client.stats();
    EXPECT_EQ(imageFdsOf(daemon->pid()), 1u);
  }
  EXPECT_TRUE(waitNoImages(*daemon));

  // A process that dies holding loaded code (it calls _exit from the module).
  const char* rjit = std::getenv("RJIT_BIN");
  ASSERT_NE(rjit, nullptr) << "RJIT_BIN is not set (run under meson test)";
  auto result = runCommand(
      work, {rjit, "--server", daemon->endpoint(), "call", genPath("fastpath-exit.ll"), "die_now"});
  EXPECT_TRUE(result.status.exitedWith(0)) << result.status.describe() << result.err;
  EXPECT_TRUE(waitNoImages(*daemon));
  expectServes();
}

TEST_P(LoadTest, ClientThatVanishesMidLoadCostsNothing) {
  // `rjit run` of a module, killed while rjitd's compile for the load is held at the test's
  // compile gate: the client certainly vanishes mid-load, whatever the machine's speed.
  auto gate = CompileGate::create(work.file("compile-gate.sock"));
  ASSERT_NE(gate, nullptr);
  auto gated = startGated(*gate);
  ASSERT_NE(gated, nullptr);
  std::string module = work.file("slow.ll");
  writeFile(module, generatedModule(8));
  const char* rjit = std::getenv("RJIT_BIN");
  ASSERT_NE(rjit, nullptr) << "RJIT_BIN is not set (run under meson test)";
  SpawnOptions spawn;
  spawn.argv = {rjit, "--server", gated->endpoint(), "run", module};
  spawn.env = environmentWith({});
  auto child = ChildProcess::spawn(spawn);
  ASSERT_TRUE(child);
  ASSERT_EQ(gate->waitArrival(), module);  // `rjit run` names the module by its path
  child->signal(SIGKILL);
  ASSERT_TRUE(child->wait());
  // Nobody else waits for the compile: rjitd calls it off (issue 12) once it notices the
  // client is gone, and never answers the load.
  EXPECT_TRUE(waitThroughRjitd(
      gated->endpoint(), [](Client& observer) { return observer.stats().compilesInFlight == 0; }));
  gate->open();
  Client observer(clientOptions(gated.get()));
  EXPECT_EQ(observer.stats().loads, 0u);
  EXPECT_EQ(observer.stats().compiles, 0u);  // a compile called off is no compile (nor failure)
  EXPECT_TRUE(waitNoImages(*gated));
  EXPECT_TRUE(waitThroughRjitd(
      gated->endpoint(), [](Client& observer) { return observer.stats().loadedImages == 0; }));
  // Nothing was cached for it, right or wrong: a new client's load compiles it afresh.
  CompileRequest again;
  again.module = readFile(module);
  again.moduleName = "slow.ll";
  Module loaded = observer.load(again);
  EXPECT_FALSE(loaded.object().fromCache);
  expectServes(observer);
  if (gated->mode() == DaemonMode::SocketActivated)
    gated->waitReady();
  auto status = gated->stop();
  EXPECT_TRUE(status.exitedWith(0)) << "rjitd after SIGTERM: " << status.describe();
}

TEST_P(LoadTest, WorksWhereDevShmIsNoexec) {
  // rjit in a mount namespace of its own whose /dev/shm is a fresh noexec tmpfs: the fast path
  // uses memfds passed over the socket, never /dev/shm.
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root for a private mount namespace (CI runs as root)";
  auto probe =
      runCommand(work, {"/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/true"});
  if (!probe.status.exitedWith(0))
    GTEST_SKIP() << "this machine allows no private mount namespace (a container without "
                    "CAP_SYS_ADMIN?): "
                 << probe.err;
  const char* rjit = std::getenv("RJIT_BIN");
  ASSERT_NE(rjit, nullptr) << "RJIT_BIN is not set (run under meson test)";
  std::string script = "mount -t tmpfs -o noexec,nosuid,nodev tmpfs /dev/shm && "
                       "grep -q ' /dev/shm tmpfs .*noexec' /proc/self/mounts && exec \"$@\"";
  auto result =
      runCommand(work, {"/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                        script, "sh", rjit, "--server", daemon->endpoint(), "call",
                        genPath("fastpath-lib.ll"), "lib_square", "7"});
  EXPECT_TRUE(result.status.exitedWith(0)) << result.status.describe() << ": " << result.err;
  EXPECT_EQ(result.out, "49\n");
}

TEST_P(LoadTest, OverTcpTheBytesTravelAndMapTheSame) {
  DaemonOptions options = daemonOptions();
  options.tcpPort = freeTcpPort();
  ASSERT_NE(options.tcpPort, 0);
  auto both = startDaemon(options);
  ASSERT_TRUE(both);
  ClientOptions tcp = clientOptions(both.get());
  tcp.servers = {both->tcpEndpoint()};
  Client client(tcp);
  Module module = client.load(moduleRequest("fastpath.ll"), hostSymbols());
  EXPECT_EQ(module.lookup<int(int, int)>("add")(20, 22), 42);
  EXPECT_EQ(module.lookup<int(int)>("twice_via_host")(4), 9);
  uint64_t code = reinterpret_cast<uint64_t>(module.lookup<int(int, int)>("add"));
  for (const Mapping& m : selfMaps()) {
    if (code >= m.start && code < m.end) {
      EXPECT_EQ(m.perms, "r-xs") << m.path;  // the client's own sealed memfd
    }
  }
  expectNoWritableExecutableMapping();
  module.unload();
  EXPECT_EQ(takeEvents(), (std::vector<std::string>{"ctor", "dtor"}));
}

TEST_P(LoadTest, LoadedCodeOutlivesRjitdAndLaterLoadsReconnect) {
  // A restart as systemd does it: the listening socket stays, rjitd is replaced.
  DaemonOptions options = daemonOptions();
  options.mode = DaemonMode::HeldSocket;
  auto held = DaemonProcess::start(options);
  ASSERT_TRUE(held);
  Client client(clientOptions(held.get()));
  Module module = client.load(moduleRequest("fastpath.ll"), hostSymbols());
  Module lib = client.load(moduleRequest("fastpath-lib.ll"));
  auto add = module.lookup<int(int, int)>("add");
  ASSERT_TRUE(held->stop().exitedWith(0));
  EXPECT_EQ(add(2, 3), 5);  // the code is this process's now
  EXPECT_EQ(module.lookup<int(int)>("twice_via_host")(1), 3);
  ASSERT_TRUE(held->startAgain());
  // The new rjitd knows nothing of the modules loaded before; this client resolves their
  // symbols itself, so a later module still links against an earlier one.
  Module user = client.load(moduleRequest("fastpath-user.ll"));
  EXPECT_EQ(user.lookup<int(int)>("sum_of_squares")(3), 14);
  EXPECT_EQ(*lib.lookup<int>("lib_calls"), 3);
  EXPECT_EQ(add(4, 5), 9);
  module.unload();  // its daemon is gone: unloading is local, and fine
  EXPECT_EQ(takeEvents(), (std::vector<std::string>{"ctor", "dtor"}));
}

TEST_P(LoadTest, HashFirstLoadSendsNoBodyWhenCached) {
  auto options = clientOptions();
  options.hashFirstBytes = 0;  // always ask by key first
  Client client(options);
  CompileRequest request = moduleRequest("fastpath.ll");
  request.module = withNonce(request.module);
  uint64_t before = client.stats().moduleBytesReceived;
  {
    Module first = client.load(request, hostSymbols());
    EXPECT_FALSE(first.object().fromCache);
  }
  uint64_t afterFirst = client.stats().moduleBytesReceived;
  EXPECT_EQ(afterFirst - before, request.module.size());
  Module second = client.load(request, hostSymbols());
  EXPECT_TRUE(second.object().fromCache);
  EXPECT_EQ(client.stats().moduleBytesReceived, afterFirst);  // the body did not travel again
  EXPECT_EQ(second.lookup<int(int, int)>("add")(1, 1), 2);
}

/// A function `int f(int x)` returning 2 * x, written as machine code into a page in the middle
/// of a 6 GiB reservation of its own: whatever address a module's image gets, the function lies
/// at least 3 GiB away from it, beyond a direct call's reach (AArch64 CALL26: +-128 MiB; x86-64
/// small code model PC32: +-2 GiB), so a loaded module can call it only through a stub that
/// loads its address from the GOT.
class FarFunction final {
public:
  FarFunction() {
    void* area =
        ::mmap(nullptr, RESERVED, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (area == MAP_FAILED) {
      ADD_FAILURE() << "cannot reserve " << RESERVED << " bytes: " << std::strerror(errno);
      return;
    }
    reservation = area;
#if defined(__aarch64__)
    const uint32_t code[] = {0x0b000000,   // add w0, w0, w0
                             0xd65f03c0};  // ret
#elif defined(__x86_64__)
    const unsigned char code[] = {0x8d, 0x04, 0x3f,  // lea eax, [rdi + rdi]
                                  0xc3};             // ret
#else
#error "FarFunction has no machine code for this architecture"
#endif
    // Written while writable, then made executable only (W^X, as loaded images are).
    char* start = static_cast<char*>(area) + RESERVED / 2;
    if (::mprotect(start, PAGE, PROT_READ | PROT_WRITE) != 0) {
      ADD_FAILURE() << "cannot make the far function's page writable: " << std::strerror(errno);
      return;
    }
    std::memcpy(start, code, sizeof code);
    if (::mprotect(start, PAGE, PROT_READ | PROT_EXEC) != 0) {
      ADD_FAILURE() << "cannot make the far function's page executable: " << std::strerror(errno);
      return;
    }
    __builtin___clear_cache(start, start + sizeof code);
    page = start;
  }
  ~FarFunction() {
    if (reservation != nullptr)
      ::munmap(reservation, RESERVED);
  }
  FarFunction(const FarFunction&) = delete;
  FarFunction& operator=(const FarFunction&) = delete;

  /// nullptr after a recorded failure.
  void* address() const {
    return page;
  }
  /// How far `code` is from the function.
  uint64_t distanceTo(const void* code) const {
    auto a = reinterpret_cast<uint64_t>(page), b = reinterpret_cast<uint64_t>(code);
    return a > b ? a - b : b - a;
  }

private:
  static constexpr size_t RESERVED = size_t{6} << 30;
  static constexpr size_t PAGE = 1 << 16;  // the largest page size either architecture uses
  void* reservation = nullptr;
  void* page = nullptr;
};

TEST_P(LoadTest, ImportBeyondDirectCallReachIsCalledThroughAStub) {
  FarFunction far;
  ASSERT_NE(far.address(), nullptr);
  Client client(clientOptions());
  LoadOptions offered;
  offered.symbols["host_twice"] = far.address();
  for (unsigned opt : {0u, 2u}) {
    SCOPED_TRACE("-O" + std::to_string(opt));
    Module module = client.load(moduleRequest("fastpath-imports.ll", opt), offered);
    auto twicePlusOne = module.lookup<int(int)>("twice_plus_one");
    EXPECT_GE(far.distanceTo(reinterpret_cast<const void*>(twicePlusOne)), uint64_t{3} << 30);
    EXPECT_EQ(twicePlusOne(20), 41);
    EXPECT_EQ(twicePlusOne(-4), -7);
  }
}

TEST_P(LoadTest, LoadRejectsAnotherArchitecture) {
  // The target rjitd serves that this process is not (the cross build runs this on aarch64).
#if defined(__aarch64__)
  const std::string other = "x86_64";
#else
  const std::string other = "aarch64";
#endif
  Client client(clientOptions());
  CompileRequest request = moduleRequest("fastpath.ll");
  request.target = other;
  auto error = catchError([&] { client.load(request); });
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind(), ErrorKind::InvalidRequest);
  EXPECT_NE(std::string(error->what()).find(other), std::string::npos) << error->what();
}

RJIT_INSTANTIATE_DAEMON_MODES(LoadTest);

}  // namespace
}  // namespace rjit::test
