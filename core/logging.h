// File: core/logging.h
//
// A small line logger (Debian's abseil has no absl/log). Every line carries the process's rank, set once at start-up:
//
//   ixc::SetLogRank(mpi_rank);
//   IXC_LOG(INFO) << "loaded " << n << " tensors";   // "I 12:00:01.123 r0 loader.cc:42] loaded 291 tensors"
//
// Lines go to stderr, whole (one write per line), so lines of concurrent ranks do not interleave.
#pragma once

#include <sstream>

namespace ixc {

enum class LogSeverity { kInfo, kWarning, kError };

// Sets the rank printed in every line of this process (-1, the default, prints no rank).
void SetLogRank(int rank);

// Lines below this severity are dropped (default kInfo; IXC_LOG_LEVEL=warning|error in the environment raises it).
void SetMinLogSeverity(LogSeverity severity);

class LogLine {
 public:
  LogLine(LogSeverity severity, const char* file, int line);
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;

  template <typename T>
  LogLine& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

}  // namespace ixc

#define IXC_LOG_SEVERITY_INFO ::ixc::LogSeverity::kInfo
#define IXC_LOG_SEVERITY_WARNING ::ixc::LogSeverity::kWarning
#define IXC_LOG_SEVERITY_ERROR ::ixc::LogSeverity::kError
#define IXC_LOG(severity) ::ixc::LogLine(IXC_LOG_SEVERITY_##severity, __FILE__, __LINE__)
