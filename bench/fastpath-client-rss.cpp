// SPDX-License-Identifier: MIT
// fastpath-client-rss: the client side of fastpath-bench's peak-memory comparison. Loads a
// module through rjitd's same-host fast path (Client::load), calls one `int(int)` function in
// it, and prints the result and its own memory (VmHWM = peak RSS).
//
// Links libremotejit-client only (bench/meson.build), never LLVM: this is the client whose
// memory the mission compares with one that embeds LLVM. The last line it prints says whether
// a libLLVM is mapped into it (it must not be).
//
//   fastpath-client-rss --server ADDR                    connect only (the baseline)
//   fastpath-client-rss --server ADDR --ir FILE --symbol NAME [--arg N] [--opt L] [--calls K]
//   --pause-ms N: sleep before exiting, to inspect /proc/PID/smaps from outside
#include "rss-child.h"

#include <remotejit/client.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  std::string server, ir, symbol;
  int arg = 1;
  unsigned opt = 2, calls = 1, pauseMs = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    const char* value = argv[i + 1];
    if (name == "--server")
      server = value;
    else if (name == "--ir")
      ir = value;
    else if (name == "--symbol")
      symbol = value;
    else if (name == "--arg")
      arg = std::atoi(value);
    else if (name == "--opt")
      opt = static_cast<unsigned>(std::atoi(value));
    else if (name == "--calls")
      calls = static_cast<unsigned>(std::atoi(value));
    else if (name == "--pause-ms")  // before exiting: time to look at /proc/PID/smaps
      pauseMs = static_cast<unsigned>(std::atoi(value));
    else {
      std::fprintf(stderr, "error: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (server.empty() || (!ir.empty() && symbol.empty())) {
    std::fprintf(stderr, "usage: fastpath-client-rss --server ADDR [--ir FILE --symbol NAME "
                         "[--arg N] [--opt L] [--calls K]]\n");
    return 2;
  }
  try {
    rjit::ClientOptions options;
    options.servers = {server};
    options.timeout = std::chrono::milliseconds(120000);
    options.clientName = "fastpath-client-rss";
    rjit::Client client(options);
    if (ir.empty()) {
      client.serverInfo();
      std::printf("result: none (connected only)\n");
      rjitbench::printMemoryLine();
      std::this_thread::sleep_for(std::chrono::milliseconds(pauseMs));
      return 0;
    }
    std::string text;
    if (!rjitbench::readWholeFile(ir.c_str(), text)) {
      std::fprintf(stderr, "error: cannot read %s\n", ir.c_str());
      return 2;
    }
    rjit::CompileRequest request;
    request.module = std::move(text);
    request.moduleName = ir;
    request.optLevel = opt;
    request.format = rjit::IrFormat::Text;
    auto start = std::chrono::steady_clock::now();
    rjit::Module module = client.load(request);
    auto* function = module.lookup<int(int)>(symbol);
    double loadMs =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    int result = 0;
    for (unsigned k = 0; k < calls; ++k)
      result = function(arg);
    std::printf("result: %d load_ms=%.3f from_cache=%d\n", result, loadMs,
                module.object().fromCache ? 1 : 0);
    rjitbench::printMemoryLine();
    std::this_thread::sleep_for(std::chrono::milliseconds(pauseMs));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
