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
#include <kj/io.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace {

/// The most words one request of the input may announce. The worker reads what rjitd wrote and
/// trusts its framing: it allocates the size a message's segment table announces (up to its
/// 16 GiB reader limit) before reading the message, and rjitd only ever announces requests it
/// built itself, of at most --max-module-bytes (the worker's RLIMIT_AS bounds the rest). So the
/// input stops before the first request announcing more than any input can hold.
constexpr uint64_t MAX_ANNOUNCED_WORDS = 1u << 16;

/// How many bytes of the input are requests whose headers announce sane sizes.
size_t trustedPrefix(const uint8_t* data, size_t size) {
  auto le32 = [data](size_t at) {
    return uint32_t{data[at]} | uint32_t{data[at + 1]} << 8 | uint32_t{data[at + 2]} << 16 |
           uint32_t{data[at + 3]} << 24;
  };
  size_t at = 0;
  while (size - at >= 4) {
    uint64_t segments = uint64_t{le32(at)} + 1;
    // The segment table: its count, one size per segment, padded to a whole word.
    size_t table = static_cast<size_t>((4 + 4 * segments + 7) / 8 * 8);
    if (segments > 512 || size - at < 4 + 4 * segments)
      return size;  // refused or cut short by the reader before it allocates anything
    uint64_t words = 0;
    for (uint64_t i = 0; i < segments; ++i)
      words += le32(at + 4 + 4 * static_cast<size_t>(i));
    if (words > MAX_ANNOUNCED_WORDS)
      return at;
    if (size - at < table + words * 8)
      return size;
    at += table + static_cast<size_t>(words) * 8;
  }
  return size;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size = trustedPrefix(data, size);
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
