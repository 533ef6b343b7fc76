// The loader and the plugin host against fake plugins with one thing wrong
// each (tests/plugins/fakes/). Every refusal is checked as the exact line an
// operator reads in the log, and every case directory also holds a good
// plugin that must still load: one bad file never stops the others.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "net/pipe.hpp"
#include "plugin/host.hpp"
#include "plugin/loader.hpp"

#include <muxgate/plugin.h>

#include <boost/asio/io_context.hpp>
#include <fmt/format.h>

#include <dlfcn.h>

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace muxgate;

namespace {

const fs::path fakes_dir{MUXGATE_FAKES_DIR};

// Is `file` mapped in this process right now? RTLD_NOLOAD never loads; the
// reference it takes when the library is there is dropped at once.
bool is_mapped(const fs::path& file)
{
    void* h = ::dlopen(file.c_str(), RTLD_LAZY | RTLD_NOLOAD);
    if (h) ::dlclose(h);
    return h != nullptr;
}

std::vector<std::string> names_of(const plugin::load_report& r)
{
    std::vector<std::string> out;
    for (const auto& l : r.loaded) out.emplace_back(l.descriptor->name);
    return out;
}

std::string refusals(const plugin::load_report& r)
{
    std::string out;
    for (const auto& line : r.refused) out += "\n  " + line;
    return out;
}

// fakes/<dir>/ holds <file> with one defect, and good.so. Loading it must
// refuse <file> with exactly `reason`, load good.so, and leave <file>
// unmapped (a refused library is closed at once).
void expect_refused(const std::string& dir, const std::string& file, const std::string& reason)
{
    CAPTURE(dir);
    const fs::path d = fakes_dir / dir;
    REQUIRE(fs::exists(d / file));
    REQUIRE(fs::exists(d / "good.so"));
    const auto report = plugin::load_directory(d);
    INFO("refused:" << refusals(report));
    REQUIRE(report.refused.size() == 1);
    CHECK(report.refused[0] == fmt::format("{}: {}", (d / file).string(), reason));
    REQUIRE(report.loaded.size() == 1);
    CHECK(report.loaded[0].file == d / "good.so");
    CHECK(std::string{report.loaded[0].descriptor->name} == "good");
    CHECK(report.loaded[0].descriptor->protocol_id == 200);
    CHECK(is_mapped(d / "good.so"));
    CHECK_FALSE(is_mapped(d / file));
}

// What a gateway or agent provides to a plugin, minus everything that does
// I/O: enough to create plugins and call into them.
class fake_services final : public plugin::host_services {
public:
    boost::asio::io_context& io() override { return io_; }
    mg_role role() const override { return MG_ROLE_GATEWAY; }
    std::shared_ptr<net::pipe> open_stream(plugin::plugin_host&, std::string_view,
                                           std::string_view, std::string_view,
                                           const std::shared_ptr<net::pipe>&,
                                           mg_status& status) override
    {
        status = MG_ERR_UNSUPPORTED;
        return nullptr;
    }
    std::shared_ptr<net::pipe> connect(plugin::plugin_host&, std::string_view, std::uint16_t,
                                       std::string_view, const std::shared_ptr<net::pipe>&,
                                       mg_status& status) override
    {
        status = MG_ERR_UNSUPPORTED;
        return nullptr;
    }
    mg_status listen(plugin::plugin_host&, std::string_view, std::string_view, void*) override
    {
        return MG_ERR_UNSUPPORTED;
    }
    mg_status claim_https(plugin::plugin_host&, void*) override { return MG_ERR_UNSUPPORTED; }
    net::pipe_limits pipe_limits() const override { return {}; }

private:
    boost::asio::io_context io_;
};

// Loads fakes/<dir>, expecting no refusal, and creates every plugin in it
// with `config`; returns name -> "" on success or the create() error.
std::map<std::string, std::string> create_all(const std::string& dir, const std::string& config)
{
    fake_services services;
    const auto report = plugin::load_directory(fakes_dir / dir);
    INFO("refused:" << refusals(report));
    REQUIRE(report.refused.empty());
    std::map<std::string, std::string> out;
    for (auto lib : report.loaded) {
        auto host = std::make_shared<plugin::plugin_host>(std::move(lib), services);
        std::string error;
        const bool ok = host->create(config, error);
        CHECK(ok == host->created());
        CHECK(ok == error.empty());
        out[host->name()] = ok ? std::string{} : error;
    }
    return out;
}

mg_str str(const std::string& s) { return mg_str{s.data(), s.size()}; }
mg_str str(const char* literal) { return mg_str{literal, std::char_traits<char>::length(literal)}; }

}  // namespace

TEST_CASE("a shared object without the descriptor symbol is refused")
{
    expect_refused("no_descriptor", "no_descriptor.so",
                   "no \"muxgate_plugin_v1\" descriptor (not a muxgate plugin)");
}

TEST_CASE("a descriptor with the wrong magic is refused")
{
    expect_refused("bad_magic", "bad_magic.so",
                   "bad magic 0xdeadbeef (not a muxgate plugin descriptor)");
}

TEST_CASE("another ABI major is not binary compatible")
{
    expect_refused("abi_major_2", "abi_major_2.so",
                   fmt::format("not binary compatible: plugin ABI 2.{}, this host speaks ABI {}.x",
                               MG_ABI_MINOR, MG_ABI_MAJOR));
}

TEST_CASE("an ABI minor newer than the host's is refused with an upgrade hint")
{
    expect_refused("abi_minor_newer", "abi_minor_newer.so",
                   fmt::format("plugin needs ABI {0}.{1}, newer than this host's {0}.{2}; "
                               "upgrade muxgate",
                               MG_ABI_MAJOR, MG_ABI_MINOR + 1, MG_ABI_MINOR));
}

TEST_CASE("a descriptor shorter than ABI 1.0 defines is refused")
{
    expect_refused("descriptor_short", "descriptor_short.so",
                   fmt::format("descriptor is {} bytes, ABI 1.0 needs at least {}",
                               offsetof(mg_plugin_descriptor, reserved),
                               sizeof(mg_plugin_descriptor)));
}

TEST_CASE("a vtable shorter than ABI 1.0 defines is refused")
{
    expect_refused("vtable_short", "vtable_short.so",
                   fmt::format("vtable is {} bytes, ABI 1.0 needs at least {}",
                               offsetof(mg_plugin_vtable, on_timer),
                               offsetof(mg_plugin_vtable, on_timer) + sizeof(void*)));
}

TEST_CASE("a plugin built for another platform is refused")
{
    expect_refused("other_platform", "other_platform.so",
                   fmt::format("built for \"mg1-sparc64-solaris\", this host is \"{}\"",
                               MG_BUILD_KEY));
}

TEST_CASE("an invalid plugin name is refused")
{
    expect_refused("bad_name", "bad_name.so",
                   "invalid plugin name \"Bad Name\" (want [a-z0-9_-]{1,32})");
}

TEST_CASE("protocol_id 0 (control) and 300 (not a byte) are refused")
{
    expect_refused("protocol_0", "protocol_0.so",
                   "protocol_id 0 out of range 1..255 (0 is control)");
    expect_refused("protocol_300", "protocol_300.so",
                   "protocol_id 300 out of range 1..255 (0 is control)");
}

TEST_CASE("a descriptor without a vtable is refused")
{
    expect_refused("null_vtable", "null_vtable.so", "descriptor has no vtable");
}

TEST_CASE("a vtable without create/destroy is refused")
{
    expect_refused("no_create", "no_create.so", "vtable lacks create/destroy");
}

TEST_CASE("a duplicate name is refused; the file sorted first keeps it")
{
    expect_refused("dup_name", "z_dup_name.so",
                   "duplicate plugin name \"good\" (already loaded from another file)");
}

TEST_CASE("a duplicate protocol_id is refused; the file sorted first keeps it")
{
    expect_refused("dup_id", "z_dup_id.so",
                   "duplicate protocol_id 200 (plugin \"dupid\"; already taken)");
}

TEST_CASE("a file that is not ELF at all is refused with the dynamic loader's reason")
{
    const fs::path d = fakes_dir / "not_elf";
    const auto report = plugin::load_directory(d);
    INFO("refused:" << refusals(report));
    REQUIRE(report.refused.size() == 1);
    // The tail is dlerror()'s text, which the C library words; pin the part
    // muxgate writes and that the reason names the file and the format.
    const std::string prefix = fmt::format("{}: cannot load: ", (d / "not_elf.so").string());
    CHECK(report.refused[0].rfind(prefix, 0) == 0);
    CHECK(report.refused[0].find("ELF", prefix.size()) != std::string::npos);
    CHECK(names_of(report) == std::vector<std::string>{"good"});
}

TEST_CASE("a missing modules directory is one refusal, not an exception")
{
    const fs::path d = fakes_dir / "no_such_directory";
    const auto report = plugin::load_directory(d);
    CHECK(report.loaded.empty());
    REQUIRE(report.refused.size() == 1);
    CHECK(report.refused[0] == fmt::format("{}: modules directory does not exist", d.string()));
}

TEST_CASE("with a list of plugins, unlisted files are skipped and missing names reported")
{
    const fs::path d = fakes_dir / "dup_id";
    const auto report = plugin::load_directory(d, {"dupid", "nosuch"});
    // good.so is not listed: skipped, so z_dup_id.so's protocol_id 200 is free.
    CHECK(names_of(report) == std::vector<std::string>{"dupid"});
    REQUIRE(report.refused.size() == 1);
    CHECK(report.refused[0] ==
          fmt::format("{}: plugin \"nosuch\" is listed in the configuration but not found",
                      d.string()));
}

TEST_CASE("create() returning an error is refused with the plugin's message")
{
    const auto created = create_all("create_error", "{}");
    REQUIRE(created.size() == 2);
    CHECK(created.at("good").empty());
    CHECK(created.at("createerr") ==
          "fake refuses to start: missing \"secret\" in [plugins.createerr]");
}

TEST_CASE("create() throwing through the C++ wrapper becomes an error, not an unwind")
{
    SUBCASE("std::exception: its what() is the message")
    {
        const auto created = create_all("create_throws", R"({"k":1})");
        REQUIRE(created.size() == 2);
        CHECK(created.at("good").empty());
        CHECK(created.at("throws") == R"(fake constructor throws: config was {"k":1})");
    }
    SUBCASE("anything else: a generic message")
    {
        const auto created = create_all("create_throws_int", "{}");
        REQUIRE(created.size() == 2);
        CHECK(created.at("good").empty());
        CHECK(created.at("throwsint") == "unknown exception");
    }
}

TEST_CASE("the library stays mapped while its plugin_host lives, and only that long")
{
    const fs::path file = fakes_dir / "lifetime" / "good.so";
    REQUIRE(fs::exists(file));
    REQUIRE_FALSE(is_mapped(file));

    fake_services services;
    std::shared_ptr<plugin::plugin_host> host;
    {
        auto report = plugin::load_directory(fakes_dir / "lifetime");
        REQUIRE(report.loaded.size() == 1);
        CHECK(is_mapped(file));
        host = std::make_shared<plugin::plugin_host>(std::move(report.loaded[0]), services);
        report = {};  // the loader's report, and the library struct in it, are gone
    }
    CHECK(is_mapped(file));
    CHECK(host->name() == "good");
    CHECK(host->protocol_id() == 200);
    CHECK(host->version() == "0.0.1-fake");

    std::string error;
    REQUIRE(host->create("{}", error));

    // Call through the vtable: the plugin's code and its instance are alive,
    // and it can call back into the host table (it logs).
    const std::string agent = "agent-a", tunnel = "t1";
    mg_tunnel_request req{};
    req.struct_size = sizeof req;
    req.agent = str(agent);
    req.tunnel = str(tunnel);
    req.options_json = str("{}");
    req.acl_json = str("{}");
    for (int call = 1; call <= 2; ++call) {
        mg_tunnel_decision dec{};
        dec.struct_size = sizeof dec;
        CHECK(host->tunnel_register(req, dec) == MG_OK);
        CHECK(dec.ingress == MG_INGRESS_ROUTED);
        CHECK(std::string{dec.message} == fmt::format("fake:agent-a/t1#{}", call));
    }

    // destroy() ends the instance, not the mapping: the host object may still
    // be reached (pipes hold it) and its vtable pointer must stay valid.
    host->destroy();
    CHECK_FALSE(host->created());
    CHECK(is_mapped(file));
    CHECK(host->vtable().struct_size == sizeof(mg_plugin_vtable));

    host.reset();
    CHECK_FALSE(is_mapped(file));
}
