// File: core/version.h
//
// The version of the cluster (the API's /version, the build_info metric) and the git commit the build was
// configured from (core/version.cc.in: a build made since then without re-configuring keeps the old one).
#pragma once

namespace ixc {

inline constexpr char kVersion[] = "0.2.0";
extern const char kGitCommit[];  // "unknown" outside a git checkout

}  // namespace ixc
