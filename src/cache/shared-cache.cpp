// SPDX-License-Identifier: MIT
// SKELETON (issue 13): replaced by the shared-tier branch before it merges.
#include "shared-cache.h"

namespace rjitd::cache {

std::variant<std::unique_ptr<SharedCache>, std::string> SharedCache::create(SharedCacheConfig c) {
  return "the shared cache tier is not built yet (" + c.address + ")";
}

std::string sharedValueKey(const Key& key) {
  return "rjitd:v" + std::to_string(STORED_FORMAT) + ":" + toHex(key);
}

std::string sharedLeaseKey(const Key& key) {
  return "rjitd:v" + std::to_string(STORED_FORMAT) + ":lease:" + toHex(key);
}

}  // namespace rjitd::cache
