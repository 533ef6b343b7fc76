// The gateway's routing decisions: configuration, tunnel options, access
// lists and the name table.
#include "routing.hpp"

#include <doctest/doctest.h>

using namespace muxgate::rdp;

TEST_CASE("plugin configuration: defaults, values, refusals")
{
    plugin_config c;
    std::string why;
    REQUIRE(parse_plugin_config("{}", c, why));
    CHECK(c.listen.empty());
    CHECK(c.first_packet_timeout_ms == 10000);
    REQUIRE(parse_plugin_config(R"({"listen":"0.0.0.0:3389","route_by_mstshash":true,
        "first_packet_timeout_ms":500,"max_first_packet":1024,"max_pending":3})", c, why));
    CHECK(c.listen == "0.0.0.0:3389");
    CHECK(c.route_by_mstshash);
    CHECK(c.first_packet_timeout_ms == 500);
    CHECK(c.max_first_packet == 1024);
    CHECK(c.max_pending == 3);
    auto refused = [](std::string_view json, std::string_view part) {
        plugin_config c;
        std::string why;
        CHECK_FALSE(parse_plugin_config(json, c, why));
        INFO(why);
        CHECK(why.find(part) != std::string::npos);
    };
    refused(R"({"listn":"x:1"})", "unknown key");
    refused(R"({"listen":"nowhere"})", "not host:port");
    refused(R"({"listen":3389})", "host:port");
    refused(R"({"first_packet_timeout_ms":5})", "outside");
    refused(R"({"max_first_packet":-1})", "non-negative");
    refused(R"({"route_by_mstshash":"yes"})", "true or false");
    refused("[1]", "not a JSON object");
    refused("{", "not valid JSON");
}

TEST_CASE("CIDR parsing and matching")
{
    auto net = parse_cidr("10.1.0.0/16");
    REQUIRE(net);
    CHECK(cidr_match(*net, "10.1.2.3:4444"));
    CHECK_FALSE(cidr_match(*net, "10.2.0.1:4444"));
    CHECK(cidr_match(*net, "[::ffff:10.1.9.9]:1"));
    CHECK_FALSE(cidr_match(*net, "[2001:db8::1]:1"));
    auto host = parse_cidr("127.0.0.1");
    REQUIRE(host);
    CHECK(host->prefix == 32);
    CHECK(cidr_match(*host, "127.0.0.1:5"));
    CHECK_FALSE(cidr_match(*host, "127.0.0.2:5"));
    auto v6 = parse_cidr("2001:db8::/33");
    REQUIRE(v6);
    CHECK(cidr_match(*v6, "[2001:db8:7fff::1]:3389"));
    CHECK_FALSE(cidr_match(*v6, "[2001:db8:8000::1]:3389"));
    CHECK_FALSE(cidr_match(*v6, "10.0.0.1:1"));
    auto all = parse_cidr("0.0.0.0/0");
    REQUIRE(all);
    CHECK(cidr_match(*all, "192.0.2.1:1"));
    CHECK_FALSE(parse_cidr("10.0.0.0/33"));
    CHECK_FALSE(parse_cidr("10.0.0/8"));
    CHECK_FALSE(parse_cidr("::/129"));
    CHECK_FALSE(parse_cidr("host.example/8"));
    CHECK_FALSE(parse_cidr("10.0.0.0/"));
    CHECK_FALSE(cidr_match(*all, "garbage"));
}

TEST_CASE("tunnel options and the operator's ACL")
{
    tunnel_options o;
    std::string why;
    REQUIRE(parse_tunnel_options(R"({"public_port":false,"names":["a","b"],
        "preconnection_id":42,"users":["alice"],"allow_from":["127.0.0.0/8"],
        "strip_preconnection":true})", o, why));
    CHECK(o.strip_preconnection);
    CHECK_FALSE(o.public_port);
    CHECK(o.names.size() == 2);
    CHECK(o.preconnection_id == 42u);
    CHECK(o.users == std::vector<std::string>{"alice"});
    CHECK(o.allow_from.size() == 1);
    tunnel_options bad;
    CHECK_FALSE(parse_tunnel_options(R"({"allow_from":["10.0.0.0/99"]})", bad, why));
    CHECK(why.find("allow_from") != std::string::npos);
    CHECK_FALSE(parse_tunnel_options(R"({"names":[""]})", bad, why));
    CHECK_FALSE(parse_tunnel_options(R"({"preconnection_id":4294967296})", bad, why));
    CHECK_FALSE(parse_tunnel_options(R"({"nmes":[]})", bad, why));
    CHECK(why.find("unknown key") != std::string::npos);
    std::vector<cidr> acl;
    CHECK(parse_acl(R"({"allow_from":["192.0.2.0/24"]})", acl, why));
    CHECK(acl.size() == 1);
    CHECK_FALSE(parse_acl(R"({"deny":[]})", acl, why));
}

TEST_CASE("admits: both lists must agree, each only when set")
{
    tunnel_entry e;
    CHECK(e.admits("203.0.113.5:1"));
    e.options.allow_from = {*parse_cidr("203.0.113.0/24")};
    CHECK(e.admits("203.0.113.5:1"));
    CHECK_FALSE(e.admits("198.51.100.1:1"));
    e.acl_allow_from = {*parse_cidr("203.0.113.128/25")};
    CHECK_FALSE(e.admits("203.0.113.5:1"));
    CHECK(e.admits("203.0.113.200:1"));
}

TEST_CASE("route table: qualified names, bare names, aliases, ambiguity")
{
    route_table t;
    auto entry = [](std::string a, std::string n, tunnel_options o = {}) {
        tunnel_entry e;
        e.agent = std::move(a);
        e.tunnel = std::move(n);
        e.options = std::move(o);
        return e;
    };
    tunnel_options o1;
    o1.names = {"reception"};
    o1.preconnection_id = 7;
    o1.users = {"alice"};
    t.add(entry("office", "desk1", o1));
    t.add(entry("office", "desk2"));
    t.add(entry("home", "desk2"));

    auto f = t.find(route_kind::token, "desk1");
    REQUIRE(f.status == lookup_status::found);
    CHECK(f.entry->agent == "office");
    CHECK(t.find(route_kind::token, "reception").status == lookup_status::found);
    CHECK(t.find(route_kind::token, "desk2").status == lookup_status::ambiguous);
    f = t.find(route_kind::token, "home.desk2");
    REQUIRE(f.status == lookup_status::found);
    CHECK(f.entry->agent == "home");
    CHECK(t.find(route_kind::token, "nobody").status == lookup_status::unknown);
    CHECK(t.find(route_kind::token, "").status == lookup_status::unknown);
    // Ids and users only for their kinds
    CHECK(t.find(route_kind::pcb_id, "7").status == lookup_status::found);
    CHECK(t.find(route_kind::token, "7").status == lookup_status::unknown);
    CHECK(t.find(route_kind::mstshash, "alice").status == lookup_status::found);
    CHECK(t.find(route_kind::token, "alice").status == lookup_status::unknown);
    // A re-registration replaces; unregistering removes.
    t.remove("home", "desk2");
    CHECK(t.find(route_kind::token, "desk2").status == lookup_status::found);
    t.add(entry("office", "desk2"));
    CHECK(t.size() == 2);
    CHECK(t.get("office", "desk1") != nullptr);
    CHECK(t.get("home", "desk2") == nullptr);
}
