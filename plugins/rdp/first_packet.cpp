// See first_packet.hpp. Offsets in reasons count from the first byte the
// client sent, so a log line points at the byte that is wrong.
#include "first_packet.hpp"

#include <cstdio>

namespace muxgate::rdp {

namespace {

std::uint16_t be16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }
std::uint16_t le16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | p[1] << 8); }
std::uint32_t le32(const std::uint8_t* p)
{
    return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
           static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

first_packet more(std::size_t needed)
{
    first_packet r;
    r.status = parse_status::need_more;
    r.needed = needed;
    return r;
}

first_packet bad(std::string why)
{
    first_packet r;
    r.status = parse_status::malformed;
    r.reason = std::move(why);
    return r;
}

std::string fmt_at(const char* what, std::size_t offset)
{
    return std::string{what} + " (offset " + std::to_string(offset) + ")";
}

void put_utf8(std::string& out, std::uint32_t cp)
{
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | cp >> 6);
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | cp >> 12);
        out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | cp >> 18);
        out += static_cast<char>(0x80 | (cp >> 12 & 0x3F));
        out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

// UTF-16LE code units to UTF-8; a lone surrogate becomes U+FFFD.
std::string utf16le_to_utf8(const std::uint8_t* p, std::size_t units)
{
    std::string out;
    out.reserve(units);
    for (std::size_t i = 0; i < units; ++i) {
        std::uint32_t u = le16(p + 2 * i);
        if (u >= 0xD800 && u <= 0xDBFF && i + 1 < units) {
            const std::uint32_t lo = le16(p + 2 * (i + 1));
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                put_utf8(out, 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00));
                ++i;
                continue;
            }
        }
        if (u >= 0xD800 && u <= 0xDFFF) u = 0xFFFD;
        put_utf8(out, u);
    }
    return out;
}

bool starts_with(std::span<const std::uint8_t> s, std::string_view prefix)
{
    return s.size() >= prefix.size() &&
           std::string_view{reinterpret_cast<const char*>(s.data()), prefix.size()} == prefix;
}

// Index of "\r\n" in s, or npos.
std::size_t find_crlf(std::span<const std::uint8_t> s)
{
    for (std::size_t i = 0; i + 1 < s.size(); ++i)
        if (s[i] == '\r' && s[i + 1] == '\n') return i;
    return std::string_view::npos;
}

constexpr std::string_view mstshash_prefix = "Cookie: mstshash=";

}  // namespace

first_packet parse(std::span<const std::uint8_t> b, const parse_limits& limits)
{
    const std::size_t max = limits.max_first_packet;
    // Both a TPKT header and a preconnection PDU's cbSize take 4 bytes.
    if (b.size() < 4) return more(4);

    first_packet r;
    std::size_t off = 0;
    // A TPKT starts 03 00. A preconnection PDU starts with its cbSize (u32
    // LE): 03 00 there would mean at least 65539 bytes, beyond any limit.
    if (!(b[0] == tpkt_version && b[1] == 0)) {
        const std::uint32_t cb = le32(b.data());
        if (cb < preconnection_v1_size)
            return bad("preconnection PDU: cbSize " + std::to_string(cb) + " is below " +
                       std::to_string(preconnection_v1_size) +
                       " (offset 0; not an RDP client?)");
        if (static_cast<std::uint64_t>(cb) + tpkt_header_size + x224_cr_fixed_size > max)
            return bad("preconnection PDU: cbSize " + std::to_string(cb) +
                       " leaves no room for a Connection Request within max_first_packet " +
                       std::to_string(max) + " (offset 0)");
        if (b.size() < cb) return more(cb);
        r.preconnection_version = le32(b.data() + 8);
        r.preconnection_id = le32(b.data() + 12);
        if (r.preconnection_version != 1 && r.preconnection_version != 2)
            return bad("preconnection PDU: version " + std::to_string(r.preconnection_version) +
                       " is neither 1 nor 2 (offset 8)");
        if (r.preconnection_version == 2) {
            if (cb < preconnection_v2_min)
                return bad("preconnection PDU v2: cbSize " + std::to_string(cb) +
                           " has no room for cchPCB (offset 0)");
            const std::size_t cch = le16(b.data() + 16);
            if (preconnection_v2_min + 2 * cch > cb)
                return bad("preconnection PDU v2: cchPCB " + std::to_string(cch) +
                           " runs past cbSize " + std::to_string(cb) + " (offset 16)");
            std::string blob = utf16le_to_utf8(b.data() + preconnection_v2_min, cch);
            // FreeRDP counts the terminating NUL twice; cut every trailing one.
            while (!blob.empty() && blob.back() == '\0') blob.pop_back();
            r.preconnection_blob = std::move(blob);
        }
        r.has_preconnection = true;
        r.preconnection_size = cb;
        off = cb;
    }

    if (b.size() < off + tpkt_header_size) return more(off + tpkt_header_size);
    if (b[off] != tpkt_version)
        return bad("TPKT version " + std::to_string(b[off]) + " is not 3" + fmt_at("", off));
    if (b[off + 1] != 0)
        return bad(fmt_at("TPKT reserved byte is not 0", off + 1));
    const std::size_t len = be16(b.data() + off + 2);
    if (len < tpkt_header_size + x224_cr_fixed_size)
        return bad("TPKT length " + std::to_string(len) +
                   " is shorter than an X.224 Connection Request" + fmt_at("", off + 2));
    if (off + len > max)
        return bad("first packet of " + std::to_string(off + len) +
                   " bytes exceeds max_first_packet " + std::to_string(max) + fmt_at("", off + 2));
    if (b.size() < off + len) return more(off + len);

    const std::size_t x = off + tpkt_header_size;
    const std::uint8_t li = b[x];
    const std::uint8_t code = b[x + 1];
    if ((code & 0xF0) != x224_cr_code) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", code);
        return bad(std::string{"X.224 TPDU code "} + hex + " is not a Connection Request" +
                   fmt_at("", x + 1));
    }
    if (li < x224_cr_fixed_size - 1 || li > len - tpkt_header_size - 1)
        return bad("X.224 length indicator " + std::to_string(li) +
                   " does not fit the TPKT length " + std::to_string(len) + fmt_at("", x));

    // User data: everything after the fixed part up to the end of the TPKT.
    const std::size_t ud_off = x + x224_cr_fixed_size;
    auto ud = b.subspan(ud_off, off + len - ud_off);
    const bool neg_first = ud.size() >= neg_req_size && ud[0] == neg_req_type && ud[2] == 8 &&
                           ud[3] == 0;
    if (!ud.empty() && !neg_first) {
        const std::size_t crlf = find_crlf(ud);
        if (crlf == std::string_view::npos)
            return bad("X.224 user data has a cookie or routing token without CRLF" +
                       fmt_at("", ud_off));
        std::string line{reinterpret_cast<const char*>(ud.data()), crlf};
        if (starts_with(ud, mstshash_prefix))
            r.mstshash = line.substr(mstshash_prefix.size());
        else
            r.routing_token = std::move(line);
        ud = ud.subspan(crlf + 2);
    }
    const std::size_t neg_off = off + len - ud.size();
    if (!ud.empty() && ud[0] == neg_req_type) {
        if (ud.size() < neg_req_size)
            return bad(fmt_at("RDP_NEG_REQ is truncated", neg_off));
        if (le16(ud.data() + 2) != neg_req_size)
            return bad("RDP_NEG_REQ length " + std::to_string(le16(ud.data() + 2)) + " is not 8" +
                       fmt_at("", neg_off + 2));
        r.has_neg_req = true;
        r.requested_protocols = le32(ud.data() + 4);
    }
    // Anything after (RDP_NEG_CORRELATION_INFO, say) is the server's business.

    r.status = parse_status::complete;
    r.size = off + len;
    r.needed = r.size;
    return r;
}

std::string normalize_route_name(std::string_view t)
{
    constexpr std::string_view cookie = "Cookie: msts=";
    constexpr std::string_view broker = "tsv://MS Terminal Services Plugin.1.";
    if (t.substr(0, cookie.size()) == cookie) t.remove_prefix(cookie.size());
    if (t.substr(0, broker.size()) == broker) t.remove_prefix(broker.size());
    return std::string{t};
}

route_choice choose_route(const first_packet& p, bool use_mstshash)
{
    route_choice c;
    if (p.status != parse_status::complete) return c;
    if (!p.preconnection_blob.empty()) {
        c.kind = route_kind::pcb_blob;
        c.key = normalize_route_name(p.preconnection_blob);
    } else if (!p.routing_token.empty()) {
        c.kind = route_kind::token;
        c.key = normalize_route_name(p.routing_token);
    } else if (p.has_preconnection) {
        c.kind = route_kind::pcb_id;
        c.key = std::to_string(p.preconnection_id);
    } else if (use_mstshash && !p.mstshash.empty()) {
        c.kind = route_kind::mstshash;
        c.key = p.mstshash;
    }
    return c;
}

const char* route_kind_name(route_kind k) noexcept
{
    switch (k) {
    case route_kind::none: return "none";
    case route_kind::pcb_blob: return "preconnection-blob";
    case route_kind::token: return "token";
    case route_kind::pcb_id: return "preconnection-id";
    case route_kind::mstshash: return "mstshash";
    }
    return "?";
}

std::string printable(std::string_view t, std::size_t max)
{
    std::string out;
    const bool cut = t.size() > max;
    if (cut) t = t.substr(0, max);
    for (unsigned char ch : t) {
        if (ch >= 0x20 && ch < 0x7F && ch != '\\' && ch != '"') {
            out += static_cast<char>(ch);
        } else {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02X", ch);
            out += hex;
        }
    }
    if (cut) out += "...";
    return out;
}

}  // namespace muxgate::rdp
