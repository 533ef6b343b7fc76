// Failed-authentication limiter: a token bucket per source address.
// Each failure takes a token; an address with no token left is refused
// before TLS until the bucket refills. Sans-I/O: the caller passes the time.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace muxgate {

class failure_limiter {
public:
    using clock = std::chrono::steady_clock;

    // `burst` failures at once, refilled at `per_minute`. At most
    // `max_tracked` addresses are remembered (full buckets are forgotten
    // first), so an address scan cannot grow memory without bound.
    failure_limiter(std::uint32_t burst, std::uint32_t per_minute, std::size_t max_tracked = 65536)
        : burst_(burst), per_minute_(per_minute), max_tracked_(max_tracked)
    {
    }

    void configure(std::uint32_t burst, std::uint32_t per_minute)
    {
        std::lock_guard lock{m_};
        burst_ = burst;
        per_minute_ = per_minute;
    }

    // May this address try (again)?
    bool allowed(const std::string& addr, clock::time_point now)
    {
        std::lock_guard lock{m_};
        auto it = buckets_.find(addr);
        if (it == buckets_.end()) return true;
        refill(it->second, now);
        return it->second.tokens >= 1.0;
    }

    // Record a failure; returns false if the address is now blocked.
    bool failed(const std::string& addr, clock::time_point now)
    {
        std::lock_guard lock{m_};
        auto it = buckets_.find(addr);
        if (it == buckets_.end()) {
            if (buckets_.size() >= max_tracked_) sweep(now);
            if (buckets_.size() >= max_tracked_) buckets_.erase(buckets_.begin());
            it = buckets_.emplace(addr, bucket{static_cast<double>(burst_), now}).first;
        }
        refill(it->second, now);
        it->second.tokens -= 1.0;
        return it->second.tokens >= 1.0;
    }

    std::size_t tracked() const
    {
        std::lock_guard lock{m_};
        return buckets_.size();
    }

private:
    struct bucket {
        double tokens;
        clock::time_point last;
    };

    void refill(bucket& b, clock::time_point now) const
    {
        const double minutes = std::chrono::duration<double, std::ratio<60>>(now - b.last).count();
        if (minutes > 0) {
            b.tokens = std::min<double>(burst_, b.tokens + minutes * per_minute_);
            b.last = now;
        }
    }

    void sweep(clock::time_point now)
    {
        for (auto it = buckets_.begin(); it != buckets_.end();) {
            refill(it->second, now);
            it = it->second.tokens >= burst_ ? buckets_.erase(it) : std::next(it);
        }
    }

    mutable std::mutex m_;
    std::uint32_t burst_;
    std::uint32_t per_minute_;
    std::size_t max_tracked_;
    std::unordered_map<std::string, bucket> buckets_;
};

}  // namespace muxgate
