// plugin/loader: check_descriptor(), the checks that need only the
// descriptor's bytes. Each test starts from a good descriptor built by hand
// and breaks exactly one thing. (Loading real .so files, including one fake
// plugin per refusal, is tests/plugins/.)
#include "plugin/loader.hpp"

#include <doctest/doctest.h>

#include <cstddef>
#include <string>

using namespace muxgate;

namespace {

mg_status fake_create(const mg_host_api*, mg_str, void** instance, char*, size_t)
{
    *instance = nullptr;
    return MG_OK;
}
void fake_destroy(void*) {}

// The v1.0 vtable size: every field up to and including on_timer.
constexpr std::uint32_t vtable_v1_0 = offsetof(mg_plugin_vtable, on_timer) + sizeof(void*);

struct fixture {
    mg_plugin_vtable vt{};
    mg_plugin_descriptor d{};

    fixture()
    {
        vt.struct_size = sizeof vt;
        vt.create = fake_create;
        vt.destroy = fake_destroy;
        d.magic = MG_PLUGIN_MAGIC;
        d.abi_major = MG_ABI_MAJOR;
        d.abi_minor = MG_ABI_MINOR;
        d.struct_size = sizeof d;
        d.protocol_id = 42;
        d.name = "good";
        d.version = "1.0";
        d.build_key = MG_BUILD_KEY;
        d.vtable = &vt;
    }

    std::string refusal() const
    {
        const auto why = plugin::check_descriptor(d);
        return why ? *why : std::string{"(accepted)"};
    }
};

const std::string host_key = MG_BUILD_KEY;

}  // namespace

TEST_SUITE("plugin.descriptor")
{
TEST_CASE("a good descriptor is accepted, at every edge of the valid range")
{
    fixture f;
    CHECK(f.refusal() == "(accepted)");
    f.d.protocol_id = 1;
    CHECK(f.refusal() == "(accepted)");
    f.d.protocol_id = 255;
    CHECK(f.refusal() == "(accepted)");
    f.d.name = "abcdefghijklmnopqrstuvwxyz012345";  // 32 characters
    CHECK(f.refusal() == "(accepted)");
    f.d.name = "a_b-9";
    CHECK(f.refusal() == "(accepted)");
    f.d.version = nullptr;  // free text, optional
    CHECK(f.refusal() == "(accepted)");
    f.vt.struct_size = vtable_v1_0;  // exactly ABI 1.0's table
    CHECK(f.refusal() == "(accepted)");
    f.d.struct_size = sizeof(mg_plugin_descriptor) + 64;  // a newer minor's longer struct
    CHECK(f.refusal() == "(accepted)");
    CHECK(host_key.rfind("mg1-", 0) == 0);
}

TEST_CASE("bad magic")
{
    fixture f;
    f.d.magic = 0x12345678;
    CHECK(f.refusal() == "bad magic 0x12345678 (not a muxgate plugin descriptor)");
    f.d.magic = 0;
    CHECK(f.refusal() == "bad magic 0x00000000 (not a muxgate plugin descriptor)");
    f.d.magic = 0x3150474d;  // "MGP1" in the other byte order
    CHECK(f.refusal() == "bad magic 0x3150474d (not a muxgate plugin descriptor)");
}

TEST_CASE("ABI major mismatch, either way")
{
    fixture f;
    f.d.abi_major = 2;
    f.d.abi_minor = 3;
    CHECK(f.refusal() == "not binary compatible: plugin ABI 2.3, this host speaks ABI 1.x");
    f.d.abi_major = 0;
    f.d.abi_minor = 9;
    CHECK(f.refusal() == "not binary compatible: plugin ABI 0.9, this host speaks ABI 1.x");
}

TEST_CASE("a newer minor than the host's")
{
    fixture f;
    f.d.abi_minor = MG_ABI_MINOR + 1;
    CHECK(f.refusal() == "plugin needs ABI 1." + std::to_string(MG_ABI_MINOR + 1) +
                             ", newer than this host's 1." + std::to_string(MG_ABI_MINOR) +
                             "; upgrade muxgate");
}

TEST_CASE("a descriptor shorter than ABI 1.0's")
{
    fixture f;
    f.d.struct_size = sizeof(mg_plugin_descriptor) - 1;
    CHECK(f.refusal() == "descriptor is " + std::to_string(sizeof(mg_plugin_descriptor) - 1) +
                             " bytes, ABI 1.0 needs at least " +
                             std::to_string(sizeof(mg_plugin_descriptor)));
    f.d.struct_size = 0;
    CHECK(f.refusal() == "descriptor is 0 bytes, ABI 1.0 needs at least " +
                             std::to_string(sizeof(mg_plugin_descriptor)));
}

TEST_CASE("a build key of another platform, or none")
{
    fixture f;
    f.d.build_key = "mg1-riscv64-freebsd";
    CHECK(f.refusal() == "built for \"mg1-riscv64-freebsd\", this host is \"" + host_key + "\"");
    f.d.build_key = nullptr;
    CHECK(f.refusal() == "built for \"(none)\", this host is \"" + host_key + "\"");
    const std::string longer = host_key + "x";
    f.d.build_key = longer.c_str();
    CHECK(f.refusal() == "built for \"" + longer + "\", this host is \"" + host_key + "\"");
}

TEST_CASE("bad names")
{
    fixture f;
    for (const char* bad : {"", "Good", "has space", "dot.name", "slash/name", "ünï",
                            "abcdefghijklmnopqrstuvwxyz0123456"}) {  // 33
        CAPTURE(bad);
        f.d.name = bad;
        CHECK(f.refusal() ==
              std::string{"invalid plugin name \""} + bad + "\" (want [a-z0-9_-]{1,32})");
    }
    f.d.name = nullptr;
    CHECK(f.refusal() == "invalid plugin name \"(null)\" (want [a-z0-9_-]{1,32})");
}

TEST_CASE("protocol_id 0 (control) and above 255")
{
    fixture f;
    for (std::uint32_t id : {0u, 256u, 300u, 0xffffffffu}) {
        CAPTURE(id);
        f.d.protocol_id = id;
        CHECK(f.refusal() ==
              "protocol_id " + std::to_string(id) + " out of range 1..255 (0 is control)");
    }
}

TEST_CASE("vtable: missing, short, without create or destroy")
{
    fixture f;
    f.d.vtable = nullptr;
    CHECK(f.refusal() == "descriptor has no vtable");

    fixture s;
    s.vt.struct_size = vtable_v1_0 - 1;
    CHECK(s.refusal() == "vtable is " + std::to_string(vtable_v1_0 - 1) +
                             " bytes, ABI 1.0 needs at least " + std::to_string(vtable_v1_0));
    s.vt.struct_size = 4;
    CHECK(s.refusal() == "vtable is 4 bytes, ABI 1.0 needs at least " + std::to_string(vtable_v1_0));

    fixture c;
    c.vt.create = nullptr;
    CHECK(c.refusal() == "vtable lacks create/destroy");
    fixture d;
    d.vt.destroy = nullptr;
    CHECK(d.refusal() == "vtable lacks create/destroy");
}

TEST_CASE("checks run in a fixed order: the first problem is the one reported")
{
    fixture f;
    f.d.magic = 1;
    f.d.abi_major = 9;
    f.d.vtable = nullptr;
    CHECK(f.refusal() == "bad magic 0x00000001 (not a muxgate plugin descriptor)");
    // A short struct is refused before any field beyond the version is read.
    fixture g;
    g.d.struct_size = 8;
    g.d.build_key = nullptr;
    g.d.name = nullptr;
    CHECK(g.refusal().rfind("descriptor is 8 bytes", 0) == 0);
}
}
