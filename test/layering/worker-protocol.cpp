// SPDX-License-Identifier: MIT
// Layering probe, must not compile: ipc_dep (what libremotejit-client links) carries only the
// client protocol, not the daemon's private compile-worker protocol.
#include "compile-worker.capnp.h"
