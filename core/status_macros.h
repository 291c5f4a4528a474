// File: core/status_macros.h
//
// IXC_RETURN_IF_ERROR / IXC_ASSIGN_OR_RETURN: the abseil status macros that Debian 12's abseil (20220623) does not
// ship yet. When the project moves to an LTS with absl/status/status_macros.h these forward to the ABSL_ ones.
//
//   IXC_RETURN_IF_ERROR(file.Validate());
//   IXC_ASSIGN_OR_RETURN(Config config, Config::FromFile(path));
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define IXC_STATUS_CONCAT_INNER(a, b) a##b
#define IXC_STATUS_CONCAT(a, b) IXC_STATUS_CONCAT_INNER(a, b)

#define IXC_RETURN_IF_ERROR(expr)                  \
  do {                                             \
    ::absl::Status ixc_status_ = (expr);           \
    if (!ixc_status_.ok()) return ixc_status_;     \
  } while (false)

#define IXC_ASSIGN_OR_RETURN(lhs, expr) \
  IXC_ASSIGN_OR_RETURN_IMPL(IXC_STATUS_CONCAT(ixc_statusor_, __LINE__), lhs, expr)

#define IXC_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) return statusor.status();        \
  lhs = std::move(statusor).value()
