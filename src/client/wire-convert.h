// SPDX-License-Identifier: MIT
// Translation between the wire protocol (rjit.capnp) and the public, KJ-free structs of
// client.h, and the one place where a kj::Exception becomes an rjit::Error.
#pragma once

#include "remotejit/client.h"
#include "result.h"
#include "rjit.capnp.h"
#include "targets.h"

#include <kj/exception.h>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace rjit::detail {

namespace proto = rjitd::proto;

/// Maps an exception from the RPC layer: a message over Cap'n Proto's size limit → TooLarge
/// naming the limits, DISCONNECTED → Connection, OVERLOADED → Overloaded, anything else →
/// Internal with the exception's description. `endpoint` names the server
/// ("" when the exception came from no particular server).
Error toError(const kj::Exception& exception, std::string_view endpoint);

/// Whether `exception` is Cap'n Proto refusing a message over a size limit (either side's):
/// resending the same request cannot help, so the caller answers at once (toError: TooLarge).
bool overMessageSizeLimit(const kj::Exception& exception);

/// What an exception says, without kj's file and line, for messages.
std::string describe(const kj::Exception& exception);

ServerInfo toServerInfo(proto::ServerHello::Reader hello, std::string endpoint);
/// The handshake's targets in the form rjitd::resolveTarget takes.
std::vector<rjitd::TargetName> toTargetNames(proto::ServerHello::Reader hello);
ServerStats toServerStats(proto::ServerStats::Reader stats);

/// Fills a compile request for the canonical `target`; `withModule` false leaves the module
/// bytes out (a hash-first load).
void toProto(const CompileRequest& request, const rjitd::TargetName& target, bool withModule,
             proto::CompileRequest::Builder out);

/// The server's error: its kind (through the one wire table, ipc/wire-enums.h), message and
/// diagnostics, and an overloaded answer's retry-after hint (in retryAfter() and the message).
Error toError(proto::Error::Reader error);

/// A compiled object the server sent; fails (Internal) on a malformed cache key.
Result<CompiledObject> toCompiledObject(proto::CompiledObject::Reader object, bool bodySent);

/// The outcome of a compile or lookup: the object, or the server's error.
Result<CompiledObject> toCompiledObject(proto::CompileOutcome::Reader outcome, bool bodySent);

proto::IrFormat toProto(IrFormat format);

}  // namespace rjit::detail
