// WebSocket framing (RFC 6455 section 5), sans-I/O.
//
// The decoder works in place on a buffer of received bytes: it parses frame
// headers, unmasks payloads, answers "need more bytes", and assembles
// fragmented messages by moving continuation payloads down next to the first
// fragment, so a whole message ends up contiguous without another buffer.
// Control frames (close, ping, pong) are reported separately. Nothing here
// throws on what the network sends; every violation is a value naming the
// close code to use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace muxgate::ws {

enum class opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

// Largest header: 2 + 8 (64-bit length) + 4 (mask key).
inline constexpr std::size_t max_header_size = 14;
// Control frame payloads are at most 125 bytes (RFC 6455 5.5).
inline constexpr std::size_t max_control_payload = 125;

// Writes a frame header for a payload of `length` bytes; returns its size.
// `mask` (4 bytes) is written when non-null (client frames).
std::size_t encode_header(std::uint8_t* out, opcode op, bool fin, std::uint64_t length,
                          const std::uint8_t* mask = nullptr);

// XORs `data` with the 4-byte `mask`, starting at mask position `offset`.
void apply_mask(std::uint8_t* data, std::size_t n, const std::uint8_t mask[4],
                std::size_t offset = 0) noexcept;
// Copies `n` bytes from `src` to `dst` while masking.
void copy_masked(std::uint8_t* dst, const std::uint8_t* src, std::size_t n,
                 const std::uint8_t mask[4], std::size_t offset = 0) noexcept;

// Builds a close frame payload: 2-byte code + reason (cut to fit 125 bytes).
std::string close_payload(std::uint16_t code, std::string_view reason);

enum class role { server, client };  // the side that receives

struct decoded {
    enum class kind {
        need_more,  // not enough bytes for the next event
        message,    // a whole data message: `data`, `binary`
        close,      // a close frame: `close_code` (1005 if none), `reason`
        ping,       // `data` is the ping payload (answer with a pong)
        pong,
        error,      // protocol violation: close with `close_code`, `reason`
    } what = kind::need_more;
    std::span<std::uint8_t> data;
    bool binary = false;
    std::uint16_t close_code = 0;
    std::string reason;
    // need_more: the buffer must hold at least this many bytes for progress.
    std::size_t need = 0;
};

class decoder {
public:
    decoder(role r, std::size_t max_message) : role_(r), max_message_(max_message) {}
    void set_max_message(std::size_t n) noexcept { max_message_ = n; }

    // Looks at buf[0, size). Returns the next event. `consumed()` then says
    // how many leading bytes of the buffer are finished with (the caller may
    // drop them once it is done with the event's data, which points into the
    // buffer); bytes after that must be kept and presented again, moved to
    // the front, on the next call. The decoder may rewrite bytes in place
    // (unmasking, assembling fragments).
    decoded next(std::uint8_t* buf, std::size_t size);
    std::size_t consumed() const noexcept { return consumed_; }

private:
    role role_;
    std::size_t max_message_;
    std::size_t consumed_ = 0;
    // A fragmented message being assembled at the front of the buffer:
    // assembled_ bytes are contiguous at buf[0, assembled_); parse_ is where
    // the next frame header starts.
    bool in_message_ = false;
    bool message_binary_ = false;
    std::size_t assembled_ = 0;
    std::size_t parse_ = 0;
};

}  // namespace muxgate::ws
