// SPDX-License-Identifier: MIT
// Remote execute: C++ new past --executor-memory (std::bad_alloc, uncaught).
#include <cstdint>
#include <cstring>
#include <vector>

/// Every block stays reachable (the optimizer may not drop the allocations).
std::vector<char*> blocks;

extern "C" int64_t new_forever() {
  for (;;) {
    char* block = new char[16 << 20];
    std::memset(block, 0x5a, 16 << 20);
    blocks.push_back(block);
  }
}
