// SPDX-License-Identifier: MIT
// The RPC edge every capability rjitd serves answers through (Session, Executor, RemoteModule):
// where an answer is settled, failures are written to the wire and unexpected faults become
// `internal`.
#pragma once

#include "log.h"
#include "metrics.h"
#include "outcome.h"
#include "proto-convert.h"
#include "rpc-server.h"

#include <chrono>
#include <kj/async.h>
#include <kj/function.h>
#include <rjit.capnp.h>
#include <string>
#include <string_view>

namespace rjitd::service {

using Clock = std::chrono::steady_clock;
using metrics::Method;

/// The answer to a request that arrives while rjitd drains.
inline Failure shuttingDown() {
  return Failure{ErrorKind::ShuttingDown,
                 "rjitd is shutting down and accepts no new requests; retry (a restarted or "
                 "another rjitd will answer)",
                 {}};
}

/// Where a method writes its Error (an `initError()` of its results).
using ErrorSlot = kj::Function<proto::Error::Builder()>;

/// The Error of a call whose results hold an `outcome` (compile, lookup, load).
template <typename Context> ErrorSlot errorSlotOf(Context context) {
  return [context]() mutable { return context.getResults().initOutcome().initError(); };
}

/// The RPC edge of one connection's methods, the one place an answer is settled (see respond).
class Edge final {
public:
  /// Both outlive the edge (they are its owner's).
  Edge(DaemonState& state, const std::string& peer) : state(state), peer(peer) {}

  /// Runs `serve` (an exception it throws counts as its promise's), writes a value with
  /// `writeOk`, which returns the request's `target` label, or a Failure into `errorSlot`
  /// (toProto, the one mapping to the wire), and counts the request in the metrics. Expected
  /// failures are Failure values; an exception here is a fault inside rjitd: it is logged with
  /// the method and the peer, counted as `internal` and answered as an Internal Error, never
  /// as the client's fault. A method without an Error on the wire (no `errorSlot`: hello,
  /// stats) answers such a fault with an exception instead. DISCONNECTED is the exception: the
  /// client is gone, so there is nobody to answer and the request is not counted as answered
  /// (the listener counts how the connection ended).
  template <typename T>
  kj::Promise<void> respond(Method method, std::string_view target, Clock::time_point start,
                            kj::Function<kj::Promise<Outcome<T>>()> serve,
                            kj::Function<std::string_view(T&)> writeOk,
                            kj::Maybe<ErrorSlot> errorSlot) {
    return kj::evalNow([this, method, serve = kj::mv(serve)]() mutable {
             if (state.faultForTest)
               state.faultForTest(method);
             return serve();
           })
        .catch_([this, method](kj::Exception&& e) -> Outcome<T> {
          return internalFailure(method, kj::mv(e));
        })
        .then([this, method, target, start, writeOk = kj::mv(writeOk),
               errorSlot = kj::mv(errorSlot)](Outcome<T>&& outcome) mutable {
          std::string_view label = target;
          const Failure* f = failureOf(outcome);
          if (f == nullptr)
            label = writeOk(std::get<T>(outcome));
          else KJ_IF_MAYBE (slot, errorSlot)
            toProto(*f, (*slot)());
          state.metrics.requestDone(method, label, errorKindOf(outcome), Clock::now() - start);
          if (f != nullptr && errorSlot == nullptr)
            kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                                  kj::str(f->message.c_str())));
        });
  }

private:
  /// The answer to an exception that reached the edge (see respond); rethrows DISCONNECTED.
  Failure internalFailure(Method method, kj::Exception&& e) {
    const char* name = metrics::methodName(method);
    if (e.getType() == kj::Exception::Type::DISCONNECTED) {
      log::info(name, " from ", peer,
                " not answered: the client went away: ", e.getDescription().cStr());
      kj::throwFatalException(kj::mv(e));
    }
    log::error("internal: ", name, " from ", peer, " failed: ", e.getDescription().cStr());
    return Failure{ErrorKind::Internal,
                   std::string("rjitd failed inside while serving this ") + name +
                       " request: " + e.getDescription().cStr(),
                   {}};
  }

  DaemonState& state;
  const std::string& peer;
};

}  // namespace rjitd::service
