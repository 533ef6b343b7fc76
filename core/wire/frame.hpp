// Frame codec for the muxgate wire format (docs/protocol.md, "Frames").
//
// A binary WebSocket message carries one or more whole frames:
//     [protocol_id: u8][payload_length: u32 BE][payload]
// protocol_id 0 is control (one JSON object); 1..255 is stream data whose
// payload starts with a u32 BE stream id. This file is sans-I/O: it only looks
// at bytes it is given and never throws on them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace muxgate::wire {

inline constexpr std::size_t frame_header_size = 5;  // protocol_id + payload_length
inline constexpr std::size_t stream_id_size = 4;
inline constexpr std::size_t data_header_size = frame_header_size + stream_id_size;
inline constexpr std::uint8_t control_protocol = 0;

// Stream ids opened by the gateway are odd, ids opened by the agent are even
// (reserved in protocol version 1); 0 is never a stream.
constexpr bool is_gateway_stream(std::uint32_t id) noexcept { return (id & 1u) == 1u; }

inline void put_u32(std::uint8_t* p, std::uint32_t v) noexcept
{
    p[0] = static_cast<std::uint8_t>(v >> 24);
    p[1] = static_cast<std::uint8_t>(v >> 16);
    p[2] = static_cast<std::uint8_t>(v >> 8);
    p[3] = static_cast<std::uint8_t>(v);
}

inline std::uint32_t get_u32(const std::uint8_t* p) noexcept
{
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
           (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

// Writes a 5-byte frame header.
inline void encode_frame_header(std::uint8_t* out, std::uint8_t protocol,
                                std::uint32_t payload_length) noexcept
{
    out[0] = protocol;
    put_u32(out + 1, payload_length);
}

// Writes the 9-byte header of a data frame carrying `data_length` bytes.
inline void encode_data_header(std::uint8_t* out, std::uint8_t protocol, std::uint32_t stream,
                               std::uint32_t data_length) noexcept
{
    encode_frame_header(out, protocol, data_length + static_cast<std::uint32_t>(stream_id_size));
    put_u32(out + frame_header_size, stream);
}

// Appends a whole control frame (header + JSON) to `out`.
void append_control_frame(std::string& out, std::string_view json);

struct frame_limits {
    std::uint32_t max_frame_payload;    // any frame
    std::uint32_t max_control_payload;  // protocol_id 0 frames
};

enum class frame_errc {
    ok = 0,
    empty_message,       // a message with no bytes
    truncated_header,    // fewer than 5 bytes left for a header
    truncated_payload,   // payload_length runs past the end of the message
    payload_too_large,   // payload_length > max_frame_payload
    control_too_large,   // control payload_length > max_control_payload
    missing_stream_id,   // data frame shorter than its 4-byte stream id
    zero_stream_id,      // data frame for stream 0
};

std::string_view describe(frame_errc e) noexcept;

struct frame {
    std::uint8_t protocol = 0;
    std::span<const std::uint8_t> payload;  // the whole payload
    // For data frames (protocol != 0), filled by the decoder:
    std::uint32_t stream = 0;
    std::span<const std::uint8_t> data;     // payload after the stream id
};

// Walks the frames of one message. Stops at the first error; `error()` then
// says what, `offset()` where (byte offset of the bad frame in the message).
class frame_decoder {
public:
    frame_decoder(std::span<const std::uint8_t> message, frame_limits limits) noexcept
        : msg_(message), limits_(limits)
    {
        if (msg_.empty()) err_ = frame_errc::empty_message;
    }

    // Returns true and fills `out` while frames remain; false at the end or on error.
    bool next(frame& out) noexcept;

    frame_errc error() const noexcept { return err_; }
    std::size_t offset() const noexcept { return frame_start_; }
    // "frame at offset N of a M-byte message: <what>" plus the numbers involved.
    std::string error_text() const;

private:
    std::span<const std::uint8_t> msg_;
    frame_limits limits_;
    std::size_t pos_ = 0;
    std::size_t frame_start_ = 0;
    std::uint64_t bad_length_ = 0;
    frame_errc err_ = frame_errc::ok;
};

}  // namespace muxgate::wire
