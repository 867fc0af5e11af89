// SPDX-License-Identifier: MIT
// The client side of rjitd's test-only gates (--test-compile-gate, --test-worker-gate): where a
// compile waits, at a Unix socket a test listens on, until the test lets it go.
#pragma once

#include <string>
#include <string_view>

namespace rjitd::service {

/// Connects to the Unix socket at `path`, writes `moduleName` and a newline, and waits until
/// the connection yields a byte, an end of file or an error. Every failure (no listener, a path
/// too long) returns at once, logged with `gateName` ("test compile gate", ...): a gate must
/// never turn into a way for a compile to hang. Test-only: rjitd calls it only when a gate was
/// given on its command line.
void waitAtTestGate(std::string_view gateName, const std::string& path,
                    const std::string& moduleName);

}  // namespace rjitd::service
