// SPDX-License-Identifier: MIT
// Conformance: the C++ standard library — std::string, std::vector, std::map, std::set,
// std::sort with a lambda, std::unique_ptr, std::function, <algorithm>/<numeric>, and iostream
// output with manipulators through std::cout.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Item {
  std::string name;
  int quantity;
  double price;
};

class Counter {
public:
  explicit Counter(std::string name) : name_(std::move(name)) {
    std::cout << "Counter(" << name_ << ")\n";
  }
  ~Counter() { std::cout << "~Counter(" << name_ << ") at " << count_ << '\n'; }
  void add(int n) { count_ += n; }

private:
  std::string name_;
  int count_ = 0;
};

}  // namespace

int main() {
  std::string text = "the quick brown fox jumps over the lazy dog the end";
  std::map<std::string, int> frequency;
  std::istringstream words(text);
  for (std::string word; words >> word;)
    ++frequency[word];
  for (const auto& [word, count] : frequency)
    std::cout << word << '=' << count << ' ';
  std::cout << '\n';

  std::string s = "Hello";
  s += ", World";
  s.insert(5, " there");
  s.replace(s.find("World"), 5, "C++");
  std::cout << s << " (size " << s.size() << ", find 'there' at " << s.find("there") << ", substr '"
            << s.substr(7, 5) << "')\n";
  std::string upper = s;
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  std::cout << upper << ' ' << std::to_string(12345) + "!" << ' ' << std::stoi("-77") * 2 << '\n';

  std::vector<Item> items{{"widget", 5, 2.5},
                          {"gadget", 2, 10.0},
                          {"doohickey", 12, 0.75},
                          {"gizmo", 5, 4.25},
                          {"thingamajig", 1, 99.99}};
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    if (a.quantity != b.quantity)
      return a.quantity > b.quantity;
    return a.name < b.name;
  });
  std::cout << std::fixed << std::setprecision(2);
  for (const Item& item : items)
    std::cout << std::left << std::setw(12) << item.name << std::right << std::setw(4)
              << item.quantity << std::setw(9) << item.price * item.quantity << '\n';
  double total = std::accumulate(items.begin(), items.end(), 0.0, [](double sum, const Item& i) {
    return sum + i.price * i.quantity;
  });
  std::cout << "total " << total << '\n';
  std::cout.unsetf(std::ios::floatfield);
  std::cout << std::setprecision(6);

  std::vector<int> numbers(20);
  std::iota(numbers.begin(), numbers.end(), 1);
  numbers.erase(std::remove_if(numbers.begin(), numbers.end(), [](int n) { return n % 3 == 0; }),
                numbers.end());
  numbers.insert(numbers.begin(), 100);
  std::reverse(numbers.begin(), numbers.end());
  for (int n : numbers)
    std::cout << n << ' ';
  std::cout << "| max " << *std::max_element(numbers.begin(), numbers.end()) << " count_if>10 "
            << std::count_if(numbers.begin(), numbers.end(), [](int n) { return n > 10; }) << '\n';

  std::istringstream again(text);
  std::set<std::string> unique(std::istream_iterator<std::string>(again), {});
  std::cout << "unique words: " << unique.size() << ", first " << *unique.begin() << ", last "
            << *unique.rbegin() << '\n';

  std::vector<std::unique_ptr<Counter>> counters;
  counters.push_back(std::make_unique<Counter>("a"));
  counters.push_back(std::make_unique<Counter>("b"));
  counters[0]->add(3);
  counters[1]->add(4);
  std::unique_ptr<Counter> moved = std::move(counters[0]);
  moved->add(10);
  counters.erase(counters.begin());
  std::cout << "counters left in vector: " << counters.size() << '\n';
  counters.clear();
  std::cout << "vector cleared\n";

  std::map<std::string, std::function<double(double, double)>> ops{
      {"plus", std::plus<double>()},
      {"times", [](double a, double b) { return a * b; }},
      {"hypot", [](double a, double b) { return std::sqrt(a * a + b * b); }}};
  for (const auto& [name, op] : ops)
    std::cout << name << "(3, 4) = " << op(3, 4) << '\n';

  std::ostringstream report;
  report << "hex " << std::hex << 255 << " oct " << std::oct << 8 << std::dec << " bool "
         << std::boolalpha << true << " sci " << std::scientific << 1234.5;
  std::cout << report.str() << std::endl;
  return 0;
}
