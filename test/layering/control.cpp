// SPDX-License-Identifier: MIT
// Layering control probe: what service/ may include builds with service_dep's flags, so the
// failures of the other probes come from the header each names, not from broken flags.
#include "compile-service.h"
#include "compiler.h"
#include "linker.h"
#include "rjit.capnp.h"

int layeringControlProbe() {
  return 0;
}
