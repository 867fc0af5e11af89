// SPDX-License-Identifier: MIT
// Layering probe, must not compile: the compiler's private headers stay in src/compiler.
#include "diagnostics.h"
