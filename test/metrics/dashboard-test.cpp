// SPDX-License-Identifier: MIT
// The Grafana dashboard (metrics/grafana/rjitd.json) against the metrics rjitd exports: every
// metric a query names must be in the exposition of rjitd's metrics library once each kind of
// event has been recorded; and the file must be importable as it is.
#include "metrics.h"
#include "object-cache.h"

#include <cstring>
#include <fstream>
#include <gtest/gtest.h>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace rjitd::metrics {
namespace {

using nlohmann::json;

json loadDashboard() {
  std::ifstream in(RJIT_DASHBOARD);
  EXPECT_TRUE(in.good()) << "cannot read " << RJIT_DASHBOARD;
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

struct Query {
  std::string where;  ///< panel or variable title, for messages
  std::string expr;
};

void collectPanelQueries(const json& panels, std::vector<Query>& out) {
  for (const json& panel : panels) {
    for (const json& target : panel.value("targets", json::array()))
      out.push_back({"panel '" + panel.value("title", "") + "'", target.value("expr", "")});
    // Collapsed rows carry their panels inside.
    collectPanelQueries(panel.value("panels", json::array()), out);
  }
}

/// Every PromQL text in the dashboard: panel targets and query variables.
std::vector<Query> queries(const json& dashboard) {
  std::vector<Query> out;
  collectPanelQueries(dashboard.at("panels"), out);
  for (const json& variable : dashboard.at("templating").at("list")) {
    if (variable.value("type", "") != "query")
      continue;
    const json& q = variable.at("query");
    out.push_back({"variable '" + variable.value("name", "") + "'",
                   q.is_string() ? q.get<std::string>() : q.value("query", "")});
  }
  return out;
}

/// Metric names a query mentions (`rjitd_...`).
std::set<std::string> metricNames(const std::string& expr) {
  static const std::regex NAME("rjitd_[a-z_]+");
  std::set<std::string> names;
  for (auto it = std::sregex_iterator(expr.begin(), expr.end(), NAME); it != std::sregex_iterator();
       ++it)
    names.insert(it->str());
  return names;
}

/// What an exposition exports: family types (from "# TYPE") and sample names.
struct Exported {
  std::map<std::string, std::string> families;  ///< name -> type
  std::set<std::string> samples;

  explicit Exported(const std::string& exposition) {
    std::istringstream lines(exposition);
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with("# TYPE ")) {
        std::istringstream words(line.substr(7));
        std::string name, type;
        words >> name >> type;
        families[name] = type;
      } else if (!line.empty() && line[0] != '#') {
        samples.insert(line.substr(0, line.find_first_of("{ ")));
      }
    }
  }

  /// Why `name` is not exported, or "" when it is: `name` must be a family (or a histogram's
  /// _bucket/_sum/_count series) that has samples.
  std::string missing(const std::string& name) const {
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string base = name.substr(0, name.size() - std::strlen(suffix));
      if (name.ends_with(suffix) && families.count(base) != 0 && families.at(base) == "histogram")
        family = base;
    }
    if (families.count(family) == 0)
      return "rjitd exports no metric family " + family;
    if (samples.count(name) == 0)
      return "rjitd exports no series named " + name + " (family " + family + " is a " +
             families.at(family) + ")";
    return "";
  }
};

/// rjitd's metrics after one event of every kind, as a scrape returns them.
std::string exercisedExposition() {
  cache::ObjectCache objects(1 << 20);
  Metrics metrics({"0.0.0", "19.1.7", {"x86_64", "aarch64"}}, objects);
  using std::chrono::milliseconds;
  for (Method m : {Method::Hello, Method::Compile, Method::Lookup, Method::Stats, Method::Load})
    metrics.requestDone(m, NO_TARGET, std::nullopt, milliseconds(1));
  metrics.linkDone("x86_64", std::nullopt, milliseconds(1));
  metrics.imageLoaded(4096);
  metrics.requestDone(Method::Compile, "x86_64", ErrorKind::InvalidModule, milliseconds(1));
  metrics.moduleReceived(10);
  metrics.compileStarted();
  metrics.compileDone("x86_64", 2, std::nullopt, milliseconds(5));
  metrics.hashFirstLookup("x86_64", true);
  for (const char* target : {"x86_64", "aarch64"})
    metrics.cacheLookup(CacheTier::Memory, target, false);
  metrics.sessionOpened();
  metrics.connectionOpened();
  metrics.compileWorkerLost();
  metrics.daemonError(DaemonError::Connection);
  metrics.executeDone("x86_64", std::nullopt, milliseconds(1));
  metrics.executorStarted();
  metrics.executorRestarted(ErrorKind::Crashed);
  // A disk and a shared tier, as rjitd with --cache-dir and --shared-cache reports them.
  metrics.setLowerTiers([]() {
    TierSnapshot disk;
    disk.tier = CacheTier::Disk;
    disk.rejected = {{"bad-checksum", 1}};
    TierSnapshot shared;
    shared.tier = CacheTier::Shared;
    return std::vector<TierSnapshot>{disk, shared};
  });
  for (CacheTier tier : {CacheTier::Disk, CacheTier::Shared})
    metrics.cacheLookup(tier, "x86_64", true);
  return metrics.exposition();
}

TEST(DashboardTest, EveryQueryNamesAMetricRjitdExports) {
  json dashboard = loadDashboard();
  Exported exported(exercisedExposition());
  std::set<std::string> named;
  for (const Query& q : queries(dashboard)) {
    EXPECT_FALSE(q.expr.empty()) << q.where << " has an empty query";
    for (const std::string& name : metricNames(q.expr)) {
      named.insert(name);
      std::string why = exported.missing(name);
      EXPECT_EQ(why, "") << q.where << ": " << q.expr;
    }
  }
  // The views the dashboard exists for.
  for (const char* name :
       {"rjitd_cache_lookups_total", "rjitd_requests_total",
        "rjitd_request_duration_seconds_bucket", "rjitd_compile_duration_seconds_bucket",
        "rjitd_errors_total", "rjitd_cache_entries", "rjitd_cache_bytes",
        "rjitd_cache_budget_bytes", "rjitd_client_sessions", "rjitd_compiles_in_flight",
        "rjitd_build_info", "rjitd_link_duration_seconds_bucket", "rjitd_loaded_images",
        "rjitd_executes_total", "rjitd_execute_duration_seconds_bucket", "rjitd_executors",
        "rjitd_executor_restarts_total"})
    EXPECT_EQ(named.count(name), 1u) << "the dashboard shows no " << name;
}

TEST(DashboardTest, TheCheckCatchesAMetricRjitdDoesNotExport) {
  // Guards the test above against passing vacuously.
  Exported exported(exercisedExposition());
  EXPECT_NE(exported.missing("rjitd_unload_duration_seconds_bucket"), "");
  EXPECT_NE(exported.missing("rjitd_cache_entries_bucket"), "");  // not a histogram
  EXPECT_NE(exported.missing("rjitd_requests"), "");              // counters end in _total
  EXPECT_EQ(exported.missing("rjitd_compile_duration_seconds_count"), "");
  EXPECT_EQ(metricNames(R"(sum(rate(rjitd_requests_total{method="compile"}[1m])))"),
            std::set<std::string>{"rjitd_requests_total"});
}

TEST(DashboardTest, IsImportableAsIs) {
  json d = loadDashboard();
  EXPECT_EQ(d.value("uid", ""), "rjitd");
  EXPECT_FALSE(d.value("title", "").empty());
  EXPECT_GE(d.value("schemaVersion", 0), 30);
  EXPECT_TRUE(d.at("id").is_null()) << "an id would tie the file to one Grafana database";
  // The data source is a variable: the file names no data source of any particular Grafana.
  bool datasourceVariable = false;
  for (const json& v : d.at("templating").at("list")) {
    if (v.value("type", "") == "datasource" && v.value("name", "") == "datasource")
      datasourceVariable = v.value("query", "") == "prometheus";
  }
  EXPECT_TRUE(datasourceVariable) << "no datasource variable of type prometheus";
  std::set<int> ids;
  for (const json& panel : d.at("panels")) {
    std::string title = panel.value("title", "");
    EXPECT_TRUE(ids.insert(panel.at("id").get<int>()).second) << "duplicate panel id: " << title;
    EXPECT_TRUE(panel.contains("gridPos")) << title;
    if (panel.value("type", "") == "row")
      continue;
    EXPECT_EQ(panel.at("datasource").value("uid", ""), "${datasource}") << title;
    EXPECT_FALSE(panel.value("targets", json::array()).empty()) << title;
    for (const json& target : panel.at("targets"))
      EXPECT_EQ(target.at("datasource").value("uid", ""), "${datasource}") << title;
  }
}

}  // namespace
}  // namespace rjitd::metrics
