// SPDX-License-Identifier: MIT
// `rjit info`: the server's identity and statistics rendered as JSON or as aligned text.
#pragma once

#include "remotejit/client.h"

#include <nlohmann/json.hpp>
#include <string>

namespace rjitd::cli {

/// {"server": {...}, "cache": {...}, "compiles": {...}, counters, "fast_path": {...},
/// "requests_by_method": {...}, "errors": {...}, "per_target": {"x86_64": {...}, ...}}: the
/// keys scripts read (stable names). Per target, "mean_ms" is the mean latency (the histogram's
/// sum over its count), null when nothing ran.
nlohmann::json infoJson(const rjit::ServerInfo& info, const rjit::ServerStats& stats);

/// One "LABEL  VALUE" line per fact, labels padded to 20 columns, for people.
std::string infoText(const rjit::ServerInfo& info, const rjit::ServerStats& stats);

}  // namespace rjitd::cli
