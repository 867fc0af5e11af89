// SPDX-License-Identifier: MIT
#include "http-get.h"

#include "daemon-process.h"

#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace rjit::test {

namespace {

void fail(std::string* error, std::string what) {
  if (error != nullptr)
    *error = std::move(what);
}

}  // namespace

std::optional<HttpResponse> httpGet(uint16_t port, const std::string& target, std::string* error) {
  kj::AutoCloseFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd == nullptr) {
    fail(error, std::string("socket: ") + std::strerror(errno));
    return std::nullopt;
  }
  // A server that accepts and then hangs must not hang the test.
  timeval bound{10, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    fail(error, "connect to 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno));
    return std::nullopt;
  }
  // HTTP/1.0: the server closes the connection after the answer, so EOF ends the body.
  std::string request = "GET " + target + " HTTP/1.0\r\nHost: 127.0.0.1:" + std::to_string(port) +
                        "\r\nConnection: close\r\n\r\n";
  for (size_t done = 0; done < request.size();) {
    ssize_t n = ::send(fd.get(), request.data() + done, request.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      fail(error, std::string("send: ") + std::strerror(errno));
      return std::nullopt;
    }
    done += static_cast<size_t>(n);
  }
  std::string raw;
  char buffer[16384];
  while (true) {
    ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      fail(error, std::string("recv: ") + std::strerror(errno));
      return std::nullopt;
    }
    if (n == 0)
      break;
    raw.append(buffer, static_cast<size_t>(n));
  }
  size_t headerEnd = raw.find("\r\n\r\n");
  if (!raw.starts_with("HTTP/") || headerEnd == std::string::npos || raw.find(' ') > headerEnd) {
    fail(error, "not an HTTP response: " + raw.substr(0, 200));
    return std::nullopt;
  }
  HttpResponse response;
  response.status = std::atoi(raw.c_str() + raw.find(' ') + 1);
  response.body = raw.substr(headerEnd + 4);
  return response;
}

std::string urlEncode(std::string_view text) {
  static constexpr char HEX[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += HEX[c >> 4];
      out += HEX[c & 15];
    }
  }
  return out;
}

}  // namespace rjit::test
