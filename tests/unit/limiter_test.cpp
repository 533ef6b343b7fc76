// common/rate_limit (failure_limiter) and common/backoff, with the time and
// the random seed injected: no sleeping, no timing thresholds.
#include "common/backoff.hpp"
#include "common/rate_limit.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

using namespace muxgate;
using namespace std::chrono_literals;

namespace {

// An arbitrary, fixed point in time.
const failure_limiter::clock::time_point t0 = failure_limiter::clock::time_point{} + 1000h;

}  // namespace

TEST_SUITE("common.rate_limit")
{
TEST_CASE("burst failures at once, then blocked")
{
    failure_limiter l{3, 6};  // 3 at once, one back every 10 s
    CHECK(l.allowed("a", t0));
    CHECK(l.tracked() == 0);  // an address is remembered only once it failed
    CHECK(l.failed("a", t0));       // 2 left
    CHECK(l.failed("a", t0));       // 1 left
    CHECK_FALSE(l.failed("a", t0)); // 0 left: blocked
    CHECK_FALSE(l.allowed("a", t0));
    CHECK(l.tracked() == 1);
    // Others are not affected.
    CHECK(l.allowed("b", t0));
}

TEST_CASE("tokens come back at per_minute")
{
    failure_limiter l{3, 6};
    for (int i = 0; i < 3; ++i) l.failed("a", t0);
    // (Times stay clear of exact token boundaries: the bucket counts in
    // floating point.)
    CHECK_FALSE(l.allowed("a", t0 + 9s));   // 0.9 token
    CHECK(l.allowed("a", t0 + 11s));        // 1.1: one token back
    CHECK_FALSE(l.failed("a", t0 + 11s));   // and spent again: 0.1
    CHECK_FALSE(l.allowed("a", t0 + 19s));  // 0.9
    // After a long time the bucket is full again, not fuller than burst.
    CHECK(l.allowed("a", t0 + 1h));
    CHECK(l.failed("a", t0 + 1h));
    CHECK(l.failed("a", t0 + 1h));
    CHECK_FALSE(l.failed("a", t0 + 1h));
}

TEST_CASE("a burst of 1 blocks at the first failure")
{
    failure_limiter l{1, 1};
    CHECK_FALSE(l.failed("a", t0));
    CHECK_FALSE(l.allowed("a", t0 + 59s));
    CHECK(l.allowed("a", t0 + 61s));
}

TEST_CASE("time that goes backwards refills nothing")
{
    failure_limiter l{2, 60};
    l.failed("a", t0);
    CHECK_FALSE(l.failed("a", t0));
    CHECK_FALSE(l.allowed("a", t0 - 1h));
    CHECK_FALSE(l.allowed("a", t0));
    CHECK(l.allowed("a", t0 + 2s));
}

TEST_CASE("configure changes burst and rate for the next refill")
{
    failure_limiter l{2, 60};
    l.failed("a", t0);
    l.failed("a", t0);
    l.configure(5, 1);
    CHECK_FALSE(l.allowed("a", t0 + 30s));  // 0.5 token at the new rate
    CHECK(l.allowed("a", t0 + 60s));        // 0.5 + 0.5, exact in binary
    // The new burst applies to new addresses.
    for (int i = 0; i < 4; ++i) CHECK(l.failed("b", t0));
    CHECK_FALSE(l.failed("b", t0));
}

TEST_CASE("at most max_tracked addresses; full buckets are forgotten first")
{
    failure_limiter l{2, 6, 2};
    l.failed("a", t0);
    l.failed("b", t0);
    CHECK(l.tracked() == 2);
    // Both are still draining: one is dropped to make room.
    l.failed("c", t0);
    CHECK(l.tracked() == 2);
    // Later every bucket is full again: the sweep forgets them all.
    l.failed("d", t0 + 1h);
    CHECK(l.tracked() == 1);
    CHECK(l.allowed("a", t0 + 1h));
}
}

TEST_SUITE("common.backoff")
{
TEST_CASE("each delay is in [d/2, d], d doubles up to the cap")
{
    backoff b{1000ms, 30000ms, 42};
    const std::vector<long> caps{1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
    for (long d : caps) {
        CAPTURE(d);
        CHECK(b.peek().count() == d);
        const auto delay = b.next().count();
        CHECK(delay >= d / 2);
        CHECK(delay <= d);
    }
    CHECK(b.peek().count() == 30000);
}

TEST_CASE("reset starts again from the initial delay")
{
    backoff b{500ms, 4000ms, 7};
    for (int i = 0; i < 5; ++i) b.next();
    CHECK(b.peek() == 4000ms);
    b.reset();
    CHECK(b.peek() == 500ms);
    const auto d = b.next();
    CHECK(d >= 250ms);
    CHECK(d <= 500ms);
    CHECK(b.peek() == 1000ms);
}

TEST_CASE("the same seed gives the same delays; other seeds spread out")
{
    backoff a{1000ms, 30000ms, 1234}, b{1000ms, 30000ms, 1234};
    std::vector<long> first;
    for (int i = 0; i < 20; ++i) {
        const auto x = a.next();
        CHECK(x == b.next());
        first.push_back(x.count());
    }
    // A fleet restarting together: 50 agents, 50 seeds, the first delay is
    // not the same for all of them.
    std::vector<long> firsts;
    for (std::uint64_t seed = 0; seed < 50; ++seed) firsts.push_back(backoff{1000ms, 30000ms, seed}.next().count());
    std::sort(firsts.begin(), firsts.end());
    CHECK(std::unique(firsts.begin(), firsts.end()) - firsts.begin() > 10);
}

TEST_CASE("edge cases: zero initial delay, cap below initial")
{
    backoff zero{0ms, 1000ms, 1};
    CHECK(zero.next() == 0ms);
    CHECK(zero.peek() == 0ms);  // 0 doubled stays 0
    backoff low{5000ms, 1000ms, 1};
    const auto d = low.next();
    CHECK(d >= 2500ms);
    CHECK(d <= 5000ms);
    CHECK(low.peek() == 1000ms);
    const auto e = low.next();
    CHECK(e >= 500ms);
    CHECK(e <= 1000ms);
}
}
