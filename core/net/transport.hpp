// The WebSocket under a mux session. One read and one write may be in
// progress at a time, from the session's strand.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <span>
#include <string>

namespace muxgate::net {

class ws_transport {
public:
    virtual ~ws_transport() = default;
    // Read one whole message. `message` stays valid until the next read().
    virtual boost::asio::awaitable<boost::system::error_code> read(
        std::span<const std::uint8_t>& message, bool& binary) = 0;
    // Write one binary message made of `bufs`.
    virtual boost::asio::awaitable<boost::system::error_code> write(
        std::span<const boost::asio::const_buffer> bufs) = 0;
    // Close handshake with a code and reason (bounded by the handshake
    // timeout), then TLS close_notify and the socket.
    virtual boost::asio::awaitable<void> close(std::uint16_t code, std::string reason) = 0;
    // Drop the connection now, failing pending operations.
    virtual void abort() = 0;
    // The close code and reason the peer sent, if it closed (0 if not).
    virtual std::uint16_t peer_close_code() const = 0;
    virtual std::string peer_close_reason() const = 0;
    // What went wrong on the last failed read or write, in words.
    virtual std::string error_text() const = 0;
    // Largest message read() accepts.
    virtual void set_read_limit(std::size_t bytes) = 0;
    // The connection has been quiet: give back buffers a burst grew.
    virtual void trim() = 0;
};

}  // namespace muxgate::net
