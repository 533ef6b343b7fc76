// Small builders for wire bytes, shared by the wire and mux tests. They write
// the format by hand (not with the codec under test) so an encoder bug cannot
// hide a decoder bug.
#pragma once

#include "wire/control.hpp"

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace muxgate::test {

using bytes = std::vector<std::uint8_t>;

inline void append_u32(bytes& out, std::uint32_t v)
{
    out.push_back(static_cast<std::uint8_t>(v >> 24));
    out.push_back(static_cast<std::uint8_t>(v >> 16));
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}

// A frame header with an arbitrary payload_length (may lie about the payload).
inline bytes header(std::uint8_t protocol, std::uint32_t payload_length)
{
    bytes out{protocol};
    append_u32(out, payload_length);
    return out;
}

// A whole frame: header + payload.
inline bytes frame(std::uint8_t protocol, std::string_view payload)
{
    bytes out = header(protocol, static_cast<std::uint32_t>(payload.size()));
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

// A data frame: header + stream id + data.
inline bytes data_frame(std::uint8_t protocol, std::uint32_t stream, std::string_view data)
{
    bytes out = header(protocol, static_cast<std::uint32_t>(data.size() + 4));
    append_u32(out, stream);
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

// A control frame holding `json` verbatim.
inline bytes control_frame(std::string_view json) { return frame(0, json); }

// A control frame holding a serialized message.
inline bytes control_frame(const wire::control_message& m)
{
    return control_frame(wire::serialize(m));
}

// Several frames in one message.
inline bytes concat(std::initializer_list<bytes> parts)
{
    bytes out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

inline std::string text(std::span<const std::uint8_t> b)
{
    return std::string{reinterpret_cast<const char*>(b.data()), b.size()};
}

// RFC 3629 UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
inline bool valid_utf8(std::string_view s)
{
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) { ++i; continue; }
        if ((c & 0xe0) == 0xc0) { n = 1; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { n = 2; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { n = 3; cp = c & 0x07; }
        else return false;
        for (std::size_t k = 1; k <= n; ++k) {
            if (i + k >= s.size()) return false;
            const auto d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

}  // namespace muxgate::test
