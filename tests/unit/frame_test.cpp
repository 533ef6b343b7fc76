// wire/frame: the frame codec. Every frame_errc with its exact error text,
// boundary sizes, multi-frame messages and encode/decode round trips.
#include "helpers.hpp"
#include "wire/frame.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

using namespace muxgate;
using namespace muxgate::test;
using wire::frame_errc;

namespace {

constexpr wire::frame_limits limits{1000, 100};  // max_frame_payload, max_control_payload

struct decoded {
    std::vector<wire::frame> frames;
    frame_errc error = frame_errc::ok;
    std::size_t offset = 0;
    std::string text;
};

decoded decode_all(const bytes& msg, wire::frame_limits l = limits)
{
    wire::frame_decoder dec{msg, l};
    decoded out;
    wire::frame f;
    while (dec.next(f)) out.frames.push_back(f);
    out.error = dec.error();
    out.offset = dec.offset();
    out.text = dec.error_text();
    return out;
}

}  // namespace

TEST_SUITE("wire.frame")
{
TEST_CASE("describe names every frame_errc")
{
    CHECK(wire::describe(frame_errc::ok) == "ok");
    CHECK(wire::describe(frame_errc::empty_message) == "empty message");
    CHECK(wire::describe(frame_errc::truncated_header) == "truncated frame header");
    CHECK(wire::describe(frame_errc::truncated_payload) ==
          "payload_length runs past the end of the message");
    CHECK(wire::describe(frame_errc::payload_too_large) == "payload_length exceeds max_frame_payload");
    CHECK(wire::describe(frame_errc::control_too_large) ==
          "control payload exceeds max_control_message");
    CHECK(wire::describe(frame_errc::missing_stream_id) == "data frame shorter than its stream id");
    CHECK(wire::describe(frame_errc::zero_stream_id) == "data frame for stream 0");
    CHECK(wire::describe(static_cast<frame_errc>(99)) == "unknown frame error");
}

TEST_CASE("u32 helpers are big-endian and round-trip")
{
    std::uint8_t b[4];
    wire::put_u32(b, 0x01020304u);
    CHECK(bytes(b, b + 4) == bytes{1, 2, 3, 4});
    for (std::uint32_t v : {0u, 1u, 0x7fu, 0x80u, 0xffu, 0x100u, 0xdeadbeefu, 0xffffffffu}) {
        wire::put_u32(b, v);
        CHECK(wire::get_u32(b) == v);
    }
}

TEST_CASE("stream id parity: odd ids belong to the gateway")
{
    CHECK(wire::is_gateway_stream(1));
    CHECK(wire::is_gateway_stream(0xffffffffu));
    CHECK_FALSE(wire::is_gateway_stream(0));
    CHECK_FALSE(wire::is_gateway_stream(2));
}

TEST_CASE("encoders write the documented layout")
{
    std::uint8_t h[wire::data_header_size];
    wire::encode_data_header(h, 3, 0x01020304u, 10);
    CHECK(bytes(h, h + sizeof h) == bytes{3, 0, 0, 0, 14, 1, 2, 3, 4});

    wire::encode_frame_header(h, 0, 0xa0b0c0d0u);
    CHECK(bytes(h, h + 5) == bytes{0, 0xa0, 0xb0, 0xc0, 0xd0});

    std::string out = "x";
    wire::append_control_frame(out, R"({"type":"Fin","stream":1})");
    CHECK(bytes(out.begin(), out.end()) ==
          concat({bytes{'x'}, frame(0, R"({"type":"Fin","stream":1})")}));
    CHECK(wire::frame_header_size == 5);
    CHECK(wire::data_header_size == 9);
}

TEST_CASE("empty message")
{
    const auto d = decode_all({});
    CHECK(d.frames.empty());
    CHECK(d.error == frame_errc::empty_message);
    CHECK(d.offset == 0);
    CHECK(d.text == "frame at offset 0 of a 0-byte message: empty message");
}

TEST_CASE("truncated header")
{
    SUBCASE("alone")
    {
        for (std::size_t n = 1; n < 5; ++n) {
            CAPTURE(n);
            const auto d = decode_all(bytes(n, 0));
            CHECK(d.frames.empty());
            CHECK(d.error == frame_errc::truncated_header);
            CHECK(d.offset == 0);
            CHECK(d.text == "frame at offset 0 of a " + std::to_string(n) +
                                "-byte message: truncated frame header (" + std::to_string(n) +
                                " bytes left)");
        }
    }
    SUBCASE("after a good frame")
    {
        const auto d = decode_all(concat({data_frame(3, 7, "abc"), bytes{3, 0, 0}}));
        REQUIRE(d.frames.size() == 1);
        CHECK(d.error == frame_errc::truncated_header);
        CHECK(d.offset == 12);
        CHECK(d.text == "frame at offset 12 of a 15-byte message: truncated frame header (3 bytes left)");
    }
}

TEST_CASE("truncated payload")
{
    SUBCASE("one byte short")
    {
        bytes msg = frame(0, R"({"type":"Fin","stream":1})");
        msg.pop_back();
        const auto d = decode_all(msg);
        CHECK(d.frames.empty());
        CHECK(d.error == frame_errc::truncated_payload);
        CHECK(d.text == "frame at offset 0 of a 29-byte message: payload_length runs past the end "
                        "of the message (payload_length 25, 24 bytes left)");
    }
    SUBCASE("header only, in a later frame")
    {
        const auto d = decode_all(concat({data_frame(1, 1, ""), header(1, 10)}));
        REQUIRE(d.frames.size() == 1);
        CHECK(d.error == frame_errc::truncated_payload);
        CHECK(d.offset == 9);
        CHECK(d.text == "frame at offset 9 of a 14-byte message: payload_length runs past the end "
                        "of the message (payload_length 10, 0 bytes left)");
    }
    SUBCASE("payload_length 0xffffffff does not wrap when the limit allows it")
    {
        const auto d = decode_all(concat({header(1, 0xffffffffu), bytes{0, 0, 0, 1}}),
                                  {0xffffffffu, 0xffffffffu});
        CHECK(d.error == frame_errc::truncated_payload);
        CHECK(d.text == "frame at offset 0 of a 9-byte message: payload_length runs past the end "
                        "of the message (payload_length 4294967295, 4 bytes left)");
    }
}

TEST_CASE("max_frame_payload: exactly max passes, max + 1 fails before the payload is needed")
{
    SUBCASE("exactly max")
    {
        const std::string data(1000 - 4, 'd');
        const auto d = decode_all(data_frame(2, 5, data));
        REQUIRE(d.error == frame_errc::ok);
        REQUIRE(d.frames.size() == 1);
        CHECK(d.frames[0].payload.size() == 1000);
        CHECK(d.frames[0].data.size() == 996);
    }
    SUBCASE("max + 1, header only")
    {
        const auto d = decode_all(header(2, 1001));
        CHECK(d.error == frame_errc::payload_too_large);
        CHECK(d.text == "frame at offset 0 of a 5-byte message: payload_length exceeds "
                        "max_frame_payload (1001 > 1000)");
    }
    SUBCASE("control frames are held to max_frame_payload too")
    {
        const auto d = decode_all(header(0, 5000), {1000, 10000});
        CHECK(d.error == frame_errc::payload_too_large);
        CHECK(d.text == "frame at offset 0 of a 5-byte message: payload_length exceeds "
                        "max_frame_payload (5000 > 1000)");
    }
}

TEST_CASE("max_control_payload: exactly max passes, max + 1 fails; data frames are not held to it")
{
    SUBCASE("exactly max")
    {
        const auto d = decode_all(frame(0, std::string(100, ' ')));
        REQUIRE(d.error == frame_errc::ok);
        REQUIRE(d.frames.size() == 1);
        CHECK(d.frames[0].protocol == 0);
        CHECK(d.frames[0].payload.size() == 100);
        CHECK(d.frames[0].stream == 0);
        CHECK(d.frames[0].data.empty());
    }
    SUBCASE("max + 1")
    {
        const auto d = decode_all(concat({frame(0, "{}"), header(0, 101)}));
        REQUIRE(d.frames.size() == 1);
        CHECK(d.error == frame_errc::control_too_large);
        CHECK(d.offset == 7);
        CHECK(d.text == "frame at offset 7 of a 12-byte message: control payload exceeds "
                        "max_control_message (101 > 100)");
    }
    SUBCASE("a data frame above the control limit")
    {
        const auto d = decode_all(data_frame(9, 1, std::string(500, 'x')));
        CHECK(d.error == frame_errc::ok);
        REQUIRE(d.frames.size() == 1);
        CHECK(d.frames[0].data.size() == 500);
    }
}

TEST_CASE("missing stream id: a data payload of 0..3 bytes")
{
    for (std::uint32_t n = 0; n < 4; ++n) {
        CAPTURE(n);
        const auto d = decode_all(frame(1, std::string(n, '\x01')));
        CHECK(d.frames.empty());
        CHECK(d.error == frame_errc::missing_stream_id);
        CHECK(d.text == "frame at offset 0 of a " + std::to_string(5 + n) +
                            "-byte message: data frame shorter than its stream id");
    }
}

TEST_CASE("zero stream id")
{
    const auto d = decode_all(concat({frame(0, "{}"), data_frame(4, 0, "data")}));
    REQUIRE(d.frames.size() == 1);
    CHECK(d.error == frame_errc::zero_stream_id);
    CHECK(d.offset == 7);
    CHECK(d.text == "frame at offset 7 of a 20-byte message: data frame for stream 0");
}

TEST_CASE("a multi-frame message yields every frame in order")
{
    const bytes msg = concat({frame(0, R"({"type":"Heartbeat","seq":1})"), data_frame(3, 1, "hello"),
                              data_frame(255, 0xffffffffu, ""), data_frame(3, 5, "x")});
    wire::frame_decoder dec{msg, limits};
    wire::frame f;

    REQUIRE(dec.next(f));
    CHECK(f.protocol == 0);
    CHECK(text(f.payload) == R"({"type":"Heartbeat","seq":1})");
    CHECK(f.stream == 0);
    CHECK(f.data.empty());
    CHECK(dec.offset() == 0);

    REQUIRE(dec.next(f));
    CHECK(f.protocol == 3);
    CHECK(f.stream == 1);
    CHECK(text(f.data) == "hello");
    CHECK(f.payload.size() == 9);
    CHECK(f.data.data() == f.payload.data() + 4);
    CHECK(dec.offset() == 33);

    REQUIRE(dec.next(f));
    CHECK(f.protocol == 255);
    CHECK(f.stream == 0xffffffffu);
    CHECK(f.data.empty());

    REQUIRE(dec.next(f));
    CHECK(f.stream == 5);
    CHECK(text(f.data) == "x");

    CHECK_FALSE(dec.next(f));
    CHECK(dec.error() == frame_errc::ok);
    CHECK_FALSE(dec.next(f));  // stays at the end
}

TEST_CASE("a control frame's stream fields are reset after a data frame")
{
    const bytes msg = concat({data_frame(3, 9, "abc"), frame(0, "{}")});
    wire::frame_decoder dec{msg, limits};
    wire::frame f;
    REQUIRE(dec.next(f));
    CHECK(f.stream == 9);
    REQUIRE(dec.next(f));
    CHECK(f.protocol == 0);
    CHECK(f.stream == 0);
    CHECK(f.data.empty());
}

TEST_CASE("after an error the decoder stays stopped")
{
    const bytes msg = concat({data_frame(1, 0, ""), data_frame(1, 1, "ok")});
    wire::frame_decoder dec{msg, limits};
    wire::frame f;
    CHECK_FALSE(dec.next(f));
    CHECK(dec.error() == frame_errc::zero_stream_id);
    CHECK_FALSE(dec.next(f));
    CHECK(dec.error() == frame_errc::zero_stream_id);
    CHECK(dec.offset() == 0);
}

TEST_CASE("encode / decode round trip over random frames")
{
    std::mt19937 rng{12345};
    for (int round = 0; round < 200; ++round) {
        CAPTURE(round);
        struct want {
            std::uint8_t protocol;
            std::uint32_t stream;
            std::string data;
        };
        std::vector<want> wants;
        std::string msg;
        const int count = 1 + static_cast<int>(rng() % 6);
        for (int i = 0; i < count; ++i) {
            want w;
            w.protocol = static_cast<std::uint8_t>(rng() % 256);
            w.data.resize(rng() % 90);
            for (auto& c : w.data) c = static_cast<char>(rng());
            if (w.protocol == 0) {
                w.stream = 0;
                wire::append_control_frame(msg, w.data);
            } else {
                w.stream = 1 + rng() % 0xfffffffeu;
                std::uint8_t h[wire::data_header_size];
                wire::encode_data_header(h, w.protocol, w.stream,
                                         static_cast<std::uint32_t>(w.data.size()));
                msg.append(reinterpret_cast<const char*>(h), sizeof h);
                msg += w.data;
            }
            wants.push_back(std::move(w));
        }
        const bytes b(msg.begin(), msg.end());
        const auto d = decode_all(b);
        REQUIRE(d.error == frame_errc::ok);
        REQUIRE(d.frames.size() == wants.size());
        for (std::size_t i = 0; i < wants.size(); ++i) {
            CHECK(d.frames[i].protocol == wants[i].protocol);
            CHECK(d.frames[i].stream == wants[i].stream);
            CHECK(text(wants[i].protocol == 0 ? d.frames[i].payload : d.frames[i].data) ==
                  wants[i].data);
        }
    }
}
}
