// SPDX-License-Identifier: MIT
// Call speed of one kernel through two pointers in alternating batches (see call-pair.h).
#include "call-pair.h"

#include <algorithm>
#include <chrono>
#include <limits>

namespace rjitbench {
namespace {

using IntFn = int (*)(int);
using BufferFn = int (*)(const unsigned char*, int);

constexpr int CHECKSUM_BYTES = 4096;

/// The timed loops. noinline, and called with either pointer, so that both variants run the
/// very same machine code around the call. The argument cycles through 1..limit.
__attribute__((noinline)) uint64_t loopInt(IntFn f, uint64_t calls, int limit) {
  uint64_t sum = 0;
  int x = 1;
  for (uint64_t i = 0; i < calls; ++i) {
    sum += static_cast<unsigned>(f(x));
    if (++x > limit)
      x = 1;
  }
  return sum;
}

__attribute__((noinline)) uint64_t loopBuffer(BufferFn f, uint64_t calls,
                                              const unsigned char* data) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < calls; ++i)
    sum += static_cast<unsigned>(f(data, CHECKSUM_BYTES - static_cast<int>(i & 15)));
  return sum;
}

/// fp_checksum's input: the same pseudo-random bytes on every run.
std::vector<unsigned char> checksumInput() {
  std::vector<unsigned char> buffer(CHECKSUM_BYTES);
  uint32_t x = 12345;
  for (auto& b : buffer) {
    x = x * 1103515245u + 12345u;
    b = static_cast<unsigned char>(x >> 16);
  }
  return buffer;
}

}  // namespace

const std::vector<CallKernel>& callKernels() {
  static const std::vector<CallKernel> list = {
      {"fp_mix", "kernels", "a few integer ops: mostly the call itself", false, 1 << 20},
      {"fp_collatz", "kernels", "loop, data-dependent trip count (~100)", false, 100000},
      {"fp_checksum", "kernels", "vectorizable loop over a 4 KiB buffer", true, 0},
      {"fp_sort", "kernels", "heap sort of 512 ints on the stack", false, 1 << 20},
      {"stb_bench_decode", "stb", "stb_image: decode a 64x48 BMP (malloc, free)", false, 1 << 20},
  };
  return list;
}

PairTiming timePair(const CallKernel& kernel, void* a, void* b, unsigned rounds, double batchMs,
                    const std::function<void(unsigned, unsigned)>& progress) {
  static const std::vector<unsigned char> buffer = checksumInput();
  auto batch = [&](void* f, uint64_t n) {
    return kernel.buffer ? loopBuffer(reinterpret_cast<BufferFn>(f), n, buffer.data())
                         : loopInt(reinterpret_cast<IntFn>(f), n, kernel.limit);
  };
  PairTiming r;
  // Calibrate on B: batches of about batchMs.
  uint64_t n = 16;
  for (int round = 0; round < 30; ++round) {
    auto start = Clock::now();
    batch(b, n);
    double ms = msSince(start);
    if (ms >= batchMs / 4 || n >= (uint64_t{1} << 32))
      break;
    n = ms <= 0 ? n * 8 : std::min(n * 8, static_cast<uint64_t>(n * batchMs / ms) + 1);
  }
  {
    auto start = Clock::now();
    batch(b, n);
    double ms = std::max(msSince(start), 1e-3);
    n = std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(n) * batchMs / ms));
  }
  r.callsPerBatch = n;
  batch(a, n);  // warm-up of A's code
  auto deadline =
      Clock::now() + std::chrono::milliseconds(static_cast<long>(rounds * batchMs * 6 * 3) + 10000);
  static constexpr int ORDER[6] = {0, 1, 1, 0, 0, 1};
  for (unsigned round = 0; round < rounds && Clock::now() < deadline; ++round) {
    double best[2] = {std::numeric_limits<double>::max(), std::numeric_limits<double>::max()};
    uint64_t sums[2] = {0, 0};
    for (int j = 0; j < 6; ++j) {
      int which = round % 2 == 0 ? ORDER[j] : 1 - ORDER[j];
      auto start = Clock::now();
      uint64_t sum = batch(which == 0 ? a : b, n);
      double ms = msSince(start);
      best[which] = std::min(best[which], ms);
      (which == 0 ? r.aAllNs : r.bAllNs).add(ms * 1e6 / static_cast<double>(n));
      if (sums[which] != 0 && sums[which] != sum)
        r.identical = false;  // the same code on the same inputs
      sums[which] = sum;
    }
    r.aNs.add(best[0] * 1e6 / static_cast<double>(n));
    r.bNs.add(best[1] * 1e6 / static_cast<double>(n));
    r.pairRatio.add(ratio(best[0], best[1]));
    if (sums[0] != sums[1])
      r.identical = false;
    progress(round + 1, rounds);
  }
  return r;
}

}  // namespace rjitbench
