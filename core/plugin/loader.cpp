#include "plugin/loader.hpp"

#include <boost/dll/runtime_symbol_info.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <set>

namespace muxgate::plugin {

namespace fs = std::filesystem;

namespace {

// The sizes ABI 1.0 defines; a struct shorter than this cannot be read.
constexpr std::size_t descriptor_v1_0_size = sizeof(mg_plugin_descriptor);
constexpr std::size_t vtable_v1_0_size = offsetof(mg_plugin_vtable, on_timer) + sizeof(void*);

bool valid_name(const char* name)
{
    if (!name) return false;
    const std::string_view n{name};
    if (n.empty() || n.size() > 32) return false;
    return std::all_of(n.begin(), n.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
}

// Boost.DLL's message is "... failed (dlerror system message: <path>: <why>):
// <unrelated errno>"; the dynamic loader's <why> (e.g. "invalid ELF header")
// is what an operator needs.
std::string dlopen_reason(std::string_view what, const fs::path& file)
{
    constexpr std::string_view tag = "dlerror system message: ";
    auto b = what.find(tag);
    if (b == std::string_view::npos) return std::string{what};
    b += tag.size();
    auto e = what.rfind("):");
    std::string_view why = what.substr(b, e == std::string_view::npos || e < b ? std::string_view::npos : e - b);
    const std::string prefix = file.string() + ": ";
    if (why.substr(0, prefix.size()) == prefix) why.remove_prefix(prefix.size());
    return std::string{why};
}

}  // namespace

std::optional<std::string> check_descriptor(const mg_plugin_descriptor& d)
{
    if (d.magic != MG_PLUGIN_MAGIC)
        return fmt::format("bad magic 0x{:08x} (not a muxgate plugin descriptor)", d.magic);
    if (d.abi_major != MG_ABI_MAJOR)
        return fmt::format("not binary compatible: plugin ABI {}.{}, this host speaks ABI {}.x",
                           d.abi_major, d.abi_minor, MG_ABI_MAJOR);
    if (d.abi_minor > MG_ABI_MINOR)
        return fmt::format("plugin needs ABI {}.{}, newer than this host's {}.{}; upgrade muxgate",
                           d.abi_major, d.abi_minor, MG_ABI_MAJOR, MG_ABI_MINOR);
    if (d.struct_size < descriptor_v1_0_size)
        return fmt::format("descriptor is {} bytes, ABI {}.0 needs at least {}", d.struct_size,
                           MG_ABI_MAJOR, descriptor_v1_0_size);
    if (!d.build_key || std::string_view{d.build_key} != MG_BUILD_KEY)
        return fmt::format("built for \"{}\", this host is \"{}\"",
                           d.build_key ? d.build_key : "(none)", MG_BUILD_KEY);
    if (!valid_name(d.name))
        return fmt::format("invalid plugin name \"{}\" (want [a-z0-9_-]{{1,32}})",
                           d.name ? d.name : "(null)");
    if (d.protocol_id < 1 || d.protocol_id > 255)
        return fmt::format("protocol_id {} out of range 1..255 (0 is control)", d.protocol_id);
    if (!d.vtable) return "descriptor has no vtable";
    if (d.vtable->struct_size < vtable_v1_0_size)
        return fmt::format("vtable is {} bytes, ABI {}.0 needs at least {}", d.vtable->struct_size,
                           MG_ABI_MAJOR, vtable_v1_0_size);
    if (!d.vtable->create || !d.vtable->destroy) return "vtable lacks create/destroy";
    return std::nullopt;
}

fs::path default_modules_dir()
{
    std::error_code ec;
    const fs::path exe = boost::dll::program_location(ec);
    if (ec) return fs::path{"modules"};
    return (exe.parent_path() / MUXGATE_MODULES_RELATIVE).lexically_normal();
}

load_report load_directory(const fs::path& dir, const std::vector<std::string>& only)
{
    load_report report;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        report.refused.push_back(fmt::format("{}: modules directory does not exist", dir.string()));
        return report;
    }
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec))
        if (entry.path().extension() == ".so") files.push_back(entry.path());
    std::sort(files.begin(), files.end());

    std::set<std::string> names;
    std::set<std::uint32_t> ids;
    for (const auto& file : files) {
        library l;
        l.file = file;
        try {
            l.lib = std::make_shared<boost::dll::shared_library>(
                file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
        } catch (const std::exception& e) {
            report.refused.push_back(
                fmt::format("{}: cannot load: {}", file.string(), dlopen_reason(e.what(), file)));
            continue;
        }
        if (!l.lib->has(MG_PLUGIN_SYMBOL)) {
            report.refused.push_back(fmt::format("{}: no \"{}\" descriptor (not a muxgate plugin)",
                                                 file.string(), MG_PLUGIN_SYMBOL));
            continue;
        }
        l.descriptor = &l.lib->get<const mg_plugin_descriptor>(MG_PLUGIN_SYMBOL);
        if (auto why = check_descriptor(*l.descriptor)) {
            report.refused.push_back(fmt::format("{}: {}", file.string(), *why));
            continue;
        }
        const std::string name = l.descriptor->name;
        if (!only.empty() && std::find(only.begin(), only.end(), name) == only.end()) continue;
        if (names.count(name)) {
            report.refused.push_back(
                fmt::format("{}: duplicate plugin name \"{}\" (already loaded from another file)",
                            file.string(), name));
            continue;
        }
        if (ids.count(l.descriptor->protocol_id)) {
            report.refused.push_back(
                fmt::format("{}: duplicate protocol_id {} (plugin \"{}\"; already taken)",
                            file.string(), l.descriptor->protocol_id, name));
            continue;
        }
        names.insert(name);
        ids.insert(l.descriptor->protocol_id);
        report.loaded.push_back(std::move(l));
    }
    for (const auto& want : only)
        if (!names.count(want))
            report.refused.push_back(
                fmt::format("{}: plugin \"{}\" is listed in the configuration but not found",
                            dir.string(), want));
    return report;
}

}  // namespace muxgate::plugin
