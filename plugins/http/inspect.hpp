// Request inspection on the agent: a bounded ring of recent exchanges
// (method, path, status, timing, headers, the first bytes of both bodies),
// served as JSON and a small HTML page on a loopback address, with replay.
//
// Memory is bounded by entries × (2 × body_bytes + heads): the oldest
// exchange is dropped when the ring is full, and heads come from the parser,
// itself bounded by max_head.
#pragma once

#include "http1.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace muxgate::http {

struct exchange_record {
    std::uint64_t id = 0;
    std::string tunnel;
    std::string peer;             // public client, as the gateway saw it
    std::string target_host;      // where replay sends it
    std::uint32_t target_port = 0;
    bool target_tls = false;
    std::int64_t started_ms = 0;  // Unix time
    std::string method, path;
    std::string request_head;     // as sent to the local server
    std::string request_body;     // first body_bytes (chunked framing included)
    std::uint64_t request_bytes = 0;
    int status = 0;               // 0 while waiting
    std::string response_head;
    std::string response_body;
    std::uint64_t response_bytes = 0;
    std::int64_t duration_us = -1;  // head sent to response complete
    bool replay = false;
};

class inspect_ring {
public:
    inspect_ring(std::size_t entries, std::size_t body_bytes) : cap_(entries), body_(body_bytes) {}

    std::uint64_t add(exchange_record r);
    void request_body(std::uint64_t id, std::string_view bytes);
    void response_head(std::uint64_t id, int status, std::string_view head);
    void response_body(std::uint64_t id, std::string_view bytes);
    void response_done(std::uint64_t id);

    // JSON array of every record, newest last.
    std::string to_json() const;
    bool get(std::uint64_t id, exchange_record& out) const;
    std::size_t body_bytes() const noexcept { return body_; }

private:
    exchange_record* find(std::uint64_t id);
    mutable std::mutex mutex_;
    std::deque<exchange_record> ring_;
    std::deque<std::chrono::steady_clock::time_point> starts_;
    std::size_t cap_;
    std::size_t body_;
    std::uint64_t next_ = 1;
};

// A tiny loopback HTTP server over the ring (own thread, blocking sockets):
//   GET  /                 HTML list
//   GET  /api/requests     JSON
//   POST /api/replay/<id>  sends the recorded request again to the local
//                          server (plain http targets) and records it
class inspect_server {
public:
    inspect_server(std::shared_ptr<inspect_ring> ring, std::string address);
    ~inspect_server();
    bool start(std::string& error);
    std::uint16_t port() const noexcept { return port_; }

private:
    void run();
    void serve(int fd);
    std::string replay(std::uint64_t id);

    std::shared_ptr<inspect_ring> ring_;
    std::string address_;
    int listen_fd_ = -1;
    int wake_[2] = {-1, -1};
    std::uint16_t port_ = 0;
    std::thread thread_;
};

}  // namespace muxgate::http
