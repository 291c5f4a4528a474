// File: coordinator/api/media_source.h
//
// Where an API request's images and videos come from: a `data:` URL (base64), or a local file under one of the
// operator's --allowed-media-path roots (a path or a file:// URL). The cluster fetches nothing: http(s) URLs are
// refused. A local path must still be a regular file under a root once `..` and symbolic links are resolved (no
// escape, no FIFO or device), and is read at once, so what is decoded is what was checked. Sizes are checked before
// anything is decoded; pixel limits are the decoder's (ImageLimits), before it allocates.
//   MediaPolicy policy{.allowed_roots = {"/data/images"}, .max_bytes = 64 << 20};
//   IXC_ASSIGN_OR_RETURN(MediaInput image, ReadMedia("data:image/png;base64,iVBOR...", false, "image 1", policy));
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/request.h"

namespace ixc::coordinator {

struct MediaPolicy {
  std::vector<std::string> allowed_roots;  // canonical directories; empty: no local files
  int64_t max_bytes = int64_t{64} << 20;   // one image or video, encoded
};

// Checks each root exists and is a directory; returns them canonical.
absl::StatusOr<std::vector<std::string>> CanonicalRoots(const std::vector<std::string>& roots);

// `url` read into a MediaInput named `name` ("image 2"); errors are InvalidArgument and name it.
absl::StatusOr<MediaInput> ReadMedia(const std::string& url, bool video, const std::string& name,
                                     const MediaPolicy& policy);

}  // namespace ixc::coordinator
