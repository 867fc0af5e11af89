// SPDX-License-Identifier: MIT
// fastpath-bench section 2, call speed: compute kernels called in a tight loop through the
// fast-path pointer and through the LLJIT pointer of the same IR at the same level, in
// alternating batches (see fastpath-bench.cpp).
#include "fastpath.h"

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace fastpath {
namespace {

using IntFn = int (*)(int);
using BufferFn = int (*)(const unsigned char*, int);

constexpr int CHECKSUM_BYTES = 4096;

/// The timed loops. noinline, and called with either pointer, so that both variants run the
/// very same machine code around the call. The argument cycles through 1..limit.
__attribute__((noinline)) uint64_t loopInt(IntFn f, uint64_t calls, int limit) {
  uint64_t sum = 0;
  int x = 1;
  for (uint64_t i = 0; i < calls; ++i) {
    sum += static_cast<unsigned>(f(x));
    if (++x > limit)
      x = 1;
  }
  return sum;
}

__attribute__((noinline)) uint64_t loopBuffer(BufferFn f, uint64_t calls,
                                              const unsigned char* data) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < calls; ++i)
    sum += static_cast<unsigned>(f(data, CHECKSUM_BYTES - static_cast<int>(i & 15)));
  return sum;
}

struct Kernel {
  std::string name;    ///< the function
  std::string module;  ///< "kernels" or "stb"
  std::string what;
  bool buffer = false;  ///< int(const unsigned char*, int); else int(int)
  int limit = 1;        ///< int(int): arguments cycle through 1..limit
};

const std::vector<Kernel>& kernels() {
  static const std::vector<Kernel> list = {
      {"fp_mix", "kernels", "a few integer ops: mostly the call itself", false, 1 << 20},
      {"fp_collatz", "kernels", "loop, data-dependent trip count (~100)", false, 100000},
      {"fp_checksum", "kernels", "vectorizable loop over a 4 KiB buffer", true, 0},
      {"fp_sort", "kernels", "heap sort of 512 ints on the stack", false, 1 << 20},
      {"stb_bench_decode", "stb", "stb_image: decode a 64x48 BMP (malloc, free)", false, 1 << 20},
  };
  return list;
}

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
  std::vector<unsigned char> buffer(CHECKSUM_BYTES);
  uint32_t x = 12345;
  for (auto& b : buffer) {
    x = x * 1103515245u + 12345u;
    b = static_cast<unsigned char>(x >> 16);
  }

  std::vector<CallResult> results;
  for (const Kernel& k : kernels()) {
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
    auto batch = [&](void* f, uint64_t n) {
      return k.buffer ? loopBuffer(reinterpret_cast<BufferFn>(f), n, buffer.data())
                      : loopInt(reinterpret_cast<IntFn>(f), n, k.limit);
    };
    // Calibrate on the LLJIT pointer: batches of about callBatchMs.
    uint64_t n = 16;
    double target = std::max(1.0, config.callBatchMs * std::min(1.0, config.scale));
    for (int round = 0; round < 30; ++round) {
      auto start = Clock::now();
      batch(b, n);
      double ms = msSince(start);
      if (ms >= target / 4 || n >= (uint64_t{1} << 32))
        break;
      n = ms <= 0 ? n * 8 : std::min(n * 8, static_cast<uint64_t>(n * target / ms) + 1);
    }
    {
      auto start = Clock::now();
      batch(b, n);
      double ms = std::max(msSince(start), 1e-3);
      n = std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(n) * target / ms));
    }
    r.callsPerBatch = n;
    batch(a, n);  // warm-up of the fast-path code
    // Rounds of six batches, A B B A A B (odd rounds B A A B B A): each variant's best of
    // three in a round is its time for that round (a batch that another process preempted
    // is never the best), and the round's ratio compares the two bests.
    unsigned rounds = scaled(config.callRounds, std::min(1.0, config.scale));
    auto deadline = Clock::now() +
                    std::chrono::milliseconds(static_cast<long>(rounds * target * 6 * 3) + 10000);
    static constexpr int ORDER[6] = {0, 1, 1, 0, 0, 1};
    for (unsigned round = 0; round < rounds && Clock::now() < deadline; ++round) {
      double best[2] = {std::numeric_limits<double>::max(), std::numeric_limits<double>::max()};
      uint64_t sums[2] = {0, 0};
      for (int j = 0; j < 6; ++j) {
        int which = round % 2 == 0 ? ORDER[j] : 1 - ORDER[j];
        auto start = Clock::now();
        uint64_t sum = batch(which == 0 ? a : b, n);
        double ms = msSince(start);
        best[which] = std::min(best[which], ms);
        (which == 0 ? r.fastAllNs : r.lljitAllNs).add(ms * 1e6 / static_cast<double>(n));
        if (sums[which] != 0 && sums[which] != sum)
          r.identical = false;  // the same code on the same inputs
        sums[which] = sum;
      }
      r.fastNs.add(best[0] * 1e6 / static_cast<double>(n));
      r.lljitNs.add(best[1] * 1e6 / static_cast<double>(n));
      r.pairRatio.add(ratio(best[0], best[1]));
      if (sums[0] != sums[1])
        r.identical = false;
      progress(k.name + " -O" + std::to_string(level) + " calls", round + 1, rounds);
    }
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
