// SPDX-License-Identifier: MIT
// Test input without any header, so clang-19 can emit IR for any target (the integration tests
// build it for AArch64): a checksum over static data, a lookup table and a loop.
static const unsigned char message[] = "rjitd compiles this for aarch64";
static unsigned table[256];

static void buildTable(void) {
  for (unsigned i = 0; i < 256; ++i) {
    unsigned c = i;
    for (int k = 0; k < 8; ++k)
      c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
}

unsigned crc32(const unsigned char* data, unsigned long length) {
  if (table[1] == 0)
    buildTable();
  unsigned crc = 0xFFFFFFFFu;
  for (unsigned long i = 0; i < length; ++i)
    crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

unsigned messageChecksum(void) {
  return crc32(message, sizeof message - 1);
}
