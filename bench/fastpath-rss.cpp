// SPDX-License-Identifier: MIT
// fastpath-bench section 3, peak RSS: a client process that links only libremotejit-client
// against one that embeds LLVM, both started through rss-run (see fastpath-bench.cpp).
#include "fastpath.h"

#include <algorithm>

namespace fastpath {

std::vector<RssRow> measureRss(Bench& bench, const std::vector<IrModule>& modules) {
  const Config& config = bench.config();
  struct Plan {
    std::string side, what;
    const IrModule* module;
    unsigned level;
    std::vector<std::string> env = {};
  };
  const IrModule* kernelsModule = nullptr;
  const IrModule* stbModule = nullptr;
  for (const IrModule& m : modules) {
    if (m.name == "kernels")
      kernelsModule = &m;
    if (m.name == "stb")
      stbModule = &m;
  }
  std::vector<Plan> plans = {
      {"client", "baseline: connected, nothing loaded", nullptr, 2},
      {"client", "kernels -O2, loaded and called", kernelsModule, 2},
      {"client", "stb -O2, loaded and called", stbModule, 2},
      // Without hash-first the client computes no SHA-256 but sends the module in a message.
      {"client",
       "stb -O2, module sent (no hash-first)",
       stbModule,
       2,
       {"RJIT_HASH_FIRST_BYTES=1000000000000"}},
      {"LLVM", "baseline: started, nothing compiled", nullptr, 2},
      {"LLVM", "kernels -O2, JIT-compiled and called", kernelsModule, 2},
      {"LLVM", "stb -O2, JIT-compiled and called", stbModule, 2},
      {"LLVM", "stb -O0, JIT-compiled and called", stbModule, 0},
  };
  fs::path clientExe = bench.self() / "fastpath-client-rss",
           lljitExe = bench.self() / "fastpath-lljit-rss";
  for (const Plan& plan : plans)
    if (plan.side == "client" && plan.module != nullptr)
      bench.prewarm(*plan.module, plan.level);
  std::vector<RssRow> rows;
  unsigned runs = scaled(config.rssRuns, std::min(1.0, config.scale));
  for (const Plan& plan : plans) {
    RssRow row;
    row.side = plan.side;
    row.what = plan.what;
    row.module = plan.module != nullptr ? plan.module->name : "";
    row.level = plan.level;
    std::vector<std::string> command;
    if (plan.side == "client") {
      command = {clientExe.string(), "--server", bench.address()};
    } else {
      command = {lljitExe.string()};
    }
    if (plan.module != nullptr) {
      // The same IR file the benchmark loads (the client child's load is a cache hit only
      // if its bytes match an earlier request; either way its memory is what we measure).
      command.insert(command.end(),
                     {"--ir", plan.module->path.string(), "--symbol", plan.module->symbol, "--arg",
                      std::to_string(plan.module->argument), "--opt", std::to_string(plan.level),
                      "--calls", "100"});
      if (plan.side == "LLVM")
        command.insert(command.end(), {"--triple", bench.triple(), "--cpu", bench.cpu()});
    }
    for (unsigned i = 0; i < runs; ++i) {
      ChildRun run = runMeasured(bench.self() / "rss-run", command, bench.scratch(), 300, plan.env);
      bool ok = run.reported && run.status == "exit 0" && run.vmhwmKb > 0;
      if (!ok) {
        ++row.failures;
        row.error = run.status + ": " + firstLine(run.err);
        continue;
      }
      row.vmhwmKb.add(static_cast<double>(run.vmhwmKb));
      row.maxrssKb.add(static_cast<double>(run.maxrssKb));
      row.wallMs.add(run.wallMs);
      row.anonKb.add(static_cast<double>(run.rssAnonKb));
      row.fileKb.add(static_cast<double>(run.rssFileKb));
      row.llvmMapped = std::max(row.llvmMapped, run.llvmMapped);
      if (plan.module != nullptr && run.result) {
        std::optional<long long> expected = bench.expected(plan.module->name);
        if (expected)
          row.resultCheck = *run.result == *expected ? "right" : "WRONG";
        else
          row.resultCheck = std::to_string(*run.result);
      }
      progress(plan.side + ": " + plan.what, i + 1, runs);
    }
    if (plan.side == "client" && row.llvmMapped != 0)
      bench.problem("the client-only child has libLLVM mapped (llvm_mapped=" +
                    std::to_string(row.llvmMapped) + ")");
    if (row.resultCheck == "WRONG" || row.failures > 0)
      bench.problem("RSS child '" + plan.side + ": " + plan.what +
                    "': " + std::to_string(row.failures) + " failed runs, result " +
                    row.resultCheck + (row.error.empty() ? "" : "; " + row.error));
    rows.push_back(std::move(row));
  }
  return rows;
}

void printRss(const std::vector<RssRow>& rss, std::ostream& os) {
  if (rss.empty())
    return;
  os << "\n3. Peak RSS of a client process (started through rss-run), median of runs\n"
        "   VmHWM = the child's own peak RSS (/proc/self/status); maxrss = wait4's "
        "ru_maxrss;\n"
        "   anon, file = its RSS at exit split into private anonymous memory and file "
        "pages (shared libraries)\n\n";
  Table table({"side", "process", "runs", "VmHWM MiB", "maxrss MiB", "anon MiB", "file MiB",
               "wall ms", "libLLVM mapped", "result"});
  for (const RssRow& r : rss)
    table.add({r.side, r.what,
               std::to_string(r.vmhwmKb.count()) +
                   (r.failures ? " (+" + std::to_string(r.failures) + " failed)" : ""),
               mib(r.vmhwmKb.median()), mib(r.maxrssKb.median()), mib(r.anonKb.median()),
               mib(r.fileKb.median()), fixed(r.wallMs.median(), 1),
               r.llvmMapped < 0 ? "?" : (r.llvmMapped ? "yes" : "no"), r.resultCheck});
  table.print(os);
  for (const RssRow& c : rss) {
    if (c.side != "client")
      continue;
    for (const RssRow& l : rss)
      if (l.side == "LLVM" && l.module == c.module && l.level == c.level) {
        double client = c.vmhwmKb.median(), llvm = l.vmhwmKb.median();
        os << "   peak RSS client/LLVM, " << c.what << ": " << fixed(ratio(client, llvm), 3)
           << " (1/" << fixed(ratio(llvm, client), 1) << "); private anon at exit "
           << fixed(ratio(c.anonKb.median(), l.anonKb.median()), 3) << "\n";
        break;
      }
  }
}

void rssToJson(const std::vector<RssRow>& rss, json& out) {
  for (const RssRow& r : rss)
    out["rss"].push_back({{"side", r.side},
                          {"what", r.what},
                          {"module", r.module},
                          {"opt_level", r.level},
                          {"vmhwm_kb", r.vmhwmKb.ms},
                          {"maxrss_kb", r.maxrssKb.ms},
                          {"rss_anon_kb_at_exit", r.anonKb.ms},
                          {"rss_file_kb_at_exit", r.fileKb.ms},
                          {"wall_ms", r.wallMs.ms},
                          {"failures", r.failures},
                          {"llvm_mapped", r.llvmMapped},
                          {"result", r.resultCheck}});
}

}  // namespace fastpath
