# SPDX-License-Identifier: MIT
# rjitd's private protocol with its compile worker processes (service/compile-backend.cpp):
# one CompileRequest (ipc/rjit.capnp, with the canonical target triple) per message, answered
# by one WorkerAnswer. Plain messages over a socketpair, no RPC: each worker does one thing at
# a time. Daemon-private, so it is built apart from the client protocol (meson.build here).
@0xedc15620ece68847;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("rjitd::proto::worker");

using Rjit = import "/rjit.capnp";  # found through ipc/ on the import path (meson.build)

struct WorkerAnswer {
  outcome @0 :Rjit.CompileOutcome;
  exiting @1 :Bool;  # the worker hit an LLVM fatal error and exits after this answer
}
