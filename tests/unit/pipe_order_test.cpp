// net::pipe::in_order: a pipe's calls run in the order they were made, even
// when one comes from another strand (posted) and a later one from the
// pipe's own strand. One io_context thread and handlers queued in a fixed
// order make the interleaving deterministic: no sleeping, no timing.
#include "net/pipe.hpp"

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <memory>
#include <string>

using namespace muxgate;
namespace asio = boost::asio;

namespace {

// A pipe with no remote: only in_order() is under test.
class quiet_pipe final : public net::pipe {
public:
    explicit quiet_pipe(net::strand_type ex) : pipe(MG_PIPE_LOCAL, std::move(ex), net::pipe_limits{}) {}

protected:
    void on_write(net::chunk&&) override {}
    void on_write_fin() override {}
    void on_abort(mg_close_reason, std::string_view) override {}
    void on_finish() override {}
    void on_read_interest() override {}
};

}  // namespace

TEST_SUITE("net.pipe")
{
TEST_CASE("a call from the pipe's strand waits behind one another strand posted before it")
{
    asio::io_context io{1};
    auto mine = asio::make_strand(io);
    auto other = asio::make_strand(io);
    auto p = std::make_shared<quiet_pipe>(mine);
    std::string seen;
    // `other` runs first and posts "A" to the pipe's strand, behind the
    // handler already queued there, which then calls "B": B must not
    // overtake A (the HTTP plugin's request heads, written from a stream's
    // event and from the client's, reached the backend out of order).
    asio::post(other, [&] { p->in_order([&](net::pipe&) { seen += 'A'; }); });
    asio::post(mine, [&] {
        CHECK_FALSE(p->runs_in_order_now());
        p->in_order([&](net::pipe&) { seen += 'B'; });
        CHECK(seen.empty());
    });
    io.run();
    CHECK(seen == "AB");
}

TEST_CASE("on the pipe's strand with nothing waiting, a call runs at once")
{
    asio::io_context io{1};
    auto mine = asio::make_strand(io);
    auto p = std::make_shared<quiet_pipe>(mine);
    std::string seen;
    asio::post(mine, [&] {
        CHECK(p->runs_in_order_now());
        p->in_order([&](net::pipe&) { seen += 'A'; });
        CHECK(seen == "A");  // before the handler returns
        p->in_order([&](net::pipe&) { seen += 'B'; });
        CHECK(seen == "AB");
    });
    io.run();
    CHECK(seen == "AB");
}

TEST_CASE("calls from a thread outside every strand are posted, in order, and keep the pipe alive")
{
    asio::io_context io{1};
    auto mine = asio::make_strand(io);
    std::string seen;
    std::weak_ptr<net::pipe> weak;
    {
        auto p = std::make_shared<quiet_pipe>(mine);
        weak = p;
        CHECK_FALSE(p->runs_in_order_now());
        for (char c : std::string{"xyz"})
            p->in_order([&seen, c](net::pipe&) { seen += c; });
        CHECK(seen.empty());
    }
    CHECK_FALSE(weak.expired());  // the posted calls hold it
    io.run();
    CHECK(seen == "xyz");
    CHECK(weak.expired());
}
}
