#include "wire/control.hpp"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <simdjson.h>

#include <limits>
#include <optional>

namespace muxgate::wire {

namespace json = boost::json;

namespace {

// Field access over a parsed object with error text that names the message
// type and the field. The first error sticks; later reads become no-ops.
class reader {
public:
    reader(simdjson::dom::object obj, std::string_view type) : obj_(obj), type_(type) {}

    bool ok() const noexcept { return error_.empty(); }
    std::string take_error() { return std::move(error_); }

    std::string str(const char* key, bool required = true, std::size_t max_len = 4096)
    {
        if (!ok()) return {};
        simdjson::dom::element e;
        if (obj_[key].get(e) != simdjson::SUCCESS) {
            if (required) fail(key, "is missing");
            return {};
        }
        std::string_view v;
        if (e.get_string().get(v) != simdjson::SUCCESS) {
            fail(key, "must be a string");
            return {};
        }
        if (v.size() > max_len) {
            fail(key, fmt::format("is longer than {} bytes", max_len));
            return {};
        }
        return std::string{v};
    }

    std::uint64_t uint(const char* key, std::uint64_t max, bool required = true,
                       std::uint64_t fallback = 0, std::uint64_t min = 0)
    {
        if (!ok()) return fallback;
        simdjson::dom::element e;
        if (obj_[key].get(e) != simdjson::SUCCESS) {
            if (required) fail(key, "is missing");
            return fallback;
        }
        std::uint64_t v = 0;
        if (e.get_uint64().get(v) != simdjson::SUCCESS) {
            fail(key, "must be a non-negative integer");
            return fallback;
        }
        if (v < min || v > max) {
            fail(key, fmt::format("must be in {}..{} (got {})", min, max, v));
            return fallback;
        }
        return v;
    }

    std::uint32_t u32(const char* key, bool required = true, std::uint32_t fallback = 0,
                      std::uint32_t min = 0)
    {
        return static_cast<std::uint32_t>(
            uint(key, std::numeric_limits<std::uint32_t>::max(), required, fallback, min));
    }

    std::uint32_t stream(const char* key = "stream")
    {
        return u32(key, true, 0, 1);
    }

    // A JSON object field kept as compact text; "{}" when absent.
    std::string object_text(const char* key)
    {
        if (!ok()) return "{}";
        simdjson::dom::element e;
        if (obj_[key].get(e) != simdjson::SUCCESS) return "{}";
        if (e.type() == simdjson::dom::element_type::NULL_VALUE) return "{}";
        if (e.type() != simdjson::dom::element_type::OBJECT) {
            fail(key, "must be an object");
            return "{}";
        }
        return simdjson::minify(e);
    }

private:
    void fail(const char* key, std::string_view what)
    {
        error_ = fmt::format("{}: field \"{}\" {}", type_, key, what);
    }

    simdjson::dom::object obj_;
    std::string_view type_;
    std::string error_;
};

// Protocol strings (agent names, codes, messages) stay short: a limit per
// field keeps one message from dominating the log or the registry.
constexpr std::size_t max_name = 256;
constexpr std::size_t max_text = 4096;

template <class T>
parse_result finish(reader& r, T&& value)
{
    parse_result out;
    if (r.ok()) {
        out.ok = true;
        out.message = std::forward<T>(value);
    } else {
        out.error = r.take_error();
    }
    return out;
}

simdjson::dom::parser& thread_parser()
{
    // One parser per I/O thread: its buffers grow to the largest control
    // message seen (bounded by max_control_message) and are reused, so an idle
    // agent session holds no parser memory of its own.
    thread_local simdjson::dom::parser p;
    return p;
}

}  // namespace

std::string_view utf8_prefix(std::string_view s, std::size_t max) noexcept
{
    if (s.size() <= max) return s;
    std::size_t n = max;
    // Back up over continuation bytes (10xxxxxx) to the start of a sequence.
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    return s.substr(0, n);
}

parse_result parse_control(std::string_view text)
{
    parse_result bad;
    simdjson::dom::element doc;
    auto err = thread_parser().parse(text.data(), text.size(), true).get(doc);
    if (err != simdjson::SUCCESS) {
        bad.error = fmt::format("control message is not valid JSON: {}", simdjson::error_message(err));
        return bad;
    }
    simdjson::dom::object obj;
    if (doc.get_object().get(obj) != simdjson::SUCCESS) {
        bad.error = "control message is not a JSON object";
        return bad;
    }
    std::string_view type;
    {
        simdjson::dom::element t;
        if (obj["type"].get(t) != simdjson::SUCCESS) {
            bad.error = "control message has no \"type\" field";
            return bad;
        }
        if (t.get_string().get(type) != simdjson::SUCCESS) {
            bad.error = "control message field \"type\" must be a string";
            return bad;
        }
    }
    reader r{obj, type};

    if (type == "Auth") {
        msg::auth m;
        m.token = r.str("token", true, max_text);
        m.agent = r.str("agent", true, max_name);
        m.version = r.str("version", false, max_name);
        m.protocol = r.u32("protocol");
        m.window = r.u32("window", true, 0, 1);
        m.max_frame = r.u32("max_frame", true, 0, 1);
        m.max_message = r.u32("max_message", true, 0, 1);
        return finish(r, std::move(m));
    }
    if (type == "AuthOk") {
        msg::auth_ok m;
        m.session = r.str("session", true, max_name);
        m.version = r.str("version", false, max_name);
        m.heartbeat_ms = r.u32("heartbeat_ms", true, 0, 1);
        m.window = r.u32("window", true, 0, 1);
        m.max_frame = r.u32("max_frame", true, 0, 1);
        m.max_message = r.u32("max_message", true, 0, 1);
        m.max_streams = r.u32("max_streams", true, 0, 1);
        m.max_tunnels = r.u32("max_tunnels", true, 0, 0);
        return finish(r, std::move(m));
    }
    if (type == "AuthError") {
        msg::auth_error m;
        m.code = r.str("code", true, max_name);
        m.message = r.str("message", false, max_text);
        m.retry_ms = r.u32("retry_ms", false);
        return finish(r, std::move(m));
    }
    if (type == "Heartbeat") {
        msg::heartbeat m;
        m.seq = r.uint("seq", std::numeric_limits<std::uint64_t>::max(), false);
        return finish(r, m);
    }
    if (type == "HeartbeatAck") {
        msg::heartbeat_ack m;
        m.seq = r.uint("seq", std::numeric_limits<std::uint64_t>::max(), false);
        return finish(r, m);
    }
    if (type == "Register") {
        msg::register_tunnel m;
        m.id = r.u32("id");
        m.tunnel = r.str("tunnel", true, max_name);
        m.protocol_id = static_cast<std::uint32_t>(r.uint("protocol_id", 255, true, 0, 1));
        m.remote_port = static_cast<std::uint32_t>(r.uint("remote_port", 65535, false));
        m.options = r.object_text("options");
        return finish(r, std::move(m));
    }
    if (type == "Registered") {
        msg::registered m;
        m.id = r.u32("id");
        m.tunnel = r.str("tunnel", true, max_name);
        m.address = r.str("address", false, max_text);
        return finish(r, std::move(m));
    }
    if (type == "RegisterError") {
        msg::register_error m;
        m.id = r.u32("id");
        m.tunnel = r.str("tunnel", true, max_name);
        m.code = r.str("code", true, max_name);
        m.message = r.str("message", false, max_text);
        return finish(r, std::move(m));
    }
    if (type == "Unregister") {
        msg::unregister m;
        m.tunnel = r.str("tunnel", true, max_name);
        return finish(r, std::move(m));
    }
    if (type == "Open") {
        msg::open m;
        m.stream = r.stream();
        m.tunnel = r.str("tunnel", true, max_name);
        m.protocol_id = static_cast<std::uint32_t>(r.uint("protocol_id", 255, true, 0, 1));
        m.peer = r.str("peer", false, max_name);
        m.meta = r.object_text("meta");
        return finish(r, std::move(m));
    }
    if (type == "Opened") {
        msg::opened m;
        m.stream = r.stream();
        return finish(r, m);
    }
    if (type == "Refused") {
        msg::refused m;
        m.stream = r.stream();
        m.code = r.str("code", true, max_name);
        m.message = r.str("message", false, max_text);
        return finish(r, std::move(m));
    }
    if (type == "Fin") {
        msg::fin m;
        m.stream = r.stream();
        return finish(r, m);
    }
    if (type == "Reset") {
        msg::reset m;
        m.stream = r.stream();
        m.code = r.str("code", true, max_name);
        m.message = r.str("message", false, max_text);
        return finish(r, std::move(m));
    }
    if (type == "Window") {
        msg::window m;
        m.stream = r.stream();
        m.credit = r.u32("credit", true, 0, 1);
        return finish(r, m);
    }
    if (type == "Blocked") {
        msg::blocked m;
        m.stream = r.stream();
        return finish(r, m);
    }
    if (type == "Error") {
        msg::error m;
        m.code = r.str("code", true, max_name);
        m.message = r.str("message", false, max_text);
        return finish(r, std::move(m));
    }
    if (type == "Goodbye") {
        msg::goodbye m;
        m.reason = r.str("reason", false, max_text);
        m.drain_ms = r.u32("drain_ms", false);
        return finish(r, std::move(m));
    }
    bad.unknown_type = true;
    bad.error = fmt::format("unknown control message type \"{}\"", utf8_prefix(type, 64));
    return bad;
}

namespace {

struct type_visitor {
    std::string_view operator()(const msg::auth&) const { return "Auth"; }
    std::string_view operator()(const msg::auth_ok&) const { return "AuthOk"; }
    std::string_view operator()(const msg::auth_error&) const { return "AuthError"; }
    std::string_view operator()(const msg::heartbeat&) const { return "Heartbeat"; }
    std::string_view operator()(const msg::heartbeat_ack&) const { return "HeartbeatAck"; }
    std::string_view operator()(const msg::register_tunnel&) const { return "Register"; }
    std::string_view operator()(const msg::registered&) const { return "Registered"; }
    std::string_view operator()(const msg::register_error&) const { return "RegisterError"; }
    std::string_view operator()(const msg::unregister&) const { return "Unregister"; }
    std::string_view operator()(const msg::open&) const { return "Open"; }
    std::string_view operator()(const msg::opened&) const { return "Opened"; }
    std::string_view operator()(const msg::refused&) const { return "Refused"; }
    std::string_view operator()(const msg::fin&) const { return "Fin"; }
    std::string_view operator()(const msg::reset&) const { return "Reset"; }
    std::string_view operator()(const msg::window&) const { return "Window"; }
    std::string_view operator()(const msg::error&) const { return "Error"; }
    std::string_view operator()(const msg::goodbye&) const { return "Goodbye"; }
    std::string_view operator()(const msg::blocked&) const { return "Blocked"; }
};

// Parses an object text that we produced or validated earlier; anything else
// becomes an empty object rather than an exception on the data plane.
json::value object_value(const std::string& text)
{
    boost::system::error_code ec;
    json::parse_options opt;
    opt.max_depth = 1024;  // as deep as simdjson accepted it on the way in
    json::value v = json::parse(text, ec, {}, opt);
    if (ec || !v.is_object()) return json::object{};
    return v;
}

struct serialize_visitor {
    json::object& o;
    void operator()(const msg::auth& m) const
    {
        o["token"] = m.token;
        o["agent"] = m.agent;
        o["version"] = m.version;
        o["protocol"] = m.protocol;
        o["window"] = m.window;
        o["max_frame"] = m.max_frame;
        o["max_message"] = m.max_message;
    }
    void operator()(const msg::auth_ok& m) const
    {
        o["session"] = m.session;
        o["version"] = m.version;
        o["heartbeat_ms"] = m.heartbeat_ms;
        o["window"] = m.window;
        o["max_frame"] = m.max_frame;
        o["max_message"] = m.max_message;
        o["max_streams"] = m.max_streams;
        o["max_tunnels"] = m.max_tunnels;
    }
    void operator()(const msg::auth_error& m) const
    {
        o["code"] = m.code;
        o["message"] = m.message;
        if (m.retry_ms) o["retry_ms"] = m.retry_ms;
    }
    void operator()(const msg::heartbeat& m) const { o["seq"] = m.seq; }
    void operator()(const msg::heartbeat_ack& m) const { o["seq"] = m.seq; }
    void operator()(const msg::register_tunnel& m) const
    {
        o["id"] = m.id;
        o["tunnel"] = m.tunnel;
        o["protocol_id"] = m.protocol_id;
        o["remote_port"] = m.remote_port;
        o["options"] = object_value(m.options);
    }
    void operator()(const msg::registered& m) const
    {
        o["id"] = m.id;
        o["tunnel"] = m.tunnel;
        o["address"] = m.address;
    }
    void operator()(const msg::register_error& m) const
    {
        o["id"] = m.id;
        o["tunnel"] = m.tunnel;
        o["code"] = m.code;
        o["message"] = m.message;
    }
    void operator()(const msg::unregister& m) const { o["tunnel"] = m.tunnel; }
    void operator()(const msg::open& m) const
    {
        o["stream"] = m.stream;
        o["tunnel"] = m.tunnel;
        o["protocol_id"] = m.protocol_id;
        if (!m.peer.empty()) o["peer"] = m.peer;
        if (m.meta != "{}" && !m.meta.empty()) o["meta"] = object_value(m.meta);
    }
    void operator()(const msg::opened& m) const { o["stream"] = m.stream; }
    void operator()(const msg::refused& m) const
    {
        o["stream"] = m.stream;
        o["code"] = m.code;
        o["message"] = m.message;
    }
    void operator()(const msg::fin& m) const { o["stream"] = m.stream; }
    void operator()(const msg::reset& m) const
    {
        o["stream"] = m.stream;
        o["code"] = m.code;
        if (!m.message.empty()) o["message"] = m.message;
    }
    void operator()(const msg::window& m) const
    {
        o["stream"] = m.stream;
        o["credit"] = m.credit;
    }
    void operator()(const msg::blocked& m) const { o["stream"] = m.stream; }
    void operator()(const msg::error& m) const
    {
        o["code"] = m.code;
        o["message"] = m.message;
    }
    void operator()(const msg::goodbye& m) const
    {
        o["reason"] = m.reason;
        if (m.drain_ms) o["drain_ms"] = m.drain_ms;
    }
};

}  // namespace

std::string_view type_name(const control_message& m) noexcept
{
    return std::visit(type_visitor{}, m);
}

std::string serialize(const control_message& m)
{
    json::object o;
    o["type"] = type_name(m);
    std::visit(serialize_visitor{o}, m);
    return json::serialize(o);
}

}  // namespace muxgate::wire
