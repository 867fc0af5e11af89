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
  rjitbench::ChildOptions o;
  if (!rjitbench::parseChildOptions(
          argc, argv, {"--server", "--ir", "--symbol", "--arg", "--opt", "--calls", "--pause-ms"},
          o))
    return 2;
  if (o.server.empty() || (!o.ir.empty() && o.symbol.empty())) {
    std::fprintf(stderr, "usage: fastpath-client-rss --server ADDR [--ir FILE --symbol NAME "
                         "[--arg N] [--opt L] [--calls K]]\n");
    return 2;
  }
  try {
    rjit::ClientOptions options;
    options.servers = {o.server};
    options.timeout = std::chrono::milliseconds(120000);
    options.clientName = "fastpath-client-rss";
    rjit::Client client(options);
    if (o.ir.empty()) {
      client.serverInfo();
      std::printf("result: none (connected only)\n");
      rjitbench::printMemoryLine();
      std::this_thread::sleep_for(std::chrono::milliseconds(o.pauseMs));
      return 0;
    }
    std::string text;
    if (!rjitbench::readWholeFile(o.ir.c_str(), text)) {
      std::fprintf(stderr, "error: cannot read %s\n", o.ir.c_str());
      return 2;
    }
    rjit::CompileRequest request;
    request.module = std::move(text);
    request.moduleName = o.ir;
    request.optLevel = o.opt;
    request.format = rjit::IrFormat::Text;
    auto start = std::chrono::steady_clock::now();
    rjit::Module module = client.load(request);
    auto* function = module.lookup<int(int)>(o.symbol);
    double loadMs =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    int result = 0;
    for (unsigned k = 0; k < o.calls; ++k)
      result = function(o.arg);
    std::printf("result: %d load_ms=%.3f from_cache=%d\n", result, loadMs,
                module.object().fromCache ? 1 : 0);
    rjitbench::printMemoryLine();
    std::this_thread::sleep_for(std::chrono::milliseconds(o.pauseMs));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
