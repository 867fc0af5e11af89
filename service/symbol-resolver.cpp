// SPDX-License-Identifier: MIT
// A load's imports, resolved (see symbol-resolver.h).
#include "symbol-resolver.h"

#include <kj/debug.h>

namespace rjitd::service {

std::vector<std::string> resolveKnown(const KnownSymbols& known, Resolution& r,
                                      const std::vector<std::string>& names) {
  std::vector<std::string> rest;
  for (const std::string& name : names) {
    if (linker::definesItself(name) || r.addresses.count(name) != 0 || r.asked.count(name) != 0)
      continue;
    if (auto offered = known.offered.find(name); offered != known.offered.end()) {
      r.addresses.emplace(name, offered->second);
    } else if (const auto* definition = known.client.find(name)) {
      r.addresses.emplace(name, definition->address);
      r.modules.insert(definition->module);
    } else if (auto process =
                   known.processSymbols ? known.client.processSymbol(name) : std::nullopt) {
      r.addresses.emplace(name, *process);
    } else {
      rest.push_back(name);
    }
  }
  return rest;
}

kj::Promise<Outcome<Done>> askClient(proto::SymbolResolver::Client& resolver,
                                     std::vector<std::string> names, std::shared_ptr<Resolution> r,
                                     ClientSymbols& client, kj::Timer& timer,
                                     QuestionLimits limits) {
  if (names.empty())
    return Outcome<Done>(Done{});
  auto request = resolver.resolveRequest();
  auto list = request.initNames(names.size());
  for (size_t i = 0; i < names.size(); ++i)
    list.set(i, names[i]);
  // The error handler sees only the call's own failure (what the client or the connection
  // did); an exception from recording the answer is rjitd's and passes on as one.
  auto answer = request.send().then(
      [&client, r, limits, names = kj::mv(names)](
          capnp::Response<proto::SymbolResolver::ResolveResults>&& response) -> Outcome<Done> {
        auto addresses = response.getAddresses();
        auto stable = response.getStable();
        if (addresses.size() != names.size())
          return Failure{ErrorKind::InvalidRequest,
                         "the client's symbol resolver answered " +
                             std::to_string(addresses.size()) + " addresses for " +
                             std::to_string(names.size()) + " names",
                         {}};
        bool withStable = stable.size() == names.size();
        for (size_t i = 0; i < names.size(); ++i) {
          r->asked.insert(names[i]);
          if (addresses[i] == 0)
            continue;
          r->addresses.emplace(names[i], addresses[i]);
          if (withStable && stable[i])
            client.rememberProcessSymbol(names[i], addresses[i], limits.maxRememberedSymbols,
                                         limits.maxRememberedSymbolBytes);
        }
        return Done{};
      },
      [](kj::Exception&& e) -> Outcome<Done> {
        // The client is gone: nobody to answer, the RPC edge drops the request.
        if (e.getType() == kj::Exception::Type::DISCONNECTED)
          kj::throwFatalException(kj::mv(e));
        // The client's resolver threw: its answer is wrong, like a wrong count.
        return Failure{ErrorKind::InvalidRequest,
                       std::string("the client's symbol resolver failed: ") +
                           e.getDescription().cStr(),
                       {}};
      });
  // A client that never answers must not hold its load (and rjitd's drain) forever.
  auto deadline = timer.afterDelay(limits.timeout.count() * kj::MILLISECONDS)
                      .then([timeout = limits.timeout]() -> Outcome<Done> {
                        return Failure{ErrorKind::LinkFailed,
                                       "the client did not answer rjitd's question for the "
                                       "addresses of its symbols within " +
                                           std::to_string(timeout.count()) + " ms",
                                       {}};
                      });
  return answer.exclusiveJoin(kj::mv(deadline));
}

}  // namespace rjitd::service
