#include "coordinator/api/media_source.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace ixc::coordinator {
namespace {

absl::Status Bad(const std::string& name, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(name, ": ", why));
}

bool Under(const std::string& path, const std::string& root) {
  return path == root || (absl::StartsWith(path, root) && (root.back() == '/' || path[root.size()] == '/'));
}

absl::StatusOr<MediaInput> FromDataUrl(const std::string& url, bool video, const std::string& name,
                                       const MediaPolicy& policy) {
  const size_t comma = url.find(',');
  if (comma == std::string::npos) return Bad(name, "a data: URL needs a comma before its data");
  const std::string header = url.substr(5, comma - 5);
  if (!absl::EndsWith(header, ";base64")) return Bad(name, "a data: URL must be base64 (data:image/png;base64,...)");
  const size_t encoded = url.size() - comma - 1;
  if (static_cast<int64_t>(encoded / 4 * 3) > policy.max_bytes) {
    return Bad(name, absl::StrCat("about ", encoded / 4 * 3, " bytes, more than the limit of ", policy.max_bytes,
                                  " (--max-media-mib)"));
  }
  MediaInput media{video, "", {}, absl::StrCat(name, " (data URL)")};
  std::string bytes;
  if (!absl::Base64Unescape(absl::string_view(url).substr(comma + 1), &bytes)) {
    return Bad(name, "the data: URL is not valid base64");
  }
  if (bytes.empty()) return Bad(name, "the data: URL holds no bytes");
  media.bytes.assign(bytes.begin(), bytes.end());
  return media;
}

absl::StatusOr<MediaInput> FromLocalPath(const std::string& path, bool video, const std::string& name,
                                         const MediaPolicy& policy) {
  if (policy.allowed_roots.empty()) {
    return Bad(name, "local files are not allowed on this server (the operator allows folders with "
                     "--allowed-media-path); send the file as a data: URL");
  }
  if (path.empty() || path[0] != '/') return Bad(name, absl::StrCat("'", path, "' is not an absolute path"));
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) return Bad(name, absl::StrCat("'", path, "' does not exist"));
  const std::string canonical = resolved;
  bool allowed = false;
  for (const std::string& root : policy.allowed_roots) allowed = allowed || Under(canonical, root);
  if (!allowed) {
    return Bad(name, absl::StrCat("'", path, "' is outside the allowed media folders (after resolving links and ..)"));
  }
  // O_NONBLOCK: a FIFO put in its place after the check must not stall the server; fstat says what was opened.
  const int fd = open(canonical.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Bad(name, absl::StrCat("'", path, "' cannot be opened"));
  struct stat info;
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    close(fd);
    return Bad(name, absl::StrCat("'", path, "' is not a regular file"));
  }
  if (info.st_size > policy.max_bytes) {
    close(fd);
    return Bad(name, absl::StrCat("'", path, "' has ", info.st_size, " bytes, more than the limit of ",
                                  policy.max_bytes, " (--max-media-mib)"));
  }
  MediaInput media{video, "", std::vector<uint8_t>(static_cast<size_t>(info.st_size)), path};
  size_t done = 0;
  while (done < media.bytes.size()) {
    const ssize_t n = read(fd, media.bytes.data() + done, media.bytes.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  if (done != media.bytes.size() || media.bytes.empty()) return Bad(name, absl::StrCat("'", path, "' cannot be read"));
  return media;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> CanonicalRoots(const std::vector<std::string>& roots) {
  std::vector<std::string> canonical;
  for (const std::string& root : roots) {
    char resolved[PATH_MAX];
    struct stat info;
    if (realpath(root.c_str(), resolved) == nullptr || stat(resolved, &info) != 0 || !S_ISDIR(info.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("--allowed-media-path '", root, "' is not a folder"));
    }
    canonical.push_back(resolved);
  }
  return canonical;
}

absl::StatusOr<MediaInput> ReadMedia(const std::string& url, bool video, const std::string& name,
                                     const MediaPolicy& policy) {
  if (absl::StartsWith(url, "data:")) return FromDataUrl(url, video, name, policy);
  if (absl::StartsWithIgnoreCase(url, "http://") || absl::StartsWithIgnoreCase(url, "https://")) {
    return Bad(name, "http(s) URLs are not fetched by this server; send the file as a data: URL (or, where the "
                     "operator allows a folder, as a local path)");
  }
  if (absl::StartsWith(url, "file://")) return FromLocalPath(url.substr(7), video, name, policy);
  if (url.find("://") != std::string::npos) return Bad(name, "only data: URLs and local paths are accepted");
  return FromLocalPath(url, video, name, policy);
}

}  // namespace ixc::coordinator
