// SPDX-License-Identifier: MIT
// The client side of rjitd's test-only gates (see test-gate.h).
#include "test-gate.h"

#include <cerrno>
#include <cstring>
#include <kj/io.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

namespace rjitd::service {

void waitAtTestGate(std::string_view gateName, const std::string& path,
                    const std::string& moduleName) {
  sockaddr_un address{};
  if (path.size() >= sizeof(address.sun_path)) {
    log::warning(gateName, ": path too long: ", path);
    return;
  }
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  kj::AutoCloseFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0 ||
      ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    log::warning(gateName, ": cannot connect to ", path, ": ", std::strerror(errno),
                 "; compiling at once");
    return;
  }
  std::string line = moduleName + "\n";
  // MSG_NOSIGNAL: a test that has gone away must not kill rjitd with SIGPIPE.
  if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) < 0)
    return;
  char go;
  ssize_t n;
  do
    n = ::read(fd, &go, 1);
  while (n < 0 && errno == EINTR);
}

}  // namespace rjitd::service
