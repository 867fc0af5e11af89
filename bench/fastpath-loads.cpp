// SPDX-License-Identifier: MIT
// fastpath-bench section 1, load latency: cold and warm Client::load + lookup against an
// in-process LLJIT compile of the same IR at the same level (see fastpath-bench.cpp).
#include "fastpath.h"

#include <stdexcept>

namespace fastpath {
namespace {

using IntFn = int (*)(int);

LoadResult loads(Bench& bench, const IrModule& m, unsigned level) {
  const Config& config = bench.config();
  LoadResult r;
  r.module = m.name;
  r.level = level;
  std::string label = m.name + " -O" + std::to_string(level);
  unsigned nLljit =
      m.large ? (level == 0 ? config.lljitLargeO0 : config.lljitLargeO2) : config.lljitSmall;
  nLljit = scaled(nLljit, config.scale);
  for (unsigned i = 0; i < nLljit; ++i) {
    std::string bytes = bench.freshBytes(m);
    r.lljit.add(rjitbench::lljitCompile(bytes, bench.lljitOptions(m, level)).totalMs);
    progress(label + " LLJIT compile", i + 1, nLljit);
  }

  unsigned nCold = scaled(m.large ? config.coldLarge : config.coldSmall, config.scale);
  for (unsigned i = 0; i < nCold; ++i) {
    // The last cold load is the warm module's first load.
    std::string bytes = i + 1 == nCold ? bench.warmBytes(m, level) : bench.freshBytes(m);
    rjit::CompileRequest req = request(m, bytes, level);
    auto start = Clock::now();
    rjit::Module module = bench.client().load(req);
    void* p = module.address(m.symbol);
    double ms = msSince(start);
    if (p == nullptr)
      throw std::runtime_error(m.name + ": " + m.symbol + " not found after a load");
    r.cold.add(ms);
    r.coldCompile.add(static_cast<double>(module.object().compileMicros) / 1000.0);
    if (module.object().fromCache)
      ++r.unexpected;
    r.imageBytes = module.size();
    module.unload();
    progress(label + " cold load", i + 1, nCold);
  }

  rjit::CompileRequest req = request(m, bench.warmBytes(m, level), level);
  for (unsigned i = 0; i < 3; ++i)  // warm-up, untimed
    bench.client().load(req).unload();
  r.before = footprint(bench.client(), bench.daemonPid());
  unsigned nWarm = scaled(m.large ? config.warmLarge : config.warmSmall, config.scale);
  auto deadline = Clock::now() + std::chrono::seconds(static_cast<long>(120 * config.scale) + 30);
  for (unsigned i = 0; i < nWarm && Clock::now() < deadline; ++i) {
    auto start = Clock::now();
    rjit::Module module = bench.client().load(req);
    void* p = module.address(m.symbol);
    r.warm.add(msSince(start));
    if (p == nullptr)
      throw std::runtime_error(m.name + ": " + m.symbol + " not found after a load");
    r.warmLink.add(static_cast<double>(module.linkMicros()) / 1000.0);
    if (!module.object().fromCache)
      ++r.unexpected;
    auto unloadStart = Clock::now();
    module.unload();
    r.unload.add(msSince(unloadStart));
    // Interleaved reference: a compile() hit of the same request, object in hand.
    auto hitStart = Clock::now();
    rjit::CompiledObject object = bench.client().compile(req);
    r.compileHit.add(msSince(hitStart));
    if (!object.fromCache)
      ++r.unexpected;
    r.objectBytes = object.object.size();
    if (nWarm >= 10 && (i + 1) % (nWarm / 10) == 0)
      progress(label + " warm load", i + 1, nWarm);
  }
  r.after = footprint(bench.client(), bench.daemonPid());

  // Correctness: the fast path and LLJIT compute the same (not timed).
  if (m.callable) {
    rjit::Module module = bench.client().load(req);
    int fast = module.lookup<int(int)>(m.symbol)(m.argument);
    rjitbench::LljitModule jit(req.module, bench.lljitOptions(m, level));
    int local = reinterpret_cast<IntFn>(jit.address(m.symbol))(m.argument);
    r.check = m.symbol + "(" + std::to_string(m.argument) + ") = " + std::to_string(fast) +
              " fast path, " + std::to_string(local) +
              " LLJIT: " + (fast == local ? "same" : "DIFFERENT");
    if (fast != local)
      bench.problem(label + ": " + r.check);
    bench.setExpected(m.name, fast);
  } else {
    r.check = m.symbol + " looked up (not called: it prints)";
  }
  if (r.after.fds > r.before.fds || r.after.loadedImages > r.before.loadedImages ||
      r.after.daemonFds > r.before.daemonFds)
    bench.problem(label + ": after " + std::to_string(r.warm.count()) +
                  " load/unload cycles: fds " + std::to_string(r.before.fds) + " -> " +
                  std::to_string(r.after.fds) + ", rjitd fds " +
                  std::to_string(r.before.daemonFds) + " -> " + std::to_string(r.after.daemonFds) +
                  ", loaded images " + std::to_string(r.before.loadedImages) + " -> " +
                  std::to_string(r.after.loadedImages));
  return r;
}

/// What one imported symbol costs a warm load: kernels as it is (no imports) and kernels with
/// one more function that calls getpid() (which LLVM cannot fold away), loaded alternately.
ImportCost importCost(Bench& bench, const IrModule& m, unsigned n) {
  ImportCost c;
  std::string plain = withNonce(m.text, bench.runId() + "-imports", 0);
  std::string withImport = withNonce(m.text + "\ndeclare i32 @getpid()\n"
                                              "define i32 @fp_import(i32 %x) {\n"
                                              "  %p = call i32 @getpid()\n"
                                              "  %r = add i32 %p, %x\n"
                                              "  ret i32 %r\n"
                                              "}\n",
                                     bench.runId() + "-imports", 1);
  rjit::CompileRequest a = request(m, plain, 2), b = request(m, withImport, 2);
  for (int i = 0; i < 3; ++i) {  // compile, then warm up
    bench.client().load(a).unload();
    bench.client().load(b).unload();
  }
  for (unsigned i = 0; i < n; ++i)
    for (unsigned k = 0; k < 2; ++k) {
      bool first = (i + k) % 2 == 0;  // a b, b a, ...
      auto start = Clock::now();
      rjit::Module module = bench.client().load(first ? a : b);
      void* p = module.address(m.symbol);
      double ms = msSince(start);
      if (p == nullptr)
        throw std::runtime_error("import cost: " + m.symbol + " not found");
      (first ? c.none : c.one).add(ms);
      (first ? c.linkNone : c.linkOne).add(static_cast<double>(module.linkMicros()) / 1000.0);
      module.unload();
    }
  return c;
}

/// A stats() round trip: one bare RPC over the same socket, for reference.
Series roundTrips(Bench& bench, unsigned n) {
  Series s;
  bench.client().stats();
  for (unsigned i = 0; i < n; ++i) {
    auto start = Clock::now();
    bench.client().stats();
    s.add(msSince(start));
  }
  return s;
}

}  // namespace

double warmUp(Bench& bench, const IrModule& m) {
  auto start = Clock::now();
  bench.client().load(request(m, withNonce(m.text, bench.runId() + "-warm-up", 0), 0)).unload();
  return msSince(start);
}

void measureLoads(Bench& bench, const std::vector<IrModule>& modules, LoadSection& section) {
  const Config& config = bench.config();
  for (const IrModule& m : modules)
    for (unsigned level : {0u, 2u})
      section.rows.push_back(loads(bench, m, level));
  unsigned n = scaled(config.warmSmall, config.scale);
  section.roundTrips = roundTrips(bench, n);
  section.imports = importCost(bench, modules.front(), n);
}

void printLoads(const LoadSection& section, std::ostream& os) {
  if (section.rows.empty())
    return;
  const Series& rtt = section.roundTrips;
  const ImportCost& imports = section.imports;
  os << "\n1. Load latency, request to callable pointer (Client::load + lookup)\n"
        "   cold = first load of new bytes, compile included; warm = cached: load, lookup "
        "(then unload, untimed);\n"
        "   link = rjitd's link time for the warm load (inside warm); hit = compile() cache "
        "hit, object in hand;\n"
        "   LLJIT = in-process ORC LLJIT at the same level: create, parse, optimize, "
        "codegen, link, lookup\n"
        "   times: ms for cold and LLJIT, us for warm; median (p90) [min]\n\n";
  Table table({"module", "opt", "N cold", "cold ms", "N warm", "warm us", "link us", "unload us",
               "hit us", "LLJIT ms", "LLJIT/warm", "cold/LLJIT", "object", "image"});
  for (const LoadResult& r : section.rows) {
    table.add(
        {r.module, "-O" + std::to_string(r.level), std::to_string(r.cold.count()),
         fixed(r.cold.median(), 2), std::to_string(r.warm.count()),
         us(r.warm.median()) + " (" + us(r.warm.percentile(90)) + ") [" + us(r.warm.min()) + "]",
         us(r.warmLink.median()), us(r.unload.median()), us(r.compileHit.median()),
         fixed(r.lljit.median(), 2) + " [" + fixed(r.lljit.min(), 2) + "]",
         fixed(ratio(r.lljit.median(), r.warm.median()), 0) + "x",
         fixed(ratio(r.cold.median(), r.lljit.median()), 3),
         fixed(static_cast<double>(r.objectBytes) / 1024, 1) + " KiB",
         std::to_string(r.imageBytes / 1024) + " KiB"});
  }
  table.print(os);
  os << "   (LLJIT/warm = median LLJIT compile / median warm load: the speed-up; "
        "cold/LLJIT = median cold load / median LLJIT compile)\n"
     << "   first request after rjitd started (an untimed cold load of kernels -O0 "
        "with another nonce, not in the table): "
     << fixed(section.firstLoadMs, 1) << " ms\n"
     << "   reference: a stats() round trip over the same socket, N=" << rtt.count() << ": "
     << us(rtt.median()) << " (" << us(rtt.percentile(90)) << ") [" << us(rtt.min()) << "] us\n"
     << "   one imported symbol: warm loads of kernels -O2 without imports and with one "
        "more function that calls getpid(), alternated, N="
     << imports.none.count() << " each: " << us(imports.none.median()) << " ("
     << us(imports.none.percentile(90)) << ") [" << us(imports.none.min()) << "] vs "
     << us(imports.one.median()) << " (" << us(imports.one.percentile(90)) << ") ["
     << us(imports.one.min()) << "] us, +" << us(imports.one.median() - imports.none.median())
     << " us median; rjitd's link " << us(imports.linkNone.median()) << " vs "
     << us(imports.linkOne.median()) << " us\n";
  for (const LoadResult& r : section.rows)
    os << "   check " << r.module << " -O" << r.level << ": " << r.check
       << "; after the warm loop: our fds " << r.before.fds << "->" << r.after.fds << ", RSS "
       << r.before.rssKb << "->" << r.after.rssKb << " KiB, rjitd fds " << r.before.daemonFds
       << "->" << r.after.daemonFds << ", rjitd RSS " << r.before.daemonRssKb << "->"
       << r.after.daemonRssKb << " KiB, loaded images " << r.before.loadedImages << "->"
       << r.after.loadedImages << (r.unexpected ? ", UNEXPECTED cache use" : "") << "\n";
}

void loadsToJson(const LoadSection& section, json& out) {
  for (const LoadResult& r : section.rows)
    out["loads"].push_back({{"module", r.module},
                            {"opt_level", r.level},
                            {"cold", r.cold.toJson()},
                            {"cold_server_compile", r.coldCompile.toJson()},
                            {"warm", r.warm.toJson()},
                            {"warm_link", r.warmLink.toJson()},
                            {"unload", r.unload.toJson()},
                            {"compile_hit", r.compileHit.toJson()},
                            {"lljit", r.lljit.toJson()},
                            {"speedup_lljit_over_warm", ratio(r.lljit.median(), r.warm.median())},
                            {"object_bytes", r.objectBytes},
                            {"image_bytes", r.imageBytes},
                            {"before_warm", toJson(r.before)},
                            {"after_warm", toJson(r.after)},
                            {"check", r.check},
                            {"unexpected", r.unexpected}});
  out["stats_round_trip"] = section.roundTrips.toJson();
  out["first_load_ms"] = section.firstLoadMs;
  out["import_cost"] = {{"no_imports", section.imports.none.toJson()},
                        {"one_import", section.imports.one.toJson()},
                        {"link_no_imports", section.imports.linkNone.toJson()},
                        {"link_one_import", section.imports.linkOne.toJson()}};
}

}  // namespace fastpath
