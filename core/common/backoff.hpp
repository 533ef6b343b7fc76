// Reconnect delay: exponential with full jitter, reset after a stable
// session. Sans-I/O; the random source is injected for tests.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace muxgate {

class backoff {
public:
    using ms = std::chrono::milliseconds;

    backoff(ms initial, ms cap, std::uint64_t seed = std::random_device{}())
        : initial_(initial), cap_(cap), next_(initial), rng_(seed)
    {
    }

    // The delay before the next attempt: uniform in [next/2, next], then next
    // doubles up to the cap. Half the range stays fixed so a fleet of agents
    // spreads out but none retries instantly.
    ms next()
    {
        const auto hi = next_.count();
        std::uniform_int_distribution<std::int64_t> d{hi / 2, hi};
        const ms delay{d(rng_)};
        next_ = std::min(cap_, next_ * 2);
        return delay;
    }

    // A session stayed up long enough: start again from the initial delay.
    void reset() { next_ = initial_; }
    ms peek() const { return next_; }

private:
    ms initial_;
    ms cap_;
    ms next_;
    std::mt19937_64 rng_;
};

}  // namespace muxgate
