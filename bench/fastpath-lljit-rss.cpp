// SPDX-License-Identifier: MIT
// fastpath-lljit-rss: the LLVM-embedding side of fastpath-bench's peak-memory comparison.
// JIT-compiles a module in-process with LLVM ORC LLJIT (bench/lljit-compile.cpp, the same
// compile the other benchmarks use), calls one `int(int)` function in it, and prints the
// result and its own memory (VmHWM = peak RSS).
//
//   fastpath-lljit-rss                                   start only (libLLVM linked; baseline)
//   fastpath-lljit-rss --ir FILE --symbol NAME --triple T --cpu C [--arg N] [--opt L] [--calls K]
#include "lljit-compile.h"
#include "rss-child.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  rjitbench::ChildOptions o;
  if (!rjitbench::parseChildOptions(
          argc, argv, {"--ir", "--symbol", "--triple", "--cpu", "--arg", "--opt", "--calls"}, o))
    return 2;
  if (o.ir.empty()) {
    std::printf("result: none (started only)\n");
    rjitbench::printMemoryLine();
    return 0;
  }
  if (o.symbol.empty() || o.triple.empty() || o.cpu.empty()) {
    std::fprintf(stderr, "usage: fastpath-lljit-rss --ir FILE --symbol NAME --triple T --cpu C "
                         "[--arg N] [--opt L] [--calls K]\n");
    return 2;
  }
  try {
    std::string text;
    if (!rjitbench::readWholeFile(o.ir.c_str(), text)) {
      std::fprintf(stderr, "error: cannot read %s\n", o.ir.c_str());
      return 2;
    }
    auto start = std::chrono::steady_clock::now();
    rjitbench::LljitModule module(text, {o.triple, o.cpu, o.opt, o.symbol});
    auto* function = reinterpret_cast<int (*)(int)>(module.address(o.symbol));
    double loadMs =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    int result = 0;
    for (unsigned k = 0; k < o.calls; ++k)
      result = function(o.arg);
    std::printf("result: %d load_ms=%.3f from_cache=0\n", result, loadMs);
    rjitbench::printMemoryLine();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
