// TCP socket options set on muxgate's connections.
#pragma once

#include <cstdint>
#include <string_view>

namespace muxgate::net {

// TCP_NODELAY: every byte muxgate writes is already batched (mux messages,
// relay chunks), so Nagle would only add the delayed-ACK stall to small
// writes. Best effort: a socket that refuses it still works.
void set_nodelay(int fd);

// Socket options of the one agent connection, on both ends: TCP_NODELAY and
// TCP_NOTSENT_LOWAT = `unsent` (limits.socket_unsent; 0 leaves the kernel's
// default, unbounded). The latter keeps at most about that much unsent in
// the kernel's send buffer; the writer holds the rest, so a small frame
// written after a bulk burst queues behind at most this much instead of
// megabytes of socket buffer. Bytes in flight are not limited, so long links
// still fill. A failure is logged (with `who`) and the connection goes on
// without it.
void tune_agent_socket(int fd, std::uint32_t unsent, std::string_view who);

}  // namespace muxgate::net
