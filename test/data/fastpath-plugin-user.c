// SPDX-License-Identifier: MIT
// Calls into a library the test process opened with dlopen (fastpath-plugin.c).
int plugin_value(void);

int plugin_plus_one(void) {
  return plugin_value() + 1;
}
