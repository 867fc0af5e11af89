// SPDX-License-Identifier: MIT
// fastpath-bench section 2, call speed: compute kernels called in a tight loop through the
// fast-path pointer and through the LLJIT pointer of the same IR at the same level, in
// alternating batches (see fastpath-bench.cpp).
#include "fastpath.h"

#include "call-pair.h"

#include <algorithm>
#include <stdexcept>

namespace fastpath {
namespace {

std::string spreadRatio(const Series& s) {
  return fixed(s.median(), 3) + " [" + fixed(s.min(), 3) + ", " + fixed(s.max(), 3) + "]";
}

}  // namespace

std::vector<CallResult> measureCalls(Bench& bench, const std::vector<IrModule>& modules,
                                     unsigned level) {
  const Config& config = bench.config();
  // A client of its own: its session holds these modules while the calls run.
  rjit::Client client(bench.clientOptions("fastpath-bench-calls"));
  std::map<std::string, rjit::Module> fast;
  std::map<std::string, rjitbench::LljitModule> local;
  for (const IrModule& m : modules) {
    if (m.name != "kernels" && m.name != "stb")
      continue;
    rjit::CompileRequest req = request(m, bench.warmBytes(m, level), level);
    fast.emplace(m.name, client.load(req));
    local.emplace(m.name, rjitbench::LljitModule(req.module, bench.lljitOptions(m, level)));
  }
  std::vector<CallResult> results;
  for (const rjitbench::CallKernel& k : rjitbench::callKernels()) {
    if (fast.count(k.module) == 0)
      continue;
    CallResult r;
    r.kernel = k.name;
    r.module = k.module;
    r.what = k.what;
    r.level = level;
    void* a = fast.at(k.module).address(k.name);
    void* b = local.at(k.module).address(k.name);
    if (a == nullptr || b == nullptr)
      throw std::runtime_error(k.name + " not found");
    r.fastOffset = reinterpret_cast<uintptr_t>(a) % 4096;
    r.lljitOffset = reinterpret_cast<uintptr_t>(b) % 4096;
    double target = std::max(1.0, config.callBatchMs * std::min(1.0, config.scale));
    unsigned rounds = scaled(config.callRounds, std::min(1.0, config.scale));
    rjitbench::PairTiming t =
        rjitbench::timePair(k, a, b, rounds, target, [&](unsigned done, unsigned total) {
          progress(k.name + " -O" + std::to_string(level) + " calls", done, total);
        });
    r.callsPerBatch = t.callsPerBatch;
    r.fastNs = std::move(t.aNs);
    r.lljitNs = std::move(t.bNs);
    r.fastAllNs = std::move(t.aAllNs);
    r.lljitAllNs = std::move(t.bAllNs);
    r.pairRatio = std::move(t.pairRatio);
    r.identical = t.identical;
    if (!r.identical)
      bench.problem(k.name + " -O" + std::to_string(level) +
                    ": the fast path and LLJIT computed different sums");
    results.push_back(std::move(r));
  }
  return results;
}

void printCalls(const std::vector<CallResult>& calls, std::ostream& os) {
  if (calls.empty())
    return;
  os << "\n2. Call speed: the same IR at the same level, called in a tight loop through "
        "the fast-path pointer (A) and the LLJIT pointer (B)\n"
        "   rounds of six batches A B B A A B / B A A B B A; per round, each side's best "
        "batch; ns/call: median over rounds;\n"
        "   fast/LLJIT: the per-round ratio of bests, median [min, max] over rounds; "
        "all batches: ratio of the medians of every batch\n\n";
  Table table({"function", "opt", "work", "calls/batch", "rounds", "fast ns/call", "LLJIT ns/call",
               "fast/LLJIT", "all batches", "same sums", "addr%4096 fast/LLJIT"});
  for (const CallResult& r : calls)
    table.add({r.kernel, "-O" + std::to_string(r.level), r.what, std::to_string(r.callsPerBatch),
               std::to_string(r.pairRatio.count()), fixed(r.fastNs.median(), 2),
               fixed(r.lljitNs.median(), 2), spreadRatio(r.pairRatio),
               fixed(ratio(r.fastAllNs.median(), r.lljitAllNs.median()), 3),
               r.identical ? "yes" : "NO",
               std::to_string(r.fastOffset) + "/" + std::to_string(r.lljitOffset)});
  table.print(os);
}

void callsToJson(const std::vector<CallResult>& calls, json& out) {
  for (const CallResult& r : calls)
    out["calls"].push_back(
        {{"function", r.kernel},
         {"module", r.module},
         {"opt_level", r.level},
         {"calls_per_batch", r.callsPerBatch},
         {"fast_best_ns_per_call", r.fastNs.ms},
         {"lljit_best_ns_per_call", r.lljitNs.ms},
         {"fast_all_ns_per_call", r.fastAllNs.ms},
         {"lljit_all_ns_per_call", r.lljitAllNs.ms},
         {"round_ratios", r.pairRatio.ms},
         {"ratio_median", r.pairRatio.median()},
         {"ratio_of_all_batch_medians", ratio(r.fastAllNs.median(), r.lljitAllNs.median())},
         {"address_mod_4096", {r.fastOffset, r.lljitOffset}},
         {"identical_sums", r.identical}});
}

}  // namespace fastpath
