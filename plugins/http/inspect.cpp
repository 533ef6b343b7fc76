#include "inspect.hpp"

#include <boost/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace muxgate::http {

namespace json = boost::json;

namespace {

std::int64_t now_ms()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void append_bounded(std::string& to, std::string_view bytes, std::size_t cap)
{
    if (to.size() >= cap) return;
    to.append(bytes.substr(0, cap - to.size()));
}

// Bytes shown as text: valid-looking ASCII as is, the rest escaped.
std::string printable(std::string_view s)
{
    std::string out;
    for (unsigned char c : s) {
        if ((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\r' || c == '\t') out.push_back(static_cast<char>(c));
        else {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            out += b;
        }
    }
    return out;
}

std::string html_escape(std::string_view s)
{
    std::string out;
    for (char c : s) {
        switch (c) {
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '&': out += "&amp;"; break;
        case '"': out += "&quot;"; break;
        default: out.push_back(c);
        }
    }
    return out;
}

bool send_all(int fd, std::string_view data)
{
    while (!data.empty()) {
        const auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0) return false;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

std::string reply(int status, std::string_view type, std::string_view body)
{
    return "HTTP/1.1 " + std::to_string(status) + " " + std::string{reason_phrase(status)} +
           "\r\nContent-Type: " + std::string{type} + "\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n" +
           std::string{body};
}

}  // namespace

std::uint64_t inspect_ring::add(exchange_record r)
{
    std::lock_guard lock{mutex_};
    r.id = next_++;
    r.started_ms = now_ms();
    while (ring_.size() >= cap_) {
        ring_.pop_front();
        starts_.pop_front();
    }
    ring_.push_back(std::move(r));
    starts_.push_back(std::chrono::steady_clock::now());
    return ring_.back().id;
}

exchange_record* inspect_ring::find(std::uint64_t id)
{
    if (ring_.empty() || id < ring_.front().id) return nullptr;
    const auto i = id - ring_.front().id;
    return i < ring_.size() ? &ring_[i] : nullptr;
}

void inspect_ring::request_body(std::uint64_t id, std::string_view bytes)
{
    std::lock_guard lock{mutex_};
    if (auto* r = find(id)) {
        r->request_bytes += bytes.size();
        append_bounded(r->request_body, bytes, body_);
    }
}

void inspect_ring::response_head(std::uint64_t id, int status, std::string_view head)
{
    std::lock_guard lock{mutex_};
    if (auto* r = find(id)) {
        r->status = status;
        r->response_head = std::string{head};
    }
}

void inspect_ring::response_body(std::uint64_t id, std::string_view bytes)
{
    std::lock_guard lock{mutex_};
    if (auto* r = find(id)) {
        r->response_bytes += bytes.size();
        append_bounded(r->response_body, bytes, body_);
    }
}

void inspect_ring::response_done(std::uint64_t id)
{
    std::lock_guard lock{mutex_};
    if (auto* r = find(id)) {
        const auto i = id - ring_.front().id;
        r->duration_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::steady_clock::now() - starts_[i])
                             .count();
    }
}

bool inspect_ring::get(std::uint64_t id, exchange_record& out) const
{
    std::lock_guard lock{mutex_};
    if (ring_.empty() || id < ring_.front().id) return false;
    const auto i = id - ring_.front().id;
    if (i >= ring_.size()) return false;
    out = ring_[i];
    return true;
}

std::string inspect_ring::to_json() const
{
    json::array a;
    std::lock_guard lock{mutex_};
    for (const auto& r : ring_) {
        json::object o;
        o["id"] = r.id;
        o["tunnel"] = r.tunnel;
        o["peer"] = r.peer;
        o["started_ms"] = r.started_ms;
        o["method"] = r.method;
        o["path"] = r.path;
        o["request_head"] = printable(r.request_head);
        o["request_body"] = printable(r.request_body);
        o["request_bytes"] = r.request_bytes;
        o["status"] = r.status;
        o["response_head"] = printable(r.response_head);
        o["response_body"] = printable(r.response_body);
        o["response_bytes"] = r.response_bytes;
        o["duration_us"] = r.duration_us;
        o["replay"] = r.replay;
        a.push_back(std::move(o));
    }
    return json::serialize(a);
}

// ------------------------------------------------------------------ server

inspect_server::inspect_server(std::shared_ptr<inspect_ring> ring, std::string address)
    : ring_(std::move(ring)), address_(std::move(address))
{
}

inspect_server::~inspect_server()
{
    if (thread_.joinable()) {
        const char b = 1;
        (void)!::write(wake_[1], &b, 1);
        thread_.join();
    }
    for (int fd : {listen_fd_, wake_[0], wake_[1]})
        if (fd >= 0) ::close(fd);
}

bool inspect_server::start(std::string& error)
{
    const auto colon = address_.rfind(':');
    if (colon == std::string::npos) {
        error = "inspect.listen must be \"127.0.0.1:PORT\"";
        return false;
    }
    const std::string ip = address_.substr(0, colon);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    int port = 0;
    try {
        port = std::stoi(address_.substr(colon + 1));
    } catch (...) {
        port = -1;
    }
    if (port < 0 || port > 65535 || ::inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1) {
        error = "inspect.listen must be \"IPv4:PORT\"";
        return false;
    }
    // Inspection shows request bodies and credentials: loopback only.
    if ((ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
        error = "inspect.listen must be a loopback address (127.x.x.x)";
        return false;
    }
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
        ::listen(listen_fd_, 16) != 0) {
        error = "inspect.listen " + address_ + ": " + std::strerror(errno);
        return false;
    }
    socklen_t len = sizeof sa;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    if (::pipe2(wake_, O_CLOEXEC) != 0) {
        error = "pipe2 failed";
        return false;
    }
    thread_ = std::thread([this] { run(); });
    return true;
}

void inspect_server::run()
{
    for (;;) {
        pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
        if (::poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (p[1].revents) return;
        if (p[0].revents & POLLIN) {
            const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) continue;
            timeval tv{5, 0};
            ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            serve(fd);
            ::close(fd);
        }
    }
}

void inspect_server::serve(int fd)
{
    std::string in;
    char buf[4096];
    head_limits lim;
    lim.max_head = 16 * 1024;
    message_head h;
    for (;;) {
        const auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return;
        in.append(buf, static_cast<std::size_t>(n));
        const auto r = parse_request(in, lim, h);
        if (r.state == parse_state::error) {
            send_all(fd, reply(r.status, "text/plain", r.error + "\n"));
            return;
        }
        if (r.state == parse_state::done) break;
    }
    // A browser page elsewhere must not drive replay: only our own Host.
    const auto host = h.get("host");
    if (host && normalize_host(*host) != "127.0.0.1" && normalize_host(*host) != "localhost") {
        send_all(fd, reply(403, "text/plain", "wrong Host\n"));
        return;
    }
    if (h.method == "GET" && h.target == "/api/requests") {
        send_all(fd, reply(200, "application/json", ring_->to_json()));
    } else if (h.method == "POST" && h.target.rfind("/api/replay/", 0) == 0) {
        std::uint64_t id = 0;
        try {
            id = std::stoull(h.target.substr(12));
        } catch (...) {
        }
        const auto result = replay(id);
        send_all(fd, reply(result.rfind("error", 0) == 0 ? 400 : 200, "application/json",
                           json::serialize(json::value(result))));
    } else if (h.method == "GET" && (h.target == "/" || h.target == "/index.html")) {
        const auto v = json::parse(ring_->to_json());
        std::string page =
            "<!doctype html><html><head><title>muxgate http inspection</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
            "pre{background:#f4f4f4;max-width:100em;overflow:auto}</style></head><body>"
            "<h1>Recent requests</h1><p>Newest first. <a href=\"/api/requests\">JSON</a></p><table>"
            "<tr><th>id</th><th>tunnel</th><th>method</th><th>path</th><th>status</th><th>ms</th>"
            "<th></th></tr>";
        const auto& a = v.as_array();
        for (auto it = a.rbegin(); it != a.rend(); ++it) {
            const auto& o = it->as_object();
            const auto id = std::to_string(o.at("id").to_number<std::uint64_t>());
            const auto dur = o.at("duration_us").to_number<std::int64_t>();
            page += "<tr><td>" + id + "</td><td>" + html_escape(o.at("tunnel").as_string()) +
                    "</td><td>" + html_escape(o.at("method").as_string()) + "</td><td>" +
                    html_escape(o.at("path").as_string()) + "</td><td>" +
                    std::to_string(o.at("status").to_number<int>()) + "</td><td>" +
                    (dur < 0 ? std::string{"-"} : std::to_string(dur / 1000)) +
                    "</td><td><form method=post action=\"/api/replay/" + id +
                    "\"><button>replay</button></form></td></tr>"
                    "<tr><td></td><td colspan=6><details><summary>details</summary><pre>" +
                    html_escape(o.at("request_head").as_string()) +
                    html_escape(o.at("request_body").as_string()) + "</pre><pre>" +
                    html_escape(o.at("response_head").as_string()) +
                    html_escape(o.at("response_body").as_string()) + "</pre></details></td></tr>";
        }
        page += "</table></body></html>";
        send_all(fd, reply(200, "text/html; charset=utf-8", page));
    } else {
        send_all(fd, reply(404, "text/plain", "not found\n"));
    }
}

std::string inspect_server::replay(std::uint64_t id)
{
    exchange_record r;
    if (!ring_->get(id, r)) return "error: no request " + std::to_string(id) + " in the ring";
    if (r.target_tls) return "error: replay to https targets is not supported";
    if (r.request_bytes > r.request_body.size())
        return "error: the request body was larger than inspect.body_bytes; cannot replay it";
    // Resend the head with Connection: close, so the response ends at EOF.
    message_head h;
    head_limits lim;
    lim.max_head = 1024 * 1024;
    lim.max_headers = 10000;
    if (parse_request(r.request_head, lim, h).state != parse_state::done)
        return "error: the recorded head does not parse";
    std::string head = h.method + " " + h.target + (h.minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
    for (const auto& f : h.headers) {
        std::string lower;
        for (char c : f.name) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
        if (lower == "connection" || lower == "keep-alive") continue;
        head += f.name + ": " + f.value + "\r\n";
    }
    head += "Connection: close\r\n\r\n";

    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(r.target_port));
    std::string host = r.target_host == "localhost" ? "127.0.0.1" : r.target_host;
    if (::inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1)
        return "error: replay needs an IPv4 target address";
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        ::close(fd);
        return "error: cannot connect to the local server";
    }
    exchange_record rec;
    rec.tunnel = r.tunnel;
    rec.peer = "replay";
    rec.target_host = r.target_host;
    rec.target_port = r.target_port;
    rec.method = r.method;
    rec.path = r.path;
    rec.request_head = head;
    rec.replay = true;
    const auto nid = ring_->add(rec);
    ring_->request_body(nid, r.request_body);
    send_all(fd, head);
    send_all(fd, r.request_body);
    std::string resp;
    char buf[16384];
    message_head rh;
    bool head_done = false;
    for (;;) {
        const auto n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        if (!head_done) {
            resp.append(buf, static_cast<std::size_t>(n));
            if (parse_response(resp, lim, h.method, rh).state == parse_state::done) {
                head_done = true;
                ring_->response_head(nid, rh.status, std::string_view{resp}.substr(0, rh.head_size));
                ring_->response_body(nid, std::string_view{resp}.substr(rh.head_size));
            }
        } else {
            ring_->response_body(nid, std::string_view{buf, static_cast<std::size_t>(n)});
        }
    }
    ::close(fd);
    ring_->response_done(nid);
    return std::to_string(nid);
}

}  // namespace muxgate::http
