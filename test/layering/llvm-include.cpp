// SPDX-License-Identifier: MIT
// Layering probe, must not compile: service_dep's users cannot reach LLVM's headers.
#include "compile-service.h"

#include <llvm/IR/Module.h>
