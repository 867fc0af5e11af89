// SPDX-License-Identifier: MIT
// The test end of rjitd's test-only compile gate (see compile-gate.h).
#include "compile-gate.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace rjit::test {

std::unique_ptr<CompileGate> CompileGate::create(std::string path) {
  sockaddr_un address{};
  if (path.size() >= sizeof(address.sun_path)) {
    ADD_FAILURE() << "compile gate path too long: " << path;
    return nullptr;
  }
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  kj::AutoCloseFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  // A backlog as deep as the most compiles a test holds at once: a compile waiting in it is
  // held too (its worker blocks reading), and arrivalPending() sees it.
  if (listener.get() < 0 ||
      ::bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(listener.get(), 64) != 0) {
    ADD_FAILURE() << "compile gate at " << path << ": " << std::strerror(errno);
    return nullptr;
  }
  return std::make_unique<CompileGate>(Key{}, std::move(path), std::move(listener));
}

CompileGate::CompileGate(Key, std::string path, kj::AutoCloseFd listener)
    : path(std::move(path)), listener(std::move(listener)) {}

CompileGate::~CompileGate() {
  open();
}

std::vector<std::string> CompileGate::daemonArgs() const {
  return {"--test-compile-gate", path};
}

std::optional<std::string> CompileGate::waitArrival() {
  if (listener.get() < 0) {
    ADD_FAILURE() << "the compile gate is open";
    return std::nullopt;
  }
  pollfd p{listener.get(), POLLIN, 0};
  int n;
  do
    n = ::poll(&p, 1, static_cast<int>(SAFETY_BOUND.count()));
  while (n < 0 && errno == EINTR);
  if (n != 1) {
    ADD_FAILURE() << "no compile arrived at the gate within the safety bound";
    return std::nullopt;
  }
  kj::AutoCloseFd held(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (held.get() < 0) {
    ADD_FAILURE() << "compile gate: accept: " << std::strerror(errno);
    return std::nullopt;
  }
  // rjitd writes the module name and a newline right after connecting; the name is short, so
  // reads end at the newline well within the bound.
  std::string name;
  for (char c; name.size() < 4096;) {
    pollfd q{held.get(), POLLIN, 0};
    if (::poll(&q, 1, static_cast<int>(SAFETY_BOUND.count())) != 1 ||
        ::read(held.get(), &c, 1) != 1) {
      ADD_FAILURE() << "compile gate: rjitd sent no module name";
      return std::nullopt;
    }
    if (c == '\n')
      break;
    name += c;
  }
  holding.push_back(std::move(held));
  return name;
}

bool CompileGate::arrivalPending() const {
  if (listener.get() < 0)
    return false;
  pollfd p{listener.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

void CompileGate::releaseHeld() {
  holding.clear();  // rjitd's read ends at the end of file
}

void CompileGate::open() {
  releaseHeld();
  if (listener.get() >= 0) {
    // Closing the listener resets the connections still in its backlog (their reads fail and
    // the compiles go); unlinking makes later connects fail, which rjitd takes as "go".
    listener = kj::AutoCloseFd();
    ::unlink(path.c_str());
  }
}

}  // namespace rjit::test
