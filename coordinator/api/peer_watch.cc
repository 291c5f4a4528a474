#include "coordinator/api/peer_watch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

namespace ixc::coordinator {
namespace {

// The numeric address and port of `address`, as httplib reports them (getnameinfo with NI_NUMERICHOST).
bool Describe(const sockaddr_storage& address, std::string* host, int* port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
    if (inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text)) == nullptr) return false;
    *port = ntohs(v4->sin_port);
  } else if (address.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
    if (inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text)) == nullptr) return false;
    *port = ntohs(v6->sin6_port);
  } else {
    return false;
  }
  *host = text;
  return true;
}

}  // namespace

PeerWatch::PeerWatch(std::string local_addr, int local_port, std::string remote_addr, int remote_port)
    : local_addr_(std::move(local_addr)),
      remote_addr_(std::move(remote_addr)),
      local_port_(local_port),
      remote_port_(remote_port) {}

bool PeerWatch::Matches(int fd) const {
  sockaddr_storage local{}, remote{};
  socklen_t local_size = sizeof(local), remote_size = sizeof(remote);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_size) != 0) return false;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &remote_size) != 0) return false;
  std::string local_host, remote_host;
  int local_port = 0, remote_port = 0;
  return Describe(local, &local_host, &local_port) && Describe(remote, &remote_host, &remote_port) &&
         local_port == local_port_ && remote_port == remote_port_ && remote_host == remote_addr_ &&
         local_host == local_addr_;
}

int PeerWatch::Find() const {
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", error)) {
    const std::string name = entry.path().filename().string();
    char* end = nullptr;
    const long fd = std::strtol(name.c_str(), &end, 10);
    if (end == name.c_str() || *end != '\0') continue;
    if (Matches(static_cast<int>(fd))) return static_cast<int>(fd);
  }
  return -1;
}

bool PeerWatch::Gone() {
  if (!searched_) {
    fd_ = Find();
    searched_ = true;
  }
  // The handler holds its connection open until it returns, so the descriptor stays this connection's.
  if (fd_ < 0) return false;
  pollfd state{fd_, POLLRDHUP, 0};  // POLLRDHUP: the peer shut down its side, bytes still unread or not
  return poll(&state, 1, 0) == 1 && (state.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace ixc::coordinator
