// fuzz_frame: wire::frame_decoder over arbitrary messages.
//
// Input: [limits selector u8][message bytes...]
//   selector bit 7 set    production limits (1 MiB frames, 64 KiB control)
//   selector == 0x7f      no limits at all (u32 max: payload_length arithmetic)
//   otherwise             tiny limits: max_frame = bits 0-5, max_control below
//                         or above it (bit 6), so every size check is reachable
//
// Checked against an independent model of the format: every frame lies inside
// the message, within its limits, with the right stream id and data; frames
// are contiguous from offset 0; when the decoder stops with an error, the
// model computes the same error at the same offset, and the text starts with
// "frame at offset N of a M-byte message: <describe(error)>"; re-encoding the
// decoded frames with the encoders gives back the bytes that were consumed.
#include "fuzz_util.hpp"
#include "wire/frame.hpp"

#include <string>

using namespace muxgate;
using wire::frame_errc;

namespace {

wire::frame_limits pick_limits(std::uint8_t sel)
{
    if (sel & 0x80) return {1u << 20, 64u << 10};
    if (sel == 0x7f) return {0xffffffffu, 0xffffffffu};
    const std::uint32_t max_frame = sel & 0x3f;
    return {max_frame, (sel & 0x40) ? max_frame / 2 : max_frame + 7};
}

// What the format says the frame at `off` is, without the decoder.
frame_errc model_error(std::span<const std::uint8_t> msg, std::size_t off, wire::frame_limits l)
{
    if (msg.empty()) return frame_errc::empty_message;
    const std::size_t left = msg.size() - off;
    if (left < 5) return frame_errc::truncated_header;
    const std::uint8_t proto = msg[off];
    const std::uint64_t len = (std::uint64_t{msg[off + 1]} << 24) | (std::uint64_t{msg[off + 2]} << 16) |
                              (std::uint64_t{msg[off + 3]} << 8) | msg[off + 4];
    if (len > l.max_frame_payload) return frame_errc::payload_too_large;
    if (proto == 0 && len > l.max_control_payload) return frame_errc::control_too_large;
    if (len > left - 5) return frame_errc::truncated_payload;
    if (proto != 0 && len < 4) return frame_errc::missing_stream_id;
    if (proto != 0 && wire::get_u32(msg.data() + off + 5) == 0) return frame_errc::zero_stream_id;
    return frame_errc::ok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size == 0) return 0;
    const auto limits = pick_limits(data[0]);
    const std::span<const std::uint8_t> msg{data + 1, size - 1};

    wire::frame_decoder dec{msg, limits};
    wire::frame f;
    std::size_t pos = 0;  // where the next frame must start
    std::string reencoded;
    while (dec.next(f)) {
        FUZZ_REQUIRE(dec.offset() == pos);
        FUZZ_REQUIRE(model_error(msg, pos, limits) == frame_errc::ok);
        FUZZ_REQUIRE(f.protocol == msg[pos]);
        FUZZ_REQUIRE(f.payload.data() == msg.data() + pos + wire::frame_header_size);
        FUZZ_REQUIRE(f.payload.size() <= limits.max_frame_payload);
        FUZZ_REQUIRE(pos + wire::frame_header_size + f.payload.size() <= msg.size());
        const auto payload_len = static_cast<std::uint32_t>(f.payload.size());
        if (f.protocol == wire::control_protocol) {
            FUZZ_REQUIRE(f.payload.size() <= limits.max_control_payload);
            FUZZ_REQUIRE(f.stream == 0);
            FUZZ_REQUIRE(f.data.empty());
            wire::append_control_frame(
                reencoded, {reinterpret_cast<const char*>(f.payload.data()), f.payload.size()});
        } else {
            FUZZ_REQUIRE(f.payload.size() >= wire::stream_id_size);
            FUZZ_REQUIRE(f.stream != 0);
            FUZZ_REQUIRE(f.stream == wire::get_u32(f.payload.data()));
            FUZZ_REQUIRE(f.data.data() == f.payload.data() + wire::stream_id_size);
            FUZZ_REQUIRE(f.data.size() == f.payload.size() - wire::stream_id_size);
            std::uint8_t h[wire::data_header_size];
            wire::encode_data_header(h, f.protocol, f.stream,
                                     payload_len - static_cast<std::uint32_t>(wire::stream_id_size));
            reencoded.append(reinterpret_cast<const char*>(h), sizeof h);
            reencoded.append(reinterpret_cast<const char*>(f.data.data()), f.data.size());
        }
        pos += wire::frame_header_size + f.payload.size();
    }
    FUZZ_REQUIRE(reencoded.size() == pos);
    FUZZ_REQUIRE(reencoded == std::string_view(reinterpret_cast<const char*>(msg.data()), pos));

    // Stopped: either at the end of a non-empty message, or at the error the
    // model finds at the same place.
    FUZZ_REQUIRE(!dec.next(f));  // stays stopped
    if (dec.error() == frame_errc::ok) {
        FUZZ_REQUIRE(!msg.empty());
        FUZZ_REQUIRE(pos == msg.size());
    } else {
        FUZZ_REQUIRE(pos < msg.size() || msg.empty());
        FUZZ_REQUIRE(dec.offset() == pos);
        FUZZ_REQUIRE(model_error(msg, pos, limits) == dec.error());
        const std::string text = dec.error_text();
        const std::string head = "frame at offset " + std::to_string(pos) + " of a " +
                                 std::to_string(msg.size()) + "-byte message: " +
                                 std::string{wire::describe(dec.error())};
        FUZZ_REQUIRE(text.compare(0, head.size(), head) == 0);
    }
    return 0;
}
