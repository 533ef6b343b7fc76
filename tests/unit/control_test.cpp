// wire/control: control messages. Every type round-trips (serialize, parse,
// compare every field); every field of every type is broken on purpose
// (missing, wrong type, out of range, too long) and the error must name the
// type and the field. The field table below is the code side of the tables in
// docs/protocol.md section 3.
#include "helpers.hpp"
#include "wire/control.hpp"

#include <doctest/doctest.h>

#include <limits>
#include <string>
#include <tuple>
#include <vector>

using namespace muxgate;
using namespace muxgate::test;
namespace msg = wire::msg;

namespace {

// Every field of every message, for comparisons (the structs have no ==).
auto fields(const msg::auth& m)
{
    return std::tie(m.token, m.agent, m.version, m.protocol, m.window, m.max_frame, m.max_message);
}
auto fields(const msg::auth_ok& m)
{
    return std::tie(m.session, m.version, m.heartbeat_ms, m.window, m.max_frame, m.max_message,
                    m.max_streams, m.max_tunnels);
}
auto fields(const msg::auth_error& m) { return std::tie(m.code, m.message, m.retry_ms); }
auto fields(const msg::heartbeat& m) { return std::tie(m.seq); }
auto fields(const msg::heartbeat_ack& m) { return std::tie(m.seq); }
auto fields(const msg::register_tunnel& m)
{
    return std::tie(m.id, m.tunnel, m.protocol_id, m.remote_port, m.options);
}
auto fields(const msg::registered& m) { return std::tie(m.id, m.tunnel, m.address); }
auto fields(const msg::register_error& m) { return std::tie(m.id, m.tunnel, m.code, m.message); }
auto fields(const msg::unregister& m) { return std::tie(m.tunnel); }
auto fields(const msg::open& m)
{
    return std::tie(m.stream, m.tunnel, m.protocol_id, m.peer, m.meta);
}
auto fields(const msg::opened& m) { return std::tie(m.stream); }
auto fields(const msg::refused& m) { return std::tie(m.stream, m.code, m.message); }
auto fields(const msg::fin& m) { return std::tie(m.stream); }
auto fields(const msg::reset& m) { return std::tie(m.stream, m.code, m.message); }
auto fields(const msg::window& m) { return std::tie(m.stream, m.credit); }
auto fields(const msg::error& m) { return std::tie(m.code, m.message); }
auto fields(const msg::goodbye& m) { return std::tie(m.reason, m.drain_ms); }
auto fields(const msg::blocked& m) { return std::tie(m.stream); }

bool same(const wire::control_message& a, const wire::control_message& b)
{
    if (a.index() != b.index()) return false;
    return std::visit(
        [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            return fields(x) == fields(std::get<T>(b));
        },
        a);
}

// One message of every type with every field set to something other than its
// default (optional fields included).
std::vector<wire::control_message> every_message()
{
    return {
        msg::auth{"mgt_secret", "office", "0.1.0", 1, 262144, 1048576, 4194304},
        msg::auth_ok{"9f2c", "0.1.0", 10000, 262144, 1048576, 4194304, 4096, 64},
        msg::auth_error{"bad_token", "wrong token", 5000},
        msg::heartbeat{std::numeric_limits<std::uint64_t>::max()},
        msg::heartbeat_ack{7},
        msg::register_tunnel{3, "web", 255, 65535, R"({"tls":true,"names":["a","b"],"n":-1})"},
        msg::registered{4294967295u, "web", "0.0.0.0:20001"},
        msg::register_error{2, "ssh", "port_unavailable", "port 2222 is in use"},
        msg::unregister{"web"},
        msg::open{4294967295u, "web", 3, "203.0.113.7:51234", R"({"sni":"x.example","k":{"z":null}})"},
        msg::opened{1},
        msg::refused{3, "connect_failed", "connection refused"},
        msg::fin{5},
        msg::reset{7, "flow_control", "too much"},
        msg::window{9, 4294967295u},
        msg::error{"protocol_error", "bad frame"},
        msg::goodbye{"gateway is shutting down", 15000},
        msg::blocked{11},
    };
}

// ---------------------------------------------------------------- field table

enum class kind { string, uint, object };

struct field_spec {
    const char* name;
    kind k;
    bool required;
    std::uint64_t min = 0;                   // uint
    std::uint64_t max = 0xffffffffu;         // uint
    std::size_t max_len = 0;                 // string
    const char* good = nullptr;              // a valid JSON value
};

struct type_spec {
    const char* type;
    std::vector<field_spec> fields;
};

constexpr std::uint64_t u32max = 0xffffffffu;
constexpr std::uint64_t u64max = std::numeric_limits<std::uint64_t>::max();

field_spec str(const char* n, bool req, std::size_t max_len, const char* good = "\"x\"")
{
    return {n, kind::string, req, 0, 0, max_len, good};
}
field_spec uint(const char* n, bool req, std::uint64_t min = 0, std::uint64_t max = u32max,
                const char* good = "7")
{
    return {n, kind::uint, req, min, max, 0, good};
}
field_spec obj(const char* n) { return {n, kind::object, false, 0, 0, 0, R"({"a":1})"}; }
field_spec stream() { return uint("stream", true, 1); }

const std::vector<type_spec>& table()
{
    static const std::vector<type_spec> t{
        {"Auth",
         {str("token", true, 4096), str("agent", true, 256), str("version", false, 256),
          uint("protocol", true), uint("window", true, 1), uint("max_frame", true, 1),
          uint("max_message", true, 1)}},
        {"AuthOk",
         {str("session", true, 256), str("version", false, 256), uint("heartbeat_ms", true, 1),
          uint("window", true, 1), uint("max_frame", true, 1), uint("max_message", true, 1),
          uint("max_streams", true, 1), uint("max_tunnels", true, 0)}},
        {"AuthError", {str("code", true, 256), str("message", false, 4096), uint("retry_ms", false)}},
        {"Heartbeat", {uint("seq", false, 0, u64max)}},
        {"HeartbeatAck", {uint("seq", false, 0, u64max)}},
        {"Register",
         {uint("id", true), str("tunnel", true, 256), uint("protocol_id", true, 1, 255),
          uint("remote_port", false, 0, 65535), obj("options")}},
        {"Registered", {uint("id", true), str("tunnel", true, 256), str("address", false, 4096)}},
        {"RegisterError",
         {uint("id", true), str("tunnel", true, 256), str("code", true, 256),
          str("message", false, 4096)}},
        {"Unregister", {str("tunnel", true, 256)}},
        {"Open",
         {stream(), str("tunnel", true, 256), uint("protocol_id", true, 1, 255),
          str("peer", false, 256), obj("meta")}},
        {"Opened", {stream()}},
        {"Refused", {stream(), str("code", true, 256), str("message", false, 4096)}},
        {"Fin", {stream()}},
        {"Reset", {stream(), str("code", true, 256), str("message", false, 4096)}},
        {"Window", {stream(), uint("credit", true, 1)}},
        {"Error", {str("code", true, 256), str("message", false, 4096)}},
        {"Goodbye", {str("reason", false, 4096), uint("drain_ms", false)}},
        {"Blocked", {stream()}},
    };
    return t;
}

// The JSON text of `t` with every field at its good value, except `name`
// which is left out (value == nullptr) or given `value`.
std::string build(const type_spec& t, const char* name = nullptr, const char* value = nullptr)
{
    std::string out = std::string{R"({"type":")"} + t.type + "\"";
    for (const auto& f : t.fields) {
        const char* v = f.good;
        if (name && std::string_view{name} == f.name) {
            if (!value) continue;
            v = value;
        }
        out += std::string{",\""} + f.name + "\":" + v;
    }
    return out + "}";
}

std::string expect_error(const type_spec& t, const field_spec& f, const std::string& what)
{
    return std::string{t.type} + ": field \"" + f.name + "\" " + what;
}

// A JSON string of n bytes. (Built with append: g++ 12 warns falsely
// (-Wrestrict) on "literal" + std::string temporaries.)
std::string quoted(std::size_t n)
{
    std::string out(n + 2, 'n');
    out.front() = out.back() = '"';
    return out;
}

}  // namespace

TEST_SUITE("wire.control")
{
TEST_CASE("every message type round-trips: serialize, parse, same fields")
{
    const auto all = every_message();
    REQUIRE(all.size() == std::variant_size_v<wire::control_message>);
    for (const auto& m : all) {
        const std::string json = wire::serialize(m);
        CAPTURE(json);
        const auto r = wire::parse_control(json);
        REQUIRE_MESSAGE(r.ok, r.error);
        CHECK(r.error.empty());
        CHECK_FALSE(r.unknown_type);
        CHECK(wire::type_name(r.message) == wire::type_name(m));
        CHECK(same(r.message, m));
        CHECK(wire::serialize(r.message) == json);
    }
}

TEST_CASE("optional fields left at their defaults round-trip too")
{
    const std::vector<wire::control_message> defaults{
        msg::auth{"t", "a", "", 1, 1, 1, 1},
        msg::auth_ok{"s", "", 1, 1, 1, 1, 1, 0},
        msg::auth_error{"limit", "", 0},
        msg::heartbeat{0},
        msg::heartbeat_ack{0},
        msg::register_tunnel{0, "t", 1, 0, "{}"},
        msg::registered{0, "t", ""},
        msg::register_error{0, "t", "c", ""},
        msg::open{1, "t", 1, "", "{}"},
        msg::refused{1, "c", ""},
        msg::reset{1, "c", ""},
        msg::error{"c", ""},
        msg::goodbye{"", 0},
    };
    for (const auto& m : defaults) {
        const std::string json = wire::serialize(m);
        CAPTURE(json);
        const auto r = wire::parse_control(json);
        REQUIRE_MESSAGE(r.ok, r.error);
        CHECK(same(r.message, m));
    }
}

TEST_CASE("type_name gives the documented type strings")
{
    const std::vector<std::string> names{
        "Auth",  "AuthOk", "AuthError", "Heartbeat", "HeartbeatAck", "Register",
        "Registered", "RegisterError", "Unregister", "Open", "Opened", "Refused",
        "Fin", "Reset", "Window", "Error", "Goodbye", "Blocked"};
    const auto all = every_message();
    REQUIRE(all.size() == names.size());
    for (std::size_t i = 0; i < all.size(); ++i) CHECK(wire::type_name(all[i]) == names[i]);
    // The field table covers the same types in the same order.
    REQUIRE(table().size() == names.size());
    for (std::size_t i = 0; i < names.size(); ++i) CHECK(table()[i].type == names[i]);
}

TEST_CASE("serialize writes compact JSON in field order, leaving out empty optional fields")
{
    CHECK(wire::serialize(msg::fin{1}) == R"({"type":"Fin","stream":1})");
    CHECK(wire::serialize(msg::window{3, 65536}) == R"({"type":"Window","stream":3,"credit":65536})");
    CHECK(wire::serialize(msg::blocked{3}) == R"({"type":"Blocked","stream":3})");
    CHECK(wire::serialize(msg::reset{5, "timeout", ""}) == R"({"type":"Reset","stream":5,"code":"timeout"})");
    CHECK(wire::serialize(msg::auth_error{"bad_token", "no", 0}) ==
          R"({"type":"AuthError","code":"bad_token","message":"no"})");
    CHECK(wire::serialize(msg::goodbye{"bye", 0}) == R"({"type":"Goodbye","reason":"bye"})");
    CHECK(wire::serialize(msg::open{7, "web", 3, "", "{}"}) ==
          R"({"type":"Open","stream":7,"tunnel":"web","protocol_id":3})");
    CHECK(wire::serialize(msg::heartbeat{std::numeric_limits<std::uint64_t>::max()}) ==
          R"({"type":"Heartbeat","seq":18446744073709551615})");
    // Strings are escaped, never concatenated.
    CHECK(wire::serialize(msg::error{"x\"y", "a\\b\n\x01"}) ==
          R"({"type":"Error","code":"x\"y","message":"a\\b\n\u0001"})");
    // An options / meta text that is not a JSON object becomes {}.
    CHECK(wire::serialize(msg::register_tunnel{1, "t", 3, 0, "not json"}) ==
          R"({"type":"Register","id":1,"tunnel":"t","protocol_id":3,"remote_port":0,"options":{}})");
    CHECK(wire::serialize(msg::open{1, "t", 3, "", "[1,2]"}) ==
          R"({"type":"Open","stream":1,"tunnel":"t","protocol_id":3,"meta":{}})");
}

TEST_CASE("the examples of docs/protocol.md section 9 are what serialize writes")
{
    const std::string auth =
        R"({"type":"Auth","token":"mgt_Zm9v","agent":"office","version":"0.1.0",)"
        R"("protocol":1,"window":262144,"max_frame":1048576,"max_message":4194304})";
    CHECK(auth.size() == 140);
    CHECK(wire::serialize(msg::auth{"mgt_Zm9v", "office", "0.1.0", 1, 262144, 1048576, 4194304}) == auth);

    const std::string open =
        R"({"type":"Open","stream":1,"tunnel":"web","protocol_id":3,"peer":"203.0.113.7:51234"})";
    CHECK(open.size() == 84);
    CHECK(wire::serialize(msg::open{1, "web", 3, "203.0.113.7:51234", "{}"}) == open);

    const auto r = wire::parse_control(
        R"({"type":"Register","id":1,"tunnel":"web","protocol_id":3,"remote_port":20001,"options":{}})");
    REQUIRE(r.ok);
    CHECK(same(r.message, msg::register_tunnel{1, "web", 3, 20001, "{}"}));
}

TEST_CASE("the field table: every field with its good value parses")
{
    for (const auto& t : table()) {
        const auto json = build(t);
        CAPTURE(json);
        const auto r = wire::parse_control(json);
        REQUIRE_MESSAGE(r.ok, r.error);
        CHECK(wire::type_name(r.message) == t.type);
    }
}

TEST_CASE("a missing required field names the type and the field; optional fields may be missing")
{
    for (const auto& t : table())
        for (const auto& f : t.fields) {
            const auto json = build(t, f.name);
            CAPTURE(json);
            const auto r = wire::parse_control(json);
            if (f.required) {
                CHECK_FALSE(r.ok);
                CHECK_FALSE(r.unknown_type);
                CHECK(r.error == expect_error(t, f, "is missing"));
            } else {
                CHECK_MESSAGE(r.ok, r.error);
            }
        }
}

TEST_CASE("a value of the wrong JSON type names the type and the field")
{
    for (const auto& t : table())
        for (const auto& f : t.fields) {
            switch (f.k) {
            case kind::string:
                for (const char* bad : {"5", "null", "true", "[\"x\"]", "{}"}) {
                    const auto json = build(t, f.name, bad);
                    CAPTURE(json);
                    const auto r = wire::parse_control(json);
                    CHECK_FALSE(r.ok);
                    CHECK(r.error == expect_error(t, f, "must be a string"));
                }
                break;
            case kind::uint:
                for (const char* bad : {"\"7\"", "-1", "1.5", "1e3", "null", "true", "[7]"}) {
                    const auto json = build(t, f.name, bad);
                    CAPTURE(json);
                    const auto r = wire::parse_control(json);
                    CHECK_FALSE(r.ok);
                    CHECK(r.error == expect_error(t, f, "must be a non-negative integer"));
                }
                break;
            case kind::object:
                for (const char* bad : {"5", "\"{}\"", "[]", "true"}) {
                    const auto json = build(t, f.name, bad);
                    CAPTURE(json);
                    const auto r = wire::parse_control(json);
                    CHECK_FALSE(r.ok);
                    CHECK(r.error == expect_error(t, f, "must be an object"));
                }
                {
                    // null is the same as absent.
                    const auto r = wire::parse_control(build(t, f.name, "null"));
                    CHECK(r.ok);
                }
                break;
            }
        }
}

TEST_CASE("integers: min and max pass, one beyond fails with the range in the message")
{
    for (const auto& t : table())
        for (const auto& f : t.fields) {
            if (f.k != kind::uint) continue;
            const auto range = [&](std::uint64_t got) {
                return "must be in " + std::to_string(f.min) + ".." + std::to_string(f.max) +
                       " (got " + std::to_string(got) + ")";
            };
            const auto min_text = std::to_string(f.min), max_text = std::to_string(f.max);
            CHECK_MESSAGE(wire::parse_control(build(t, f.name, min_text.c_str())).ok, t.type, f.name);
            CHECK_MESSAGE(wire::parse_control(build(t, f.name, max_text.c_str())).ok, t.type, f.name);
            if (f.min > 0) {
                const auto below = std::to_string(f.min - 1);
                const auto r = wire::parse_control(build(t, f.name, below.c_str()));
                CHECK_FALSE(r.ok);
                CHECK(r.error == expect_error(t, f, range(f.min - 1)));
            }
            if (f.max < u64max) {
                const auto above = std::to_string(f.max + 1);
                const auto r = wire::parse_control(build(t, f.name, above.c_str()));
                CHECK_FALSE(r.ok);
                CHECK(r.error == expect_error(t, f, range(f.max + 1)));
            }
        }
}

TEST_CASE("strings: the longest allowed passes, one byte more fails")
{
    for (const auto& t : table())
        for (const auto& f : t.fields) {
            if (f.k != kind::string) continue;
            CAPTURE(t.type);
            CAPTURE(f.name);
            CHECK(wire::parse_control(build(t, f.name, quoted(f.max_len).c_str())).ok);
            const auto r = wire::parse_control(build(t, f.name, quoted(f.max_len + 1).c_str()));
            CHECK_FALSE(r.ok);
            CHECK(r.error ==
                  expect_error(t, f, "is longer than " + std::to_string(f.max_len) + " bytes"));
        }
}

TEST_CASE("the first bad field is the one reported")
{
    const auto r = wire::parse_control(R"({"type":"Window","stream":0,"credit":0})");
    CHECK(r.error == R"(Window: field "stream" must be in 1..4294967295 (got 0))");
}

TEST_CASE("unknown fields are ignored")
{
    const auto r = wire::parse_control(R"({"future":[1,{"x":2}],"type":"Fin","stream":3,"z":null})");
    REQUIRE(r.ok);
    CHECK(same(r.message, msg::fin{3}));
}

TEST_CASE("object fields keep their content as compact JSON text")
{
    const auto r = wire::parse_control(
        R"({"type":"Open","stream":1,"tunnel":"t","protocol_id":4,"meta": { "a" : [ 1 , 2 ] , "b" : "x" } })");
    REQUIRE(r.ok);
    CHECK(std::get<msg::open>(r.message).meta == R"({"a":[1,2],"b":"x"})");
    const auto r2 = wire::parse_control(R"({"type":"Register","id":1,"tunnel":"t","protocol_id":4})");
    REQUIRE(r2.ok);
    CHECK(std::get<msg::register_tunnel>(r2.message).options == "{}");
    CHECK(std::get<msg::register_tunnel>(r2.message).remote_port == 0);
}

TEST_CASE("unknown type: flagged so a newer peer's message can be ignored")
{
    const auto r = wire::parse_control(R"({"type":"StreamPriority","stream":1})");
    CHECK_FALSE(r.ok);
    CHECK(r.unknown_type);
    CHECK(r.error == R"(unknown control message type "StreamPriority")");

    // Type names are case-sensitive.
    const auto lower = wire::parse_control(R"({"type":"fin","stream":1})");
    CHECK(lower.unknown_type);

    // A long type is cut in the message.
    const std::string longtype(100, 'T');
    const auto l = wire::parse_control(R"({"type":")" + longtype + "\"}");
    CHECK(l.unknown_type);
    CHECK(l.error == std::string{"unknown control message type \""} + std::string(64, 'T') + "\"");
}

TEST_CASE("not a control message at all: never unknown_type")
{
    struct bad_case {
        std::string json;
        std::string error;
    };
    const std::vector<bad_case> cases{
        {"[1,2]", "control message is not a JSON object"},
        {"\"Fin\"", "control message is not a JSON object"},
        {"42", "control message is not a JSON object"},
        {"null", "control message is not a JSON object"},
        {"{}", "control message has no \"type\" field"},
        {R"({"stream":1})", "control message has no \"type\" field"},
        {R"({"type":7})", "control message field \"type\" must be a string"},
        {R"({"type":null})", "control message field \"type\" must be a string"},
        {R"({"type":["Fin"]})", "control message field \"type\" must be a string"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.json);
        const auto r = wire::parse_control(c.json);
        CHECK_FALSE(r.ok);
        CHECK_FALSE(r.unknown_type);
        CHECK(r.error == c.error);
    }
}

TEST_CASE("invalid JSON and invalid UTF-8")
{
    static constexpr char raw_nul[] = "{\"type\":\"Fin\",\"stream\":1,\"x\":\"a\0b\"}";
    const std::string with_nul{raw_nul, sizeof raw_nul - 1};
    const std::vector<std::string> cases{
        "",
        "{",
        R"({"type":"Fin","stream":1)",
        R"({"type":"Fin","stream":1} trailing)",
        R"({"type":"Fin",,"stream":1})",
        R"({'type':'Fin'})",
        "{\"type\":\"Fin\",\"stream\":1,\"x\":\"\xff\"}",            // invalid byte
        "{\"type\":\"Fin\",\"stream\":1,\"x\":\"\xc3\"}",            // truncated sequence
        "{\"type\":\"Fin\",\"stream\":1,\"x\":\"\xed\xa0\x80\"}",    // UTF-16 surrogate
        "{\"type\":\"Fin\",\"stream\":1,\"x\":\"\xc0\xaf\"}",        // overlong '/'
        with_nul,                                                    // raw NUL in a string
        R"({"type":"Heartbeat","seq":18446744073709551616})",           // beyond u64
    };
    for (const auto& json : cases) {
        CAPTURE(json);
        const auto r = wire::parse_control(json);
        CHECK_FALSE(r.ok);
        CHECK_FALSE(r.unknown_type);
        CHECK(r.error.rfind("control message is not valid JSON: ", 0) == 0);
    }
    // A JSON-escaped NUL is valid and kept.
    const auto r = wire::parse_control(R"({"type":"Error","code":"a\u0000b"})");
    REQUIRE(r.ok);
    CHECK(std::get<msg::error>(r.message).code == std::string("a\0b", 3));
}

TEST_CASE("non-ASCII strings survive a round trip byte for byte")
{
    const msg::registered m{1, "web", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"};
    const auto r = wire::parse_control(wire::serialize(m));
    REQUIRE(r.ok);
    CHECK(same(r.message, m));
}

TEST_CASE("the parser is reusable: a bad message does not poison the next one")
{
    CHECK_FALSE(wire::parse_control("{\"type\":").ok);
    const auto r = wire::parse_control(R"({"type":"Opened","stream":11})");
    REQUIRE(r.ok);
    CHECK(same(r.message, msg::opened{11}));
    // A large message, then a small one.
    const std::string big = std::string{R"({"type":"Error","code":"c","message":")"} + std::string(4096, 'm') + "\"}";
    CHECK(wire::parse_control(big).ok);
    CHECK(wire::parse_control(R"({"type":"Fin","stream":1})").ok);
}

TEST_CASE("the test's own UTF-8 checker")
{
    CHECK(valid_utf8("plain"));
    CHECK(valid_utf8("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    CHECK_FALSE(valid_utf8("\xc3"));
    CHECK_FALSE(valid_utf8("\xe2\x82"));
    CHECK_FALSE(valid_utf8("\xff"));
    CHECK_FALSE(valid_utf8("\xc0\xaf"));
    CHECK_FALSE(valid_utf8("\xed\xa0\x80"));
}

// Regression (fixed): core/wire/control.cpp (parse_control, the unknown-type branch) cuts the
// type to 64 *bytes*, which can split a UTF-8 sequence. The error text becomes
// the close reason / Error message before authentication, which must be UTF-8.
TEST_CASE("the unknown-type error text stays valid UTF-8")
{
    std::string t = "a";
    for (int i = 0; i < 40; ++i) t += "\xc3\xa9";  // 'é' x 40: byte 64 is inside one
    const auto r = wire::parse_control(R"({"type":")" + t + "\"}");
    REQUIRE(r.unknown_type);
    CHECK(valid_utf8(r.error));
}

// Regression (fixed): core/wire/control.cpp object_value() parses with Boost.JSON's default
// max_depth (32) while simdjson accepted 1024 levels, so a deeply nested
// meta/options object that parsed fine is silently serialized as {}.
TEST_CASE("a deeply nested meta object survives serialize")
{
    std::string meta;
    for (int i = 0; i < 40; ++i) meta += R"({"a":)";
    meta += "1";
    for (int i = 0; i < 40; ++i) meta += "}";
    const auto r = wire::parse_control(
        R"({"type":"Open","stream":1,"tunnel":"t","protocol_id":3,"meta":)" + meta + "}");
    REQUIRE(r.ok);
    CHECK(std::get<msg::open>(r.message).meta == meta);
    const auto again = wire::parse_control(wire::serialize(r.message));
    REQUIRE(again.ok);
    CHECK(std::get<msg::open>(again.message).meta == meta);
}
}
