// SPDX-License-Identifier: MIT
// C++ loaded into the test process: exceptions within JIT code, out of it into the host and
// through host frames, virtual calls, static objects, the standard library.
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

extern "C" void host_record(const char* event);

namespace {
struct Shape {
  virtual ~Shape() = default;
  virtual double area() const = 0;
};
struct Square : Shape {
  explicit Square(double s) : s(s) {}
  double area() const override { return s * s; }
  double s;
};
struct Circle : Shape {
  explicit Circle(double r) : r(r) {}
  double area() const override { return 3.0 * r * r; }
  double r;
};
struct Announcer {
  Announcer() { host_record("static-ctor"); }
  ~Announcer() { host_record("static-dtor"); }
} announcer;
std::map<std::string, int> table = {{"one", 1}, {"two", 2}};
}  // namespace

extern "C" double total_area(int n) {
  std::vector<std::unique_ptr<Shape>> shapes;
  for (int i = 1; i <= n; ++i) {
    if (i % 2)
      shapes.push_back(std::make_unique<Square>(i));
    else
      shapes.push_back(std::make_unique<Circle>(i));
  }
  double sum = 0;
  for (const auto& s : shapes)
    sum += s->area();
  return sum;
}

// Thrown and caught inside JIT code.
extern "C" int catch_inside(int x) {
  try {
    if (x > 0)
      throw std::runtime_error("positive");
    return 0;
  } catch (const std::runtime_error& e) {
    return static_cast<int>(std::string(e.what()).size());
  }
}

// Thrown in JIT code, caught by the host.
extern "C" void throw_to_host(const char* message) {
  throw std::invalid_argument(message);
}

// The host's callback throws; JIT code catches it (unwinding through host frames).
extern "C" int catch_from_host(void (*callback)()) {
  try {
    callback();
    return 0;
  } catch (const std::exception& e) {
    return 42;
  }
}

// The host's callback throws through JIT frames back to the host.
extern "C" void pass_through(void (*callback)()) {
  std::string keep = "frames with destructors to unwind";
  callback();
  host_record(keep.c_str());
}

extern "C" int lookup_table(const char* key) {
  auto it = table.find(key);
  return it == table.end() ? -1 : it->second;
}
