// SPDX-License-Identifier: MIT
// fastpath-bench section 4, LLVM's own tools on the same object: llvm-jitlink-19 in-process and
// with -oop-executor (with and without --use-shared-memory) against a one-shot rjitd client
// process (see fastpath-bench.cpp).
#include "fastpath.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

namespace fastpath {
namespace {

/// The wall time of an `llvm-jitlink --show-times` timer line, in ms (the last "N.NNNN (" on
/// the line: LLVM leaves out the columns whose total is zero), or -1.
double timerWallMs(const std::string& text, const std::string& name) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find(name) == std::string::npos)
      continue;
    double last = -1;
    std::istringstream words(line);
    std::string word, previous;
    while (words >> word) {
      if (word.rfind("(", 0) == 0 && !previous.empty())
        last = std::atof(previous.c_str());
      previous = word;
    }
    return last < 0 ? -1 : last * 1000.0;
  }
  return -1;
}

/// What llvm-jitlink wrote to stderr besides its --show-times report: its errors, first line.
std::string errorLines(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find_first_not_of(" \t") == std::string::npos || line.rfind("===", 0) == 0 ||
        line.find("timers for llvm-jitlink") != std::string::npos ||
        line.find("Total Execution Time") != std::string::npos ||
        line.find("---Wall Time---") != std::string::npos ||
        line.find("time to ") != std::string::npos || line.find("  Total") != std::string::npos)
      continue;
    // Printable ASCII only: llvm-jitlink sometimes prints garbage bytes in its error messages.
    for (char& c : line)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e)
        c = '?';
    return line;
  }
  return "";
}

bool findInPath(const std::string& program) {
  if (program.find('/') != std::string::npos)
    return access(program.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (!dir.empty() && access((fs::path(dir) / program).c_str(), X_OK) == 0)
      return true;
  return false;
}

/// Writes the module's object (as rjitd compiled it for the warm loads) and a `main` that
/// prints `result N` for symbol(argument) and returns 42.
std::pair<fs::path, fs::path> jitlinkObjects(Bench& bench, const IrModule& m, unsigned level) {
  rjit::CompiledObject object =
      bench.client().compile(request(m, bench.warmBytes(m, level), level));
  fs::path objectPath = bench.scratch() / (m.name + "-O" + std::to_string(level) + ".o");
  std::ofstream(objectPath, std::ios::binary) << object.object;
  std::string mainIr = "declare i32 @printf(ptr, ...)\n"
                       "declare i32 @" +
                       m.symbol +
                       "(i32)\n"
                       "@fmt = private unnamed_addr constant [11 x i8] c\"result %d\\0A\\00\"\n"
                       "define i32 @main() {\n"
                       "  %r = call i32 @" +
                       m.symbol + "(i32 " + std::to_string(m.argument) +
                       ")\n"
                       "  %p = call i32 (ptr, ...) @printf(ptr @fmt, i32 %r)\n"
                       "  ret i32 42\n"
                       "}\n";
  IrModule driver{"main-" + m.name, "", {}, mainIr, "main", 0, false, false, 0};
  rjit::CompiledObject mainObject = bench.client().compile(request(driver, mainIr, 2));
  fs::path mainPath = bench.scratch() / ("main-" + m.name + ".o");
  std::ofstream(mainPath, std::ios::binary) << mainObject.object;
  if (!fs::exists(objectPath) || fs::file_size(objectPath) != object.object.size() ||
      !fs::exists(mainPath) || fs::file_size(mainPath) != mainObject.object.size())
    throw std::runtime_error("cannot write the objects for llvm-jitlink to " +
                             bench.scratch().string());
  return {mainPath, objectPath};
}

std::vector<JitlinkRow> jitlink(Bench& bench, const IrModule& m, unsigned level) {
  const Config& config = bench.config();
  auto [mainPath, objectPath] = jitlinkObjects(bench, m, level);
  long long expected = bench.expected(m.name).value_or(0);
  struct Mode {
    std::string name;
    std::vector<std::string> flags;
    bool oop;
  };
  std::vector<Mode> modes = {
      {"in-process", {}, false},
      {"-oop-executor", {"-oop-executor=" + config.executor}, true},
      {"-oop-executor --use-shared-memory",
       {"-oop-executor=" + config.executor, "--use-shared-memory"},
       true},
  };
  std::vector<JitlinkRow> rows;
  unsigned want = scaled(config.jitlinkRuns, std::min(1.0, config.scale));
  for (const Mode& mode : modes) {
    JitlinkRow row;
    row.module = m.name;
    row.mode = mode.name;
    std::vector<std::string> command = {config.jitlinkProgram, "--show-times"};
    command.insert(command.end(), mode.flags.begin(), mode.flags.end());
    command.insert(command.end(), {mainPath.string(), objectPath.string()});
    for (unsigned attempt = 0; attempt < 3 * want && row.successes < want; ++attempt) {
      ChildRun run = runMeasured(bench.self() / "rss-run", command, bench.scratch(), 30);
      ++row.attempts;
      bool rightResult = run.result && *run.result == expected;
      std::string error = errorLines(run.err);
      bool errorText = !error.empty();
      // "Resource tracker 0x55... became defunct": the address differs in every run.
      auto hex = error.find("0x");
      if (hex != std::string::npos) {
        auto end = error.find(' ', hex);
        error.replace(hex, end == std::string::npos ? std::string::npos : end - hex, "0x...");
      }
      bool ok = run.reported && run.status == "exit 42" && rightResult;
      if (!ok || errorText)
        ++row.errors[(ok ? std::string("exit 42, right result")
                         : "failed (" + (run.reported ? run.status : "no report") + ")") +
                     ", stderr: \"" + error + "\""];
      if (run.reported && run.status == "exit 42" && rightResult) {
        ++row.successes;
        if (errorText)
          ++row.successWithErrorText;
        row.wallMs.add(run.wallMs);
        row.maxrssKb.add(static_cast<double>(run.maxrssKb));
        double link = timerWallMs(run.err + run.out, "time to link object files");
        if (link >= 0)
          row.linkMs.add(link);
      } else if (!run.reported || run.status == "timeout" || run.status.rfind("signal", 0) == 0) {
        ++row.crashedOrTimedOut;
      } else if (rightResult) {
        ++row.ranThenFailed;
      } else {
        ++row.failedBefore;
      }
      progress(m.name + " llvm-jitlink " + mode.name, row.successes, want);
    }
    if (row.successes < want)
      std::fprintf(stderr, "\n");
    if (mode.oop) {
      // The executor's peak RSS: rss-run wraps it (wrapper mode) and appends its line to a
      // file. Separate runs, so that the timed ones above have no wrapper in the way.
      fs::path report = bench.scratch() / "executor-rss.txt";
      std::vector<std::string> wrapped = {config.jitlinkProgram};
      for (const std::string& flag : mode.flags)
        wrapped.push_back(flag.rfind("-oop-executor=", 0) == 0
                              ? "-oop-executor=" + (bench.self() / "rss-run").string()
                              : flag);
      wrapped.insert(wrapped.end(), {mainPath.string(), objectPath.string()});
      unsigned rssRuns = scaled(config.jitlinkRssRuns, std::min(1.0, config.scale));
      for (unsigned i = 0; i < 3 * rssRuns && row.executorMaxrssKb.count() < rssRuns; ++i) {
        std::error_code ignored;
        fs::remove(report, ignored);
        ChildRun run = runMeasured(
            bench.self() / "rss-run", wrapped, bench.scratch(), 30,
            {"RSS_RUN_WRAP_EXEC=" + config.executor, "RSS_RUN_WRAP_REPORT=" + report.string()});
        if (!run.result || *run.result != expected)
          continue;  // only executors that ran the code
        std::ifstream in(report);
        std::string line;
        ChildRun executor;
        if (std::getline(in, line) && parseReport(line, executor))
          row.executorMaxrssKb.add(static_cast<double>(executor.maxrssKb));
      }
    }
    rows.push_back(std::move(row));
  }
  // The rjitd equivalent of a one-shot tool run: a fresh client process that loads the
  // module (warm cache) and calls it.
  JitlinkRow client;
  client.module = m.name;
  client.mode = "rjitd fast path: one client process (warm)";
  std::vector<std::string> command = {(bench.self() / "fastpath-client-rss").string(),
                                      "--server",
                                      bench.address(),
                                      "--ir",
                                      m.path.string(),
                                      "--symbol",
                                      m.symbol,
                                      "--arg",
                                      std::to_string(m.argument),
                                      "--opt",
                                      std::to_string(level)};
  bench.prewarm(m, level);  // the child reads the IR file as it is, without this run's nonce
  for (unsigned attempt = 0; attempt < want; ++attempt) {
    ChildRun run = runMeasured(bench.self() / "rss-run", command, bench.scratch(), 60);
    ++client.attempts;
    if (run.reported && run.status == "exit 0" && run.result && *run.result == expected) {
      ++client.successes;
      client.wallMs.add(run.wallMs);
      client.maxrssKb.add(static_cast<double>(run.maxrssKb));
    } else {
      ++client.failedBefore;
      ++client.errors[run.status + ": " + firstLine(run.err)];
    }
    progress(m.name + " one-shot client", attempt + 1, want);
  }
  if (client.successes < client.attempts)
    bench.problem(m.name + ": " + std::to_string(client.attempts - client.successes) +
                  " one-shot client runs failed");
  rows.push_back(std::move(client));
  return rows;
}

}  // namespace

JitlinkSection measureJitlink(Bench& bench, const std::vector<IrModule>& modules) {
  const Config& config = bench.config();
  JitlinkSection section;
  if (!findInPath(config.jitlinkProgram) || access(config.executor.c_str(), X_OK) != 0) {
    section.note = "skipped: " + config.jitlinkProgram + " or " + config.executor + " not found";
    return section;
  }
  for (const IrModule& m : modules)
    if (m.callable) {
      auto rows = jitlink(bench, m, 2);
      section.rows.insert(section.rows.end(), rows.begin(), rows.end());
    }
  return section;
}

void printJitlink(const JitlinkSection& section, std::ostream& os) {
  if (section.rows.empty() && section.note.empty())
    return;
  os << "\n4. LLVM's llvm-jitlink-19 on the object rjitd compiled (-O2) plus a main, "
        "one process per run\n"
        "   wall = the whole tool run (process start to exit); link = its "
        "--show-times 'time to link object files';\n"
        "   RSS = the tool process (ru_maxrss) and, out of process, the executor that "
        "runs the code\n\n";
  if (!section.note.empty())
    os << "   " << section.note << "\n";
  Table table({"module", "mode", "ok/tries", "fail, result printed", "fail, no result",
               "crash/timeout", "ok, error printed", "wall ms", "link ms", "RSS MiB",
               "executor RSS MiB"});
  for (const JitlinkRow& r : section.rows)
    table.add({r.module, r.mode, std::to_string(r.successes) + "/" + std::to_string(r.attempts),
               std::to_string(r.ranThenFailed), std::to_string(r.failedBefore),
               std::to_string(r.crashedOrTimedOut), std::to_string(r.successWithErrorText),
               r.wallMs.empty() ? "-" : rjitbench::medMin(r.wallMs, 1),
               r.linkMs.empty() ? "-" : rjitbench::medMin(r.linkMs, 2),
               r.maxrssKb.empty() ? "-" : mib(r.maxrssKb.median()),
               r.executorMaxrssKb.empty() ? "-" : mib(r.executorMaxrssKb.median())});
  table.print(os);
  os << "   (wall and link: median (min) of the successful runs; success = exit 42 and "
        "the right result printed;\n"
        "    'fail, no result' runs may still have run the code: printf's buffer is "
        "lost when the executor does not exit normally)\n";
  for (const JitlinkRow& r : section.rows)
    for (const auto& [error, count] : r.errors)
      os << "   " << r.module << ", " << r.mode << ": " << count << "x " << error << "\n";
}

void jitlinkToJson(const JitlinkSection& section, json& out) {
  for (const JitlinkRow& r : section.rows) {
    json errors = json::object();
    for (const auto& [error, count] : r.errors)
      errors[error] = count;
    out["jitlink"].push_back({{"module", r.module},
                              {"mode", r.mode},
                              {"attempts", r.attempts},
                              {"successes", r.successes},
                              {"ran_then_failed", r.ranThenFailed},
                              {"failed_before", r.failedBefore},
                              {"crashed_or_timed_out", r.crashedOrTimedOut},
                              {"success_with_error_text", r.successWithErrorText},
                              {"errors", errors},
                              {"wall", r.wallMs.toJson()},
                              {"link", r.linkMs.toJson()},
                              {"maxrss_kb", r.maxrssKb.ms},
                              {"executor_maxrss_kb", r.executorMaxrssKb.ms}});
  }
}

}  // namespace fastpath
