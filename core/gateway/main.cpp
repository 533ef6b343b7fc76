// muxgate: the gateway. See `muxgate --help` and README.md.
#include "common/log.hpp"
#include "common/token.hpp"
#include "config/cli.hpp"
#include "config/config.hpp"
#include "gateway/gateway.hpp"
#include "net/address.hpp"
#include "net/tls.hpp"
#include "plugin/loader.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sys/stat.h>
#include <unistd.h>

namespace {

using namespace muxgate;
namespace fs = std::filesystem;

constexpr const char* usage = R"(muxgate — reverse-tunnel gateway (agents dial in over one TLS WebSocket)

Usage:
  muxgate --config FILE [options]         run from a configuration file
  muxgate --listen ADDR --self-signed     quick mode: one shared token, any agent
  muxgate --check-config --config FILE    validate (and load plugins), then exit
  muxgate token new                       print a fresh agent token and its hash line
  muxgate token hash                      print the hash line of a token read from stdin

Quick mode (no configuration file):
  MUXGATE_TOKEN=secret muxgate --listen 127.0.0.1:8443 --self-signed
  The token comes from MUXGATE_TOKEN or --token-file, never from the command
  line. Any agent name may connect with it and register any port.

Options:
  --config FILE          gateway configuration (TOML, see etc/gateway.toml)
  --listen ADDR          agent listener, host:port (default 0.0.0.0:443)
  --path PATH            WebSocket path for agents (default /muxgate)
  --public-bind ADDR     address that tunnel ports bind to (default 0.0.0.0)
  --self-signed          generate a self-signed certificate at start
  --cert-out FILE        write the generated certificate there (for agents' --ca)
  --cert FILE --key FILE TLS certificate chain and private key (PEM)
  --insecure-plaintext   serve ws:// without TLS (testing only)
  --token-file FILE      shared agent token (first line); or MUXGATE_TOKEN
  --modules DIR          plugin directory (default: bundled lib/muxgate/modules)
  --threads N            I/O threads (default: one per core)
  --log-level LEVEL      trace, debug, info, warn, error, off (default info)
  --check-config         validate configuration, certificates and plugins; exit
  --version, --help
)";

int fail(const std::string& message)
{
    std::fprintf(stderr, "muxgate: %s\n", message.c_str());
    return 2;
}

int token_command(int argc, char** argv)
{
    const std::string sub = argc > 2 ? argv[2] : "";
    if (sub == "new") {
        const auto t = token::generate();
        std::printf("token (give this to the agent, e.g. in its token_file):\n  %s\n\n", t.c_str());
        std::printf("gateway entry (etc/gateway.toml, [[agent]]):\n  token_hash = \"%s\"\n",
                    token::format_hash(token::hash(t)).c_str());
        return 0;
    }
    if (sub == "hash") {
        std::string line;
        std::getline(std::cin, line);
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' '))
            line.pop_back();
        if (line.empty()) return fail("token hash: no token on standard input");
        std::printf("token_hash = \"%s\"\n", token::format_hash(token::hash(line)).c_str());
        return 0;
    }
    return fail("usage: muxgate token new | muxgate token hash < token");
}

bool write_private_file(const std::string& path, const std::string& data, mode_t mode,
                        std::string& error)
{
    std::ofstream out{path, std::ios::binary | std::ios::trunc};
    if (!out) {
        error = fmt::format("cannot write \"{}\"", path);
        return false;
    }
    out << data;
    out.close();
    ::chmod(path.c_str(), mode);
    return true;
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc > 1 && std::string_view{argv[1]} == "token") return token_command(argc, argv);

    const std::vector<cli::option> options{
        {"config", true},      {"listen", true},        {"path", true},
        {"public-bind", true}, {"self-signed", false},  {"cert-out", true},
        {"cert", true},        {"key", true},           {"insecure-plaintext", false},
        {"token-file", true},  {"modules", true},       {"threads", true},
        {"log-level", true},   {"check-config", false}, {"version", false},
        {"help", false},
    };
    std::string err;
    auto args = cli::parse(argc, argv, 1, options, err);
    if (!args) return fail(err);
    if (args->has("help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    if (args->has("version")) {
        std::printf("muxgate %s (plugin ABI %d.%d, %s)\n", MUXGATE_VERSION, MG_ABI_MAJOR,
                    MG_ABI_MINOR, MG_BUILD_KEY);
        return 0;
    }
    if (!args->positionals.empty())
        return fail(fmt::format("unexpected argument \"{}\" (see --help)", args->positionals[0]));

    config::gateway_config cfg;
    std::string config_path;
    if (auto c = args->get("config")) {
        config_path = *c;
        auto res = config::load_gateway(config_path);
        if (!res.problems.empty()) {
            for (const auto& p : res.problems) std::fprintf(stderr, "%s\n", p.text().c_str());
            std::fprintf(stderr, "muxgate: %zu problem%s in the configuration\n",
                         res.problems.size(), res.problems.size() == 1 ? "" : "s");
            return 1;
        }
        cfg = std::move(res.cfg);
    }
    if (auto v = args->get("listen")) {
        if (!net::parse_host_port(*v, err, true)) return fail("--listen: " + err);
        cfg.listen = *v;
    }
    if (auto v = args->get("path")) {
        if (v->empty() || v->front() != '/') return fail("--path must start with /");
        cfg.path = *v;
    }
    if (auto v = args->get("public-bind")) cfg.public_bind = *v;
    if (auto v = args->get("modules")) cfg.modules_dir = *v;
    if (auto v = args->get("log-level")) {
        if (!log::valid_level(*v)) return fail("--log-level must be trace, debug, info, warn, error or off");
        cfg.log_level = *v;
    }
    if (auto v = args->get("threads")) {
        try {
            cfg.threads = static_cast<std::uint32_t>(std::stoul(*v));
        } catch (...) {
            return fail("--threads needs a number");
        }
    }
    if (args->has("self-signed")) cfg.self_signed = true;
    if (args->has("insecure-plaintext")) cfg.plaintext = true;
    if (auto v = args->get("cert")) cfg.cert = *v;
    if (auto v = args->get("key")) cfg.key = *v;

    // Shared token: quick mode's only credential, optional with a config.
    std::optional<std::string> shared;
    if (auto f = args->get("token-file")) {
        auto t = token::read_file(*f, err);
        if (!t) return fail(err);
        shared = *t;
    } else if (const char* env = std::getenv("MUXGATE_TOKEN"); env && *env) {
        shared = env;
    }
    if (shared) cfg.shared_token = token::hash(*shared);
    if (config_path.empty() && !cfg.shared_token)
        return fail("no token: set MUXGATE_TOKEN or pass --token-file FILE (or use --config)");
    if (!config_path.empty() && cfg.agents.empty() && !cfg.shared_token)
        return fail(fmt::format("{}: no [[agent]] entries and no shared token: no agent could "
                                "ever connect",
                                config_path));
    if (config_path.empty() && !cfg.self_signed && !cfg.plaintext &&
        (cfg.cert.empty() || cfg.key.empty()))
        return fail("quick mode needs --self-signed, or --cert and --key");

    if (!log::setup(cfg.log_level, "muxgate")) return fail("bad log level");

    // TLS
    std::shared_ptr<boost::asio::ssl::context> tls;
    try {
        if (!cfg.plaintext) {
            net::server_tls_options to;
            std::optional<net::self_signed> generated;
            if (cfg.self_signed) {
                const bool have_files = !cfg.cert.empty() && !cfg.key.empty() &&
                                        fs::exists(cfg.cert) && fs::exists(cfg.key);
                if (have_files) {
                    to.cert_file = cfg.cert;
                    to.key_file = cfg.key;
                } else {
                    std::vector<std::string> names = cfg.self_signed_names;
                    if (auto hp = net::parse_host_port(cfg.listen, err); hp && !hp->host.empty() &&
                                                                         hp->host != "0.0.0.0" &&
                                                                         hp->host != "::")
                        names.push_back(hp->host);
                    generated = net::make_self_signed(names);
                    to.generated = &*generated;
                    spdlog::info("generated a self-signed certificate");
                    if (!cfg.cert.empty() && !cfg.key.empty() && !args->has("check-config")) {
                        // Keep the identity across restarts.
                        if (!write_private_file(cfg.key, generated->key_pem, 0600, err) ||
                            !write_private_file(cfg.cert, generated->cert_pem, 0644, err))
                            return fail(err);
                        spdlog::info("self-signed certificate saved to {} and {}", cfg.cert, cfg.key);
                    }
                }
                if (auto out = args->get("cert-out"); out && !args->has("check-config")) {
                    const std::string pem = generated ? generated->cert_pem : std::string{};
                    if (generated) {
                        if (!write_private_file(*out, pem, 0644, err)) return fail(err);
                    } else {
                        fs::copy_file(cfg.cert, *out, fs::copy_options::overwrite_existing);
                    }
                    spdlog::info("certificate written to {} (use it as the agent's --ca)", *out);
                }
            } else {
                to.cert_file = cfg.cert;
                to.key_file = cfg.key;
            }
            for (const auto& [c, k] : cfg.extra_certs) to.extra.push_back({c, k});
            tls = net::make_server_context(to);
            // Whatever the certificate came from: what agents' --pin and a
            // human comparing fingerprints need.
            if (X509* cert = SSL_CTX_get0_certificate(tls->native_handle())) {
                spdlog::info("certificate sha256 fingerprint {}", net::cert_fingerprint(cert));
                spdlog::info("certificate public key pin {}", net::spki_pin(cert));
            }
        }
    } catch (const std::exception& e) {
        return fail(e.what());
    }

    const std::string modules = cfg.modules_dir.empty() ? plugin::default_modules_dir().string()
                                                         : cfg.modules_dir;
    try {
        gateway::gateway gw{cfg, config_path, tls};
        const auto plugins = gw.load_plugins(modules);
        if (args->has("check-config")) {
            if (plugins.refused > 0 || plugins.fatal) {
                std::fprintf(stderr, "muxgate: %zu plugin%s refused (see above)\n", plugins.refused,
                             plugins.refused == 1 ? "" : "s");
                return 1;
            }
            std::printf("%s: configuration OK (%zu agent entr%s, %zu plugin%s)\n",
                        config_path.empty() ? "command line" : config_path.c_str(),
                        cfg.agents.size(), cfg.agents.size() == 1 ? "y" : "ies",
                        gw.plugins().all().size(), gw.plugins().all().size() == 1 ? "" : "s");
            return 0;
        }
        if (plugins.fatal) {
            spdlog::critical("a plugin listed in the configuration is missing or failed (see above)");
            return 1;
        }
        if (gw.plugins().all().empty())
            spdlog::warn("no plugins loaded from {}: agents cannot register tunnels", modules);
        return gw.run();
    } catch (const std::exception& e) {
        spdlog::critical("{}", e.what());
        return 1;
    }
}
