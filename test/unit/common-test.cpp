// SPDX-License-Identifier: MIT
// Tests for src/common: address parsing and default locations, target names, and the plain
// data helpers of compiled-object.h.
#include "compiled-object.h"
#include "endpoint.h"
#include "targets.h"

#include <cstdlib>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <optional>
#include <set>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

namespace rjitd {
namespace {

using ::testing::HasSubstr;

// --- endpoint ---------------------------------------------------------------------------------

Endpoint parseOk(std::string_view text) {
  auto parsed = parseEndpoint(text);
  if (auto* err = std::get_if<std::string>(&parsed)) {
    ADD_FAILURE() << "parseEndpoint('" << text << "') failed: " << *err;
    return {};
  }
  return std::get<Endpoint>(parsed);
}

/// The error message, or "" (with a test failure) if the text parsed.
std::string parseError(std::string_view text) {
  auto parsed = parseEndpoint(text);
  if (auto* err = std::get_if<std::string>(&parsed)) {
    EXPECT_FALSE(err->empty());
    return *err;
  }
  ADD_FAILURE() << "parseEndpoint('" << text << "') unexpectedly succeeded";
  return {};
}

TEST(EndpointTest, ParsesUnixAddress) {
  Endpoint ep = parseOk("unix:/run/rjitd/rjitd.sock");
  EXPECT_EQ(ep.kind, Endpoint::Kind::Unix);
  EXPECT_EQ(ep.path, "/run/rjitd/rjitd.sock");
  EXPECT_EQ(ep.text(), "unix:/run/rjitd/rjitd.sock");
  EXPECT_EQ(ep.kjAddress(), "unix:/run/rjitd/rjitd.sock");
}

TEST(EndpointTest, BareAbsolutePathIsUnix) {
  Endpoint ep = parseOk("/tmp/x/rjitd.sock");
  EXPECT_EQ(ep.kind, Endpoint::Kind::Unix);
  EXPECT_EQ(ep.path, "/tmp/x/rjitd.sock");
  EXPECT_EQ(ep.text(), "unix:/tmp/x/rjitd.sock");
}

TEST(EndpointTest, ParsesTcpHostPort) {
  Endpoint ep = parseOk("tcp:127.0.0.1:7411");
  EXPECT_EQ(ep.kind, Endpoint::Kind::Tcp);
  EXPECT_EQ(ep.host, "127.0.0.1");
  EXPECT_EQ(ep.port, 7411);
  EXPECT_EQ(ep.text(), "tcp:127.0.0.1:7411");
  EXPECT_EQ(ep.kjAddress(), "127.0.0.1:7411");

  Endpoint named = parseOk("tcp:build-host.example:65535");
  EXPECT_EQ(named.host, "build-host.example");
  EXPECT_EQ(named.port, 65535);

  EXPECT_EQ(parseOk("tcp:localhost:0").port, 0);  // 0: let the kernel choose (listen side)
}

TEST(EndpointTest, ParsesBracketedIpv6) {
  Endpoint ep = parseOk("tcp:[::1]:7411");
  EXPECT_EQ(ep.kind, Endpoint::Kind::Tcp);
  EXPECT_EQ(ep.host, "::1");
  EXPECT_EQ(ep.port, 7411);
  EXPECT_EQ(ep.text(), "tcp:[::1]:7411");
  EXPECT_EQ(ep.kjAddress(), "[::1]:7411");
}

TEST(EndpointTest, TextRoundTrips) {
  for (const char* text : {"unix:/run/rjitd/rjitd.sock", "tcp:127.0.0.1:1", "tcp:[::1]:7411",
                           "tcp:[fe80::1]:80", "tcp:example.org:443"}) {
    EXPECT_EQ(parseOk(text).text(), text);
    EXPECT_EQ(parseOk(parseOk(text).text()).text(), text);
  }
}

TEST(EndpointTest, RejectsMissingPort) {
  EXPECT_THAT(parseError("tcp:127.0.0.1"), HasSubstr("missing port"));
  EXPECT_THAT(parseError("tcp:localhost"), HasSubstr("missing port"));
}

TEST(EndpointTest, RejectsBadPort) {
  for (const char* text : {"tcp:localhost:", "tcp:localhost:http", "tcp:localhost:65536",
                           "tcp:localhost:99999999999", "tcp:localhost:-1", "tcp:localhost:+80",
                           "tcp:localhost:80x", "tcp:localhost: 80", "tcp:[::1]:"}) {
    EXPECT_THAT(parseError(text), HasSubstr("bad port")) << text;
  }
}

TEST(EndpointTest, RejectsBadHosts) {
  EXPECT_THAT(parseError("tcp::7411"), HasSubstr("missing host"));
  EXPECT_THAT(parseError("tcp:[]:7411"), HasSubstr("missing host"));
  EXPECT_THAT(parseError("tcp:::1:7411"), HasSubstr("brackets"));
  EXPECT_THAT(parseError("tcp:[::1]7411"), HasSubstr("IPv6"));
  EXPECT_THAT(parseError("tcp:[::1"), HasSubstr("IPv6"));
}

TEST(EndpointTest, RejectsEmptyUnixPath) {
  EXPECT_THAT(parseError("unix:"), HasSubstr("empty"));
}

TEST(EndpointTest, RejectsUnknownScheme) {
  for (const char* text : {"http://localhost:80", "localhost:7411", "udp:1.2.3.4:5", "", "UNIX:/a",
                           "relative/path.sock"}) {
    EXPECT_THAT(parseError(text), HasSubstr("unix:/PATH or tcp:HOST:PORT")) << text;
  }
}

TEST(EndpointTest, UnixPathLengthLimit) {
  // sun_path is 108 bytes including the NUL: 107 characters fit, 108 do not.
  std::string fits = "/" + std::string(106, 'p');
  ASSERT_EQ(fits.size(), 107u);
  EXPECT_EQ(parseOk("unix:" + fits).path, fits);
  EXPECT_EQ(parseOk(fits).path, fits);
  std::string tooLong = fits + "q";
  EXPECT_THAT(parseError("unix:" + tooLong), HasSubstr("longer than 107"));
  EXPECT_THAT(parseError(tooLong), HasSubstr("longer than 107"));
}

std::vector<Endpoint> listOk(std::string_view text) {
  auto parsed = parseEndpointList(text);
  if (auto* err = std::get_if<std::string>(&parsed)) {
    ADD_FAILURE() << "parseEndpointList('" << text << "') failed: " << *err;
    return {};
  }
  return std::get<std::vector<Endpoint>>(parsed);
}

std::string listError(std::string_view text) {
  auto parsed = parseEndpointList(text);
  if (auto* err = std::get_if<std::string>(&parsed))
    return *err;
  ADD_FAILURE() << "parseEndpointList('" << text << "') unexpectedly succeeded";
  return {};
}

TEST(EndpointListTest, ParsesOneOrMany) {
  std::vector<Endpoint> one = listOk("unix:/a.sock");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].path, "/a.sock");

  std::vector<Endpoint> three = listOk("unix:/a.sock,tcp:127.0.0.1:7411,tcp:[::1]:7412");
  ASSERT_EQ(three.size(), 3u);
  EXPECT_EQ(three[0].text(), "unix:/a.sock");
  EXPECT_EQ(three[1].text(), "tcp:127.0.0.1:7411");
  EXPECT_EQ(three[2].text(), "tcp:[::1]:7412");
}

TEST(EndpointListTest, ToleratesSpacesAroundCommas) {
  std::vector<Endpoint> eps = listOk("  unix:/a.sock , tcp:h:1 ,/b.sock ");
  ASSERT_EQ(eps.size(), 3u);
  EXPECT_EQ(eps[0].path, "/a.sock");
  EXPECT_EQ(eps[1].host, "h");
  EXPECT_EQ(eps[1].port, 1);
  EXPECT_EQ(eps[2].path, "/b.sock");
}

TEST(EndpointListTest, RejectsEmptyItems) {
  for (const char* text :
       {"", " ", ",", "unix:/a,", ",unix:/a", "unix:/a,,unix:/b", "unix:/a, ,tcp:h:1"})
    EXPECT_THAT(listError(text), HasSubstr("empty address")) << "'" << text << "'";
}

TEST(EndpointListTest, ReportsTheBadItem) {
  EXPECT_THAT(listError("unix:/a,tcp:h:notaport"), HasSubstr("notaport"));
}

/// Sets (or unsets, with nullopt) an environment variable for one scope.
class ScopedEnv {
public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name(name) {
    if (const char* old = std::getenv(name))
      saved = old;
    if (value)
      setenv(name, value->c_str(), 1);
    else
      unsetenv(name);
  }
  ~ScopedEnv() {
    if (saved)
      setenv(name, saved->c_str(), 1);
    else
      unsetenv(name);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
  const char* name;
  std::optional<std::string> saved;
};

TEST(DefaultsTest, SocketPathForThisUser) {
  {
    ScopedEnv env("XDG_RUNTIME_DIR", "/run/user/4242");
    if (geteuid() == 0)
      EXPECT_EQ(defaultSocketPath(), "/run/rjitd/rjitd.sock");
    else
      EXPECT_EQ(defaultSocketPath(), "/run/user/4242/rjitd.sock");
  }
  {
    // Unset, empty or relative: a system rjitd's socket.
    ScopedEnv env("XDG_RUNTIME_DIR", std::nullopt);
    EXPECT_EQ(defaultSocketPath(), "/run/rjitd/rjitd.sock");
  }
  {
    ScopedEnv env("XDG_RUNTIME_DIR", "");
    EXPECT_EQ(defaultSocketPath(), "/run/rjitd/rjitd.sock");
  }
  {
    ScopedEnv env("XDG_RUNTIME_DIR", "relative/dir");
    EXPECT_EQ(defaultSocketPath(), "/run/rjitd/rjitd.sock");
  }
}

/// Runs `fn` in a child process switched to uid/gid `uid` (as root) and returns what it
/// printed, so the non-root branches are exercised even when the tests run as root. Returns
/// nullopt when this process cannot switch users.
std::optional<std::string> runAsUser(uid_t uid, std::string (*fn)()) {
  if (geteuid() != 0)
    return std::nullopt;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2 failed";
    return std::nullopt;
  }
  pid_t pid = fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork failed";
    return std::nullopt;
  }
  if (pid == 0) {
    // Child: single-threaded copy of this test; report through the pipe, never return.
    close(fds[0]);
    if (setgroups(0, nullptr) != 0 || setgid(uid) != 0 || setuid(uid) != 0)
      _exit(2);
    std::string out = fn();
    ssize_t n = write(fds[1], out.data(), out.size());
    _exit(n == static_cast<ssize_t>(out.size()) ? 0 : 3);
  }
  close(fds[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0)
    out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  return out;
}

constexpr uid_t NOBODY = 65534;

TEST(DefaultsTest, NonRootUserInChild) {
  if (geteuid() != 0)
    GTEST_SKIP() << "not root: the tests above already ran the non-root branches";
  {
    ScopedEnv env("XDG_RUNTIME_DIR", "/run/user/65534");
    EXPECT_EQ(runAsUser(NOBODY, [] { return defaultSocketPath(); }), "/run/user/65534/rjitd.sock");
  }
  {
    ScopedEnv env("XDG_RUNTIME_DIR", std::nullopt);
    EXPECT_EQ(runAsUser(NOBODY, [] { return defaultSocketPath(); }), "/run/rjitd/rjitd.sock");
  }
}

// --- targets ----------------------------------------------------------------------------------

constexpr std::string_view X86 = "x86_64-unknown-linux-gnu";
constexpr std::string_view A64 = "aarch64-unknown-linux-gnu";

TEST(TargetsTest, KnowsBothTargets) {
  auto targets = knownTargets();
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0].name, "x86_64");
  EXPECT_EQ(targets[0].triple, X86);
  EXPECT_FALSE(targets[0].defaultCpu.empty());
  EXPECT_EQ(targets[1].name, "aarch64");
  EXPECT_EQ(targets[1].triple, A64);
  EXPECT_FALSE(targets[1].defaultCpu.empty());
}

TEST(TargetsTest, ResolvesNamesAliasesAndTriples) {
  auto targets = knownTargets();
  struct Case {
    const char* spec;
    std::string_view triple;
  };
  for (Case c : {Case{"x86_64", X86}, Case{"x86-64", X86}, Case{"amd64", X86},
                 Case{"x86_64-unknown-linux-gnu", X86}, Case{"x86_64-pc-linux-gnu", X86},
                 Case{"x86_64-linux-gnu", X86}, Case{"aarch64", A64}, Case{"arm64", A64},
                 Case{"aarch64-unknown-linux-gnu", A64}, Case{"aarch64-linux-gnu", A64}}) {
    const TargetName* t = resolveTarget(targets, c.spec, X86);
    ASSERT_NE(t, nullptr) << c.spec;
    EXPECT_EQ(t->triple, c.triple) << c.spec;
  }
}

TEST(TargetsTest, EmptySpecNamesTheDefault) {
  auto targets = knownTargets();
  const TargetName* t = resolveTarget(targets, "", X86);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->name, "x86_64");
  t = resolveTarget(targets, "", A64);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->name, "aarch64");
  // A default may be spelled any accepted way.
  t = resolveTarget(targets, "", "arm64");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->name, "aarch64");
  EXPECT_EQ(resolveTarget(targets, "", "riscv64"), nullptr);
}

TEST(TargetsTest, UnknownIsNull) {
  auto targets = knownTargets();
  for (const char* spec : {"riscv64", "X86_64", "x86_64 ", "aarch64-apple-darwin", "arm"})
    EXPECT_EQ(resolveTarget(targets, spec, X86), nullptr) << spec;
  EXPECT_EQ(resolveTarget({}, "x86_64", X86), nullptr);
}

TEST(TargetsTest, EverySpellingNamesOneTarget) {
  std::set<std::string> seen;
  for (const TargetName& t : knownTargets()) {
    EXPECT_TRUE(seen.insert(t.name).second) << t.name;
    EXPECT_TRUE(seen.insert(t.triple).second) << t.triple;
    for (const std::string& a : t.aliases)
      EXPECT_TRUE(seen.insert(a).second) << a;
  }
  for (const std::string& s : seen) {
    const TargetName* t = resolveTarget(knownTargets(), s, "");
    ASSERT_NE(t, nullptr) << s;
  }
}

TEST(TargetsTest, DescribesTargets) {
  EXPECT_EQ(describeTargets(knownTargets()),
            "x86_64 (x86_64-unknown-linux-gnu), aarch64 (aarch64-unknown-linux-gnu)");
  EXPECT_EQ(describeTargets(knownTargets().first(1)), "x86_64 (x86_64-unknown-linux-gnu)");
  EXPECT_EQ(describeTargets({}), "none");
}

// --- compiled-object --------------------------------------------------------------------------

TEST(CompiledObjectTest, NamesEveryErrorKind) {
  const std::pair<ErrorKind, const char*> expected[] = {
      {ErrorKind::Internal, "internal"},
      {ErrorKind::InvalidModule, "invalid-module"},
      {ErrorKind::UnknownTarget, "unknown-target"},
      {ErrorKind::TargetMismatch, "target-mismatch"},
      {ErrorKind::TooLarge, "too-large"},
      {ErrorKind::InvalidRequest, "invalid-request"},
      {ErrorKind::NotFound, "not-found"},
      {ErrorKind::ShuttingDown, "shutting-down"},
      {ErrorKind::ProtocolMismatch, "protocol-mismatch"},
      {ErrorKind::Overloaded, "overloaded"},
      {ErrorKind::Connection, "connection"},
      {ErrorKind::Timeout, "timeout"},
      {ErrorKind::Configuration, "configuration"},
      {ErrorKind::LinkFailed, "link-failed"},
      {ErrorKind::Load, "load"},
  };
  for (auto [kind, name] : expected)
    EXPECT_STREQ(errorKindName(kind), name);
  // The list above is every kind: the enumerators are dense from Internal to Load.
  ASSERT_EQ(static_cast<int>(ErrorKind::Load) + 1, static_cast<int>(std::size(expected)));
  std::set<std::string> names;
  for (int i = 0; i <= static_cast<int>(ErrorKind::Load); ++i) {
    std::string name = errorKindName(static_cast<ErrorKind>(i));
    EXPECT_TRUE(names.insert(name).second) << name;
    EXPECT_NE(name, "unknown");
  }
  EXPECT_STREQ(errorKindName(static_cast<ErrorKind>(200)), "unknown");
}

TEST(CompiledObjectTest, FootprintGrowsWithContents) {
  CompiledObject o;
  size_t empty = o.footprintBytes();
  EXPECT_GE(empty, sizeof(CompiledObject));
  o.object.assign(1000, 'x');
  size_t withObject = o.footprintBytes();
  EXPECT_GE(withObject, empty + 1000);
  o.object.assign(5000, 'x');
  EXPECT_GE(o.footprintBytes(), withObject + 4000);

  size_t before = o.footprintBytes();
  o.defines.push_back({"a_rather_long_function_name", ObjectSymbol::Kind::Function});
  o.needs.push_back("printf");
  o.diagnostics.push_back({Diagnostic::Severity::Warning, "unused variable", 1, 2});
  EXPECT_GE(o.footprintBytes(), before + 27 + 6 + 15);
}

}  // namespace
}  // namespace rjitd
