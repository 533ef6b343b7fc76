// config/cli: argv parsing. Known options only, values inline or separate,
// repeatable options, flags, positionals, and the exact error texts.
#include "config/cli.hpp"
#include "print.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace muxgate;

namespace {

const std::vector<cli::option> options{
    {"config", true, false},
    {"tunnel", true, true},
    {"insecure", false, false},
    {"verbose", false, true},
    {"help", false, false},
};

struct run {
    std::optional<cli::parsed> result;
    std::string error;
};

// argv[0] is the program, argv[1] a subcommand: parsing starts at `first`.
run parse(std::vector<const char*> args, int first = 1)
{
    args.insert(args.begin(), "muxgate");
    run r;
    r.result = cli::parse(static_cast<int>(args.size()), args.data(), first, options, r.error);
    return r;
}

using strings = std::vector<std::string>;

}  // namespace

TEST_SUITE("config.cli")
{
TEST_CASE("values: separate, inline, empty inline")
{
    auto r = parse({"--config", "gw.toml"});
    REQUIRE(r.result);
    CHECK(r.result->get("config") == "gw.toml");
    r = parse({"--config=gw.toml"});
    REQUIRE(r.result);
    CHECK(r.result->get("config") == "gw.toml");
    r = parse({"--config=a=b"});
    REQUIRE(r.result);
    CHECK(r.result->get("config") == "a=b");
    r = parse({"--config="});
    REQUIRE(r.result);
    CHECK(r.result->has("config"));
    CHECK(r.result->get("config") == "");
    // A separate value is taken as is, even when it looks like an option.
    r = parse({"--config", "--insecure"});
    REQUIRE(r.result);
    CHECK(r.result->get("config") == "--insecure");
    CHECK_FALSE(r.result->has("insecure"));
}

TEST_CASE("flags and repeatable options")
{
    auto r = parse({"--insecure", "--tunnel", "tcp:1:h:1", "--tunnel=tcp:2:h:2", "--verbose", "--verbose"});
    REQUIRE(r.result);
    CHECK(r.result->has("insecure"));
    CHECK(r.result->get("insecure") == "");
    CHECK(r.result->all("tunnel") == strings{"tcp:1:h:1", "tcp:2:h:2"});
    CHECK(r.result->get("tunnel") == "tcp:2:h:2");  // the last one
    CHECK(r.result->all("verbose").size() == 2);
    CHECK_FALSE(r.result->has("config"));
    CHECK(r.result->get("config") == std::nullopt);
    CHECK(r.result->all("config").empty());
}

TEST_CASE("positionals, -h, and where parsing starts")
{
    auto r = parse({"token", "new", "-h", "-", "--", "-x"}, 2);
    REQUIRE(r.result);
    CHECK(r.result->positionals == strings{"new", "-", "--", "-x"});
    CHECK(r.result->has("help"));
    r = parse({"--config", "x"}, 3);
    REQUIRE(r.result);
    CHECK(r.result->positionals.empty());
    CHECK(r.result->values.empty());
}

TEST_CASE("errors")
{
    struct bad_case {
        std::vector<const char*> args;
        const char* error;
    };
    for (const auto& c : std::vector<bad_case>{
             {{"--confg", "x"}, "unknown option --confg (see --help)"},
             {{"--config=x", "--config", "y"}, "--config given twice"},
             {{"--insecure", "--insecure"}, "--insecure given twice"},
             {{"--insecure=yes"}, "--insecure takes no value"},
             {{"--config"}, "--config needs a value"},
             {{"--tunnel", "a", "--tunnel"}, "--tunnel needs a value"},
             {{"--=x"}, "unknown option -- (see --help)"},
         }) {
        CAPTURE(c.error);
        const auto r = parse(c.args);
        CHECK_FALSE(r.result);
        CHECK(r.error == c.error);
    }
}
}
