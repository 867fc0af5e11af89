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
  std::string ir, symbol, triple, cpu;
  int arg = 1;
  unsigned opt = 2, calls = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    const char* value = argv[i + 1];
    if (name == "--ir")
      ir = value;
    else if (name == "--symbol")
      symbol = value;
    else if (name == "--triple")
      triple = value;
    else if (name == "--cpu")
      cpu = value;
    else if (name == "--arg")
      arg = std::atoi(value);
    else if (name == "--opt")
      opt = static_cast<unsigned>(std::atoi(value));
    else if (name == "--calls")
      calls = static_cast<unsigned>(std::atoi(value));
    else {
      std::fprintf(stderr, "error: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (ir.empty()) {
    std::printf("result: none (started only)\n");
    rjitbench::printMemoryLine();
    return 0;
  }
  if (symbol.empty() || triple.empty() || cpu.empty()) {
    std::fprintf(stderr, "usage: fastpath-lljit-rss --ir FILE --symbol NAME --triple T --cpu C "
                         "[--arg N] [--opt L] [--calls K]\n");
    return 2;
  }
  try {
    std::string text;
    if (!rjitbench::readWholeFile(ir.c_str(), text)) {
      std::fprintf(stderr, "error: cannot read %s\n", ir.c_str());
      return 2;
    }
    auto start = std::chrono::steady_clock::now();
    rjitbench::LljitModule module(text, {triple, cpu, opt, symbol});
    auto* function = reinterpret_cast<int (*)(int)>(module.address(symbol));
    double loadMs =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    int result = 0;
    for (unsigned k = 0; k < calls; ++k)
      result = function(arg);
    std::printf("result: %d load_ms=%.3f from_cache=0\n", result, loadMs);
    rjitbench::printMemoryLine();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
