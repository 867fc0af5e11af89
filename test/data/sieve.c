// SPDX-License-Identifier: MIT
// Test input: primes by the sieve of Eratosthenes, string handling, qsort with a callback and
// a struct. Prints deterministic output; the integration tests compare it with a native build.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LIMIT = 2000 };

struct word {
  const char* text;
  int length;
  int vowels;
};

static unsigned char composite[LIMIT + 1];

static int sieve(int* primes, int max) {
  int count = 0;
  for (int i = 2; i <= LIMIT; ++i) {
    if (composite[i])
      continue;
    if (count < max)
      primes[count] = i;
    ++count;
    for (int j = i * i; j <= LIMIT; j += i)
      composite[j] = 1;
  }
  return count;
}

static int countVowels(const char* s) {
  int n = 0;
  for (; *s; ++s)
    if (strchr("aeiouAEIOU", *s))
      ++n;
  return n;
}

static int compareWords(const void* a, const void* b) {
  const struct word* x = a;
  const struct word* y = b;
  if (x->length != y->length)
    return x->length - y->length;
  return strcmp(x->text, y->text);
}

static void reverse(char* s) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n / 2; ++i) {
    char t = s[i];
    s[i] = s[n - 1 - i];
    s[n - 1 - i] = t;
  }
}

int main(void) {
  int primes[400];
  int count = sieve(primes, 400);
  printf("%d primes below %d\n", count, LIMIT);
  long sum = 0;
  for (int i = 0; i < count && i < 400; ++i)
    sum += primes[i];
  printf("first: %d %d %d %d %d, last: %d, sum: %ld\n", primes[0], primes[1], primes[2], primes[3],
         primes[4], primes[count - 1], sum);

  char sentence[] = "the quick brown fox jumps over the lazy dog while seven primes wait";
  struct word words[32];
  int nwords = 0;
  for (char* tok = strtok(sentence, " "); tok && nwords < 32; tok = strtok(NULL, " ")) {
    words[nwords].text = tok;
    words[nwords].length = (int)strlen(tok);
    words[nwords].vowels = countVowels(tok);
    ++nwords;
  }
  qsort(words, (size_t)nwords, sizeof words[0], compareWords);
  for (int i = 0; i < nwords; ++i)
    printf("%2d %-6s len=%d vowels=%d\n", i, words[i].text, words[i].length, words[i].vowels);

  char buffer[64];
  snprintf(buffer, sizeof buffer, "%s-%d", words[nwords - 1].text, primes[count - 1]);
  reverse(buffer);
  printf("reversed: %s\n", buffer);
  return count % 7;
}
