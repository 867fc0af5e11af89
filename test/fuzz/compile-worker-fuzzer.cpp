// SPDX-License-Identifier: MIT
// libFuzzer target: the compile worker's input path (service/compile-backend.h
// serveCompileRequests, the loop of `rjitd --compile-worker`). The input is what rjitd would
// write on the worker's socket: Cap'n Proto CompileRequest messages, back to back, then EOF.
// A thread writes them into one end of a socket pair and reads the answers; the worker's loop
// runs on the other end in this process, compiling in process (keep inputs small: run with
// -max_len, test/fuzz/run-fuzzers.sh does). A malformed request ends a real worker by an
// exception (rjitd then answers the request's caller and starts another worker): caught here.
#include "compile-backend.h"

#include <cstdint>
#include <cstdlib>
#include <kj/debug.h>
#include <kj/exception.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
    abort();
  kj::AutoCloseFd daemonEnd(ends[0]);
  kj::AutoCloseFd workerEnd(ends[1]);
  // rjitd's side: the requests, EOF, then every answer until the worker closes.
  std::thread daemon([fd = daemonEnd.get(), data, size]() {
    for (size_t done = 0; done < size;) {
      ssize_t n = ::write(fd, data + done, size - done);
      if (n <= 0)
        break;  // the worker stopped reading (it threw)
      done += static_cast<size_t>(n);
    }
    ::shutdown(fd, SHUT_WR);
    char buffer[65536];
    while (::read(fd, buffer, sizeof(buffer)) > 0) {
    }
  });
  kj::runCatchingExceptions([&]() { rjitd::service::serveCompileRequests(workerEnd.get()); });
  workerEnd = nullptr;  // EOF for the reading thread
  daemon.join();
  return 0;
}
