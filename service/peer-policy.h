// SPDX-License-Identifier: MIT
// Which Unix-socket peers may use rjitd (--allow-users, --allow-groups), checked against the
// credentials the kernel reports for the connection (SO_PEERCRED).
#pragma once

#include <optional>
#include <string>
#include <sys/types.h>
#include <variant>
#include <vector>

namespace rjitd::service {

/// The users and groups allowed to connect. A peer is allowed when its uid is in `users`, or
/// its primary gid (from SO_PEERCRED) or one of its user's supplementary groups is in
/// `groups`.
struct PeerPolicy {
  std::vector<uid_t> users;
  std::vector<gid_t> groups;
  /// --allow-users or --allow-groups was given. Only then are peers on socket-activated
  /// sockets checked: rjitd.socket's SocketGroup=/SocketMode= already admit exactly the default
  /// (root and the rjitd group), and under the unit's PrivateUsers=yes rjitd sees every other
  /// user's uid as nobody, so it could not check the group itself.
  bool explicitList = false;
};

/// The policy from --allow-users and --allow-groups (names or numeric ids). Each list that is
/// empty takes its default: users root and rjitd's own effective uid; groups `rjitd` when such a
/// group exists (none otherwise). A given list replaces its default entirely, so
/// `--allow-users 1000` admits neither root nor rjitd's own user (unless a group does). The
/// error names an unknown user or group.
std::variant<PeerPolicy, std::string> makePeerPolicy(const std::vector<std::string>& users,
                                                     const std::vector<std::string>& groups);

/// Is the peer with `uid` (and primary `gid`, when known) allowed? Looks up the user's
/// supplementary groups (getgrouplist) only when a group is configured and neither the uid nor
/// the primary gid decided.
bool peerAllowed(const PeerPolicy& policy, uid_t uid, std::optional<gid_t> gid);

/// "users 0, 1000; groups 998", for the startup log and refusal messages.
std::string describePolicy(const PeerPolicy& policy);

}  // namespace rjitd::service
