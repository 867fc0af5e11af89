// SPDX-License-Identifier: MIT
// A shared library the integration test opens with dlopen; a loaded module takes a symbol from
// it (fastpath-plugin-user.c), which pins it in the process.
int plugin_value(void) {
  return 41;
}
