// SPDX-License-Identifier: MIT
// Conformance: virtual calls — an abstract base class, several derived classes (one derived
// twice), virtual destructors run through base pointers, covariant return types, multiple
// inheritance, dynamic_cast and typeid.
#include <cstdio>
#include <typeinfo>

namespace {

class Shape {
public:
  virtual ~Shape() { std::printf("  ~Shape(%s)\n", label); }
  virtual double area() const = 0;
  virtual const char* kind() const = 0;
  virtual Shape* clone() const = 0;
  virtual int corners() const { return 0; }
  void describe() const {
    std::printf("%s '%s': area %.3f, corners %d\n", kind(), label, area(), corners());
  }

protected:
  explicit Shape(const char* label) : label(label) {}
  const char* label;
};

class Circle : public Shape {
public:
  Circle(const char* label, double r) : Shape(label), r(r) {}
  ~Circle() override { std::printf("  ~Circle\n"); }
  double area() const override { return 3.14159265358979 * r * r; }
  const char* kind() const override { return "circle"; }
  Circle* clone() const override { return new Circle("clone", r); }

private:
  double r;
};

class Rect : public Shape {
public:
  Rect(const char* label, double w, double h) : Shape(label), w(w), h(h) {}
  ~Rect() override { std::printf("  ~Rect\n"); }
  double area() const override { return w * h; }
  const char* kind() const override { return "rect"; }
  Rect* clone() const override { return new Rect("clone", w, h); }
  int corners() const override { return 4; }

protected:
  double w, h;
};

class Square final : public Rect {
public:
  Square(const char* label, double side) : Rect(label, side, side) {}
  ~Square() override { std::printf("  ~Square\n"); }
  const char* kind() const override { return "square"; }
  Square* clone() const override { return new Square("clone", w); }
};

class Printable {
public:
  virtual ~Printable() = default;
  virtual void print() const = 0;
};

class Triangle : public Shape, public Printable {
public:
  Triangle(const char* label, double b, double h) : Shape(label), b(b), h(h) {}
  ~Triangle() override { std::printf("  ~Triangle\n"); }
  double area() const override { return b * h / 2; }
  const char* kind() const override { return "triangle"; }
  Triangle* clone() const override { return new Triangle("clone", b, h); }
  int corners() const override { return 3; }
  void print() const override { std::printf("Printable triangle %.1f x %.1f\n", b, h); }

private:
  double b, h;
};

double totalArea(Shape* const* shapes, int n) {
  double total = 0;
  for (int i = 0; i < n; ++i)
    total += shapes[i]->area();
  return total;
}

}  // namespace

int main() {
  Shape* shapes[] = {new Circle("c1", 1.5), new Rect("r1", 2, 3.5), new Square("s1", 4),
                     new Triangle("t1", 3, 5)};
  const int n = sizeof shapes / sizeof shapes[0];
  for (Shape* s : shapes)
    s->describe();
  std::printf("total area %.3f\n", totalArea(shapes, n));

  for (Shape* s : shapes) {
    Rect* asRect = dynamic_cast<Rect*>(s);
    Printable* asPrintable = dynamic_cast<Printable*>(s);
    std::printf("%s: is rect %d, is square %d, printable %d, typeid %s\n", s->kind(),
                asRect != nullptr, dynamic_cast<Square*>(s) != nullptr, asPrintable != nullptr,
                typeid(*s).name());
    if (asPrintable)
      asPrintable->print();
  }

  Shape* copy = shapes[2]->clone();
  copy->describe();
  std::printf("clone has the same dynamic type: %d\n", typeid(*copy) == typeid(*shapes[2]));
  std::printf("deleting clone:\n");
  delete copy;

  Printable* printable = new Triangle("t2", 1, 1);
  printable->print();
  std::printf("deleting through second base:\n");
  delete printable;

  for (Shape* s : shapes) {
    std::printf("deleting %s:\n", s->kind());
    delete s;
  }
  return 0;
}
