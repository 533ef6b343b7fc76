#include "wire/frame.hpp"

#include <fmt/format.h>

namespace muxgate::wire {

void append_control_frame(std::string& out, std::string_view json)
{
    std::uint8_t hdr[frame_header_size];
    encode_frame_header(hdr, control_protocol, static_cast<std::uint32_t>(json.size()));
    out.append(reinterpret_cast<const char*>(hdr), sizeof hdr);
    out.append(json);
}

std::string_view describe(frame_errc e) noexcept
{
    switch (e) {
    case frame_errc::ok: return "ok";
    case frame_errc::empty_message: return "empty message";
    case frame_errc::truncated_header: return "truncated frame header";
    case frame_errc::truncated_payload: return "payload_length runs past the end of the message";
    case frame_errc::payload_too_large: return "payload_length exceeds max_frame_payload";
    case frame_errc::control_too_large: return "control payload exceeds max_control_message";
    case frame_errc::missing_stream_id: return "data frame shorter than its stream id";
    case frame_errc::zero_stream_id: return "data frame for stream 0";
    }
    return "unknown frame error";
}

bool frame_decoder::next(frame& out) noexcept
{
    if (err_ != frame_errc::ok || pos_ == msg_.size()) return false;
    frame_start_ = pos_;
    const std::size_t left = msg_.size() - pos_;
    if (left < frame_header_size) {
        err_ = frame_errc::truncated_header;
        bad_length_ = left;
        return false;
    }
    const std::uint8_t* p = msg_.data() + pos_;
    const std::uint8_t protocol = p[0];
    const std::uint32_t len = get_u32(p + 1);
    bad_length_ = len;
    if (len > limits_.max_frame_payload) {
        err_ = frame_errc::payload_too_large;
        return false;
    }
    if (protocol == control_protocol && len > limits_.max_control_payload) {
        err_ = frame_errc::control_too_large;
        return false;
    }
    if (len > left - frame_header_size) {
        err_ = frame_errc::truncated_payload;
        return false;
    }
    out.protocol = protocol;
    out.payload = msg_.subspan(pos_ + frame_header_size, len);
    if (protocol != control_protocol) {
        if (len < stream_id_size) {
            err_ = frame_errc::missing_stream_id;
            return false;
        }
        out.stream = get_u32(out.payload.data());
        if (out.stream == 0) {
            err_ = frame_errc::zero_stream_id;
            return false;
        }
        out.data = out.payload.subspan(stream_id_size);
    } else {
        out.stream = 0;
        out.data = {};
    }
    pos_ += frame_header_size + len;
    return true;
}

std::string frame_decoder::error_text() const
{
    std::string what{describe(err_)};
    switch (err_) {
    case frame_errc::payload_too_large:
        what += fmt::format(" ({} > {})", bad_length_, limits_.max_frame_payload);
        break;
    case frame_errc::control_too_large:
        what += fmt::format(" ({} > {})", bad_length_, limits_.max_control_payload);
        break;
    case frame_errc::truncated_payload:
        what += fmt::format(" (payload_length {}, {} bytes left)", bad_length_,
                            msg_.size() - frame_start_ - frame_header_size);
        break;
    case frame_errc::truncated_header:
        what += fmt::format(" ({} bytes left)", bad_length_);
        break;
    default:
        break;
    }
    return fmt::format("frame at offset {} of a {}-byte message: {}", frame_start_, msg_.size(),
                       what);
}

}  // namespace muxgate::wire
