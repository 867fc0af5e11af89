// SPDX-License-Identifier: MIT
// Call speed of one compute kernel through two pointers to it (A and B) in alternating batches:
// what fastpath-bench (fast path vs LLJIT) and fastpath-target-bench (fast path vs the C
// compiler's build of the same kernels) share. LLVM-free.
#pragma once

#include "bench-common.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace rjitbench {

/// A kernel of bench/fastpath-kernels.c (or stb's decoder) and how to call it.
struct CallKernel {
  std::string name;    ///< the function
  std::string module;  ///< "kernels" or "stb"
  std::string what;
  bool buffer = false;  ///< int(const unsigned char*, int); else int(int)
  int limit = 1;        ///< int(int): arguments cycle through 1..limit
};

/// The kernels the call-speed sections time, in order.
const std::vector<CallKernel>& callKernels();

/// What timePair measured: ns per call, A's and B's.
struct PairTiming {
  uint64_t callsPerBatch = 0;
  Series aNs, bNs;        ///< ns per call: the best batch of each round
  Series aAllNs, bAllNs;  ///< ns per call: every batch
  Series pairRatio;       ///< per round: A's best / B's best
  bool identical = true;  ///< every batch of A and B computed the same sum
};

/// Times `kernel` through `a` and `b` (two builds of the same function): batches calibrated on
/// `b` to about `batchMs`, then up to `rounds` rounds of six batches A B B A A B (odd rounds
/// B A A B B A), each side's best batch of a round being its time for that round (a batch that
/// another process preempted is never the best). Bounded in time too: rounds stop at
/// rounds * batchMs * 18 + 10 s. `progress(done, total)` is called after each round.
PairTiming timePair(const CallKernel& kernel, void* a, void* b, unsigned rounds, double batchMs,
                    const std::function<void(unsigned, unsigned)>& progress);

}  // namespace rjitbench
