// SPDX-License-Identifier: MIT
// Writes the valid seed inputs of the fuzzers' corpora (test/fuzz/corpus/<fuzzer>/seed-*):
// requests as the client library frames them, real messages of each kind, signatures and
// arguments as `rjit call` takes them. Run by hand when the wire changes:
//   build-fuzz/test/fuzz/make-seeds test/fuzz/corpus
#include "fuzz-message.h"

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <capnp/serialize.h>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <rjit.capnp.h>
#include <string>
#include <vector>

namespace {

namespace proto = rjitd::proto;

constexpr const char* ADD = "define i32 @add(i32 %a, i32 %b) {\n"
                            "  %s = add i32 %a, %b\n"
                            "  ret i32 %s\n"
                            "}\n";
constexpr const char* IMPORTS = "declare i32 @ext()\n"
                                "define i32 @callsExt() {\n"
                                "  %r = call i32 @ext()\n"
                                "  ret i32 %r\n"
                                "}\n";

std::string outDir;

void save(const std::string& fuzzer, const std::string& name, const std::string& bytes) {
  std::string path = outDir + "/" + fuzzer + "/seed-" + name;
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  KJ_REQUIRE(out.good(), "cannot write", path);
}

std::string flat(capnp::MessageBuilder& message) {
  auto words = capnp::messageToFlatArray(message);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

capnp::Data::Reader data(const char* text) {
  return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(text), strlen(text));
}

void fillCompile(proto::CompileRequest::Builder r, const char* module) {
  r.setModuleName("seed.ll");
  r.initTarget().setTriple("x86_64");
  r.setOptLevel(0);
  r.setFormat(proto::IrFormat::TEXT);
  r.setModule(data(module));
}

/// The bytes a client sends on a new connection: bootstrap, hello, and a call pipelined on
/// the session (captured from a real TwoPartyClient with nobody answering).
void rawStreams() {
  for (int method = 0; method < 4; ++method) {
    auto io = kj::setupAsyncIo();
    auto pipe = io.provider->newTwoWayPipe();
    std::string captured;
    {
      capnp::TwoPartyClient client(*pipe.ends[0]);
      auto hello = client.bootstrap().castAs<proto::Rjitd>().helloRequest();
      hello.initClient().setProtocolVersion(proto::PROTOCOL_VERSION);
      hello.getClient().setClientName("make-seeds");
      auto session = hello.send().getSession();
      kj::Vector<kj::Promise<void>> calls;
      if (method == 0) {
        auto c = session.compileRequest();
        fillCompile(c.initRequest(), ADD);
        calls.add(c.send().ignoreResult());
      } else if (method == 1) {
        auto l = session.lookupRequest();
        l.initRequest().initKey(32);
        calls.add(l.send().ignoreResult());
      } else if (method == 2) {
        calls.add(session.statsRequest().send().ignoreResult());
      } else {
        auto l = session.loadRequest();
        auto r = l.initRequest();
        fillCompile(r.initCompile(), IMPORTS);
        auto a = r.initArena();
        a.setBase(0x7f0000000000);
        a.setSize(1 << 30);
        a.setPageSize(4096);
        calls.add(l.send().ignoreResult());
      }
      // Let the client write everything, then read it off the other end.
      auto reading = pipe.ends[1]->tryRead(nullptr, 0, 0);
      kj::byte buffer[65536];
      for (;;) {
        auto n =
            pipe.ends[1]
                ->tryRead(buffer, 1, sizeof(buffer))
                .exclusiveJoin(
                    io.provider->getTimer().afterDelay(200 * kj::MILLISECONDS).then([]() -> size_t {
                      return 0;
                    }))
                .wait(io.waitScope);
        if (n == 0)
          break;
        captured.append(reinterpret_cast<const char*>(buffer), n);
      }
    }
    const char* names[] = {"compile", "lookup", "stats", "load"};
    save("rpc-fuzzer", std::string("raw-") + names[method], std::string(1, '\0') + captured);
  }
}

/// Call mode: '\1', the method byte, the parameters as one message.
void calls() {
  {
    capnp::MallocMessageBuilder m;
    fillCompile(m.initRoot<proto::Session::CompileParams>().initRequest(), ADD);
    save("rpc-fuzzer", "call-compile", std::string("\1\0", 2) + flat(m));
  }
  {
    capnp::MallocMessageBuilder m;
    m.initRoot<proto::Session::LookupParams>().initRequest().initKey(32);
    save("rpc-fuzzer", "call-lookup", std::string("\1\1", 2) + flat(m));
  }
  {
    capnp::MallocMessageBuilder m;
    m.initRoot<proto::Session::StatsParams>();
    save("rpc-fuzzer", "call-stats", std::string("\1\2", 2) + flat(m));
  }
  {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<proto::Session::LoadParams>().initRequest();
    fillCompile(r.initCompile(), ADD);
    auto a = r.initArena();
    a.setBase(0x7f0000000000);
    a.setSize(1 << 30);
    a.setPageSize(4096);
    auto s = r.initSymbols(1);
    s[0].setName("ext");
    s[0].setAddress(0x10000);
    save("rpc-fuzzer", "call-load", std::string("\1\3", 2) + flat(m));
  }
  {
    capnp::MallocMessageBuilder m;
    m.initRoot<proto::Session::ExecutorParams>().initTarget().setTriple("x86_64");
    save("rpc-fuzzer", "call-executor", std::string("\1\4", 2) + flat(m));
  }
  {
    capnp::MallocMessageBuilder m;
    auto c = m.initRoot<proto::Rjitd::HelloParams>().initClient();
    c.setProtocolVersion(proto::PROTOCOL_VERSION);
    c.setClientName("seed");
    save("rpc-fuzzer", "call-hello", std::string("\1\xf0", 2) + flat(m));
  }
}

void workerRequests() {
  std::string both;
  for (const char* module : {ADD, IMPORTS}) {
    capnp::MallocMessageBuilder m;
    fillCompile(m.initRoot<proto::CompileRequest>(), module);
    std::string one = flat(m);
    save("compile-worker-fuzzer", module == ADD ? "add" : "imports", one);
    both += one;
  }
  save("compile-worker-fuzzer", "two-requests", both);
  capnp::MallocMessageBuilder m;
  fillCompile(m.initRoot<proto::CompileRequest>(), "not IR");
  save("compile-worker-fuzzer", "invalid-module", flat(m));
}

void loadAnswers() {
  // Offsets from the client's reservation (the fuzzer adds its base): R, RX, RW pages.
  capnp::MallocMessageBuilder m;
  auto ok = m.initRoot<proto::LoadedModule>();
  ok.setBase(0x10000);
  ok.setSize(0x3000);
  auto segments = ok.initSegments(3);
  uint8_t prot[] = {proto::PROTECTION_READ, proto::PROTECTION_READ | proto::PROTECTION_EXECUTE,
                    proto::PROTECTION_READ | proto::PROTECTION_WRITE};
  for (unsigned i = 0; i < 3; ++i) {
    segments[i].setAddress(0x10000 + i * 0x1000);
    segments[i].setOffset(i * 0x1000);
    segments[i].setSize(0x1000);
    segments[i].setProtection(prot[i]);
  }
  ok.initInitializers(1).set(0, 0x11000);
  ok.initFinalizers(1).set(0, 0x11010);
  ok.setEhFrameAddress(0x10000);
  ok.setEhFrameSize(0x40);
  auto symbols = ok.initSymbols(1);
  symbols[0].setName("add");
  symbols[0].setAddress(0x11000);
  symbols[0].setFunction(true);
  auto object = ok.initObject();
  object.initKey(32);
  object.setTriple("x86_64-unknown-linux-gnu");
  auto defines = object.initDefines(1);
  defines[0].setName("add");
  defines[0].setSignature("i32(i32,i32)");
  ok.setReadLimit(1 << 20);
  save("load-answer-fuzzer", "three-segments", flat(m));
}

void signatures() {
  const char* texts[] = {"i32(i32,i32)",
                         "zeroext i8(signext i16,...)",
                         "void()",
                         "{ i64, i64 }(ptr,<4 x float>)",
                         "double(float,double,ptr)",
                         "i1(i1,i64,ptr addrspace(1))",
                         "void(...)",
                         "half([4 x i8])"};
  int i = 0;
  for (const char* t : texts)
    save("ir-signature-fuzzer", std::to_string(i++), t);
}

void arguments() {
  save("marshal-fuzzer", "ints", "i32(i32,i32)\n1\n-2\n");
  save("marshal-fuzzer", "floats", "double(float,double)\n1.5\ninf\n");
  save("marshal-fuzzer", "narrow",
       "zeroext i8(signext i16,zeroext i8,i1,i64)\n-32768\n0xff\n1\n"
       "18446744073709551615\n");
  save("marshal-fuzzer", "pointer", "i64(ptr,i8)\nhello\n255\n");
  capnp::MallocMessageBuilder m;
  auto call = m.initRoot<proto::CallRequest>();
  call.setSymbol("f");
  auto args = call.initArguments(4);
  args[0].setSigned(-5);
  args[1].setString("text");
  auto b = args[2].initBuffer();
  b.setElement(proto::Buffer::Element::I32);
  b.setCount(2);
  b.setDirection(proto::Buffer::Direction::IN_OUT);
  b.initBytes(8);
  auto s = args[3].initBuffer();
  s.setElement(proto::Buffer::Element::U8);
  s.setCount(16);
  s.setSegmentOffset(64);
  save("marshal-fuzzer", "wire", "#i32(i32,ptr,ptr,ptr)\n" + flat(m));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make-seeds CORPUS-DIR (its <fuzzer>/ directories must exist)\n");
    return 2;
  }
  outDir = argv[1];
  rawStreams();
  calls();
  workerRequests();
  loadAnswers();
  signatures();
  arguments();
  return 0;
}
