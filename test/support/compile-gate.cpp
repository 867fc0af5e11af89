// SPDX-License-Identifier: MIT
// The test end of rjitd's test-only compile gate (see compile-gate.h).
#include "compile-gate.h"

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace rjit::test {

std::unique_ptr<CompileGate> CompileGate::create(std::string path,
                                                 std::optional<std::string> onlyModule) {
  sockaddr_un address{};
  if (path.size() >= sizeof(address.sun_path)) {
    ADD_FAILURE() << "compile gate path too long: " << path;
    return nullptr;
  }
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  kj::AutoCloseFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  kj::AutoCloseFd stopEvent(::eventfd(0, EFD_CLOEXEC));
  // A backlog as deep as the most compiles a test holds at once: a compile waiting in it is
  // held too (its worker blocks reading) until the gate's thread takes it.
  if (listener.get() < 0 || stopEvent.get() < 0 ||
      ::bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(listener.get(), 64) != 0) {
    ADD_FAILURE() << "compile gate at " << path << ": " << std::strerror(errno);
    return nullptr;
  }
  return std::make_unique<CompileGate>(Key{}, std::move(path), std::move(onlyModule),
                                       std::move(listener), std::move(stopEvent));
}

CompileGate::CompileGate(Key, std::string path, std::optional<std::string> onlyModule,
                         kj::AutoCloseFd listener, kj::AutoCloseFd stopEvent)
    : path(std::move(path)), onlyModule(std::move(onlyModule)), listener(std::move(listener)),
      stopEvent(std::move(stopEvent)), thread([this] { serve(); }) {}

CompileGate::~CompileGate() {
  open();
}

std::vector<std::string> CompileGate::daemonArgs() const {
  return {"--test-compile-gate", path};
}

std::vector<std::string> CompileGate::workerDaemonArgs() const {
  return {"--test-worker-gate", path};
}

void CompileGate::serve() {
  for (;;) {
    pollfd fds[2] = {{listener.get(), POLLIN, 0}, {stopEvent.get(), POLLIN, 0}};
    // No timeout: open() ends this wait by signalling stopEvent.
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      ADD_FAILURE() << "compile gate: poll: " << std::strerror(errno);
      break;
    }
    if (fds[1].revents != 0)
      break;
    {
      std::lock_guard lock(mutex);
      reading = true;  // before accept(), so that arrivalPending() never sees neither
    }
    kj::AutoCloseFd arrival(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    std::optional<std::string> name;
    if (arrival.get() >= 0)
      name = readName(arrival.get());
    std::lock_guard lock(mutex);
    reading = false;
    // A compile of another module goes at once (its connection closes here); so does one that
    // sent no name, which rjitd only does when it gives up on the gate itself.
    if (name && (!onlyModule || *name == *onlyModule))
      arrivals.emplace_back(std::move(*name), std::move(arrival));
    changed.notify_all();
  }
  std::lock_guard lock(mutex);
  serving = false;
  changed.notify_all();
}

std::optional<std::string> CompileGate::readName(int fd) {
  // rjitd writes the module name and a newline right after connecting; the name is short, so
  // the reads end at the newline well within the bound.
  std::string name;
  for (char c; name.size() < 4096;) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {stopEvent.get(), POLLIN, 0}};
    if (::poll(fds, 2, static_cast<int>(SAFETY_BOUND.count())) < 1 || fds[1].revents != 0 ||
        ::read(fd, &c, 1) != 1) {
      if (fds[1].revents == 0)
        ADD_FAILURE() << "compile gate: rjitd sent no module name";
      return std::nullopt;
    }
    if (c == '\n')
      return name;
    name += c;
  }
  ADD_FAILURE() << "compile gate: rjitd sent no newline after 4096 bytes of module name";
  return std::nullopt;
}

std::optional<std::string> CompileGate::waitArrival() {
  std::unique_lock lock(mutex);
  if (!changed.wait_for(lock, SAFETY_BOUND, [&] { return !arrivals.empty() || !serving; }) ||
      arrivals.empty()) {
    ADD_FAILURE() << (serving ? "no compile arrived at the gate within the safety bound"
                              : "the compile gate is open");
    return std::nullopt;
  }
  auto [name, fd] = std::move(arrivals.front());
  arrivals.pop_front();
  holding.push_back(std::move(fd));
  return name;
}

bool CompileGate::backlogWaiting() const {
  pollfd p{listener.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

bool CompileGate::arrivalPending() {
  std::unique_lock lock(mutex);
  // Until the gate's thread has read the name of every compile connected so far: checked on
  // each change it reports, bounded in case it is stuck.
  bool settled = changed.wait_for(lock, SAFETY_BOUND, [&] {
    return !arrivals.empty() || !serving || (!reading && !backlogWaiting());
  });
  if (!settled)
    ADD_FAILURE() << "the compile gate's thread did not take the arrivals within the bound";
  return !arrivals.empty();
}

void CompileGate::releaseHeld() {
  holding.clear();  // rjitd's read ends at the end of file
}

void CompileGate::open() {
  if (thread.joinable()) {
    uint64_t one = 1;
    if (::write(stopEvent.get(), &one, sizeof one) != sizeof one)
      ADD_FAILURE() << "compile gate: cannot stop its thread: " << std::strerror(errno);
    thread.join();
  }
  releaseHeld();
  arrivals.clear();  // the thread has ended: no lock needed
  if (listener.get() >= 0) {
    // Closing the listener resets the connections still in its backlog (their reads fail and
    // the compiles go); unlinking makes later connects fail, which rjitd takes as "go".
    listener = kj::AutoCloseFd();
    ::unlink(path.c_str());
  }
}

}  // namespace rjit::test
