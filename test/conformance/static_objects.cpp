// SPDX-License-Identifier: MIT
// Conformance: C++ objects with static storage duration — namespace-scope objects constructed
// in declaration order before main and destroyed in reverse order after it returns, dynamic
// initialisation depending on earlier objects, a function-local static constructed on first
// use, a static data member, std::string/std::vector globals, and constructor/destructor
// functions.
#include <cstdio>
#include <string>
#include <vector>

namespace {

int constructed = 0;

struct Tracer {
  explicit Tracer(const char* name) : name(name), order(++constructed) {
    std::printf("construct %s (#%d)\n", name, order);
  }
  ~Tracer() { std::printf("destroy %s (#%d)\n", name, order); }
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;
  const char* name;
  int order;
};

Tracer first("first");
Tracer second("second");

int computeAnswer() {
  std::printf("dynamic initialiser runs (after %d objects)\n", constructed);
  return constructed * 21;
}
int answer = computeAnswer();

std::string greeting = std::string("hello from ") + first.name;
std::vector<int> squares = [] {
  std::vector<int> v;
  for (int i = 1; i <= 5; ++i)
    v.push_back(i * i);
  return v;
}();

Tracer& lazy() {
  static Tracer instance("lazy");
  return instance;
}

struct Registry {
  static Tracer member;
  static int registrations;
};
Tracer Registry::member("Registry::member");
int Registry::registrations = 3;

}  // namespace

namespace outer::inner {
Tracer third("outer::inner::third");
}

// A C-style destructor function runs after every static object is destroyed (.fini_array runs
// after the __cxa_atexit handlers); a constructor function with a priority before them all.
__attribute__((constructor(200))) static void earlyConstructor() {
  std::printf("constructor function (priority 200), %d objects\n", constructed);
}
__attribute__((destructor)) static void lateDestructor() {
  std::printf("destructor function, %d objects were constructed\n", constructed);
}

int main() {
  std::printf("main starts: %d objects constructed, answer %d\n", constructed, answer);
  std::printf("greeting '%s', squares:", greeting.c_str());
  for (int s : squares)
    std::printf(" %d", s);
  std::printf("\n");
  std::printf("lazy not constructed yet: %d\n", constructed);
  std::printf("lazy is #%d\n", lazy().order);
  std::printf("lazy again is #%d\n", lazy().order);
  {
    Tracer local("local");
    std::printf("local scope, registrations %d, member #%d\n", Registry::registrations,
                Registry::member.order);
  }
  static Tracer mainStatic("main's static");
  std::printf("main returns 0 with %d objects constructed\n", constructed);
  return 0;
}
