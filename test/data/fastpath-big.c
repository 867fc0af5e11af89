// SPDX-License-Identifier: MIT
// 4 MiB of bss: over a small client memory quota.
static char big[4 << 20];
int touch_big(int i) {
  return big[i]++;
}
