// PeerWatch on real TCP connections over the loopback: open while the client holds the connection, gone after it
// closes or resets it; a pair that is no connection of this process counts as open.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "coordinator/api/peer_watch.h"
#include "gtest/gtest.h"

namespace ixc::coordinator {
namespace {

int Port(int fd, bool peer) {
  sockaddr_in address{};
  socklen_t size = sizeof(address);
  peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&address), &size)
       : getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  return ntohs(address.sin_port);
}

// A connected pair over 127.0.0.1: the client's socket and the server's accepted one.
std::pair<int, int> Connect() {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(listen(listener, 1), 0);
  address.sin_port = htons(static_cast<uint16_t>(Port(listener, false)));
  const int client = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_EQ(connect(client, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  const int server = accept(listener, nullptr, nullptr);
  close(listener);
  return {client, server};
}

PeerWatch WatchOf(int server) {
  return PeerWatch("127.0.0.1", Port(server, false), "127.0.0.1", Port(server, true));
}

bool GoneWithin(PeerWatch& watch) {
  for (int i = 0; i < 100; ++i) {
    if (watch.Gone()) return true;
    usleep(10'000);
  }
  return false;
}

TEST(PeerWatchTest, OpenUntilTheClientCloses) {
  auto [client, server] = Connect();
  PeerWatch watch = WatchOf(server);
  EXPECT_FALSE(watch.Gone());
  ASSERT_EQ(send(client, "GET", 3, 0), 3);  // unread bytes are not an end
  EXPECT_FALSE(watch.Gone());
  close(client);
  EXPECT_TRUE(GoneWithin(watch));
  close(server);
}

TEST(PeerWatchTest, AResetIsGone) {
  auto [client, server] = Connect();
  PeerWatch watch = WatchOf(server);
  EXPECT_FALSE(watch.Gone());
  const linger abort_on_close{1, 0};
  setsockopt(client, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof(abort_on_close));
  close(client);  // RST
  EXPECT_TRUE(GoneWithin(watch));
  close(server);
}

TEST(PeerWatchTest, AnUnknownConnectionCountsAsOpen) {
  PeerWatch watch("127.0.0.1", 1, "127.0.0.1", 2);
  EXPECT_FALSE(watch.Gone());
}

}  // namespace
}  // namespace ixc::coordinator
