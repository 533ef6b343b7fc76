// muxgate-agent: dials out to a muxgate gateway and serves tunnels behind
// NAT. See `muxgate-agent --help` and README.md.
#include "agent.hpp"

#include "common/log.hpp"
#include "common/token.hpp"
#include "config/cli.hpp"
#include "config/config.hpp"
#include "net/tls.hpp"
#include "plugin/loader.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <unistd.h>

namespace {

using namespace muxgate;

constexpr const char* usage = R"(muxgate-agent — serves tunnels through a muxgate gateway, dialing out only

Usage:
  muxgate-agent --config FILE [options]
  muxgate-agent --gateway URL --tunnel PROTO:REMOTE_PORT:LOCAL_HOST:LOCAL_PORT [...]
  muxgate-agent --check-config --config FILE

Quick mode (no configuration file):
  MUXGATE_TOKEN=secret muxgate-agent --gateway wss://127.0.0.1:8443 --insecure \
      --tunnel tcp:20001:127.0.0.1:8080
  The token comes from MUXGATE_TOKEN or --token-file, never from the command line.
  --tunnel may be repeated; LOCAL_HOST is any host the agent can reach.

Options:
  --config FILE          agent configuration (TOML, see etc/agent.toml)
  --gateway URL          wss://host[:port][/path] (path defaults to /muxgate)
  --name NAME            agent name (default: this host's name)
  --tunnel SPEC          PROTO:REMOTE_PORT:LOCAL_HOST:LOCAL_PORT, repeatable
  --token-file FILE      token (first line); or MUXGATE_TOKEN
  --ca FILE              trust this CA (PEM) for the gateway's certificate
  --pin sha256//BASE64   also require this gateway public key
  --insecure             do not verify the gateway's certificate (testing only)
  --proxy URL            reach the gateway through http://[user:pass@]proxy:port
  --modules DIR          plugin directory (default: bundled lib/muxgate/modules)
  --log-level LEVEL      trace, debug, info, warn, error, off (default info)
  --check-config         validate configuration and plugins; exit
  --version, --help
)";

int fail(const std::string& message)
{
    std::fprintf(stderr, "muxgate-agent: %s\n", message.c_str());
    return 2;
}

std::string host_name()
{
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "agent";
    std::string n = buf;
    for (char& c : n)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            c = '-';
    return n.substr(0, 64);
}

}  // namespace

int main(int argc, char** argv)
{
    const std::vector<cli::option> options{
        {"config", true},   {"gateway", true},        {"name", true},    {"tunnel", true, true},
        {"token-file", true}, {"ca", true},           {"pin", true},     {"insecure", false},
        {"proxy", true},    {"modules", true},        {"log-level", true},
        {"check-config", false}, {"version", false},  {"help", false},
    };
    std::string err;
    auto args = cli::parse(argc, argv, 1, options, err);
    if (!args) return fail(err);
    if (args->has("help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    if (args->has("version")) {
        std::printf("muxgate-agent %s (plugin ABI %d.%d, %s)\n", MUXGATE_VERSION, MG_ABI_MAJOR,
                    MG_ABI_MINOR, MG_BUILD_KEY);
        return 0;
    }
    if (!args->positionals.empty())
        return fail(fmt::format("unexpected argument \"{}\" (see --help)", args->positionals[0]));

    config::agent_config cfg;
    if (auto c = args->get("config")) {
        auto res = config::load_agent(*c);
        if (!res.problems.empty()) {
            for (const auto& p : res.problems) std::fprintf(stderr, "%s\n", p.text().c_str());
            std::fprintf(stderr, "muxgate-agent: %zu problem%s in the configuration\n",
                         res.problems.size(), res.problems.size() == 1 ? "" : "s");
            return 1;
        }
        cfg = std::move(res.cfg);
    }
    if (auto v = args->get("gateway")) cfg.gateway = *v;
    if (auto v = args->get("name")) cfg.name = *v;
    if (auto v = args->get("token-file")) cfg.token_file = *v;
    if (auto v = args->get("ca")) cfg.ca = *v;
    if (auto v = args->get("pin")) cfg.pin = *v;
    if (args->has("insecure")) cfg.insecure = true;
    if (auto v = args->get("proxy")) cfg.proxy = *v;
    if (auto v = args->get("modules")) cfg.modules_dir = *v;
    if (auto v = args->get("log-level")) {
        if (!log::valid_level(*v)) return fail("--log-level must be trace, debug, info, warn, error or off");
        cfg.log_level = *v;
    }
    for (const auto& spec : args->all("tunnel")) {
        auto t = config::parse_tunnel_flag(spec, err);
        if (!t) return fail("--tunnel " + err);
        for (const auto& existing : cfg.tunnels)
            if (existing.name == t->name)
                return fail(fmt::format("--tunnel {}: a tunnel named \"{}\" already exists", spec,
                                        t->name));
        cfg.tunnels.push_back(*t);
    }
    if (cfg.name.empty()) cfg.name = host_name();
    if (cfg.gateway.empty()) return fail("no gateway: pass --gateway wss://HOST[:PORT] or --config FILE");
    auto url = net::parse_url(cfg.gateway, err);
    if (!url) return fail("--gateway: " + err);
    if (url->scheme != "wss" && url->scheme != "ws")
        return fail("--gateway must be a wss:// URL");
    if (url->scheme == "ws" && !cfg.insecure)
        return fail("--gateway ws:// sends the token in clear: use wss://, or add --insecure");
    if (!cfg.pin.empty())
        if (auto why = net::check_pin_syntax(cfg.pin)) return fail("--pin: " + *why);
    if (cfg.insecure && !cfg.ca.empty()) return fail("--insecure and --ca contradict each other");
    if (cfg.tunnels.empty()) return fail("no tunnels: pass --tunnel PROTO:REMOTE_PORT:HOST:PORT");

    std::string tok;
    if (!cfg.token_file.empty()) {
        auto t = token::read_file(cfg.token_file, err);
        if (!t) return fail(err);
        tok = *t;
    } else if (const char* env = std::getenv("MUXGATE_TOKEN"); env && *env) {
        tok = env;
    } else {
        return fail("no token: set MUXGATE_TOKEN or token_file / --token-file");
    }

    if (!log::setup(cfg.log_level, "muxgate-agent")) return fail("bad log level");

    std::shared_ptr<boost::asio::ssl::context> tls;
    try {
        if (url->scheme == "wss") {
            tls = net::make_client_context({cfg.ca, cfg.insecure, cfg.pin});
            if (cfg.insecure)
                spdlog::warn("--insecure: the gateway's certificate is NOT verified{}",
                             cfg.pin.empty() ? "; anyone in the path can impersonate it"
                                             : " (only the public key pin is checked)");
        }
    } catch (const std::exception& e) {
        return fail(e.what());
    }

    const std::string modules = cfg.modules_dir.empty() ? plugin::default_modules_dir().string()
                                                         : cfg.modules_dir;
    try {
        agent::agent a{cfg, tok, *url, tls};
        const auto plugins = a.load_plugins(modules);
        const auto problems = a.check_tunnels();
        for (const auto& p : problems) std::fprintf(stderr, "%s\n", p.c_str());
        if (args->has("check-config")) {
            if (plugins.refused > 0 || plugins.fatal || !problems.empty()) return 1;
            std::printf("%s: configuration OK (%zu tunnel%s)\n",
                        cfg.file.empty() ? "command line" : cfg.file.c_str(), cfg.tunnels.size(),
                        cfg.tunnels.size() == 1 ? "" : "s");
            return 0;
        }
        if (plugins.fatal || !problems.empty()) return 1;
        return a.run();
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
}
