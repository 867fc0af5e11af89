// SPDX-License-Identifier: MIT
// Shared pieces of the integration tests (see fixture.h).
#include "fixture.h"

#include <elf.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>

namespace rjit::test {
namespace {

std::string envOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? value : fallback;
}

std::string cc() {
  return envOr("CC", "/usr/bin/cc");
}

}  // namespace

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void writeFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  EXPECT_TRUE(out.good()) << "cannot write " << path;
}

std::string dataPath(std::string_view name) {
  return envOr("RJIT_TEST_DATA", "test/data") + "/" + std::string(name);
}

std::string genPath(std::string_view name) {
  return envOr("RJIT_TEST_GEN", ".") + "/" + std::string(name);
}

std::string randomNonce() {
  static std::mt19937_64 engine{std::random_device{}()};
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(engine()));
  return buf;
}

std::string withNonce(std::string_view ir) {
  std::string out = "; nonce " + randomNonce() + "\n";
  out += ir;
  return out;
}

std::string tinyModule() {
  return withNonce("define i32 @answer() {\n"
                   "entry:\n"
                   "  ret i32 42\n"
                   "}\n");
}

std::string generatedModule(unsigned functions) {
  std::ostringstream ir;
  ir << "; nonce " << randomNonce() << "\n";
  ir << "define i64 @f0(i64 %x) {\nentry:\n  ret i64 %x\n}\n";
  constexpr unsigned OPS = 40;
  static const char* const ops[] = {"mul", "add", "xor", "sub"};
  for (unsigned k = 1; k < functions; ++k) {
    ir << "\ndefine i64 @f" << k << "(i64 %x) {\n"
       << "entry:\n  br label %loop\nloop:\n"
       << "  %i = phi i64 [ 0, %entry ], [ %i.next, %loop ]\n"
       << "  %a0 = phi i64 [ %x, %entry ], [ %acc.next, %loop ]\n";
    for (unsigned j = 1; j <= OPS; ++j) {
      // Every fifth step calls an earlier function, which gives the inliner work at -O2.
      if (j % 5 == 0) {
        ir << "  %c" << j << " = call i64 @f" << (k * 7 + j) % k << "(i64 %a" << j - 1 << ")\n"
           << "  %a" << j << " = " << ops[j % 4] << " i64 %a" << j - 1 << ", %c" << j << "\n";
      } else {
        ir << "  %a" << j << " = " << ops[j % 4] << " i64 %a" << j - 1 << ", "
           << k * 131 + j * 7 + 1 << "\n";
      }
    }
    ir << "  %acc.next = add i64 %a" << OPS << ", %i\n"
       << "  %i.next = add i64 %i, 1\n"
       << "  %done = icmp uge i64 %i.next, 64\n"
       << "  br i1 %done, label %exit, label %loop\n"
       << "exit:\n"
       << "  %r = call i64 @f" << k - 1 << "(i64 %acc.next)\n"
       << "  ret i64 %r\n}\n";
  }
  return ir.str();
}

uint16_t elfMachine(std::string_view object) {
  Elf64_Ehdr header;
  if (object.size() < sizeof header)
    return 0;
  std::memcpy(&header, object.data(), sizeof header);
  if (std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64 ||
      header.e_ident[EI_DATA] != ELFDATA2LSB || header.e_type != ET_REL)
    return 0;
  return header.e_machine;
}

ScopedEnv::ScopedEnv(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
  if (const char* old = std::getenv(name_.c_str()))
    old_ = old;
  if (value)
    ::setenv(name_.c_str(), value->c_str(), 1);
  else
    ::unsetenv(name_.c_str());
}

ScopedEnv::~ScopedEnv() {
  if (old_)
    ::setenv(name_.c_str(), old_->c_str(), 1);
  else
    ::unsetenv(name_.c_str());
}

CommandResult runNative(const TempDir& dir, std::string_view program) {
  std::string exe = dir.file("native-" + std::string(program));
  auto build = runCommand(dir, {cc(), dataPath(std::string(program) + ".c"), "-o", exe, "-lm"});
  EXPECT_TRUE(build.status.exitedWith(0)) << "native build of " << program << ": " << build.err;
  return runCommand(dir, {exe});
}

std::optional<CommandResult> linkAndRun(const TempDir& dir, std::string_view name,
                                        const std::string& object) {
  std::string objectPath = dir.file(std::string(name) + ".o");
  std::string exe = dir.file(std::string(name));
  writeFile(objectPath, object);
  auto link = runCommand(dir, {cc(), objectPath, "-o", exe, "-lm"});
  if (!link.status.exitedWith(0)) {
    ADD_FAILURE() << "linking " << objectPath << " failed (" << link.status.describe() << "):\n"
                  << link.err;
    return std::nullopt;
  }
  return runCommand(dir, {exe});
}

DaemonOptions DaemonTest::daemonOptions() const {
  DaemonOptions options;
  options.mode = GetParam();
  return options;
}

std::unique_ptr<DaemonProcess> DaemonTest::startDaemon(DaemonOptions options) const {
  options.mode = GetParam();
  return DaemonProcess::start(std::move(options));
}

std::unique_ptr<DaemonProcess> DaemonTest::startGated(const CompileGate& gate) const {
  DaemonOptions options;
  options.extraArgs = gate.daemonArgs();
  return startDaemon(std::move(options));
}

void DaemonTest::SetUp() {
  daemon = DaemonProcess::start(daemonOptions());
  ASSERT_NE(daemon, nullptr);
}

void DaemonTest::TearDown() {
  if (daemon == nullptr || !daemon->running())
    return;
  expectServes();
  if (daemon->mode() == DaemonMode::SocketActivated)
    daemon->waitReady();  // SIGTERM must reach rjitd, not socket-activate before its exec
  auto status = daemon->stop();
  EXPECT_TRUE(status.exitedWith(0)) << "rjitd after SIGTERM: " << status.describe() << "\n"
                                    << daemon->log();
}

ClientOptions DaemonTest::clientOptions(const DaemonProcess* other) const {
  ClientOptions options;
  options.servers = {(other != nullptr ? other : daemon.get())->endpoint()};
  options.clientName = "integration-test";
  return options;
}

void DaemonTest::expectServes(Client& client) {
  CompileRequest request;
  request.module = tinyModule();
  request.moduleName = "answer.ll";
  request.optLevel = 1;
  try {
    auto object = client.compile(request);
    EXPECT_EQ(elfMachine(object.object), EM_X86_64);
    bool defined = false;
    for (const auto& symbol : object.defines)
      defined = defined || symbol.name == "answer";
    EXPECT_TRUE(defined) << "the object does not define `answer`";
  } catch (const Error& e) {
    ADD_FAILURE() << "the daemon no longer serves: " << errorKindName(e.kind()) << ": " << e.what();
  }
}

void DaemonTest::expectServes() {
  Client client(clientOptions());
  expectServes(client);
}

std::string daemonModeParamName(const ::testing::TestParamInfo<DaemonMode>& info) {
  return daemonModeName(info.param);
}

}  // namespace rjit::test
