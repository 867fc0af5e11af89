# SPDX-License-Identifier: MIT
# rjitd's private protocol with its executor processes (service/executor/, service/execute-*).
#
# The channel is one Unix socketpair, fd 3 in the executor, carrying two-party Cap'n Proto RPC
# with a bootstrap on each side: rjitd serves its ordinary `Rjitd` bootstrap there (the
# executor is a fast-path client of rjitd in its own address space: it shakes hands, loads
# with Session.load by key and answers rjitd's SymbolResolver questions, through the client
# library's own loader), and the executor serves `Control`, which rjitd drives.
#
# The executor's stdin, stdout and stderr are memfds rjitd created (O_APPEND for the output
# ones): rjitd reads and truncates them around each call, and writes a run's stdin into fd 0.
# fd 4 is a one-page memfd both map (status-page.h), in which the executor's fatal-signal
# handler leaves what rjitd needs to name a death. Nothing else is inherited.
@0xd66df94e2a1cebe1;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("rjitd::proto::executor");

using Rjit = import "/rjit.capnp";  # found through ipc/ on the import path (meson.build)

struct LoadOutcome {
  union {
    id @0 :UInt64;           # names the module in later calls
    error @1 :Rjit.Error;    # the load's failure (link-failed, not-found, ...), as rjitd said it
  }
}

interface Control {
  load @0 (target :Rjit.TargetSpec, optLevel :UInt8, key :Data, moduleName :Text)
      -> (outcome :LoadOutcome);
  # Loads the cached object with `key` into the executor (Session.load, hash-first, module
  # empty: rjitd makes sure its cache holds the object first) and runs its constructors.

  unload @1 (id :UInt64) -> ();

  call @2 (id :UInt64, symbol :Text, signature :Text, arguments :List(Rjit.Value))
      -> (outcome :Rjit.CallOutcome);
  # Calls `symbol` of module `id`, which has IR signature `signature` (rjitd checked the
  # arguments against it already; the executor checks again). `outcome.output` is left empty:
  # rjitd fills it from the stdio memfds. Flushes stdout and stderr before answering.

  run @3 (id :UInt64, argv :List(Text), env :List(Text)) -> ();
  # Runs module `id`'s main as a program, with stdin at fd 0 (rewound), and exits with its
  # status: never answers. rjitd reads the status from waitpid.

  attachSegment @4 (segment :Rjit.SharedSegment, size :UInt64) -> (error :Text);
  # Maps the client's shared segment (fd attached) read-write; "" on success.
}
