// File: coordinator/api/peer_watch.h
//
// Whether the client of a non-streamed request is still connected, so that the engine stops working for one that
// has gone. cpp-httplib 0.11.4 (Debian 12) tells a handler neither its socket nor that the peer closed (a stream
// learns it when a write fails). The connection is found once among this process's sockets by its address pair,
// then polled without waiting: POLLRDHUP means the client has closed its side (FIN), POLLHUP or POLLERR that the
// connection is gone or was reset. Linux only (/proc/self/fd, POLLRDHUP).
//   PeerWatch watch(http.local_addr, http.local_port, http.remote_addr, http.remote_port);
//   while (...) { if (watch.Gone()) cancel(); }
#pragma once

#include <string>

namespace ixc::coordinator {

class PeerWatch {
 public:
  PeerWatch(std::string local_addr, int local_port, std::string remote_addr, int remote_port);

  // True once the client has closed or reset the connection. A connection that cannot be found counts as open.
  bool Gone();

 private:
  // The socket whose local and peer addresses are this request's, or -1.
  int Find() const;
  bool Matches(int fd) const;

  std::string local_addr_, remote_addr_;
  int local_port_, remote_port_;
  int fd_ = -1;
  bool searched_ = false;
};

}  // namespace ixc::coordinator
