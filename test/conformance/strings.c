// SPDX-License-Identifier: MIT
// Conformance: string handling with <string.h>, <ctype.h> and snprintf.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void reverse(char* s) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n / 2; ++i) {
    char t = s[i];
    s[i] = s[n - 1 - i];
    s[n - 1 - i] = t;
  }
}

static int countWords(const char* s) {
  int words = 0, inWord = 0;
  for (; *s != '\0'; ++s) {
    if (isspace((unsigned char)*s)) {
      inWord = 0;
    } else if (!inWord) {
      inWord = 1;
      ++words;
    }
  }
  return words;
}

static unsigned long hashString(const char* s) {
  unsigned long h = 5381;
  for (; *s != '\0'; ++s)
    h = h * 33 + (unsigned char)*s;
  return h & 0xffffffffUL;
}

int main(void) {
  char buf[128];
  strcpy(buf, "Hello");
  strcat(buf, ", ");
  strncat(buf, "world!!!", 6);
  printf("concat: '%s' (len %zu)\n", buf, strlen(buf));

  char copy[16];
  memset(copy, 'x', sizeof copy);
  strncpy(copy, "abc", sizeof copy);
  printf("strncpy pads: %d\n", copy[3] == '\0' && copy[15] == '\0');

  printf("strcmp: %d %d %d\n", strcmp("apple", "apple") == 0, strcmp("apple", "banana") < 0,
         strncmp("prefix-one", "prefix-two", 7) == 0);
  const char* text = "the quick brown fox jumps over the lazy dog";
  printf("strchr: '%s'\n", strchr(text, 'q'));
  printf("strrchr: '%s'\n", strrchr(text, 't'));
  printf("strstr: '%s'\n", strstr(text, "fox"));
  printf("strstr missing: %s\n", strstr(text, "cat") == NULL ? "null" : "found");
  printf("strspn/strcspn: %zu %zu\n", strspn("aaabbbccc", "ab"), strcspn(text, "xyz"));
  printf("words: %d\n", countWords("  several   words, separated\tby\nspace "));

  char tokens[] = "alpha,beta;;gamma, delta";
  char* save = NULL;
  int index = 0;
  for (char* tok = strtok_r(tokens, ",; ", &save); tok != NULL; tok = strtok_r(NULL, ",; ", &save))
    printf("token %d: %s\n", index++, tok);

  char word[] = "stressed";
  reverse(word);
  printf("reversed: %s\n", word);

  char upper[64];
  size_t i = 0;
  for (const char* p = "Mixed Case 123"; *p != '\0'; ++p)
    upper[i++] = (char)toupper((unsigned char)*p);
  upper[i] = '\0';
  printf("upper: %s\n", upper);

  char area[16] = "0123456789";
  memmove(area + 2, area, 6);
  printf("memmove: %s\n", area);
  memcpy(area, "ABCD", 4);
  printf("memcpy: %s memcmp: %d\n", area, memcmp(area, "ABCD", 4) == 0);

  char small[8];
  int needed = snprintf(small, sizeof small, "%s-%d", "truncated", 12345);
  printf("snprintf: '%s' needed %d\n", small, needed);
  snprintf(buf, sizeof buf, "[%5d|%-5d|%05d|%x|%X|%o|%c|%5.2s|%%]", 42, 42, 42, 255, 255, 8, 'z',
           "xyz");
  printf("format: %s\n", buf);
  snprintf(buf, sizeof buf, "%ld %lld %lu %hd", -123456789L, -1234567890123LL, 4000000000UL,
           (short)-7);
  printf("integers: %s\n", buf);

  printf("strtol: %ld %ld %ld\n", strtol("  -42xyz", NULL, 10), strtol("ff", NULL, 16),
         strtol("0777", NULL, 0));
  printf("atoi: %d\n", atoi("2024 is a year"));
  char* dup = strdup("duplicated");
  printf("strdup: %s (%zu)\n", dup, strlen(dup));
  free(dup);
  printf("hash: %lu\n", hashString(text));
  return 0;
}
