// SPDX-License-Identifier: MIT
// A program outside the rjitd source tree that uses the installed libremotejit-client: it has
// rjitd compile a small LLVM IR module (or the .ll/.bc file given) and prints the server it
// reached, the cache key and the symbols the object defines and needs; then, for its own module,
// loads it into this process through the fast path and calls `add` natively. Exits non-zero on
// any error. Build it against the installed library (libremotejit-client-dev):
//
//   g++ -std=c++20 client-example.cpp $(pkg-config --cflags --libs remotejit-client) -o
//   client-example
//   ./client-example [FILE.ll|FILE.bc]
//
// The server is rjitd on the default socket (/run/rjitd/rjitd.sock for root,
// $XDG_RUNTIME_DIR/rjitd.sock otherwise) unless RJIT_SERVER says otherwise.
#include <remotejit/client.h>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

namespace {

// No target triple: rjitd compiles it for its default target.
constexpr const char* kModule = R"(
@greeting = constant [6 x i8] c"hello\00"

declare i32 @puts(ptr)

define i64 @add(i64 %a, i64 %b) {
  %sum = add i64 %a, %b
  ret i64 %sum
}

define i32 @hello() {
  %r = call i32 @puts(ptr @greeting)
  ret i32 0
}
)";

}  // namespace

int main(int argc, char** argv) {
  if (argc > 2) {
    std::cerr << "usage: " << argv[0] << " [FILE.ll|FILE.bc]\n";
    return 2;
  }
  rjit::CompileRequest request;
  if (argc == 2) {
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) {
      std::cerr << "error: cannot read " << argv[1] << '\n';
      return 1;
    }
    request.module.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    request.moduleName = argv[1];
  } else {
    request.module = kModule;
    request.moduleName = "client-example.ll";
  }
  request.optLevel = 2;

  try {
    rjit::Client client;
    rjit::ServerInfo info = client.serverInfo();
    std::cout << "server: rjitd " << info.rjitdVersion << " (LLVM " << info.llvmVersion << ") at "
              << info.endpoint << '\n';

    rjit::CompiledObject object = client.compile(request);
    std::cout << "key: " << object.key << '\n'
              << "triple: " << object.triple << '\n'
              << "object: " << object.object.size() << " bytes"
              << (object.fromCache ? " (from the cache)" : "") << '\n';
    for (const rjit::Symbol& symbol : object.defines) {
      const char* kind = symbol.kind == rjit::Symbol::Kind::Function ? "function"
                         : symbol.kind == rjit::Symbol::Kind::Data   ? "data"
                                                                     : "other";
      std::cout << "defines: " << symbol.name << " (" << kind << ")\n";
    }
    for (const std::string& name : object.needs)
      std::cout << "needs: " << name << '\n';
    if (object.object.empty() || object.defines.empty()) {
      std::cerr << "error: rjitd returned an empty object\n";
      return 1;
    }
    if (argc == 1) {
      // The fast path: linked by rjitd for this process, mapped here, called natively.
      rjit::Module module = client.load(request);
      auto add = module.lookup<int64_t(int64_t, int64_t)>("add");
      std::cout << "loaded: add(40, 2) = " << add(40, 2) << '\n';
    }
  } catch (const rjit::Error& e) {
    std::cerr << "error: " << e.what() << " [" << rjit::errorKindName(e.kind()) << "]\n";
    for (const rjit::Diagnostic& d : e.diagnostics())
      std::cerr << request.moduleName << ':' << d.line << ':' << d.column << ": " << d.message
                << '\n';
    return 1;
  }
  return 0;
}
