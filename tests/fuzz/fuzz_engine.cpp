// fuzz_engine: the mux engine, in either role, driven by a program read from
// the input: a sequence of messages from the peer (raw bytes, or control and
// data frames built from a few input bytes so the fuzzer gets past JSON
// quickly) interleaved with the local calls a session makes (establish, open,
// confirm, refuse, consumed, reset, fin_sent, consume_credit).
//
// The handler keeps its own model of every stream it was told about and
// checks each callback against it: never an event for a stream it does not
// know, never data beyond the receive window or after Fin (or, on the
// gateway, before Opened), Opened/Refused/Reset/Window sent only when they
// make sense, Window credit equal to what was consumed. After every step the
// engine's counts (streams, pending opens), protocol ids, can_send() and send
// credit (never above 2^31-1) must agree with the model.
//
// Input layout (all integers big-endian; reads past the end give 0):
//   [setup u8] then ops, each [op u8 % 12][operands]:
//     setup  bit 0 role (0 gateway, 1 agent); bits 1-2 recv_window
//            {3, 100, 4096, 262144}; bits 3-4 max_streams {1, 2, 4, 64};
//            bits 5-6 max_pending_opens {1, 2, 8, 256}; bit 7 small frame
//            limits (512 / 4096) instead of 1 MiB / 64 KiB
//     0 raw message      [len u16 % 1024][bytes]
//     1 control message  [ctl]  (see build_control)
//     2 data frame       [data] (see build_data)
//     3 batch            [n u8 % 4 + 2] then n x ([kind u8: even ctl, odd data][ctl|data])
//     4 establish        [window sel u8][max_frame sel u8]
//     5 open             [protocol u8]
//     6 confirm          [stream pick]
//     7 refuse           [stream pick]
//     8 consumed         [stream pick][n u16]
//     9 reset            [stream pick]
//    10 fin_sent         [stream pick]
//    11 consume_credit   [stream pick][n u32]
//   stream pick: [b u8] b < 192 and streams known: the (b % count)-th known
//   stream; b < 224: id b & 31; else [id u32].
#include "fuzz_util.hpp"
#include "mux/engine.hpp"

#include <algorithm>
#include <iterator>
#include <map>
#include <string>
#include <vector>

using namespace muxgate;
using namespace muxgate::fuzz;
namespace msg = wire::msg;
using mux::role;

namespace {

struct stream_model {
    std::uint8_t protocol = 0;
    bool confirmed = false;
    bool fin_in = false;
    bool fin_out = false;
    std::int64_t recv_credit = 0;    // what the peer may still send
    std::uint64_t undelivered = 0;   // delivered to us, not yet reported consumed
    std::uint64_t unreturned = 0;    // consumed, not yet returned with Window
    std::int64_t credit_seen = 0;    // send_credit() at the end of the last step
};

class model final : public mux::handler {
public:
    model(role r, const mux::limits& l) : role_(r), lim_(l), e(r, l, *this) {}

    // ---------------------------------------------------------- callbacks

    void on_session_message(wire::control_message&& m) override
    {
        using std::holds_alternative;
        if (!e.established()) {
            if (role_ == role::gateway)
                FUZZ_REQUIRE(holds_alternative<msg::auth>(m));
            else
                FUZZ_REQUIRE(holds_alternative<msg::auth_ok>(m) || holds_alternative<msg::auth_error>(m) ||
                             holds_alternative<msg::error>(m) || holds_alternative<msg::goodbye>(m));
            return;
        }
        FUZZ_REQUIRE(!holds_alternative<msg::auth>(m) && !holds_alternative<msg::auth_ok>(m) &&
                     !holds_alternative<msg::auth_error>(m));
        FUZZ_REQUIRE(!holds_alternative<msg::open>(m) && !holds_alternative<msg::opened>(m) &&
                     !holds_alternative<msg::refused>(m) && !holds_alternative<msg::fin>(m) &&
                     !holds_alternative<msg::reset>(m) && !holds_alternative<msg::window>(m));
        if (role_ == role::gateway)
            FUZZ_REQUIRE(!holds_alternative<msg::heartbeat>(m) && !holds_alternative<msg::registered>(m) &&
                         !holds_alternative<msg::register_error>(m));
        else
            FUZZ_REQUIRE(!holds_alternative<msg::heartbeat_ack>(m) &&
                         !holds_alternative<msg::register_tunnel>(m) &&
                         !holds_alternative<msg::unregister>(m));
    }

    void on_open(msg::open&& m) override
    {
        FUZZ_REQUIRE(role_ == role::agent);
        FUZZ_REQUIRE(e.established());
        FUZZ_REQUIRE(wire::is_gateway_stream(m.stream));
        FUZZ_REQUIRE(m.stream > highest_id);
        FUZZ_REQUIRE(live.count(m.stream) == 0);
        FUZZ_REQUIRE(live.size() < lim_.max_streams);
        FUZZ_REQUIRE(m.protocol_id >= 1 && m.protocol_id <= 255);
        FUZZ_REQUIRE(e.has(m.stream));
        highest_id = m.stream;
        auto& s = live[m.stream];
        s.protocol = static_cast<std::uint8_t>(m.protocol_id);
        s.recv_credit = lim_.recv_window;
        s.credit_seen = e.send_credit(m.stream);
        FUZZ_REQUIRE(s.credit_seen == e.peer_window());
    }

    void on_opened(std::uint32_t id) override
    {
        FUZZ_REQUIRE(role_ == role::gateway);
        auto* s = find(id);
        FUZZ_REQUIRE(s && !s->confirmed);
        FUZZ_REQUIRE(e.has(id));
        s->confirmed = true;
    }

    void on_data(std::uint32_t id, std::span<const std::uint8_t> d) override
    {
        auto* s = find(id);
        FUZZ_REQUIRE(s);  // never data for a stream we were not told about
        FUZZ_REQUIRE(e.has(id));
        FUZZ_REQUIRE(!d.empty());
        FUZZ_REQUIRE(!s->fin_in);
        if (role_ == role::gateway) FUZZ_REQUIRE(s->confirmed);
        FUZZ_REQUIRE(static_cast<std::int64_t>(d.size()) <= s->recv_credit);
        s->recv_credit -= static_cast<std::int64_t>(d.size());
        s->undelivered += d.size();
    }

    void on_fin(std::uint32_t id) override
    {
        auto* s = find(id);
        FUZZ_REQUIRE(s && !s->fin_in);
        if (role_ == role::gateway) FUZZ_REQUIRE(s->confirmed);
        s->fin_in = true;
        if (s->fin_out) {
            FUZZ_REQUIRE(!e.has(id));  // both directions done: erased
            live.erase(id);
        } else {
            FUZZ_REQUIRE(e.has(id));
        }
    }

    void on_reset(std::uint32_t id, mux::end_reason why, std::string_view code,
                  std::string_view message) override
    {
        auto* s = find(id);
        FUZZ_REQUIRE(s);  // never a reset for a stream we did not know
        FUZZ_REQUIRE(!e.has(id));
        switch (why) {
        case mux::end_reason::refused:
            FUZZ_REQUIRE(role_ == role::gateway && !s->confirmed);
            break;
        case mux::end_reason::stream_error:
            // The engine sent the Reset just before telling us.
            FUZZ_REQUIRE(reset_sent == id);
            FUZZ_REQUIRE(code == reset_code);
            FUZZ_REQUIRE(!code.empty() && !message.empty());
            break;
        case mux::end_reason::reset_by_peer:
            break;
        }
        reset_sent = 0;
        live.erase(id);
    }

    void on_credit(std::uint32_t id) override
    {
        auto* s = find(id);
        FUZZ_REQUIRE(s && e.has(id));
        const auto now = e.send_credit(id);
        FUZZ_REQUIRE(s->credit_seen == 0 && now > 0);  // only from blocked to unblocked
        s->credit_seen = now;
    }

    void send_control(wire::control_message&& m) override
    {
        if (auto* w = std::get_if<msg::window>(&m)) {
            auto* s = find(w->stream);
            FUZZ_REQUIRE(s && e.has(w->stream));
            FUZZ_REQUIRE(!s->fin_in);
            FUZZ_REQUIRE(w->credit >= 1 && w->credit == s->unreturned);
            s->unreturned = 0;
            s->recv_credit += w->credit;
            FUZZ_REQUIRE(s->recv_credit <= static_cast<std::int64_t>(lim_.recv_window));
            return;
        }
        if (auto* r = std::get_if<msg::reset>(&m)) {
            FUZZ_REQUIRE(find(r->stream) && !e.has(r->stream));
            FUZZ_REQUIRE(!r->code.empty());
            reset_sent = r->stream;
            reset_code = r->code;
            return;
        }
        if (auto* r = std::get_if<msg::refused>(&m)) {
            FUZZ_REQUIRE(role_ == role::agent && !e.has(r->stream));
            if (auto* s = find(r->stream)) {
                FUZZ_REQUIRE(refusing == r->stream && !s->confirmed);
            } else {
                // At max_streams: the Open is answered at once.
                FUZZ_REQUIRE(r->code == "limit");
                FUZZ_REQUIRE(live.size() >= lim_.max_streams);
                FUZZ_REQUIRE(wire::is_gateway_stream(r->stream) && r->stream > highest_id);
                highest_id = r->stream;
            }
            return;
        }
        if (auto* o = std::get_if<msg::opened>(&m)) {
            auto* s = find(o->stream);
            FUZZ_REQUIRE(role_ == role::agent && confirming == o->stream);
            FUZZ_REQUIRE(s && !s->confirmed && e.has(o->stream));
            s->confirmed = true;
            return;
        }
        FUZZ_REQUIRE(!"the engine sends only Window, Reset, Refused and Opened");
    }

    void on_ignored(std::string_view what) override
    {
        FUZZ_REQUIRE(e.established());
        FUZZ_REQUIRE(!what.empty());
    }

    // ---------------------------------------------------------- checks

    // After every step: the engine and the model agree.
    void check()
    {
        FUZZ_REQUIRE(e.stream_count() == live.size());
        std::size_t pending = 0;
        const auto threshold = std::max<std::uint32_t>(1, lim_.recv_window / 4);
        for (auto& [id, s] : live) {
            FUZZ_REQUIRE(e.has(id));
            FUZZ_REQUIRE(e.protocol_of(id) == s.protocol);
            FUZZ_REQUIRE(e.can_send(id) == (!s.fin_out && (role_ == role::gateway || s.confirmed)));
            const auto credit = e.send_credit(id);
            FUZZ_REQUIRE(credit >= 0 && credit <= mux::max_credit);
            s.credit_seen = credit;
            FUZZ_REQUIRE(s.recv_credit >= 0);
            if (!s.fin_in) FUZZ_REQUIRE(s.unreturned < threshold);
            if (!s.confirmed) ++pending;
        }
        FUZZ_REQUIRE(e.pending_opens() == pending);
        FUZZ_REQUIRE(reset_sent == 0);  // every stream error was followed by on_reset
    }

    stream_model* find(std::uint32_t id)
    {
        auto it = live.find(id);
        return it == live.end() ? nullptr : &it->second;
    }

    role role_;
    mux::limits lim_;
    mux::engine e;
    std::map<std::uint32_t, stream_model> live;  // streams the handler knows
    std::uint32_t highest_id = 0;                // highest id opened (either side's view)
    std::uint32_t reset_sent = 0;
    std::string reset_code;
    std::uint32_t confirming = 0;  // the stream a confirm() call is about
    std::uint32_t refusing = 0;    // the stream a refuse() call is about
};

// ------------------------------------------------------------------ builders

std::uint32_t pick(reader& in, model& m)
{
    const auto b = in.u8();
    if (b < 192 && !m.live.empty()) {
        auto it = m.live.begin();
        std::advance(it, b % m.live.size());
        return it->first;
    }
    if (b < 224) return b & 31u;
    return in.u32();
}

std::uint32_t pick_credit(reader& in)
{
    switch (in.u8() % 4) {
    case 0: return 1;
    case 1: return 1u + in.u8();
    case 2: return 1u + in.u16();
    default: return in.u32();
    }
}

std::uint32_t next_odd(std::uint32_t highest)
{
    return highest >= 0xfffffffdu ? 0xffffffffu : (highest | 1u) + (highest == 0 ? 0u : 2u);
}

void append(std::vector<std::uint8_t>& out, const std::vector<std::uint8_t>& part)
{
    out.insert(out.end(), part.begin(), part.end());
}

std::vector<std::uint8_t> frame_of(std::uint8_t protocol, std::span<const std::uint8_t> payload)
{
    std::vector<std::uint8_t> out(wire::frame_header_size);
    wire::encode_frame_header(out.data(), protocol, static_cast<std::uint32_t>(payload.size()));
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

// [type u8 % 18][fields...]: one control message of every type, or an
// unknown type (17).
std::vector<std::uint8_t> build_control(reader& in, model& m)
{
    const auto type = in.u8() % 18;
    wire::control_message c;
    switch (type) {
    case 0: c = msg::auth{"mgt_token", "agent", "", 1, 1u + in.u16(), 4096, 16384}; break;
    case 1: c = msg::auth_ok{"s", "", 1000, 1u + in.u16(), 4096, 16384, 1u + in.u8(), 8}; break;
    case 2: c = msg::auth_error{"bad_token", "", 0}; break;
    case 3: c = msg::heartbeat{in.u8()}; break;
    case 4: c = msg::heartbeat_ack{in.u8()}; break;
    case 5: c = msg::register_tunnel{in.u8(), "t", 1u + in.u8() % 255u, 0, "{}"}; break;
    case 6: c = msg::registered{in.u8(), "t", "0.0.0.0:1"}; break;
    case 7: c = msg::register_error{in.u8(), "t", "duplicate", ""}; break;
    case 8: c = msg::unregister{"t"}; break;
    case 9: {
        const auto how = in.u8();
        const std::uint32_t id = how < 200 ? next_odd(m.highest_id) : pick(in, m);
        c = msg::open{id, "t", 1u + in.u8() % 4u, "192.0.2.1:1", how & 1 ? R"({"k":[1]})" : "{}"};
        break;
    }
    case 10: c = msg::opened{pick(in, m)}; break;
    case 11: c = msg::refused{pick(in, m), "connect_failed", "no"}; break;
    case 12: c = msg::fin{pick(in, m)}; break;
    case 13: c = msg::reset{pick(in, m), "reset", ""}; break;
    case 14: {
        const auto id = pick(in, m);
        c = msg::window{id, pick_credit(in)};
        break;
    }
    case 15: c = msg::error{"protocol_error", "x"}; break;
    case 16: c = msg::goodbye{"bye", in.u16()}; break;
    default: {
        const std::string json = R"({"type":"FutureThing","stream":1})";
        return frame_of(0, {reinterpret_cast<const std::uint8_t*>(json.data()), json.size()});
    }
    }
    // Stream ids of 0 cannot be serialized meaningfully: parse_control would
    // refuse them, which raw messages (op 0) already cover.
    const std::string json = wire::serialize(c);
    return frame_of(0, {reinterpret_cast<const std::uint8_t*>(json.data()), json.size()});
}

// [stream pick][protocol sel u8][len u16]: a data frame; the protocol is the
// stream's own unless sel >= 224; len % 512, or up to 70000 when the high bit
// is set (beyond most windows).
std::vector<std::uint8_t> build_data(reader& in, model& m)
{
    const auto id = pick(in, m);
    const auto sel = in.u8();
    std::uint8_t protocol = static_cast<std::uint8_t>(1 + sel % 255);
    if (sel < 224) {
        if (auto* s = m.find(id)) protocol = s->protocol;
    }
    const auto l = in.u16();
    const std::size_t len = (l & 0x8000) ? (l & 0x7fff) * 2u + 4000u : l % 512u;
    std::vector<std::uint8_t> payload(wire::stream_id_size + len, static_cast<std::uint8_t>(sel));
    wire::put_u32(payload.data(), id);
    return frame_of(protocol, payload);
}

mux::limits setup_limits(std::uint8_t setup)
{
    static constexpr std::uint32_t windows[] = {3, 100, 4096, 262144};
    static constexpr std::uint32_t streams[] = {1, 2, 4, 64};
    static constexpr std::uint32_t pending[] = {1, 2, 8, 256};
    mux::limits l;
    l.recv_window = windows[(setup >> 1) & 3];
    l.max_streams = streams[(setup >> 3) & 3];
    l.max_pending_opens = pending[(setup >> 5) & 3];
    if (setup & 0x80) {
        l.max_frame_payload = 4096;
        l.max_control = 512;
    }
    return l;
}

// MUXGATE_FUZZ_TRACE=1 in the environment prints each op and how the
// session ended: for reading a saved crash input or checking a seed.
const bool trace = std::getenv("MUXGATE_FUZZ_TRACE") != nullptr;

// Runs one op; false once the engine reported a session error.
bool step(reader& in, model& m)
{
    auto feed = [&](const std::vector<std::uint8_t>& message) {
        const auto f = m.e.on_message(message);
        if (trace) std::fprintf(stderr, "  message of %zu bytes: %s\n", message.size(),
                                f ? f->reason.c_str() : "ok");
        if (f) {
            FUZZ_REQUIRE(!f->reason.empty());
            return false;
        }
        return true;
    };
    const int op = in.u8() % 12;
    if (trace)
        std::fprintf(stderr, "op %d (streams %zu, established %d)\n", op, m.live.size(),
                     m.e.established());
    switch (op) {
    case 0: {
        const auto len = in.u16() % 1024u;
        const auto bytes = in.take(len);
        return feed({bytes.begin(), bytes.end()});
    }
    case 1: return feed(build_control(in, m));
    case 2: return feed(build_data(in, m));
    case 3: {
        std::vector<std::uint8_t> message;
        const int n = in.u8() % 4 + 2;
        for (int i = 0; i < n; ++i) append(message, in.u8() % 2 ? build_data(in, m) : build_control(in, m));
        return feed(message);
    }
    case 4: {
        // Windows stay at or below 2^31-1: a larger one is a known bug
        // (engine_test.cpp, "a peer window above 2^31-1 ...").
        static constexpr std::uint32_t windows[] = {1, 100, 65536, 0x7fffffffu};
        const auto w = windows[in.u8() % 4];
        const std::uint32_t max_frame = 4096u << (in.u8() % 4);
        if (!m.e.established()) {
            m.e.establish(w, max_frame);
            FUZZ_REQUIRE(m.e.peer_window() == w && m.e.peer_max_frame() == max_frame);
        }
        return true;
    }
    case 5: {
        const auto protocol = static_cast<std::uint8_t>(1 + in.u8() % 4);
        const std::size_t pending = m.e.pending_opens();
        const auto id = m.e.open(protocol);
        const auto refusal = std::string{m.e.open_refusal()};
        if (m.role_ != role::gateway || !m.e.established()) {
            FUZZ_REQUIRE(id == 0 && refusal == "session not established");
        } else if (m.live.size() >= m.lim_.max_streams) {
            FUZZ_REQUIRE(id == 0 && refusal.find("max_streams") != std::string::npos);
        } else if (pending >= m.lim_.max_pending_opens) {
            FUZZ_REQUIRE(id == 0 && refusal.find("max_pending_opens") != std::string::npos);
        } else {
            FUZZ_REQUIRE(id != 0 && wire::is_gateway_stream(id) && id > m.highest_id);
            m.highest_id = id;
            auto& s = m.live[id];
            s.protocol = protocol;
            s.recv_credit = m.lim_.recv_window;
            s.credit_seen = m.e.send_credit(id);
            FUZZ_REQUIRE(s.credit_seen == m.e.peer_window());
        }
        return true;
    }
    case 6: {
        const auto id = pick(in, m);
        auto* s = m.find(id);
        const bool expect = m.role_ == role::agent && s && !s->confirmed;
        m.confirming = id;
        FUZZ_REQUIRE(m.e.confirm(id) == expect);
        m.confirming = 0;
        if (expect) FUZZ_REQUIRE(m.find(id)->confirmed);
        return true;
    }
    case 7: {
        const auto id = pick(in, m);
        if (m.role_ != role::agent) return true;  // the gateway never refuses
        m.refusing = id;
        m.e.refuse(id, "connect_failed", "fuzz");
        m.refusing = 0;
        FUZZ_REQUIRE(!m.e.has(id));
        m.live.erase(id);
        m.reset_sent = 0;
        return true;
    }
    case 8: {
        const auto id = pick(in, m);
        std::uint32_t n = in.u16();
        if (auto* s = m.find(id)) {
            // A session reports only bytes it was given.
            n = static_cast<std::uint32_t>(std::min<std::uint64_t>(n, s->undelivered));
            s->undelivered -= n;
            if (!s->fin_in) s->unreturned += n;
        }
        m.e.consumed(id, n);
        return true;
    }
    case 9: {
        const auto id = pick(in, m);
        const bool known = m.find(id) != nullptr;
        m.e.reset(id, "reset", "fuzz");
        FUZZ_REQUIRE(!m.e.has(id));
        FUZZ_REQUIRE(m.reset_sent == (known ? id : 0));
        m.reset_sent = 0;
        m.live.erase(id);
        return true;
    }
    case 10: {
        const auto id = pick(in, m);
        m.e.fin_sent(id);
        if (auto* s = m.find(id)) {
            s->fin_out = true;
            if (s->fin_in) {
                FUZZ_REQUIRE(!m.e.has(id));
                m.live.erase(id);
            }
        }
        return true;
    }
    default: {
        const auto id = pick(in, m);
        const auto before = m.e.send_credit(id);
        // A session sends only within its credit.
        const auto n = static_cast<std::uint32_t>(std::min<std::int64_t>(in.u32(), before));
        m.e.consume_credit(id, n);
        FUZZ_REQUIRE(m.e.send_credit(id) == before - n);
        return true;
    }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    reader in{data, size};
    const auto setup = in.u8();
    model m{setup & 1 ? role::agent : role::gateway, setup_limits(setup)};
    int steps = 0;
    while (!in.empty() && steps++ < 4096) {
        if (!step(in, m)) break;
        m.check();
    }
    return 0;
}
