// SPDX-License-Identifier: MIT
// The one place where the daemon's plain data (src/common/compiled-object.h) meets the wire
// types of ipc/rjit.capnp, in both directions. Used by the RPC server and by the compile
// worker protocol (which reuses the same structs).
#pragma once

#include <optional>

#include <rjit.capnp.h>

#include "compile-service.h"
#include "compiled-object.h"
#include "compiler.h"
#include "linker.h"

namespace rjitd::service {

proto::Error::Kind toProto(ErrorKind kind);
ErrorKind fromProto(proto::Error::Kind kind);

/// The one mapping of a daemon Failure to the wire: the RPC edge (rpc-server.cpp) answers every
/// failed request through it, the compile worker protocol its worker's failures.
void toProto(const Failure& failure, proto::Error::Builder out);
Failure fromProto(proto::Error::Reader in);

/// Fills everything but `key`, `fromCache` and `compileMicros`' request-specific meaning;
/// `withObject` false leaves the object bytes out.
void toProto(const CompiledObject& object, bool withObject, proto::CompiledObject::Builder out);
CompiledObject fromProto(proto::CompiledObject::Reader in);

compiler::IrFormat fromProto(proto::IrFormat format);
void toProto(const compiler::CompileOptions& options, proto::CompileRequest::Builder out);
compiler::CompileOptions fromProto(proto::CompileRequest::Reader in);

/// A served object as an answer: the object (without its bytes unless `withObject`), its key and
/// whether a compile ran for it.
void toProto(const Served& served, bool withObject, proto::CompiledObject::Builder out);

/// A linked image as the client maps it: base, size, segments, exported symbols, constructor
/// and destructor lists and the `.eh_frame` range. The rest of LoadedModule (the capability,
/// the object, timings, dependencies, readLimit) is the load's to fill.
void toProto(const linker::LinkedImage& image, proto::LoadedModule::Builder out);

/// A compile request as the compile service takes it (the module copied out of the message).
CompileJob toCompileJob(proto::CompileRequest::Reader in);

/// Nullopt when every field the daemon reads of `in` can be read; otherwise the InvalidRequest
/// Failure to answer. Cap'n Proto decodes lazily: a malformed message (a pointer out of bounds,
/// a struct where text belongs) throws only when the field is read, which would reach the RPC
/// edge as a fault of rjitd's (`internal`). Checked first, at the edge, a malformed request is
/// the client's fault, and what reads the request afterwards cannot fail for that reason.
/// Reads without copying (the module bytes are only bounds-checked).
std::optional<Failure> checkReadable(proto::CompileRequest::Reader in);
std::optional<Failure> checkReadable(proto::LookupRequest::Reader in);
std::optional<Failure> checkReadable(proto::LoadRequest::Reader in);
std::optional<Failure> checkReadable(proto::CallRequest::Reader in);
std::optional<Failure> checkReadable(proto::RunRequest::Reader in);

}  // namespace rjitd::service
