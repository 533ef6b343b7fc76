// The WebSocket under a mux session, with Beast kept out of this header so
// that only net/ws.cpp instantiates it (compile time, CI time).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <span>
#include <string>

namespace muxgate::net {

class ws_transport {
public:
    virtual ~ws_transport() = default;
    // Read one whole message; `binary` tells its kind. At most one read at a time.
    virtual boost::asio::awaitable<boost::system::error_code> read(boost::beast::flat_buffer& buf,
                                                                   bool& binary) = 0;
    // Write one binary message made of `bufs`. At most one write at a time.
    virtual boost::asio::awaitable<boost::system::error_code> write(
        std::span<const boost::asio::const_buffer> bufs) = 0;
    // WebSocket close handshake with a code and reason (bounded by the
    // transport's own timeout).
    virtual boost::asio::awaitable<void> close(std::uint16_t code, std::string reason) = 0;
    // Drop the connection now, failing pending operations.
    virtual void abort() = 0;
    // The close code the peer sent, if it closed.
    virtual std::uint16_t peer_close_code() const = 0;
    virtual std::string peer_close_reason() const = 0;
    // Largest message read() accepts.
    virtual void set_read_limit(std::size_t bytes) = 0;
};

}  // namespace muxgate::net
