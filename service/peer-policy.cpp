// SPDX-License-Identifier: MIT
// Peer authorization for Unix sockets (see peer-policy.h).
#include "peer-policy.h"

#include <algorithm>
#include <charconv>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

namespace rjitd::service {

namespace {

// Buffer for getpwnam_r/getgrnam_r/getpwuid_r: enough for any ordinary entry (a group with
// thousands of members would need more; ERANGE then reads as "not found", the safe side).
constexpr size_t NSS_BUFFER_BYTES = 16384;
// Supplementary groups looked at per peer (NGROUPS_MAX is 65536; real users have a few dozen).
constexpr int MAX_PEER_GROUPS = 1024;

std::optional<uint32_t> numericId(const std::string& text) {
  uint32_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty())
    return std::nullopt;
  return value;
}

std::optional<uid_t> userId(const std::string& name) {
  if (auto id = numericId(name))
    return static_cast<uid_t>(*id);
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(NSS_BUFFER_BYTES);
  if (::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
      found == nullptr)
    return std::nullopt;
  return found->pw_uid;
}

std::optional<gid_t> groupId(const std::string& name) {
  if (auto id = numericId(name))
    return static_cast<gid_t>(*id);
  group entry{};
  group* found = nullptr;
  std::vector<char> buffer(NSS_BUFFER_BYTES);
  if (::getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
      found == nullptr)
    return std::nullopt;
  return found->gr_gid;
}

template <typename T> bool contains(const std::vector<T>& items, T value) {
  return std::find(items.begin(), items.end(), value) != items.end();
}

}  // namespace

std::variant<PeerPolicy, std::string> makePeerPolicy(const std::vector<std::string>& users,
                                                     const std::vector<std::string>& groups) {
  PeerPolicy policy;
  policy.explicitList = !users.empty() || !groups.empty();
  if (users.empty()) {
    policy.users.push_back(0);
    if (::geteuid() != 0)
      policy.users.push_back(::geteuid());
  }
  for (const std::string& name : users) {
    auto id = userId(name);
    if (!id)
      return "--allow-users: no user '" + name + "'";
    policy.users.push_back(*id);
  }
  if (groups.empty()) {
    if (auto id = groupId("rjitd"))
      policy.groups.push_back(*id);
  }
  for (const std::string& name : groups) {
    auto id = groupId(name);
    if (!id)
      return "--allow-groups: no group '" + name + "'";
    policy.groups.push_back(*id);
  }
  return policy;
}

bool peerAllowed(const PeerPolicy& policy, uid_t uid, std::optional<gid_t> gid) {
  if (contains(policy.users, uid))
    return true;
  if (policy.groups.empty())
    return false;
  if (gid && contains(policy.groups, *gid))
    return true;
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(NSS_BUFFER_BYTES);
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr)
    return false;  // a uid without a passwd entry has no supplementary groups
  std::vector<gid_t> list(MAX_PEER_GROUPS);
  int count = MAX_PEER_GROUPS;
  // More groups than fit: the ones that fit are checked (count is then the full number).
  ::getgrouplist(found->pw_name, found->pw_gid, list.data(), &count);
  list.resize(static_cast<size_t>(std::clamp(count, 0, MAX_PEER_GROUPS)));
  return std::any_of(list.begin(), list.end(), [&](gid_t g) { return contains(policy.groups, g); });
}

std::string describePolicy(const PeerPolicy& policy) {
  std::string out = "users";
  for (size_t i = 0; i < policy.users.size(); ++i)
    out += (i == 0 ? " " : ", ") + std::to_string(policy.users[i]);
  if (policy.users.empty())
    out += " none";
  out += "; groups";
  for (size_t i = 0; i < policy.groups.size(); ++i)
    out += (i == 0 ? " " : ", ") + std::to_string(policy.groups[i]);
  if (policy.groups.empty())
    out += " none";
  return out;
}

}  // namespace rjitd::service
