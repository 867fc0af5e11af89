// SPDX-License-Identifier: MIT
// libFuzzer target: the daemon's request decoding. Each input is spoken to rjitd's real
// bootstrap (service/rpc-server.h newBootstrap, with a real CompileService, LoadEnvironment and
// in-process compiles) served by a real Cap'n Proto RpcSystem (TwoPartyServer) over a socket
// pair, in one of two ways chosen by the first byte:
//  - raw (even): the rest is the byte stream a client would send, framing and all, followed by
//    EOF; whatever the server answers is read and dropped;
//  - call (odd): a well-behaved client says hello and then calls the method the second byte
//    names (on Session, or Rjitd.hello itself) with the rest as its parameters, a Cap'n Proto
//    message decoded under limits: the fuzzer then reaches the service's reads of every field.
// Then the connection is torn down and the loop run until the server has let go of it. Besides
// memory errors it checks that no request stays counted in progress once its connection is
// gone (rjitd's shutdown waits for that count).
#include "compile-backend.h"
#include "compile-service.h"
#include "fuzz-message.h"
#include "load-service.h"
#include "metrics.h"
#include "object-cache.h"
#include "rpc-server.h"
#include "worker-pool.h"

#include <capnp/any.h>
#include <capnp/rpc-twoparty.h>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <kj/async-io.h>
#include <kj/debug.h>

namespace rjitd::service {
namespace {

/// One daemon for the whole run: state shared by connections, as in rjitd.
struct Daemon {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  cache::ObjectCache objects{16 << 20};
  metrics::Metrics metrics{{"fuzz", "fuzz", {"x86_64", "aarch64"}}, objects};
  InProcessBackend backend;
  WorkerPool compilePool{"fuzz-compile", 1};
  WorkerPool hashPool{"fuzz-hash", 1};
  WorkerPool linkPool{"fuzz-link", 1};
  CompileService service{
      ServiceConfig{.maxModuleBytes = 1 << 20, .compilerIdentity = "rjitd/fuzz llvm/fuzz"},
      objects,
      backend,
      compilePool,
      hashPool,
      metrics};
  LoadLimits limits = [] {
    LoadLimits l;
    l.resolveTimeout = std::chrono::milliseconds(1000);
    return l;
  }();
  LoadedTotals totals;
  LoadEnvironment load{service, linkPool, metrics, io.provider->getTimer(), limits, totals};
  DaemonState state{service, metrics, "fuzz", "fuzz"};

  Daemon() { state.load = &load; }
};

Daemon& daemon() {
  // One for the whole run: the loop must outlive every connection of every input.
  static kj::Own<Daemon> d = kj::heap<Daemon>();
  return *d;
}

/// The raw stream: the bytes, then EOF; the server's answers are read until it closes.
void speakRaw(kj::AsyncIoStream& client, kj::ArrayPtr<const kj::byte> bytes,
              kj::WaitScope& waitScope) {
  auto writing = client.write(bytes.begin(), bytes.size())
                     .then([&client]() { client.shutdownWrite(); })
                     .catch_([](kj::Exception&&) {})  // the server may close first
                     .eagerlyEvaluate(nullptr);
  kj::runCatchingExceptions([&]() { client.readAllBytes(1 << 24).wait(waitScope); });
}

/// A real client: hello, then one call of method `method` with the fuzzed parameters.
void speakCall(kj::AsyncIoStream& stream, uint8_t method, kj::ArrayPtr<const kj::byte> params,
               kj::WaitScope& waitScope) {
  auto words = fuzz::toWords(params.begin(), params.size());
  capnp::TwoPartyClient client(stream);
  auto bootstrap = client.bootstrap().castAs<proto::Rjitd>();
  // Parameters that are no message at all, or that rjitd refuses, throw: expected.
  kj::runCatchingExceptions([&]() {
    capnp::FlatArrayMessageReader reader(words, fuzz::fuzzReaderOptions());
    capnp::AnyPointer::Reader fuzzed = reader.getRoot<capnp::AnyPointer>();
    if (method >= 0xf0) {  // Rjitd.hello itself, with the fuzzed ClientHello
      auto hello = bootstrap.typelessRequest(capnp::typeId<proto::Rjitd>(), 0, nullptr);
      hello.set(fuzzed);
      hello.send().wait(waitScope);
      return;
    }
    auto hello = bootstrap.helloRequest();
    hello.initClient().setProtocolVersion(proto::PROTOCOL_VERSION);
    hello.getClient().setClientName("rpc-fuzzer");
    auto session = hello.send().wait(waitScope).getSession();
    // Every Session method and one past the last (an unknown method id).
    uint16_t id = method % 7;
    auto call = session.typelessRequest(capnp::typeId<proto::Session>(), id, nullptr);
    call.set(fuzzed);
    call.send().wait(waitScope);
  });
}

}  // namespace
}  // namespace rjitd::service

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace rjitd::service;
  if (size < 2)
    return 0;
  Daemon& d = daemon();
  auto& waitScope = d.io.waitScope;
  {
    auto pipe = d.io.provider->newTwoWayPipe();
    capnp::TwoPartyServer server(newBootstrap(d.state, "fuzz-peer"));
    server.accept(kj::mv(pipe.ends[0]));
    auto rest = kj::arrayPtr(reinterpret_cast<const kj::byte*>(data) + 2, size - 2);
    if (data[0] % 2 == 0)
      speakRaw(*pipe.ends[1], kj::arrayPtr(reinterpret_cast<const kj::byte*>(data) + 1, size - 1),
               waitScope);
    else
      speakCall(*pipe.ends[1], data[1], rest, waitScope);
    pipe.ends[1] = nullptr;  // the client goes away
    server.drain().wait(waitScope);
  }
  // Work still running (a compile on the worker thread) ends by itself; then nothing may stay
  // counted. Bounded by libFuzzer's -timeout.
  d.state.requests.drained().wait(waitScope);
  if (d.state.requests.inProgress() != 0) {
    fprintf(stderr, "%u requests stay in progress after their connection ended\n",
            d.state.requests.inProgress());
    abort();
  }
  return 0;
}
