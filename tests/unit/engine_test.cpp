// mux/engine: the sans-I/O multiplexer. Each test builds an engine on one
// side, feeds it whole WebSocket messages built by hand (helpers.hpp) and
// checks exactly what the handler was told and what the engine wants sent.
// The rules are those of docs/protocol.md sections 4 and 5.
#include "helpers.hpp"
#include "mux/engine.hpp"
#include "print.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace muxgate;
using namespace muxgate::test;
namespace msg = wire::msg;
using mux::close_code;
using mux::end_reason;
using mux::role;

namespace {

// Records every callback as one line of text, and every message the engine
// wants sent, in order.
struct recorder final : mux::handler {
    std::vector<std::string> events;
    std::vector<wire::control_message> sent;

    void on_session_message(wire::control_message&& m) override
    {
        events.push_back("session " + std::string{wire::type_name(m)});
        session.push_back(std::move(m));
    }
    void on_open(msg::open&& m) override
    {
        events.push_back("open " + std::to_string(m.stream) + " " + m.tunnel + " " +
                         std::to_string(m.protocol_id));
    }
    void on_opened(std::uint32_t s) override { events.push_back("opened " + std::to_string(s)); }
    void on_data(std::uint32_t s, std::span<const std::uint8_t> d) override
    {
        events.push_back("data " + std::to_string(s) + " " + text(d));
    }
    void on_fin(std::uint32_t s) override { events.push_back("fin " + std::to_string(s)); }
    void on_reset(std::uint32_t s, end_reason why, std::string_view code,
                  std::string_view message) override
    {
        const char* w = why == end_reason::reset_by_peer ? "reset_by_peer"
                        : why == end_reason::refused     ? "refused"
                                                         : "stream_error";
        events.push_back("reset " + std::to_string(s) + " " + w + " " + std::string{code} + ": " +
                         std::string{message});
    }
    void on_credit(std::uint32_t s) override { events.push_back("credit " + std::to_string(s)); }
    void send_control(wire::control_message&& m) override
    {
        events.push_back("send " + wire::serialize(m));
        sent.push_back(std::move(m));
    }
    void on_ignored(std::string_view what) override
    {
        events.push_back("ignored " + std::string{what});
    }

    std::vector<wire::control_message> session;

    // The events since the last call, then forgets them.
    std::vector<std::string> take()
    {
        auto out = std::move(events);
        events.clear();
        return out;
    }
};

using lines = std::vector<std::string>;

constexpr std::uint32_t peer_window = 1000;
constexpr std::uint32_t peer_max_frame = 16384;

mux::limits small_limits()
{
    mux::limits l;
    l.max_frame_payload = 4096;
    l.max_control = 1024;
    l.max_streams = 8;
    l.max_pending_opens = 4;
    l.recv_window = 100;
    return l;
}

// An engine on one side, authenticated (unless told otherwise).
struct side {
    recorder h;
    mux::engine e;

    explicit side(role r, mux::limits l = small_limits(), bool establish = true) : e(r, l, h)
    {
        if (establish) e.establish(peer_window, peer_max_frame);
    }

    std::optional<mux::fatal> feed(const bytes& m) { return e.on_message(m); }
    std::optional<mux::fatal> feed(const wire::control_message& m) { return e.on_message(control_frame(m)); }

    // Feeds and requires no session error.
    lines ok(const bytes& m)
    {
        auto f = feed(m);
        REQUIRE_MESSAGE(!f, (f ? f->reason : std::string{}));
        return h.take();
    }
    lines ok(const wire::control_message& m) { return ok(control_frame(m)); }

    // Feeds and requires a session error with this code and reason.
    void fails(const bytes& m, close_code code, const std::string& reason)
    {
        auto f = feed(m);
        REQUIRE(f);
        CHECK(f->code == code);
        CHECK(f->reason == reason);
    }
    void fails(const wire::control_message& m, close_code code, const std::string& reason)
    {
        fails(control_frame(m), code, reason);
    }
};

// A gateway with stream 1 (protocol 3) opened and confirmed by the agent.
struct gateway_with_stream : side {
    gateway_with_stream() : side(role::gateway)
    {
        REQUIRE(e.open(3) == 1);
        REQUIRE(ok(msg::opened{1}) == lines{"opened 1"});
    }
};

// An agent that got Open for stream 1 (protocol 3) and confirmed it.
struct agent_with_stream : side {
    agent_with_stream() : side(role::agent)
    {
        REQUIRE(ok(msg::open{1, "web", 3, "", "{}"}) == lines{"open 1 web 3"});
        REQUIRE(e.confirm(1));
        REQUIRE(h.take() == lines{R"(send {"type":"Opened","stream":1})"});
    }
};

std::string reset_line(std::uint32_t id, const char* code, const std::string& message)
{
    return "send " + wire::serialize(msg::reset{id, code, message});
}

}  // namespace

TEST_SUITE("mux.engine")
{
// ------------------------------------------------------------------ phases

TEST_CASE("gateway before authentication: only Auth passes")
{
    side g{role::gateway, small_limits(), false};
    CHECK_FALSE(g.e.established());
    CHECK(g.ok(msg::auth{"t", "a", "", 1, 1, 1, 1}) == lines{"session Auth"});
    CHECK(g.e.stream_count() == 0);

    const std::vector<wire::control_message> others{
        msg::heartbeat_ack{1}, msg::register_tunnel{1, "t", 3, 0, "{}"}, msg::unregister{"t"},
        msg::opened{1},        msg::refused{1, "c", ""},                  msg::fin{1},
        msg::reset{1, "c", ""}, msg::window{1, 1},                        msg::goodbye{"", 0},
        msg::error{"c", ""},   msg::auth_ok{"s", "", 1, 1, 1, 1, 1, 0},   msg::heartbeat{1},
        msg::open{1, "t", 3, "", "{}"}};
    for (const auto& m : others) {
        CAPTURE(wire::type_name(m));
        side fresh{role::gateway, small_limits(), false};
        fresh.fails(m, close_code::policy,
                    std::string{wire::type_name(m)} + " before authentication (expected Auth)");
        CHECK(fresh.h.events.empty());
    }
}

TEST_CASE("agent before authentication: AuthOk, AuthError, Error and Goodbye pass")
{
    side a{role::agent, small_limits(), false};
    CHECK(a.ok(msg::auth_error{"bad_token", "", 0}) == lines{"session AuthError"});
    CHECK(a.ok(msg::error{"policy", ""}) == lines{"session Error"});
    CHECK(a.ok(msg::goodbye{"bye", 0}) == lines{"session Goodbye"});
    CHECK(a.ok(msg::auth_ok{"s", "", 1, 1, 1, 1, 1, 0}) == lines{"session AuthOk"});

    const std::vector<wire::control_message> others{
        msg::open{1, "t", 3, "", "{}"}, msg::heartbeat{1}, msg::registered{1, "t", ""},
        msg::register_error{1, "t", "c", ""}, msg::fin{1}, msg::window{1, 1},
        msg::reset{1, "c", ""}, msg::auth{"t", "a", "", 1, 1, 1, 1}};
    for (const auto& m : others) {
        CAPTURE(wire::type_name(m));
        side fresh{role::agent, small_limits(), false};
        // A gateway that speaks before AuthOk is broken: protocol error.
        fresh.fails(m, close_code::protocol_error,
                    std::string{wire::type_name(m)} + " before authentication (expected AuthOk)");
    }
}

TEST_CASE("before authentication: data, unknown types and bad messages are session errors")
{
    for (role r : {role::gateway, role::agent}) {
        CAPTURE(static_cast<int>(r));
        side s{r, small_limits(), false};
        s.fails(data_frame(3, 1, "x"),
                r == role::gateway ? close_code::policy : close_code::protocol_error,
                "stream data before authentication");
        s.fails(control_frame(R"({"type":"Hello"})"), close_code::protocol_error,
                R"(unknown control message type "Hello")");
        s.fails(control_frame(R"({"type":"Auth"})"), close_code::protocol_error,
                R"(Auth: field "token" is missing)");
        const std::string not_json = wire::parse_control("{").error;
        REQUIRE(not_json.rfind("control message is not valid JSON: ", 0) == 0);
        s.fails(control_frame("{"), close_code::protocol_error, not_json);
        CHECK(s.h.events.empty());
    }
}

TEST_CASE("establish records the peer's announced limits")
{
    side g{role::gateway, small_limits(), false};
    g.e.establish(5000, 70000);
    CHECK(g.e.established());
    CHECK(g.e.peer_window() == 5000);
    CHECK(g.e.peer_max_frame() == 70000);
    CHECK(g.e.side() == role::gateway);
    CHECK(g.e.local_limits().recv_window == 100);
}

// ------------------------------------------------------------------ roles

TEST_CASE("after authentication each side accepts only what the other side sends")
{
    SUBCASE("gateway")
    {
        side g{role::gateway};
        CHECK(g.ok(msg::heartbeat_ack{4}) == lines{"session HeartbeatAck"});
        CHECK(g.ok(msg::register_tunnel{1, "t", 3, 0, "{}"}) == lines{"session Register"});
        CHECK(g.ok(msg::unregister{"t"}) == lines{"session Unregister"});
        CHECK(g.ok(msg::error{"c", "m"}) == lines{"session Error"});
        CHECK(g.ok(msg::goodbye{"", 0}) == lines{"session Goodbye"});
        REQUIRE(g.h.session.size() == 5);
        CHECK(std::get<msg::heartbeat_ack>(g.h.session[0]).seq == 4);

        const std::vector<wire::control_message> wrong{
            msg::open{1, "t", 3, "", "{}"}, msg::heartbeat{1}, msg::registered{1, "t", ""},
            msg::register_error{1, "t", "c", ""}, msg::auth{"t", "a", "", 1, 1, 1, 1},
            msg::auth_ok{"s", "", 1, 1, 1, 1, 1, 0}, msg::auth_error{"c", "", 0}};
        for (const auto& m : wrong) {
            CAPTURE(wire::type_name(m));
            side fresh{role::gateway};
            fresh.fails(m, close_code::protocol_error,
                        "unexpected " + std::string{wire::type_name(m)} + " from the agent");
        }
    }
    SUBCASE("agent")
    {
        side a{role::agent};
        CHECK(a.ok(msg::heartbeat{4}) == lines{"session Heartbeat"});
        CHECK(a.ok(msg::registered{1, "t", "x"}) == lines{"session Registered"});
        CHECK(a.ok(msg::register_error{1, "t", "c", ""}) == lines{"session RegisterError"});
        CHECK(a.ok(msg::error{"c", "m"}) == lines{"session Error"});
        CHECK(a.ok(msg::goodbye{"", 0}) == lines{"session Goodbye"});

        const std::vector<wire::control_message> wrong{
            msg::heartbeat_ack{1}, msg::register_tunnel{1, "t", 3, 0, "{}"}, msg::unregister{"t"},
            msg::opened{1},        msg::refused{1, "c", ""},                  msg::auth{"t", "a", "", 1, 1, 1, 1},
            msg::auth_ok{"s", "", 1, 1, 1, 1, 1, 0}, msg::auth_error{"c", "", 0}};
        for (const auto& m : wrong) {
            CAPTURE(wire::type_name(m));
            side fresh{role::agent};
            fresh.fails(m, close_code::protocol_error,
                        "unexpected " + std::string{wire::type_name(m)} + " from the gateway");
        }
    }
}

TEST_CASE("after authentication an unknown type is ignored, a malformed known type is not")
{
    side g{role::gateway};
    CHECK(g.ok(control_frame(R"({"type":"Priority","stream":1,"weight":4})")) ==
          lines{R"(ignored unknown control message type "Priority")"});
    g.fails(control_frame(R"({"type":"Fin","stream":"1"})"), close_code::protocol_error,
            R"(Fin: field "stream" must be a non-negative integer)");
}

// ------------------------------------------------------------------ frames

TEST_CASE("frame errors close the connection with the right code")
{
    side g{role::gateway};  // max_frame_payload 4096, max_control 1024
    g.fails(bytes{}, close_code::protocol_error, "frame at offset 0 of a 0-byte message: empty message");
    g.fails(bytes{3, 0, 0}, close_code::protocol_error,
            "frame at offset 0 of a 3-byte message: truncated frame header (3 bytes left)");
    g.fails(header(3, 4097), close_code::too_big,
            "frame at offset 0 of a 5-byte message: payload_length exceeds max_frame_payload "
            "(4097 > 4096)");
    g.fails(header(0, 1025), close_code::too_big,
            "frame at offset 0 of a 5-byte message: control payload exceeds max_control_message "
            "(1025 > 1024)");
    g.fails(frame(3, "ab"), close_code::protocol_error,
            "frame at offset 0 of a 7-byte message: data frame shorter than its stream id");
    g.fails(data_frame(3, 0, "x"), close_code::protocol_error,
            "frame at offset 0 of a 10-byte message: data frame for stream 0");
}

TEST_CASE("one message, many frames: handled in order; a session error stops the rest")
{
    gateway_with_stream g;
    CHECK(g.ok(concat({data_frame(3, 1, "a"), control_frame(msg::window{1, 5}), data_frame(3, 1, "b")})) ==
          lines{"data 1 a", "data 1 b"});
    g.fails(concat({data_frame(3, 1, "c"), control_frame(msg::heartbeat{1}), data_frame(3, 1, "d")}),
            close_code::protocol_error, "unexpected Heartbeat from the agent");
    CHECK(g.h.take() == lines{"data 1 c"});
    // A frame error after good frames: the good ones were handled.
    g.fails(concat({data_frame(3, 1, "e"), bytes{1, 2}}), close_code::protocol_error,
            "frame at offset 10 of a 12-byte message: truncated frame header (2 bytes left)");
    CHECK(g.h.take() == lines{"data 1 e"});
}

// ------------------------------------------------------------------ opening

TEST_CASE("gateway: ids are odd and increasing, never reused")
{
    side g{role::gateway};
    CHECK(g.e.open(3) == 1);
    CHECK(g.e.open(4) == 3);
    CHECK(g.e.open(255) == 5);
    CHECK(g.e.protocol_of(1) == 3);
    CHECK(g.e.protocol_of(3) == 4);
    CHECK(g.e.protocol_of(5) == 255);
    CHECK(g.e.protocol_of(7) == 0);
    CHECK(g.e.stream_count() == 3);
    CHECK(g.e.pending_opens() == 3);
    g.e.reset(3, "closed", "");
    CHECK(g.e.open(3) == 7);
    CHECK_FALSE(g.e.ids_exhausted());
    CHECK(g.h.take() == lines{reset_line(3, "closed", "")});
}

TEST_CASE("gateway: open() refuses with a reason")
{
    SUBCASE("not established")
    {
        side g{role::gateway, small_limits(), false};
        CHECK(g.e.open(3) == 0);
        CHECK(g.e.open_refusal() == "session not established");
    }
    SUBCASE("the agent cannot open")
    {
        side a{role::agent};
        CHECK(a.e.open(3) == 0);
        CHECK(a.e.open_refusal() == "session not established");
    }
    SUBCASE("max_pending_opens")
    {
        side g{role::gateway};  // max_pending_opens 4
        for (std::uint32_t i = 0; i < 4; ++i) CHECK(g.e.open(3) == 2 * i + 1);
        CHECK(g.e.open(3) == 0);
        CHECK(g.e.open_refusal() == "max_pending_opens (4) reached");
        // An answer frees a slot.
        g.ok(msg::opened{1});
        CHECK(g.e.pending_opens() == 3);
        CHECK(g.e.open(3) == 9);
    }
    SUBCASE("max_streams")
    {
        auto l = small_limits();
        l.max_streams = 3;
        side g{role::gateway, l};
        for (std::uint32_t i = 0; i < 3; ++i) {
            const auto id = g.e.open(3);
            REQUIRE(id == 2 * i + 1);
            g.ok(msg::opened{id});
        }
        CHECK(g.e.open(3) == 0);
        CHECK(g.e.open_refusal() == "max_streams_per_agent (3) reached");
        g.ok(msg::reset{3, "reset", ""});
        CHECK(g.e.open(3) == 7);
    }
}

TEST_CASE("gateway: Opened confirms, a second Opened resets the stream")
{
    side g{role::gateway};
    REQUIRE(g.e.open(3) == 1);
    CHECK(g.e.pending_opens() == 1);
    CHECK(g.e.can_send(1));  // the gateway may send before Opened
    CHECK(g.e.send_credit(1) == peer_window);
    CHECK(g.ok(msg::opened{1}) == lines{"opened 1"});
    CHECK(g.e.pending_opens() == 0);
    CHECK(g.ok(msg::opened{1}) == lines{reset_line(1, "protocol_error", "second Opened"),
                                        "reset 1 stream_error protocol_error: second Opened"});
    CHECK_FALSE(g.e.has(1));
    CHECK(g.e.pending_opens() == 0);
}

TEST_CASE("gateway: Refused ends an unanswered stream, and is wrong after Opened")
{
    side g{role::gateway};
    REQUIRE(g.e.open(3) == 1);
    REQUIRE(g.e.open(3) == 3);
    CHECK(g.ok(msg::refused{1, "connect_failed", "connection refused"}) ==
          lines{"reset 1 refused connect_failed: connection refused"});
    CHECK_FALSE(g.e.has(1));
    CHECK(g.e.pending_opens() == 1);
    CHECK(g.h.sent.empty());  // nothing answers a Refused

    g.ok(msg::opened{3});
    CHECK(g.ok(msg::refused{3, "limit", ""}) ==
          lines{reset_line(3, "protocol_error", "Refused after Opened"),
                "reset 3 stream_error protocol_error: Refused after Opened"});
}

TEST_CASE("agent: Open ids must be odd and increasing")
{
    side a{role::agent};
    CHECK(a.ok(msg::open{1, "web", 3, "1.2.3.4:5", R"({"k":1})"}) == lines{"open 1 web 3"});
    CHECK(a.e.pending_opens() == 1);
    CHECK(a.e.protocol_of(1) == 3);
    CHECK(a.e.send_credit(1) == peer_window);
    CHECK_FALSE(a.e.can_send(1));  // not before Opened
    CHECK(a.ok(msg::open{7, "ssh", 1, "", "{}"}) == lines{"open 7 ssh 1"});  // gaps are fine

    a.fails(msg::open{7, "web", 3, "", "{}"}, close_code::protocol_error,
            "Open for stream 7: ids must be odd and increasing (highest so far 7)");
    side b{role::agent};
    b.ok(msg::open{5, "web", 3, "", "{}"});
    b.fails(msg::open{3, "web", 3, "", "{}"}, close_code::protocol_error,
            "Open for stream 3: ids must be odd and increasing (highest so far 5)");
    side c{role::agent};
    c.fails(msg::open{2, "web", 3, "", "{}"}, close_code::protocol_error,
            "Open for stream 2: ids must be odd and increasing (highest so far 0)");
    side d{role::agent};
    d.fails(control_frame(R"({"type":"Open","stream":0,"tunnel":"t","protocol_id":3})"),
            close_code::protocol_error, R"(Open: field "stream" must be in 1..4294967295 (got 0))");
}

TEST_CASE("agent: confirm and refuse")
{
    side a{role::agent};
    a.ok(msg::open{1, "web", 3, "", "{}"});
    a.ok(msg::open{3, "web", 3, "", "{}"});
    a.ok(msg::open{5, "web", 3, "", "{}"});
    CHECK(a.e.pending_opens() == 3);

    CHECK(a.e.confirm(1));
    CHECK(a.h.take() == lines{R"(send {"type":"Opened","stream":1})"});
    CHECK(a.e.can_send(1));
    CHECK(a.e.pending_opens() == 2);
    CHECK_FALSE(a.e.confirm(1));   // twice
    CHECK_FALSE(a.e.confirm(99));  // unknown
    CHECK(a.h.take().empty());

    a.e.refuse(3, "connect_failed", "no route");
    CHECK(a.h.take() ==
          lines{R"(send {"type":"Refused","stream":3,"code":"connect_failed","message":"no route"})"});
    CHECK_FALSE(a.e.has(3));
    CHECK(a.e.pending_opens() == 1);

    // Refusing a confirmed stream resets it instead.
    a.e.refuse(1, "error", "plugin failed");
    CHECK(a.h.take() == lines{reset_line(1, "error", "plugin failed")});
    CHECK_FALSE(a.e.has(1));

    a.e.refuse(99, "x", "");  // unknown: nothing
    CHECK(a.h.take().empty());
    CHECK(a.e.pending_opens() == 1);
}

TEST_CASE("agent at max_streams answers Refused{limit}; the id still counts as seen")
{
    auto l = small_limits();
    l.max_streams = 2;
    side a{role::agent, l};
    a.ok(msg::open{1, "t", 3, "", "{}"});
    a.ok(msg::open{3, "t", 3, "", "{}"});
    CHECK(a.ok(msg::open{5, "t", 3, "", "{}"}) ==
          lines{R"x(send {"type":"Refused","stream":5,"code":"limit","message":"agent at max_streams (2)"})x"});
    CHECK_FALSE(a.e.has(5));
    CHECK(a.e.stream_count() == 2);
    CHECK(a.e.pending_opens() == 2);
    // Data the gateway sent right after its Open is late, not wrong.
    CHECK(a.ok(data_frame(3, 5, "early")).empty());
    // And ids still have to grow.
    a.fails(msg::open{5, "t", 3, "", "{}"}, close_code::protocol_error,
            "Open for stream 5: ids must be odd and increasing (highest so far 5)");
}

// ------------------------------------------------------------------ data

TEST_CASE("gateway: data before Opened resets the stream")
{
    side g{role::gateway};
    REQUIRE(g.e.open(3) == 1);
    CHECK(g.ok(data_frame(3, 1, "early")) ==
          lines{reset_line(1, "protocol_error", "data before Opened"),
                "reset 1 stream_error protocol_error: data before Opened"});
    CHECK_FALSE(g.e.has(1));
    CHECK(g.e.pending_opens() == 0);
}

TEST_CASE("agent: data before its own Opened is delivered (the gateway may send at once)")
{
    side a{role::agent};
    a.ok(msg::open{1, "t", 3, "", "{}"});
    CHECK(a.ok(data_frame(3, 1, "hello")) == lines{"data 1 hello"});
}

TEST_CASE("data within credit is delivered; one byte beyond resets with flow_control")
{
    SUBCASE("exactly the window")
    {
        gateway_with_stream g;  // recv_window 100
        CHECK(g.ok(data_frame(3, 1, std::string(60, 'a'))).size() == 1);
        CHECK(g.ok(data_frame(3, 1, std::string(40, 'b'))).size() == 1);
        CHECK(g.ok(data_frame(3, 1, "x")) ==
              lines{reset_line(1, "flow_control", "1 bytes sent with 0 bytes of credit"),
                    "reset 1 stream_error flow_control: 1 bytes sent with 0 bytes of credit"});
        CHECK_FALSE(g.e.has(1));
    }
    SUBCASE("one frame larger than the window")
    {
        agent_with_stream a;
        CHECK(a.ok(data_frame(3, 1, std::string(101, 'a'))) ==
              lines{reset_line(1, "flow_control", "101 bytes sent with 100 bytes of credit"),
                    "reset 1 stream_error flow_control: 101 bytes sent with 100 bytes of credit"});
    }
}

TEST_CASE("an empty data frame has no effect")
{
    gateway_with_stream g;
    CHECK(g.ok(data_frame(3, 1, "")).empty());
    CHECK(g.ok(data_frame(3, 1, std::string(100, 'a'))).size() == 1);  // the full window is left
    CHECK(g.ok(data_frame(3, 1, "")).empty());                          // even with no credit
    CHECK(g.e.has(1));
}

TEST_CASE("data with another protocol_id resets with protocol_mismatch")
{
    gateway_with_stream g;
    CHECK(g.ok(data_frame(4, 1, "x")) ==
          lines{reset_line(1, "protocol_mismatch",
                           "data frame with protocol_id 4 on a stream of protocol_id 3"),
                "reset 1 stream_error protocol_mismatch: data frame with protocol_id 4 on a "
                "stream of protocol_id 3"});
}

// ------------------------------------------------------------------ credit

TEST_CASE("consumed() returns credit in quarter-window steps")
{
    agent_with_stream a;  // recv_window 100: threshold 25
    a.ok(data_frame(3, 1, std::string(90, 'a')));
    a.e.consumed(1, 10);
    a.e.consumed(1, 14);
    CHECK(a.h.take().empty());  // 24 < 25
    a.e.consumed(1, 1);
    CHECK(a.h.take() == lines{R"(send {"type":"Window","stream":1,"credit":25})"});
    a.e.consumed(1, 40);
    CHECK(a.h.take() == lines{R"(send {"type":"Window","stream":1,"credit":40})"});
    a.e.consumed(1, 15);
    CHECK(a.h.take().empty());
    // Credit now: 100 - 90 + 25 + 40 = 75; 15 more are consumed but not returned.
    CHECK(a.ok(data_frame(3, 1, std::string(75, 'b'))).size() == 1);
    CHECK(a.ok(data_frame(3, 1, "c")) ==
          lines{reset_line(1, "flow_control", "1 bytes sent with 0 bytes of credit"),
                "reset 1 stream_error flow_control: 1 bytes sent with 0 bytes of credit"});
    // Unknown stream: nothing.
    a.e.consumed(1, 100);
    CHECK(a.h.take().empty());
}

TEST_CASE("consumed() with a window below 4 bytes returns every byte")
{
    auto l = small_limits();
    l.recv_window = 3;
    side g{role::gateway, l};
    REQUIRE(g.e.open(3) == 1);
    g.ok(msg::opened{1});
    g.ok(data_frame(3, 1, "abc"));
    g.e.consumed(1, 1);
    CHECK(g.h.take() == lines{R"(send {"type":"Window","stream":1,"credit":1})"});
}

TEST_CASE("autotuning: a starved sender and a reader that keeps up double the window")
{
    agent_with_stream a;  // recv_window 100: threshold 25
    a.ok(data_frame(3, 1, std::string(90, 'a')));  // the peer holds 10 < 25
    a.e.consumed(1, 25, true);
    CHECK(a.h.take() == lines{R"(send {"type":"Window","stream":1,"credit":125})"});
    CHECK(a.e.recv_window(1) == 200);
    CHECK(a.e.window_growth() == 100);
    // The peer may now send 10 + 125 = 135 bytes, and not one more.
    CHECK(a.ok(data_frame(3, 1, std::string(135, 'b'))).size() == 1);
    CHECK(a.ok(data_frame(3, 1, "c")) ==
          lines{reset_line(1, "flow_control", "1 bytes sent with 0 bytes of credit"),
                "reset 1 stream_error flow_control: 1 bytes sent with 0 bytes of credit"});
    // The stream is gone: its growth is given back to the budget.
    CHECK(a.e.window_growth() == 0);
    CHECK(a.e.recv_window(1) == 0);
}

TEST_CASE("autotuning: no growth while the reader lags or the peer still has credit")
{
    SUBCASE("reader behind")
    {
        agent_with_stream a;
        a.ok(data_frame(3, 1, std::string(90, 'a')));
        a.e.consumed(1, 25, false);
        CHECK(a.h.take() == lines{R"(send {"type":"Window","stream":1,"credit":25})"});
        CHECK(a.e.recv_window(1) == 100);
    }
    SUBCASE("sender not starved")
    {
        agent_with_stream a;
        a.ok(data_frame(3, 1, std::string(30, 'a')));  // the peer still holds 70
        a.e.consumed(1, 25, true);
        CHECK(a.h.take() == lines{R"(send {"type":"Window","stream":1,"credit":25})"});
        CHECK(a.e.recv_window(1) == 100);
        CHECK(a.e.window_growth() == 0);
    }
}

TEST_CASE("autotuning: the window stops at max_recv_window and the growth at the budget")
{
    auto l = small_limits();
    l.max_recv_window = 150;
    l.window_growth_budget = 70;
    side g{role::gateway, l};
    REQUIRE(g.e.open(3) == 1);
    REQUIRE(g.e.open(3) == 3);
    g.ok(msg::opened{1});
    g.ok(msg::opened{3});
    g.ok(data_frame(3, 1, std::string(100, 'a')));
    g.e.consumed(1, 100, true);  // doubling would give 200; the ceiling is 150
    CHECK(g.h.take() == lines{R"(send {"type":"Window","stream":1,"credit":150})"});
    CHECK(g.e.recv_window(1) == 150);
    g.ok(data_frame(3, 1, std::string(150, 'a')));
    g.e.consumed(1, 150, true);  // at the ceiling: plain credit
    CHECK(g.h.take() == lines{R"(send {"type":"Window","stream":1,"credit":150})"});
    g.ok(data_frame(3, 3, std::string(100, 'b')));
    g.e.consumed(3, 100, true);  // 50 of the budget used: 20 left
    CHECK(g.h.take() == lines{R"(send {"type":"Window","stream":3,"credit":120})"});
    CHECK(g.e.recv_window(3) == 120);
    CHECK(g.e.window_growth() == 70);
}

TEST_CASE("Blocked: sent once per credit drought, only when out of credit")
{
    gateway_with_stream g;
    g.e.blocked(1);  // credit left: nothing to say
    CHECK(g.h.take().empty());
    g.e.consume_credit(1, peer_window);
    g.e.blocked(1);
    CHECK(g.h.take() == lines{R"(send {"type":"Blocked","stream":1})"});
    g.e.blocked(1);  // already said
    CHECK(g.h.take().empty());
    CHECK(g.ok(msg::window{1, 10}) == lines{"credit 1"});
    g.e.consume_credit(1, 10);
    g.e.blocked(1);  // a new drought after a Window
    CHECK(g.h.take() == lines{R"(send {"type":"Blocked","stream":1})"});
    g.e.blocked(7);  // unknown stream: nothing
    CHECK(g.h.take().empty());
}

TEST_CASE("Blocked from the peer lets the window grow at the next credit return")
{
    agent_with_stream a;  // recv_window 100
    a.ok(data_frame(3, 1, std::string(30, 'a')));  // the peer still holds 70 as we see it
    CHECK(a.ok(msg::blocked{1}).empty());           // but it says it has none
    a.e.consumed(1, 30, true);
    CHECK(a.h.take() == lines{R"(send {"type":"Window","stream":1,"credit":130})"});
    CHECK(a.e.recv_window(1) == 200);
    // Blocked alone is not enough when the reader lags.
    a.ok(msg::blocked{1});
    a.ok(data_frame(3, 1, std::string(60, 'b')));
    a.e.consumed(1, 60, false);
    CHECK(a.h.take() == lines{R"(send {"type":"Window","stream":1,"credit":60})"});
    CHECK(a.e.recv_window(1) == 200);
}

TEST_CASE("Blocked for a stream never opened is fatal; for a closed one it is ignored")
{
    agent_with_stream a;
    a.e.reset(1, "cancel", "");
    a.h.take();
    CHECK(a.ok(msg::blocked{1}).empty());
    a.fails(msg::blocked{9}, close_code::protocol_error, "Blocked for stream 9 that was never opened");
}

TEST_CASE("autotuning off: max_recv_window at recv_window")
{
    auto l = small_limits();
    l.max_recv_window = l.recv_window;
    side g{role::gateway, l};
    REQUIRE(g.e.open(3) == 1);
    g.ok(msg::opened{1});
    g.ok(data_frame(3, 1, std::string(100, 'a')));
    g.e.consumed(1, 100, true);
    CHECK(g.h.take() == lines{R"(send {"type":"Window","stream":1,"credit":100})"});
    CHECK(g.e.recv_window(1) == 100);
}

TEST_CASE("no credit is returned once the peer has finished sending")
{
    agent_with_stream a;
    a.ok(data_frame(3, 1, std::string(50, 'a')));
    CHECK(a.ok(msg::fin{1}) == lines{"fin 1"});
    a.e.consumed(1, 50);
    CHECK(a.h.take().empty());
}

TEST_CASE("send credit: starts at the peer's window, consume_credit takes, Window gives")
{
    gateway_with_stream g;
    CHECK(g.e.send_credit(1) == peer_window);
    g.e.consume_credit(1, 600);
    CHECK(g.e.send_credit(1) == 400);
    CHECK(g.ok(msg::window{1, 100}).empty());  // not blocked: no on_credit
    CHECK(g.e.send_credit(1) == 500);
    g.e.consume_credit(1, 500);
    CHECK(g.e.send_credit(1) == 0);
    CHECK(g.ok(msg::window{1, 7}) == lines{"credit 1"});  // 0 -> 7
    CHECK(g.e.send_credit(1) == 7);
    CHECK(g.ok(msg::window{1, 1}).empty());
    CHECK(g.e.send_credit(1) == 8);
    CHECK(g.e.send_credit(99) == 0);
    g.e.consume_credit(99, 5);  // unknown: nothing
}

TEST_CASE("Window: credit up to 2^31-1 is fine, one more resets with flow_control")
{
    gateway_with_stream g;  // credit 1000
    const std::uint32_t to_max = static_cast<std::uint32_t>(mux::max_credit - peer_window);
    CHECK(g.ok(msg::window{1, to_max}).empty());
    CHECK(g.e.send_credit(1) == mux::max_credit);
    CHECK(g.ok(msg::window{1, 1}) ==
          lines{reset_line(1, "flow_control", "Window pushes credit to 2147483648 (max 2147483647)"),
                "reset 1 stream_error flow_control: Window pushes credit to 2147483648 (max "
                "2147483647)"});
    CHECK_FALSE(g.e.has(1));

    // A single Window of 0xffffffff: the sum is computed without wrapping.
    agent_with_stream a;
    CHECK(a.ok(msg::window{1, 0xffffffffu}) ==
          lines{reset_line(1, "flow_control", "Window pushes credit to 4294968295 (max 2147483647)"),
                "reset 1 stream_error flow_control: Window pushes credit to 4294968295 (max "
                "2147483647)"});
}

TEST_CASE("Window before Opened is accepted on the gateway")
{
    side g{role::gateway};
    REQUIRE(g.e.open(3) == 1);
    CHECK(g.ok(msg::window{1, 10}).empty());
    CHECK(g.e.send_credit(1) == peer_window + 10);
}

// ------------------------------------------------------------------ half-close

TEST_CASE("Fin: delivered once; a second Fin or data after Fin resets the stream")
{
    SUBCASE("second Fin")
    {
        gateway_with_stream g;
        CHECK(g.ok(msg::fin{1}) == lines{"fin 1"});
        CHECK(g.e.has(1));
        CHECK(g.ok(msg::fin{1}) == lines{reset_line(1, "protocol_error", "second Fin"),
                                         "reset 1 stream_error protocol_error: second Fin"});
        CHECK_FALSE(g.e.has(1));
    }
    SUBCASE("data after Fin")
    {
        agent_with_stream a;
        CHECK(a.ok(concat({data_frame(3, 1, "last"), control_frame(msg::fin{1})})) ==
              lines{"data 1 last", "fin 1"});
        CHECK(a.ok(data_frame(3, 1, "more")) ==
              lines{reset_line(1, "stream_closed", "data after Fin"),
                    "reset 1 stream_error stream_closed: data after Fin"});
    }
    SUBCASE("Fin before Opened, on the gateway")
    {
        side g{role::gateway};
        REQUIRE(g.e.open(3) == 1);
        CHECK(g.ok(msg::fin{1}) == lines{reset_line(1, "protocol_error", "Fin before Opened"),
                                         "reset 1 stream_error protocol_error: Fin before Opened"});
    }
    SUBCASE("Fin before our Opened, on the agent, is fine")
    {
        side a{role::agent};
        a.ok(msg::open{1, "t", 3, "", "{}"});
        CHECK(a.ok(msg::fin{1}) == lines{"fin 1"});
    }
}

TEST_CASE("both Fins erase the stream, in either order")
{
    SUBCASE("ours first")
    {
        gateway_with_stream g;
        g.e.fin_sent(1);
        CHECK(g.e.has(1));
        CHECK_FALSE(g.e.can_send(1));
        CHECK(g.ok(msg::fin{1}) == lines{"fin 1"});
        CHECK_FALSE(g.e.has(1));
        CHECK(g.e.stream_count() == 0);
    }
    SUBCASE("theirs first")
    {
        agent_with_stream a;
        CHECK(a.ok(msg::fin{1}) == lines{"fin 1"});
        CHECK(a.e.can_send(1));  // our direction is still open
        a.e.fin_sent(1);
        CHECK_FALSE(a.e.has(1));
        CHECK(a.h.take().empty());  // nothing is sent for it
    }
    SUBCASE("fin_sent on an unknown stream is harmless")
    {
        side g{role::gateway};
        g.e.fin_sent(41);
        CHECK(g.e.stream_count() == 0);
    }
}

// ------------------------------------------------------------------ reset

TEST_CASE("Reset from the peer ends the stream; reset() sends one")
{
    gateway_with_stream g;
    REQUIRE(g.e.open(3) == 3);
    CHECK(g.ok(msg::reset{1, "reset", "connection reset by peer"}) ==
          lines{"reset 1 reset_by_peer reset: connection reset by peer"});
    CHECK_FALSE(g.e.has(1));
    CHECK(g.e.pending_opens() == 1);
    // A Reset for an unanswered stream also clears its pending slot.
    CHECK(g.ok(msg::reset{3, "error", ""}) == lines{"reset 3 reset_by_peer error: "});
    CHECK(g.e.pending_opens() == 0);

    REQUIRE(g.e.open(3) == 5);
    g.e.reset(5, "timeout", "open timeout");
    CHECK(g.h.take() == lines{reset_line(5, "timeout", "open timeout")});
    CHECK_FALSE(g.e.has(5));
    CHECK(g.e.pending_opens() == 0);
    g.e.reset(5, "timeout", "again");  // gone: nothing
    CHECK(g.h.take().empty());
}

TEST_CASE("forget() drops a stream silently")
{
    gateway_with_stream g;
    g.e.forget(1);
    CHECK_FALSE(g.e.has(1));
    CHECK(g.h.take().empty());
}

// ------------------------------------------------------------------ late and unknown ids

TEST_CASE("late frames for closed streams are ignored; frames for never-opened ids are fatal")
{
    SUBCASE("gateway")
    {
        gateway_with_stream g;
        REQUIRE(g.e.open(3) == 3);
        g.e.reset(1, "closed", "");
        g.h.take();
        for (const auto& late :
             {data_frame(3, 1, "x"), control_frame(msg::fin{1}), control_frame(msg::window{1, 5}),
              control_frame(msg::reset{1, "c", ""}), control_frame(msg::opened{1}),
              control_frame(msg::refused{1, "c", ""})}) {
            CHECK(g.ok(late).empty());
        }
        CHECK(g.e.has(3));
        // 5 was never opened; even ids never are.
        side g2{role::gateway};
        REQUIRE(g2.e.open(3) == 1);
        g2.fails(data_frame(3, 5, "x"), close_code::protocol_error,
                 "data for stream 5 that was never opened");
        for (auto [m, what] : std::vector<std::pair<wire::control_message, std::string>>{
                 {msg::opened{3}, "Opened"}, {msg::refused{3, "c", ""}, "Refused"},
                 {msg::fin{2}, "Fin"}, {msg::reset{7, "c", ""}, "Reset"}, {msg::window{9, 1}, "Window"}}) {
            side fresh{role::gateway};
            REQUIRE(fresh.e.open(3) == 1);
            const auto id = std::visit([](const auto& x) -> std::uint32_t {
                if constexpr (requires { x.stream; }) return x.stream; else return 0;
            }, m);
            fresh.fails(m, close_code::protocol_error,
                        what + " for stream " + std::to_string(id) + " that was never opened");
        }
    }
    SUBCASE("agent")
    {
        agent_with_stream a;
        a.ok(msg::reset{1, "reset", ""});
        CHECK(a.ok(data_frame(3, 1, "late")).empty());
        CHECK(a.ok(msg::fin{1}).empty());
        CHECK(a.ok(msg::window{1, 5}).empty());
        a.fails(data_frame(3, 3, "x"), close_code::protocol_error,
                "data for stream 3 that was never opened");
        agent_with_stream b;
        b.fails(msg::fin{2}, close_code::protocol_error, "Fin for stream 2 that was never opened");
    }
}

TEST_CASE("describe(close_code) names each code; the name is also the Error code")
{
    CHECK(mux::describe(close_code::normal) == "normal");
    CHECK(mux::describe(close_code::going_away) == "going_away");
    CHECK(mux::describe(close_code::protocol_error) == "protocol_error");
    CHECK(mux::describe(close_code::unsupported_data) == "unsupported_data");
    CHECK(mux::describe(close_code::policy) == "policy_violation");
    CHECK(mux::describe(close_code::too_big) == "message_too_big");
    CHECK(mux::describe(close_code::internal) == "internal_error");
    CHECK(mux::describe(close_code::auth_timeout) == "auth_timeout");
    CHECK(mux::describe(close_code::auth_failed) == "auth_failed");
    CHECK(mux::describe(close_code::replaced) == "replaced");
    CHECK(mux::describe(close_code::heartbeat_timeout) == "heartbeat_timeout");
    CHECK(mux::describe(close_code::version) == "version");
    CHECK(mux::describe(close_code::limit) == "limit");
    CHECK(mux::describe(static_cast<close_code>(1234)) == "unknown");
    CHECK(static_cast<int>(close_code::normal) == 1000);
    CHECK(static_cast<int>(close_code::protocol_error) == 1002);
    CHECK(static_cast<int>(close_code::policy) == 1008);
    CHECK(static_cast<int>(close_code::too_big) == 1009);
    CHECK(static_cast<int>(close_code::limit) == 4007);
}

// ------------------------------------------------------------------ known bugs

// Regression (fixed): core/mux/engine.cpp engine::establish() / open() / the Open branch of
// on_stream_message() start a stream's send credit at the peer's window
// without capping it at max_credit (2^31-1). Auth.window and AuthOk.window
// are "u32 >= 1" (docs/protocol.md section 3), so a peer announcing 2^31 or
// more gets every stream reset with flow_control as soon as it returns credit
// for bytes it was allowed to receive.
TEST_CASE("a peer window above 2^31-1 does not break credit returns")
{
    side g{role::gateway, small_limits(), false};
    g.e.establish(0x80000000u, peer_max_frame);  // the agent announced window = 2^31
    REQUIRE(g.e.open(3) == 1);
    g.ok(msg::opened{1});
    g.e.consume_credit(1, 1u << 29);          // the gateway sent a quarter window
    CHECK(g.ok(msg::window{1, 1u << 29}).empty());  // the agent returns it: must not reset
    CHECK(g.e.has(1));
}

// Regression (fixed): core/mux/engine.hpp engine::forget() erases the stream without the
// pending-count bookkeeping erase() does, so pending_opens() stays too high
// for a forgotten unanswered stream (and open() may then refuse with
// max_pending_opens on an engine that has no pending stream).
TEST_CASE("forget() of an unanswered stream releases its pending slot")
{
    side g{role::gateway};
    REQUIRE(g.e.open(3) == 1);
    g.e.forget(1);
    CHECK(g.e.stream_count() == 0);
    CHECK(g.e.pending_opens() == 0);
}

// Was a spec mismatch (fixed): docs/protocol.md section 4 says the agent treats
// anything but AuthOk/AuthError/Error/Goodbye before AuthOk as a *protocol
// error* (1002); core/mux/engine.cpp on_control() and on_data_frame() close
// with 1008 (policy) on both sides. 1008 is documented for the gateway only.
TEST_CASE("agent: unexpected message before AuthOk is a protocol error (1002)")
{
    side a{role::agent, small_limits(), false};
    auto f = a.feed(msg::heartbeat{1});
    REQUIRE(f);
    CHECK(f->code == close_code::protocol_error);
    side b{role::agent, small_limits(), false};
    f = b.feed(data_frame(3, 1, "x"));
    REQUIRE(f);
    CHECK(f->code == close_code::protocol_error);
}
}
