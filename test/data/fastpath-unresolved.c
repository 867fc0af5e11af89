// SPDX-License-Identifier: MIT
// References functions nobody defines: loading it must fail and name them.
int rjit_test_missing_function(int);
extern int rjit_test_missing_data;
int uses_missing(void) {
  return rjit_test_missing_function(rjit_test_missing_data);
}
