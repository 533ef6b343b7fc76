#include "ws/codec.hpp"

#include <fmt/format.h>

#include <cstring>

namespace muxgate::ws {

std::size_t encode_header(std::uint8_t* out, opcode op, bool fin, std::uint64_t length,
                          const std::uint8_t* mask)
{
    std::size_t n = 0;
    out[n++] = static_cast<std::uint8_t>((fin ? 0x80 : 0x00) | static_cast<std::uint8_t>(op));
    const std::uint8_t mbit = mask ? 0x80 : 0x00;
    if (length < 126) {
        out[n++] = static_cast<std::uint8_t>(mbit | length);
    } else if (length <= 0xffff) {
        out[n++] = mbit | 126;
        out[n++] = static_cast<std::uint8_t>(length >> 8);
        out[n++] = static_cast<std::uint8_t>(length);
    } else {
        out[n++] = mbit | 127;
        for (int i = 7; i >= 0; --i) out[n++] = static_cast<std::uint8_t>(length >> (8 * i));
    }
    if (mask) {
        std::memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void copy_masked(std::uint8_t* dst, const std::uint8_t* src, std::size_t n,
                 const std::uint8_t mask[4], std::size_t offset) noexcept
{
    // Rotate the key to the starting offset, widen it to 8 bytes and XOR a
    // word at a time; the compiler vectorizes the loop.
    std::uint8_t key[8];
    for (int i = 0; i < 8; ++i) key[i] = mask[(offset + static_cast<std::size_t>(i)) & 3];
    std::uint64_t k;
    std::memcpy(&k, key, 8);
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, src + i, 8);
        w ^= k;
        std::memcpy(dst + i, &w, 8);
    }
    for (; i < n; ++i) dst[i] = src[i] ^ key[i & 7];
}

void apply_mask(std::uint8_t* data, std::size_t n, const std::uint8_t mask[4],
                std::size_t offset) noexcept
{
    copy_masked(data, data, n, mask, offset);
}

std::string close_payload(std::uint16_t code, std::string_view reason)
{
    std::string out;
    out.push_back(static_cast<char>(code >> 8));
    out.push_back(static_cast<char>(code & 0xff));
    out.append(reason.substr(0, max_control_payload - 2));
    return out;
}

namespace {

bool valid_close_code(std::uint16_t c)
{
    if (c >= 1000 && c <= 1003) return true;
    if (c >= 1007 && c <= 1011) return true;
    return c >= 3000 && c <= 4999;
}

decoded more(std::size_t need)
{
    decoded d;
    d.need = need;
    return d;
}

decoded fail(std::uint16_t code, std::string reason)
{
    decoded d;
    d.what = decoded::kind::error;
    d.close_code = code;
    d.reason = std::move(reason);
    return d;
}

}  // namespace

decoded decoder::next(std::uint8_t* buf, std::size_t size)
{
    consumed_ = 0;
    for (;;) {
        // Frame header.
        const std::size_t at = parse_;
        if (size < at + 2) return more(at + 2);
        const std::uint8_t b0 = buf[at], b1 = buf[at + 1];
        const bool fin = (b0 & 0x80) != 0;
        if (b0 & 0x70) return fail(1002, "reserved bits set (no extension was negotiated)");
        const auto op = static_cast<opcode>(b0 & 0x0f);
        const bool masked = (b1 & 0x80) != 0;
        std::size_t hdr = 2;
        std::uint64_t len = b1 & 0x7f;
        if (len == 126) {
            if (size < at + 4) return more(at + 4);
            len = (std::uint64_t{buf[at + 2]} << 8) | buf[at + 3];
            hdr = 4;
        } else if (len == 127) {
            if (size < at + 10) return more(at + 10);
            len = 0;
            for (int i = 0; i < 8; ++i) len = (len << 8) | buf[at + 2 + static_cast<std::size_t>(i)];
            if (len >> 63) return fail(1002, "64-bit payload length has its top bit set");
            hdr = 10;
        }
        const std::uint8_t* mask = nullptr;
        if (masked) {
            if (size < at + hdr + 4) return more(at + hdr + 4);
            mask = buf + at + hdr;
            hdr += 4;
        }
        if (role_ == role::server && !masked) return fail(1002, "client frame is not masked");
        if (role_ == role::client && masked) return fail(1002, "server frame is masked");

        const bool control = (static_cast<std::uint8_t>(op) & 0x08) != 0;
        if (control) {
            if (op != opcode::close && op != opcode::ping && op != opcode::pong)
                return fail(1002, fmt::format("unknown control opcode {}", static_cast<int>(op)));
            if (!fin) return fail(1002, "fragmented control frame");
            if (len > max_control_payload) return fail(1002, "control frame payload over 125 bytes");
        } else {
            if (op != opcode::continuation && op != opcode::text && op != opcode::binary)
                return fail(1002, fmt::format("unknown data opcode {}", static_cast<int>(op)));
            if (op == opcode::continuation && !in_message_)
                return fail(1002, "continuation frame without a message");
            if (op != opcode::continuation && in_message_)
                return fail(1002, "new message before the previous one ended");
            // Refuse a too-big message as soon as its header says so.
            if (len > max_message_ || assembled_ + len > max_message_)
                return fail(1009, fmt::format("message larger than {} bytes", max_message_));
        }
        if (size - at - hdr < len) return more(at + hdr + static_cast<std::size_t>(len));

        std::uint8_t* payload = buf + at + hdr;
        const auto n = static_cast<std::size_t>(len);
        if (mask) {
            std::uint8_t key[4];
            std::memcpy(key, mask, 4);
            apply_mask(payload, n, key);
        }
        const std::size_t frame_end = at + hdr + n;

        if (control) {
            decoded d;
            d.data = {payload, n};
            if (op == opcode::ping) {
                d.what = decoded::kind::ping;
            } else if (op == opcode::pong) {
                d.what = decoded::kind::pong;
            } else {
                d.what = decoded::kind::close;
                if (n == 1) return fail(1002, "close frame with a 1-byte payload");
                if (n >= 2) {
                    d.close_code = static_cast<std::uint16_t>(payload[0] << 8 | payload[1]);
                    if (!valid_close_code(d.close_code))
                        return fail(1002, fmt::format("invalid close code {}", d.close_code));
                    d.reason.assign(reinterpret_cast<const char*>(payload + 2), n - 2);
                } else {
                    d.close_code = 1005;  // no code given
                }
            }
            // Mid-message the assembled bytes stay at the front; otherwise
            // the control frame itself is done with.
            if (in_message_)
                parse_ = frame_end;
            else {
                consumed_ = frame_end;
                parse_ = 0;
            }
            return d;
        }

        if (!in_message_ && fin) {
            // The common case: a whole message in one frame, used in place.
            decoded d;
            d.what = decoded::kind::message;
            d.binary = op == opcode::binary;
            d.data = {payload, n};
            consumed_ = frame_end;
            parse_ = 0;
            return d;
        }
        if (!in_message_) {
            in_message_ = true;
            message_binary_ = op == opcode::binary;
            assembled_ = 0;
        }
        std::memmove(buf + assembled_, payload, n);
        assembled_ += n;
        parse_ = frame_end;
        if (fin) {
            decoded d;
            d.what = decoded::kind::message;
            d.binary = message_binary_;
            d.data = {buf, assembled_};
            consumed_ = frame_end;
            in_message_ = false;
            assembled_ = 0;
            parse_ = 0;
            return d;
        }
    }
}

}  // namespace muxgate::ws
