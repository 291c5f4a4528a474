#include "core/logging.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace ixc {
namespace {

std::atomic<int> g_log_rank{-1};

LogSeverity SeverityFromEnv() {
  const char* level = std::getenv("IXC_LOG_LEVEL");
  if (level == nullptr) return LogSeverity::kInfo;
  if (std::strcmp(level, "warning") == 0) return LogSeverity::kWarning;
  if (std::strcmp(level, "error") == 0) return LogSeverity::kError;
  return LogSeverity::kInfo;
}

std::atomic<LogSeverity> g_min_severity{SeverityFromEnv()};

char SeverityLetter(LogSeverity severity) {
  switch (severity) {
    case LogSeverity::kInfo:
      return 'I';
    case LogSeverity::kWarning:
      return 'W';
    case LogSeverity::kError:
      return 'E';
  }
  return '?';
}

}  // namespace

void SetLogRank(int rank) { g_log_rank = rank; }
void SetMinLogSeverity(LogSeverity severity) { g_min_severity = severity; }

LogLine::LogLine(LogSeverity severity, const char* file, int line) : severity_(severity) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const int millis =
      static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char time_text[32];
  std::snprintf(time_text, sizeof(time_text), "%02d:%02d:%02d.%03d", utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
  const char* base = std::strrchr(file, '/');
  stream_ << SeverityLetter(severity) << ' ' << time_text << ' ';
  if (g_log_rank >= 0) stream_ << 'r' << g_log_rank << ' ';
  stream_ << (base ? base + 1 : file) << ':' << line << "] ";
}

LogLine::~LogLine() {
  if (severity_ < g_min_severity) return;
  stream_ << '\n';
  const std::string text = stream_.str();
  // One write(2) per line keeps lines of concurrent processes whole.
  [[maybe_unused]] ssize_t written = ::write(STDERR_FILENO, text.data(), text.size());
}

}  // namespace ixc
