// SPDX-License-Identifier: MIT
// `rjit info`: the server's identity and statistics rendered as JSON or as aligned text.
#include "info-render.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace rjitd::cli {
namespace {

/// {"compile": {"ok": 12, "invalid-module": 1}, ...}
nlohmann::json requestsByMethod(const rjit::ServerStats& stats) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& r : stats.requestCounts)
    out[r.method][r.result] = r.count;
  return out;
}

nlohmann::json errorsByKind(const rjit::ServerStats& stats) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& e : stats.errorCounts)
    out[e.kind] = e.count;
  return out;
}

/// {"x86_64-unknown-linux-gnu": {"ok": 9, "crashed": 1}, ...}
nlohmann::json executesByTarget(const rjit::ServerStats& stats) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& r : stats.executeCounts)
    out[r.method][r.result] = r.count;
  return out;
}

/// Mean milliseconds of `count` operations that took `seconds` in all; null when none ran.
nlohmann::json meanMillis(double seconds, uint64_t count) {
  if (count == 0)
    return nullptr;
  return seconds * 1000 / static_cast<double>(count);
}

nlohmann::json counted(uint64_t total, uint64_t failures, double seconds) {
  return {{"total", total}, {"failures", failures}, {"mean_ms", meanMillis(seconds, total)}};
}

/// [{"tier": "memory", ...}, {"tier": "disk", ...}]: every tier rjitd uses.
nlohmann::json tiersJson(const rjit::ServerStats& stats) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& t : stats.tiers)
    out.push_back({{"tier", t.tier},
                   {"address", t.address},
                   {"entries", t.entries},
                   {"bytes", t.bytes},
                   {"budget_bytes", t.budgetBytes},
                   {"hits", t.hits},
                   {"misses", t.misses},
                   {"evictions", t.evictions},
                   {"stored", t.stored},
                   {"rejected", t.rejected},
                   {"errors", t.errors},
                   {"available", t.available}});
  return out;
}

/// {"x86_64": {"cache": {...}, "compiles": {...}, "loads": ..., "links": ..., "executes": ...}}
nlohmann::json perTarget(const rjit::ServerStats& stats) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& t : stats.targets)
    out[t.target] = {
        {"cache", {{"lookups", t.cacheLookups}, {"hits", t.cacheHits}}},
        {"compiles", counted(t.compiles, t.compileFailures, t.compileSeconds)},
        {"loads", counted(t.loads, t.loadFailures, t.loadSeconds)},
        {"links", counted(t.links, t.linkFailures, t.linkSeconds)},
        {"executes", counted(t.executes, t.executeFailures, t.executeSeconds)},
    };
  return out;
}

}  // namespace

nlohmann::json infoJson(const rjit::ServerInfo& info, const rjit::ServerStats& stats) {
  nlohmann::json targets = nlohmann::json::array();
  for (const rjit::TargetInfo& t : info.targets)
    targets.push_back({{"name", t.name},
                       {"triple", t.triple},
                       {"aliases", t.aliases},
                       {"default_cpu", t.defaultCpu}});
  return {
      {"server",
       {{"endpoint", info.endpoint},
        {"rjitd_version", info.rjitdVersion},
        {"llvm_version", info.llvmVersion},
        {"protocol_version", info.protocolVersion},
        {"compiler_identity", info.compilerIdentity},
        {"default_triple", info.defaultTriple},
        {"max_module_bytes", info.maxModuleBytes},
        {"targets", targets}}},
      {"cache",
       {{"entries", stats.cacheEntries},
        {"bytes", stats.cacheBytes},
        {"budget_bytes", stats.cacheBudgetBytes},
        {"hits", stats.cacheHits},
        {"misses", stats.cacheMisses},
        {"evictions", stats.cacheEvictions},
        {"tiers", tiersJson(stats)}}},
      {"compiles",
       {{"total", stats.compiles},
        {"failures", stats.compileFailures},
        {"in_flight", stats.compilesInFlight}}},
      {"requests", stats.requests},
      {"lookups", stats.lookups},
      {"lookup_hits", stats.lookupHits},
      {"module_bytes_received", stats.moduleBytesReceived},
      {"sessions", stats.sessions},
      {"connections", stats.connections},
      {"workers", stats.workers},
      {"compile_worker_restarts", stats.compileWorkerRestarts},
      {"uptime_ms", stats.uptimeMillis},
      {"fast_path",
       {{"loads", stats.loads},
        {"links", stats.links},
        {"link_failures", stats.linkFailures},
        {"loaded_modules", stats.loadedImages},
        {"loaded_bytes", stats.loadedImageBytes},
        {"symbol_questions", stats.symbolQuestions}}},
      {"execute",
       {{"total", stats.executes},
        {"failures", stats.executeFailures},
        {"executors", stats.executors},
        {"executor_restarts", stats.executorRestarts},
        {"by_target", executesByTarget(stats)}}},
      {"requests_by_method", requestsByMethod(stats)},
      {"errors", errorsByKind(stats)},
      {"per_target", perTarget(stats)},
  };
}

namespace {

std::string formatUptime(uint64_t millis) {
  uint64_t seconds = millis / 1000;
  uint64_t days = seconds / 86400, hours = seconds / 3600 % 24, minutes = seconds / 60 % 60;
  std::string out;
  if (days != 0)
    out += std::to_string(days) + "d ";
  if (days != 0 || hours != 0)
    out += std::to_string(hours) + "h ";
  if (days != 0 || hours != 0 || minutes != 0)
    out += std::to_string(minutes) + "m ";
  return out + std::to_string(seconds % 60) + "s";
}

/// "12 (1 failed)", then ", mean 3.250 ms" when any ran.
std::string countedText(uint64_t total, uint64_t failures, double seconds) {
  std::string out = std::to_string(total) + " (" + std::to_string(failures) + " failed)";
  if (total != 0) {
    char mean[32];
    std::snprintf(mean, sizeof mean, ", mean %.3f ms", seconds * 1000 / static_cast<double>(total));
    out += mean;
  }
  return out;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items)
    out += (out.empty() ? "" : ", ") + item;
  return out;
}

}  // namespace

std::string infoText(const rjit::ServerInfo& info, const rjit::ServerStats& stats) {
  std::string out;
  // "LABEL               VALUE": labels padded to 20 columns (printf's "%-20s").
  auto line = [&out](const std::string& label, const std::string& value) {
    out += label;
    if (label.size() < 20)
      out.append(20 - label.size(), ' ');
    out += value;
    out += '\n';
  };
  auto n = [](uint64_t v) { return std::to_string(v); };
  line("server", info.endpoint);
  line("rjitd version", info.rjitdVersion);
  line("LLVM version", info.llvmVersion);
  line("protocol", n(info.protocolVersion));
  line("compiler identity", info.compilerIdentity);
  size_t nameWidth = 0, tripleWidth = 0;
  for (const rjit::TargetInfo& t : info.targets) {
    nameWidth = std::max(nameWidth, t.name.size());
    tripleWidth = std::max(tripleWidth, t.triple.size());
  }
  bool first = true;
  for (const rjit::TargetInfo& t : info.targets) {
    std::string value = t.name + std::string(nameWidth - t.name.size() + 2, ' ') + t.triple +
                        std::string(tripleWidth - t.triple.size() + 2, ' ') + "cpu " + t.defaultCpu;
    if (!t.aliases.empty())
      value += "; aliases: " + joined(t.aliases);
    line(first ? "targets" : "", value);
    first = false;
  }
  if (info.targets.empty())
    line("targets", "none");
  line("default target", info.defaultTriple);
  line("max module bytes", n(info.maxModuleBytes));
  line("cache entries", n(stats.cacheEntries));
  line("cache bytes", n(stats.cacheBytes) + " of " + n(stats.cacheBudgetBytes) + " budget");
  line("cache hits", n(stats.cacheHits));
  line("cache misses", n(stats.cacheMisses));
  line("cache evictions", n(stats.cacheEvictions));
  for (const auto& t : stats.tiers) {
    if (t.tier == "memory")
      continue;  // the lines above
    std::string value = t.address + ": " + n(t.hits) + " hits, " + n(t.misses) + " misses, " +
                        n(t.stored) + " stored, " + n(t.rejected) + " rejected, " + n(t.errors) +
                        " errors";
    if (t.tier == "disk")
      value += "; " + n(t.entries) + " entries, " + n(t.bytes) + " of " + n(t.budgetBytes) +
               " bytes, " + n(t.evictions) + " evictions";
    else if (!t.available)
      value += "; unavailable (backing off after errors)";
    line("cache " + t.tier, value);
  }
  line("compiles", n(stats.compiles) + " (" + n(stats.compileFailures) + " failed, " +
                       n(stats.compilesInFlight) + " in flight)");
  line("requests", n(stats.requests));
  line("lookups", n(stats.lookups) + " (" + n(stats.lookupHits) + " hits)");
  line("module bytes in", n(stats.moduleBytesReceived));
  std::map<std::string, std::vector<std::string>> byMethod;
  for (const auto& r : stats.requestCounts)
    if (r.count != 0)
      byMethod[r.method].push_back(r.result + " " + n(r.count));
  bool firstMethod = true;
  for (const auto& [method, results] : byMethod) {
    line(firstMethod ? "requests by method" : "", method + ": " + joined(results));
    firstMethod = false;
  }
  std::vector<std::string> errors;
  for (const auto& e : stats.errorCounts)
    if (e.count != 0)
      errors.push_back(e.kind + " " + n(e.count));
  line("errors", errors.empty() ? std::string("none") : joined(errors));
  line("loads",
       n(stats.loads) + " (" + n(stats.links) + " links, " + n(stats.linkFailures) + " failed)");
  line("loaded modules", n(stats.loadedImages) + " (" + n(stats.loadedImageBytes) + " bytes)");
  line("symbol questions", n(stats.symbolQuestions) + " (round trips to clients during loads)");
  line("executes", n(stats.executes) + " (" + n(stats.executeFailures) + " failed)");
  line("executors", n(stats.executors) + " (" + n(stats.executorRestarts) + " restarts)");
  std::map<std::string, std::vector<std::string>> byTarget;
  for (const auto& r : stats.executeCounts)
    if (r.count != 0)
      byTarget[r.method].push_back(r.result + " " + n(r.count));
  bool firstTarget = true;
  for (const auto& [target, results] : byTarget) {
    line(firstTarget ? "executes by target" : "", target + ": " + joined(results));
    firstTarget = false;
  }
  for (const auto& t : stats.targets) {
    line("target " + t.target,
         "cache " + n(t.cacheLookups) + " lookups (" + n(t.cacheHits) + " hits)");
    line("", "compiles " + countedText(t.compiles, t.compileFailures, t.compileSeconds));
    line("", "loads " + countedText(t.loads, t.loadFailures, t.loadSeconds));
    line("", "links " + countedText(t.links, t.linkFailures, t.linkSeconds));
    line("", "executes " + countedText(t.executes, t.executeFailures, t.executeSeconds));
  }
  line("sessions", n(stats.sessions) + " (" + n(stats.connections) + " connections)");
  line("workers", n(stats.workers) + " (" + n(stats.compileWorkerRestarts) + " restarts)");
  line("uptime", formatUptime(stats.uptimeMillis));
  return out;
}

}  // namespace rjitd::cli
