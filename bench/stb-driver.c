// SPDX-License-Identifier: MIT
// The benchmark's large module: stb_image 2.27 (Debian's libstb-dev, about 7900 lines) plus a
// driver that builds a BMP in memory, decodes it and returns a checksum of the pixels.
// bench/meson.build compiles this to textual IR with
// `clang-19 -O1 -Xclang -disable-llvm-passes -S -emit-llvm` (unoptimized but optimizable).
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

#include <string.h>

enum { WIDTH = 64, HEIGHT = 48, ROW = WIDTH * 3, HEADER = 54 };

static unsigned char bmp[HEADER + ROW * HEIGHT];

static void put16(unsigned char* p, unsigned v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char* p, unsigned v) {
  put16(p, v & 0xffffu);
  put16(p + 2, v >> 16);
}

/// A 24-bit uncompressed BMP whose pixels depend on `seed`.
static int buildBmp(unsigned seed) {
  memset(bmp, 0, HEADER);
  bmp[0] = 'B';
  bmp[1] = 'M';
  put32(bmp + 2, sizeof bmp);
  put32(bmp + 10, HEADER);  // pixel data offset
  put32(bmp + 14, 40);      // BITMAPINFOHEADER
  put32(bmp + 18, WIDTH);
  put32(bmp + 22, HEIGHT);
  put16(bmp + 26, 1);   // planes
  put16(bmp + 28, 24);  // bits per pixel
  put32(bmp + 34, ROW * HEIGHT);
  unsigned x = seed * 2654435761u + 1u;
  for (int i = HEADER; i < (int)sizeof bmp; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    bmp[i] = (unsigned char)x;
  }
  return (int)sizeof bmp;
}

/// Decodes the in-memory BMP through stb_image's generic entry point (which probes every
/// format it knows) and returns a checksum of the RGBA pixels, or -1 on a decode failure.
int stb_bench_decode(unsigned seed) {
  int length = buildBmp(seed);
  int width = 0, height = 0, channels = 0;
  unsigned char* pixels = stbi_load_from_memory(bmp, length, &width, &height, &channels, 4);
  if (pixels == NULL)
    return -1;
  unsigned sum = 0;
  for (int i = 0; i < width * height * 4; ++i)
    sum = sum * 31u + pixels[i];
  stbi_image_free(pixels);
  return (int)(sum & 0x7fffffff);
}
