// config/config: the TOML files. A full gateway and agent file parse into
// the right values; every kind of mistake is reported as
// "file:line:column: message" at the line an operator has to fix (asserted
// exactly); sizes, port ranges, --tunnel flags and default tunnel names.
#include "config/config.hpp"
#include "print.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace muxgate;
using namespace muxgate::config;

namespace {

std::vector<std::string> texts(const std::vector<problem>& ps)
{
    std::vector<std::string> out;
    for (const auto& p : ps) out.push_back(p.text());
    return out;
}

std::vector<std::string> gateway_problems(const std::string& toml)
{
    return texts(parse_gateway(toml, "gw.toml").problems);
}

std::vector<std::string> agent_problems(const std::string& toml)
{
    return texts(parse_agent(toml, "agent.toml").problems);
}

using lines = std::vector<std::string>;

// Enough for a gateway to start: [tls] is the one required table.
const std::string gw_min = "[tls]\nself_signed = true\n";
// Enough for an agent: [agent] gateway.
const std::string agent_min = "[agent]\ngateway = \"wss://gw.example.com\"\n";

const std::string hash0 = std::string{"sha256:"} + std::string(64, '0');
const std::string hash_ab = std::string{"sha256:"} + std::string(32, 'a') + std::string(32, 'B');

}  // namespace

TEST_SUITE("config")
{
// ------------------------------------------------------------------ gateway

TEST_CASE("gateway: the smallest valid file gives the documented defaults")
{
    const auto r = parse_gateway(gw_min, "gw.toml");
    REQUIRE(texts(r.problems) == lines{});
    const auto& g = r.cfg;
    CHECK(g.file == "gw.toml");
    CHECK(g.listen == "0.0.0.0:443");
    CHECK(g.path == "/muxgate");
    CHECK(g.public_bind == "0.0.0.0");
    CHECK(g.threads == 0);
    CHECK(g.log_level == "info");
    CHECK(g.self_signed);
    CHECK_FALSE(g.plaintext);
    CHECK(g.agents.empty());
    CHECK_FALSE(g.shared_token);
    CHECK(g.auth_failure_burst == 10);
    CHECK(g.auth_failures_per_minute == 6);
    CHECK(g.port_reservation_s == 300);
    CHECK(g.lim.max_frame_payload == 1024 * 1024);
    CHECK(g.lim.stream_window == 256 * 1024);
    CHECK(g.lim.stream_window_max == 4 * 1024 * 1024);
    CHECK(g.lim.window_growth_budget == 64 * 1024 * 1024);
    CHECK(g.lim.socket_unsent == 64 * 1024);
    CHECK(g.lim.heartbeat_interval_ms == 10'000);
    CHECK(g.lim.heartbeat_timeout_ms == 30'000);
    CHECK(g.plugin_config.empty());
}

TEST_CASE("gateway: a full file, every key set")
{
    const std::string toml = R"([gateway]
listen = "[::1]:8443"
path = "/tunnel"
public_bind = "127.0.0.1"
threads = 4
modules_dir = "/opt/mg/modules"
plugins = ["tcp", "ssh"]
log_level = "debug"
port_reservation_s = 60

[tls]
cert = "/etc/mg/cert.pem"
key = "/etc/mg/key.pem"
self_signed = true
self_signed_names = ["gw.example.com", "10.0.0.1"]
insecure_plaintext = false

[auth]
failure_burst = 3
failures_per_minute = 12
shared_token_hash = ")" + hash_ab + R"("

[limits]
max_frame_payload = "2 MiB"
max_control_message = "32 KiB"
max_message = "8MiB"
write_message = "128k"
write_quantum = 32768
socket_unsent = 0
stream_window = "1 GiB"
stream_window_max = "8 MiB"
window_growth_budget = 0
high_watermark = "512 KiB"
max_streams = 100
max_pending_opens = 10
max_tunnels_per_agent = 0
max_control_backlog = "2 MB"
max_agents = 5
max_handshakes = 7
auth_timeout_ms = 1000
handshake_timeout_ms = 2000
heartbeat_interval_ms = 500
heartbeat_timeout_ms = 1500
open_timeout_ms = 3000
stream_idle_timeout_s = 0
drain_timeout_ms = 0

[[agent]]
name = "office-1"
token_hash = ")" + hash0 + R"("
protocols = ["tcp"]
ports = ["20000-20099", "2222"]
acl.tcp = { allow = ["10.0.0.0/8"] }

[[agent]]
name = "lab.B_2"
token_hash = ")" + hash_ab + R"("

[plugins.ssh]
host_keys = ["/etc/mg/ssh_host"]
max_auth = 3
)";
    const auto r = parse_gateway(toml, "gw.toml");
    REQUIRE(texts(r.problems) == lines{});
    const auto& g = r.cfg;
    CHECK(g.listen == "[::1]:8443");
    CHECK(g.path == "/tunnel");
    CHECK(g.public_bind == "127.0.0.1");
    CHECK(g.threads == 4);
    CHECK(g.modules_dir == "/opt/mg/modules");
    CHECK(g.plugins == lines{"tcp", "ssh"});
    CHECK(g.log_level == "debug");
    CHECK(g.port_reservation_s == 60);
    CHECK(g.cert == "/etc/mg/cert.pem");
    CHECK(g.key == "/etc/mg/key.pem");
    CHECK(g.self_signed);
    CHECK(g.self_signed_names == lines{"gw.example.com", "10.0.0.1"});
    CHECK_FALSE(g.plaintext);
    CHECK(g.auth_failure_burst == 3);
    CHECK(g.auth_failures_per_minute == 12);
    REQUIRE(g.shared_token);
    CHECK(token::format_hash(*g.shared_token) == std::string{"sha256:"} + std::string(64, 'a').substr(0, 32) +
                                                     std::string(32, 'b'));
    const auto& l = g.lim;
    CHECK(l.max_frame_payload == 2u << 20);
    CHECK(l.max_control_message == 32u << 10);
    CHECK(l.max_message == 8u << 20);
    CHECK(l.write_message == 128u << 10);
    CHECK(l.write_quantum == 32768);
    CHECK(l.socket_unsent == 0);
    CHECK(l.stream_window == 1u << 30);
    CHECK(l.stream_window_max == 8u << 20);
    CHECK(l.window_growth_budget == 0);
    CHECK(l.high_watermark == 512u << 10);
    CHECK(l.max_streams_per_agent == 100);
    CHECK(l.max_pending_opens == 10);
    CHECK(l.max_tunnels_per_agent == 0);
    CHECK(l.max_control_backlog == 2u << 20);
    CHECK(l.max_agents == 5);
    CHECK(l.max_handshakes == 7);
    CHECK(l.auth_timeout_ms == 1000);
    CHECK(l.handshake_timeout_ms == 2000);
    CHECK(l.heartbeat_interval_ms == 500);
    CHECK(l.heartbeat_timeout_ms == 1500);
    CHECK(l.open_timeout_ms == 3000);
    CHECK(l.stream_idle_timeout_s == 0);
    CHECK(l.drain_timeout_ms == 0);

    REQUIRE(g.agents.size() == 2);
    const auto& a = g.agents[0];
    CHECK(a.name == "office-1");
    CHECK(a.line == 48);
    CHECK(token::format_hash(a.token_hash) == hash0);
    CHECK(a.protocols == lines{"tcp"});
    REQUIRE(a.ports.size() == 2);
    CHECK(a.ports[0].first == 20000);
    CHECK(a.ports[0].last == 20099);
    CHECK(a.ports[1].first == 2222);
    CHECK(a.ports[1].last == 2222);
    REQUIRE(a.plugin_acl.count("tcp") == 1);
    CHECK(a.plugin_acl.at("tcp") == R"({"allow":["10.0.0.0/8"]})");
    CHECK(g.agents[1].name == "lab.B_2");
    CHECK(g.agents[1].line == 55);
    CHECK(g.agents[1].ports.empty());
    CHECK(g.agents[1].protocols.empty());
    REQUIRE(g.plugin_config.count("ssh") == 1);
    CHECK(g.plugin_config.at("ssh") == R"({"host_keys":["/etc/mg/ssh_host"],"max_auth":3})");
}

TEST_CASE("the shipped example files parse without problems")
{
    const auto g = load_gateway(MUXGATE_SOURCE_DIR "/etc/gateway.toml");
    CHECK(texts(g.problems) == lines{});
    CHECK(g.cfg.agents.size() == 2);
    const auto a = load_agent(MUXGATE_SOURCE_DIR "/etc/agent.toml");
    CHECK(texts(a.problems) == lines{});
    CHECK(a.cfg.tunnels.size() == 2);
}

TEST_CASE("an unreadable file is one problem without a line")
{
    const auto g = load_gateway("/nonexistent/muxgate.toml");
    CHECK(texts(g.problems) == lines{"/nonexistent/muxgate.toml: cannot open the file"});
    const auto a = load_agent("/nonexistent/agent.toml");
    CHECK(texts(a.problems) == lines{"/nonexistent/agent.toml: cannot open the file"});
}

TEST_CASE("problem::text")
{
    CHECK(problem{"f.toml", 3, 7, "bad"}.text() == "f.toml:3:7: bad");
    CHECK(problem{"f.toml", 0, 0, "bad"}.text() == "f.toml: bad");
}

TEST_CASE("a TOML syntax error is reported where it is")
{
    const auto p = gateway_problems("[tls]\nself_signed = true\ncert = \"unterminated\n");
    REQUIRE(p.size() == 1);
    CHECK(p[0].rfind("gw.toml:3:", 0) == 0);
    const auto q = gateway_problems("[tls]\nself_signed = true\n\n\n[tls]\n");
    REQUIRE(q.size() == 1);
    CHECK(q[0].rfind("gw.toml:5:", 0) == 0);
}

TEST_CASE("gateway: wrong types, each at its line and column")
{
    const std::string toml = R"([gateway]
listen = 443
threads = "4"
plugins = "tcp"
log_level = "loud"
path = "muxgate"

[tls]
self_signed = "yes"
insecure_plaintext = true
self_signed_names = ["a", 1]
)";
    CHECK(gateway_problems(toml) ==
          lines{
              R"(gw.toml:2:10: [gateway] "listen" must be a string)",
              R"(gw.toml:6:8: [gateway] "path" must start with /)",
              R"(gw.toml:3:11: [gateway] "threads" must be an integer)",
              R"(gw.toml:4:11: [gateway] "plugins" must be an array of strings)",
              R"(gw.toml:5:13: "log_level" must be one of trace, debug, info, warn, error, off (got "loud"))",
              R"(gw.toml:9:15: [tls] "self_signed" must be true or false)",
              R"(gw.toml:11:27: [tls] "self_signed_names" must contain only strings)",
          });
}

TEST_CASE("gateway: integers out of range say the range and the value")
{
    CHECK(gateway_problems(gw_min + "[gateway]\nthreads = 1025\nport_reservation_s = -1\n") ==
          lines{R"(gw.toml:4:11: [gateway] "threads" must be in 0..1024 (got 1025))",
                R"(gw.toml:5:22: [gateway] "port_reservation_s" must be in 0..604800 (got -1))"});
    CHECK(gateway_problems(gw_min + "[auth]\nfailure_burst = 0\n") ==
          lines{R"(gw.toml:4:17: [auth] "failure_burst" must be in 1..1000000 (got 0))"});
}

TEST_CASE("gateway: bad listen address")
{
    CHECK(gateway_problems(gw_min + "[gateway]\nlisten = \"0.0.0.0\"\n") ==
          lines{R"(gw.toml:4:10: [gateway] "listen": "0.0.0.0" has no port (expected host:port))"});
    CHECK(gateway_problems(gw_min + "[gateway]\nlisten = \"::1:443\"\n") ==
          lines{R"(gw.toml:4:10: [gateway] "listen": "::1:443": write IPv6 addresses as [addr]:port)"});
    // Port 0 is allowed: the kernel picks one (the gateway logs it).
    CHECK(gateway_problems(gw_min + "[gateway]\nlisten = \"host:0\"\n") == lines{});
    CHECK(gateway_problems(gw_min + "[gateway]\nlisten = \"host:65536\"\n") ==
          lines{R"(gw.toml:4:10: [gateway] "listen": "65536" is not a port number (0..65535))"});
}

TEST_CASE("unknown keys are errors, with a suggestion when one is close")
{
    // Unknown keys of one table come in key order (toml++ tables are sorted).
    CHECK(gateway_problems(gw_min + "[gateway]\nlisen = \"0.0.0.0:1\"\ncolour = 1\n") ==
          lines{R"(gw.toml:5:1: unknown key [gateway] "colour")",
                R"(gw.toml:4:1: unknown key [gateway] "lisen" (did you mean "listen"?))"});
    CHECK(gateway_problems(gw_min + "[limits]\nmax_stream = 5\n") ==
          lines{R"(gw.toml:4:1: unknown key [limits] "max_stream" (did you mean "max_streams"?))"});
    CHECK(gateway_problems(gw_min + "[gatway]\nlisten = \"x:1\"\n") ==
          lines{R"(gw.toml:3:2: unknown key "gatway" (did you mean "gateway"?))"});
    CHECK(gateway_problems(gw_min + "[[agent]]\nname = \"a\"\ntoken_hash = \"" + hash0 +
                           "\"\nport = [\"1\"]\n") ==
          lines{R"(gw.toml:6:1: unknown key [[agent]] "port" (did you mean "ports"?))"});
    // A gateway-only limit in an agent file.
    CHECK(agent_problems(agent_min + "[limits]\nmax_pending_opens = 5\n") ==
          lines{R"(agent.toml:4:1: unknown key [limits] "max_pending_opens")"});
}

TEST_CASE("[tls]: required, and needs cert and key unless self-signed or plaintext")
{
    CHECK(gateway_problems("") ==
          lines{"gw.toml: [tls] is missing: give cert and key, or self_signed = true"});
    CHECK(gateway_problems("[gateway]\nthreads = 1\n\n[tls]\ncert = \"c.pem\"\n") ==
          lines{"gw.toml:4:1: [tls] needs cert and key (or self_signed = true)"});
    CHECK(gateway_problems("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n") == lines{});
    CHECK(gateway_problems("[tls]\ninsecure_plaintext = true\n") == lines{});
}

TEST_CASE("[auth] shared_token_hash must be sha256: and 64 hex digits")
{
    CHECK(gateway_problems(gw_min + "[auth]\nshared_token_hash = \"" + hash0 + "\"\n") == lines{});
    for (const std::string& bad : {std::string{"sha256:"} + std::string(63, '0'), std::string{"sha256:"} + std::string(65, '0'),
                                  std::string{"sha256:"} + std::string(63, '0') + "g", std::string{"md5:"} + std::string(64, '0'),
                                  std::string(64, '0')}) {
        CAPTURE(bad);
        CHECK(gateway_problems(gw_min + "[auth]\nshared_token_hash = \"" + bad + "\"\n") ==
              lines{R"(gw.toml:4:21: [auth] "shared_token_hash" must be sha256: and 64 hex digits)"});
    }
}

// ------------------------------------------------------------------ sizes

TEST_CASE("sizes: integers and strings with units")
{
    struct size_case {
        const char* value;
        std::uint32_t want;
    };
    for (const auto& c : std::vector<size_case>{{"262144", 262144},
                                                {"\"262144\"", 262144},
                                                {"\"262144 B\"", 262144},
                                                {"\"256 KiB\"", 256u << 10},
                                                {"\"256KiB\"", 256u << 10},
                                                {"\"256   KiB\"", 256u << 10},
                                                {"\"256k\"", 256u << 10},
                                                {"\"256K\"", 256u << 10},
                                                {"\"256 KB\"", 256u << 10},
                                                {"\"1 MiB\"", 1u << 20},
                                                {"\"1m\"", 1u << 20},
                                                {"\"1M\"", 1u << 20},
                                                {"\"1MB\"", 1u << 20},
                                                {"\"1 GiB\"", 1u << 30},
                                                {"\"1G\"", 1u << 30},
                                                {"\"1GB\"", 1u << 30},
                                                {"16384", 16384}}) {
        CAPTURE(c.value);
        const auto r = parse_gateway(gw_min + "[limits]\nstream_window = " + c.value + "\n", "gw.toml");
        CHECK(texts(r.problems) == lines{});
        CHECK(r.cfg.lim.stream_window == c.want);
    }
}

TEST_CASE("sizes: what is not a size, and what is out of range")
{
    const auto one = [](const std::string& value) {
        return gateway_problems(gw_min + "[limits]\nstream_window = " + value + "\n");
    };
    for (const std::string bad : {"\"\"", "\"KiB\"", "\"256 kib\"", "\"256 TiB\"", "\"256 KiB \"",
                                  "\" 256\"", "\"-1\"", "\"1.5 MiB\"", "\"0x100\"",
                                  "\"99999999999999999999999 KiB\""}) {
        CAPTURE(bad);
        CHECK(one(bad) == lines{"gw.toml:4:17: [limits] \"stream_window\": " + bad +
                                " is not a size (say 262144, \"256 KiB\" or \"4 MiB\")"});
    }
    CHECK(one("-1") == lines{R"(gw.toml:4:17: [limits] "stream_window" must not be negative)"});
    CHECK(one("true") == lines{R"(gw.toml:4:17: [limits] "stream_window" must be a size in bytes)"});
    CHECK(one("1.5") == lines{R"(gw.toml:4:17: [limits] "stream_window" must be a size in bytes)"});
    CHECK(one("16383") ==
          lines{R"(gw.toml:4:17: [limits] "stream_window" must be in 16384..1073741824 bytes (got 16383))"});
    CHECK(one("\"1025 MiB\"") ==
          lines{R"(gw.toml:4:17: [limits] "stream_window" must be in 16384..1073741824 bytes (got 1074790400))"});
    CHECK(one("\"16 KiB\"") == lines{});
}

// Regression (fixed): core/config/config.cpp reader::size() computes `num * mul` in 64 bits
// without an overflow check, so a huge number with a unit wraps around into
// the allowed range: (2^54 + 512) KiB = 2^64 + 512 KiB is taken as 512 KiB.
TEST_CASE("sizes: a number times its unit that overflows 64 bits is refused")
{
    const auto r = parse_gateway(gw_min + "[limits]\nstream_window = \"18014398509482496 KiB\"\n",
                                 "gw.toml");
    CHECK(texts(r.problems).size() == 1);
    CHECK(r.cfg.lim.stream_window == 256 * 1024);  // left at its default
}

TEST_CASE("limits: cross-checks")
{
    SUBCASE("heartbeat_timeout_ms must exceed heartbeat_interval_ms")
    {
        const std::string head = gw_min + "\n[limits]\nheartbeat_interval_ms = 5000\n";
        CHECK(gateway_problems(head + "heartbeat_timeout_ms = 5001\n") == lines{});
        CHECK(gateway_problems(head + "heartbeat_timeout_ms = 5000\n") ==
              lines{"gw.toml:4:1: [limits] heartbeat_timeout_ms (5000) must be larger than "
                    "heartbeat_interval_ms (5000)"});
        CHECK(gateway_problems(head + "heartbeat_timeout_ms = 1000\n") ==
              lines{"gw.toml:4:1: [limits] heartbeat_timeout_ms (1000) must be larger than "
                    "heartbeat_interval_ms (5000)"});
        // Against the default interval (10 s).
        CHECK(gateway_problems(gw_min + "[limits]\nheartbeat_timeout_ms = 9000\n") ==
              lines{"gw.toml:3:1: [limits] heartbeat_timeout_ms (9000) must be larger than "
                    "heartbeat_interval_ms (10000)"});
        // The agent has no interval of its own.
        CHECK(agent_problems(agent_min + "[limits]\nheartbeat_timeout_ms = 9000\n") == lines{});
    }
    SUBCASE("socket_unsent is a size up to 1 GiB; 0 leaves the kernel's default")
    {
        CHECK(gateway_problems(gw_min + "[limits]\nsocket_unsent = \"2 GiB\"\n").size() == 1);
        CHECK(agent_problems(agent_min + "[limits]\nsocket_unsent = -1\n").size() == 1);
        CHECK(agent_problems(agent_min + "[limits]\nsocket_unsent = 0\n") == lines{});
    }
    SUBCASE("write_quantum is independent of the max_frame_payload we accept")
    {
        // Frames we send are capped by the *peer's* max_frame at run time.
        const std::string head = gw_min + "[limits]\nmax_frame_payload = 65536\n";
        CHECK(gateway_problems(head + "write_quantum = 65533\n") == lines{});
        CHECK(agent_problems(agent_min + "[limits]\nmax_frame_payload = \"16 KiB\"\n") == lines{});
    }
    SUBCASE("max_message must hold a whole control message")
    {
        const std::string head = gw_min + "[limits]\nmax_message = 65536\n";
        CHECK(gateway_problems(head + "max_control_message = 65531\n") == lines{});
        CHECK(gateway_problems(head + "max_control_message = 65532\n") ==
              lines{"gw.toml:3:1: [limits] max_message must hold a whole max_control_message"});
    }
}

// ------------------------------------------------------------------ [[agent]]

TEST_CASE("[[agent]]: names, duplicates, required keys")
{
    const std::string toml = gw_min + R"(
[[agent]]
name = "ok"
token_hash = ")" + hash0 + R"("

[[agent]]
name = "ok"
token_hash = ")" + hash0 + R"("

[[agent]]
name = "bad name!"
token_hash = ")" + hash0 + R"("

[[agent]]
protocols = ["tcp"]

[[agent]]
name = "x"
token_hash = "sha256:nothex"
)";
    CHECK(gateway_problems(toml) ==
          lines{
              R"(gw.toml:8:1: [[agent]] "ok" is defined twice)",
              R"(gw.toml:13:8: [[agent]] name "bad name!": use 1-64 of A-Z a-z 0-9 . _ -)",
              R"(gw.toml:16:1: [[agent]] "name" is required)",
              R"(gw.toml:16:1: [[agent]] "token_hash" is required)",
              R"(gw.toml:21:14: [[agent]] token_hash must be "sha256:" and 64 hex digits (run `muxgate token new`))",
          });
}

TEST_CASE("[[agent]]: a 64-character name is the longest")
{
    const auto with_name = [](const std::string& n) {
        return gateway_problems(gw_min + "[[agent]]\nname = \"" + n + "\"\ntoken_hash = \"" + hash0 + "\"\n");
    };
    CHECK(with_name(std::string(64, 'a')) == lines{});
    CHECK(with_name(std::string(65, 'a')) ==
          lines{std::string{"gw.toml:4:8: [[agent]] name \""} + std::string(65, 'a') +
                "\": use 1-64 of A-Z a-z 0-9 . _ -"});
    CHECK(with_name("") == lines{R"(gw.toml:4:8: [[agent]] name "": use 1-64 of A-Z a-z 0-9 . _ -)"});
}

TEST_CASE("[[agent]]: port ranges")
{
    const auto with_ports = [](const std::string& ports) {
        return gateway_problems(gw_min + "[[agent]]\nname = \"a\"\ntoken_hash = \"" + hash0 +
                                "\"\nports = " + ports + "\n");
    };
    CHECK(with_ports(R"(["1", "65535", "1-65535", "20000-20000"])") == lines{});
    CHECK(with_ports(R"(["0"])") ==
          lines{R"(gw.toml:6:9: [[agent]] ports: "0" is not a port or a range like "20000-20099")"});
    CHECK(with_ports(R"(["20099-20000", "65536"])") ==
          lines{R"(gw.toml:6:9: [[agent]] ports: "20099-20000" is not a port or a range like "20000-20099")",
                R"(gw.toml:6:9: [[agent]] ports: "65536" is not a port or a range like "20000-20099")"});
    CHECK(with_ports("[2222]") == lines{R"(gw.toml:6:10: [[agent]] "ports" must contain only strings)"});
}

TEST_CASE("[[agent]] and [plugins] must be tables")
{
    CHECK(gateway_problems("agent = 5\n" + gw_min) ==
          lines{R"(gw.toml:1:9: "agent" must be an array of tables ([[agent]]))"});
    // After [tls], the same line is a key of [tls].
    CHECK(gateway_problems(gw_min + "agent = 5\n") == lines{R"(gw.toml:3:1: unknown key [tls] "agent")"});
    CHECK(gateway_problems("agent = [1, 2]\n" + gw_min) ==
          lines{R"(gw.toml:1:9: "agent" must be an array of tables ([[agent]]))"});
    CHECK(gateway_problems(gw_min + "[plugins]\nssh = 5\n") ==
          lines{R"(gw.toml:4:7: [plugins] "ssh" must be a table ([plugins.ssh]))"});
    CHECK(gateway_problems(gw_min + "[[agent]]\nname = \"a\"\ntoken_hash = \"" + hash0 +
                           "\"\nacl = { tcp = 1 }\n") ==
          lines{R"(gw.toml:6:15: [[agent]] acl entries must be tables)"});
    CHECK(gateway_problems("gateway = 1\n" + gw_min) ==
          lines{R"(gw.toml:1:11: "gateway" must be a table)"});
}

TEST_CASE("every problem is reported at once, table by table")
{
    const auto p = gateway_problems(R"([gateway]
threads = -1
log_level = 3
bogus = 1

[limits]
max_streams = 0
stream_window = "1 TB"
)");
    CHECK(p == lines{
                   R"(gw.toml:2:11: [gateway] "threads" must be in 0..1024 (got -1))",
                   R"(gw.toml:3:13: [gateway] "log_level" must be a string)",
                   R"(gw.toml:4:1: unknown key [gateway] "bogus")",
                   "gw.toml: [tls] is missing: give cert and key, or self_signed = true",
                   R"(gw.toml:8:17: [limits] "stream_window": "1 TB" is not a size (say 262144, "256 KiB" or "4 MiB"))",
                   R"(gw.toml:7:15: [limits] "max_streams" must be in 1..1000000 (got 0))",
               });
}

// ------------------------------------------------------------------ agent

TEST_CASE("agent: the smallest valid file gives the documented defaults")
{
    const auto r = parse_agent(agent_min, "agent.toml");
    REQUIRE(texts(r.problems) == lines{});
    const auto& a = r.cfg;
    CHECK(a.file == "agent.toml");
    CHECK(a.gateway == "wss://gw.example.com");
    CHECK(a.name.empty());  // the program falls back to the host name
    CHECK_FALSE(a.insecure);
    CHECK(a.backoff_initial_ms == 1000);
    CHECK(a.backoff_max_ms == 30'000);
    CHECK(a.stable_after_s == 60);
    CHECK(a.connect_timeout_ms == 10'000);
    CHECK(a.tunnels.empty());
    CHECK(a.lim.stream_window == 256 * 1024);
}

TEST_CASE("agent: a full file, every key set")
{
    const std::string toml = R"([agent]
name = "edge-7"
gateway = "wss://gw.example.com:8443/mg"
token_file = "/etc/mg/token"
ca = "/etc/mg/ca.pem"
insecure = true
pin = "sha256//abc="
proxy = "http://u:p@proxy.corp:3128"
modules_dir = "/opt/mods"
plugins = ["tcp"]
log_level = "warn"

[reconnect]
initial_ms = 200
max_ms = 5000
stable_after_s = 10
connect_timeout_ms = 3000

[limits]
stream_window = "64 KiB"
high_watermark = "128 KiB"
max_frame_payload = "512 KiB"
max_control_message = "8 KiB"
max_message = "1 MiB"
write_message = "64 KiB"
write_quantum = "16 KiB"
socket_unsent = "16 KiB"
max_streams = 16
max_control_backlog = "256 KiB"
handshake_timeout_ms = 4000
heartbeat_timeout_ms = 20000
stream_idle_timeout_s = 600

[[tunnel]]
name = "ssh"
protocol = "tcp"
remote_port = 2222
local = "127.0.0.1:22"

[[tunnel]]
protocol = "tcp"
local = "[::1]:8080"
options = { tls = true, sni = "x" }

[[tunnel]]
protocol = "tcp"
remote_port = 20001
local = "printer.lan:80"

[plugins.tcp]
nodelay = true
)";
    const auto r = parse_agent(toml, "agent.toml");
    REQUIRE(texts(r.problems) == lines{});
    const auto& a = r.cfg;
    CHECK(a.name == "edge-7");
    CHECK(a.gateway == "wss://gw.example.com:8443/mg");
    CHECK(a.token_file == "/etc/mg/token");
    CHECK(a.ca == "/etc/mg/ca.pem");
    CHECK(a.insecure);
    CHECK(a.pin == "sha256//abc=");
    CHECK(a.proxy == "http://u:p@proxy.corp:3128");
    CHECK(a.modules_dir == "/opt/mods");
    CHECK(a.plugins == lines{"tcp"});
    CHECK(a.log_level == "warn");
    CHECK(a.backoff_initial_ms == 200);
    CHECK(a.backoff_max_ms == 5000);
    CHECK(a.stable_after_s == 10);
    CHECK(a.connect_timeout_ms == 3000);
    CHECK(a.lim.stream_window == 64u << 10);
    CHECK(a.lim.high_watermark == 128u << 10);
    CHECK(a.lim.max_frame_payload == 512u << 10);
    CHECK(a.lim.max_control_message == 8u << 10);
    CHECK(a.lim.max_message == 1u << 20);
    CHECK(a.lim.write_message == 64u << 10);
    CHECK(a.lim.write_quantum == 16u << 10);
    CHECK(a.lim.socket_unsent == 16u << 10);
    CHECK(a.lim.max_streams_per_agent == 16);
    CHECK(a.lim.max_control_backlog == 256u << 10);
    CHECK(a.lim.handshake_timeout_ms == 4000);
    CHECK(a.lim.heartbeat_timeout_ms == 20000);
    CHECK(a.lim.stream_idle_timeout_s == 600);
    REQUIRE(a.tunnels.size() == 3);
    CHECK(a.tunnels[0].name == "ssh");
    CHECK(a.tunnels[0].protocol == "tcp");
    CHECK(a.tunnels[0].remote_port == 2222);
    CHECK(a.tunnels[0].local_host == "127.0.0.1");
    CHECK(a.tunnels[0].local_port == 22);
    CHECK(a.tunnels[0].options == "{}");
    CHECK(a.tunnels[0].line == 34);
    CHECK(a.tunnels[1].name == "tcp---1-8080");  // "tcp-::1-8080", ':' made safe
    CHECK(a.tunnels[1].remote_port == 0);
    CHECK(a.tunnels[1].local_host == "::1");
    CHECK(a.tunnels[1].local_port == 8080);
    CHECK(a.tunnels[1].options == R"({"sni":"x","tls":true})");  // toml++ sorts keys
    CHECK(a.tunnels[2].name == "tcp-20001");
    CHECK(a.tunnels[2].local_host == "printer.lan");
    CHECK(a.plugin_config.at("tcp") == R"({"nodelay":true})");
}

TEST_CASE("agent: [agent] and its gateway are required; the URL is checked")
{
    CHECK(agent_problems("") == lines{"agent.toml: [agent] is missing: it needs at least gateway = \"wss://...\""});
    CHECK(agent_problems("[agent]\nname = \"a\"\n") == lines{R"(agent.toml:1:1: [agent] "gateway" is required)"});
    CHECK(agent_problems("[agent]\ngateway = \"gw.example.com\"\n") ==
          lines{R"(agent.toml:2:11: [agent] "gateway": "gw.example.com" is not a URL (expected scheme://host[:port][/path]))"});
    CHECK(agent_problems("[agent]\ngateway = \"https://gw.example.com\"\n") ==
          lines{R"(agent.toml:2:11: [agent] "gateway" must be wss:// (or ws:// with insecure = true))"});
    CHECK(agent_problems("[agent]\ngateway = \"ws://gw:80\"\n") == lines{});
    CHECK(agent_problems("[agent]\ngateway = \"wss://gw\"\nname = \"a b\"\n") ==
          lines{R"(agent.toml:3:8: [agent] name "a b": use 1-64 of A-Z a-z 0-9 . _ -)"});
}

TEST_CASE("agent: the proxy must be an http:// URL")
{
    CHECK(agent_problems(agent_min + "proxy = \"http://proxy:3128\"\n") == lines{});
    CHECK(agent_problems(agent_min + "proxy = \"https://proxy:3128\"\n") ==
          lines{R"(agent.toml:3:9: [agent] "proxy" must be http://[user:password@]host:port)"});
    CHECK(agent_problems(agent_min + "proxy = \"proxy:3128\"\n") ==
          lines{R"(agent.toml:3:9: [agent] "proxy" must be http://[user:password@]host:port: "proxy:3128" is not a URL (expected scheme://host[:port][/path]))"});
}

TEST_CASE("agent: [reconnect] max_ms must be at least initial_ms")
{
    CHECK(agent_problems(agent_min + "\n[reconnect]\ninitial_ms = 500\nmax_ms = 500\n") == lines{});
    CHECK(agent_problems(agent_min + "\n[reconnect]\ninitial_ms = 500\nmax_ms = 499\n") ==
          lines{"agent.toml:4:1: [reconnect] max_ms must be at least initial_ms"});
    CHECK(agent_problems(agent_min + "[reconnect]\ninitial_ms = 5\n") ==
          lines{R"(agent.toml:4:14: [reconnect] "initial_ms" must be in 10..3600000 (got 5))"});
}

TEST_CASE("agent: [[tunnel]] mistakes")
{
    const std::string toml = agent_min + R"(
[[tunnel]]
protocol = "tcp"
remote_port = 2222
local = "127.0.0.1:22"

[[tunnel]]
protocol = "tcp"
remote_port = 2222
local = "127.0.0.1:23"

[[tunnel]]
remote_port = 70000
local = "nohost"

[[tunnel]]
protocol = "tcp"
local = ":22"
name = "x"

[[tunnel]]
protocol = "tcp"
name = "bad/name"
local = "h:1"
)";
    CHECK(agent_problems(toml) ==
          lines{
              R"(agent.toml:9:1: [[tunnel]] "tcp-2222" is defined twice)",
              R"(agent.toml:14:1: [[tunnel]] "protocol" is required)",
              R"(agent.toml:15:15: [[tunnel]] "remote_port" must be in 0..65535 (got 70000))",
              R"(agent.toml:16:9: [[tunnel]] "local": "nohost" has no port (expected host:port))",
              R"(agent.toml:20:9: [[tunnel]] "local": empty host)",
              R"(agent.toml:23:1: [[tunnel]] name "bad/name": use 1-64 of A-Z a-z 0-9 . _ -)",
          });
}

// ------------------------------------------------------------------ flags and names

TEST_CASE("parse_tunnel_flag: good inputs")
{
    struct good_case {
        const char* flag;
        const char* protocol;
        std::uint16_t remote;
        const char* host;
        std::uint16_t port;
        const char* name;
    };
    for (const auto& c : std::vector<good_case>{
             {"tcp:2222:127.0.0.1:22", "tcp", 2222, "127.0.0.1", 22, "tcp-2222"},
             {"tcp:0:127.0.0.1:8080", "tcp", 0, "127.0.0.1", 8080, "tcp-127.0.0.1-8080"},
             {"ssh:22:[::1]:22", "ssh", 22, "::1", 22, "ssh-22"},
             {"tcp:0:[::1]:22", "tcp", 0, "::1", 22, "tcp---1-22"},
             {"tcp:65535:db.internal:5432", "tcp", 65535, "db.internal", 5432, "tcp-65535"},
             {"my_proto-2:1:h:65535", "my_proto-2", 1, "h", 65535, "my_proto-2-1"},
         }) {
        CAPTURE(c.flag);
        std::string err;
        const auto t = parse_tunnel_flag(c.flag, err);
        REQUIRE_MESSAGE(t, err);
        CHECK(t->protocol == c.protocol);
        CHECK(t->remote_port == c.remote);
        CHECK(t->local_host == c.host);
        CHECK(t->local_port == c.port);
        CHECK(t->name == c.name);
        CHECK(t->options == "{}");
    }
}

TEST_CASE("parse_tunnel_flag: bad inputs, each with its reason")
{
    struct bad_case {
        const char* flag;
        const char* error;
    };
    for (const auto& c : std::vector<bad_case>{
             {"tcp", R"("tcp": expected PROTO:REMOTE_PORT:LOCAL_HOST:LOCAL_PORT)"},
             {"tcp:22", R"("tcp:22": expected PROTO:REMOTE_PORT:LOCAL_HOST:LOCAL_PORT)"},
             {"tcp::h:22", R"("tcp::h:22": "" is not a remote port)"},
             {"tcp:x:h:22", R"("tcp:x:h:22": "x" is not a remote port)"},
             {"tcp:-1:h:22", R"("tcp:-1:h:22": "-1" is not a remote port)"},
             {"tcp:65536:h:22", R"("tcp:65536:h:22": "65536" is not a remote port)"},
             {"tcp:22 :h:22", R"("tcp:22 :h:22": "22 " is not a remote port)"},
             {"tcp:22:h", R"("tcp:22:h": local target: "h" has no port (expected host:port))"},
             {"tcp:22:h:0", R"("tcp:22:h:0": local target: "0" is not a port number (1..65535))"},
             {"tcp:22::22", R"("tcp:22::22": local target: empty host)"},
             {"tcp:22:::1:22", R"("tcp:22:::1:22": local target: "::1:22": write IPv6 addresses as [addr]:port)"},
             {"tcp:22:[::1]", R"("tcp:22:[::1]": local target: "[::1]" has no port (expected host:port))"},
             {":22:h:22", R"(":22:h:22": "" is not a protocol name)"},
             {"t cp:22:h:22", R"("t cp:22:h:22": "t cp" is not a protocol name)"},
         }) {
        CAPTURE(c.flag);
        std::string err;
        CHECK_FALSE(parse_tunnel_flag(c.flag, err));
        CHECK(err == c.error);
    }
}

TEST_CASE("default_tunnel_name")
{
    tunnel_config t;
    t.protocol = "tcp";
    t.remote_port = 20001;
    t.local_host = "ignored";
    CHECK(default_tunnel_name(t) == "tcp-20001");
    t.remote_port = 0;
    t.local_host = "fe80::1%eth0";
    t.local_port = 80;
    CHECK(default_tunnel_name(t) == "tcp-fe80--1-eth0-80");
    t.local_host = std::string(100, 'h');
    const auto long_name = default_tunnel_name(t);
    CHECK(long_name.size() == 64);
    CHECK(long_name == std::string{"tcp-"} + std::string(60, 'h'));
}

TEST_CASE("parse_port_range")
{
    std::string err;
    auto r = parse_port_range("2222", err);
    REQUIRE(r);
    CHECK(r->first == 2222);
    CHECK(r->last == 2222);
    CHECK(r->contains(2222));
    CHECK_FALSE(r->contains(2223));
    r = parse_port_range("20000-20099", err);
    REQUIRE(r);
    CHECK(r->first == 20000);
    CHECK(r->last == 20099);
    CHECK(r->contains(20000));
    CHECK(r->contains(20099));
    CHECK_FALSE(r->contains(19999));
    CHECK_FALSE(r->contains(20100));
    CHECK_FALSE(r->contains(20000 + 65536));  // no 16-bit wrap in contains()
    r = parse_port_range("1-65535", err);
    REQUIRE(r);
    CHECK(r->contains(1));
    CHECK(r->contains(65535));

    for (const char* bad : {"", "0", "65536", "-", "1-", "-1", "10-9", "1-2-3", " 1", "1 ", "a", "1-0x10", "+5"}) {
        CAPTURE(bad);
        err.clear();
        CHECK_FALSE(parse_port_range(bad, err));
        CHECK(err == std::string{"\""} + bad + "\" is not a port or a range like \"20000-20099\"");
    }
}
}
