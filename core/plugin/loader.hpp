// Finding and loading protocol plugins (shared objects) with Boost.DLL.
//
// A file is refused, with one log line naming it and the reason, when it has
// no descriptor, a wrong magic, an ABI major other than ours, a minor newer
// than ours, a struct shorter than ABI 1.0 defines, a build key of another
// platform, a bad name or protocol_id, or a name / protocol_id already taken.
// A refused file never stops the others from loading.
#pragma once

#include <muxgate/plugin.h>

#include <boost/dll/shared_library.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace muxgate::plugin {

// The checks that need only the descriptor's bytes (sans-I/O, unit-tested).
// Returns the reason for refusal, or nullopt.
std::optional<std::string> check_descriptor(const mg_plugin_descriptor& d);

struct library {
    std::filesystem::path file;
    std::shared_ptr<boost::dll::shared_library> lib;  // keeps the code mapped
    const mg_plugin_descriptor* descriptor = nullptr;
};

struct load_report {
    std::vector<library> loaded;
    std::vector<std::string> refused;  // "<file>: <reason>"
};

// Loads every "*.so" in `dir` (sorted by name, so duplicates resolve the same
// way every time). When `only` is non-empty, files whose descriptor name is
// not listed are skipped, and listed names that are missing are reported.
load_report load_directory(const std::filesystem::path& dir,
                           const std::vector<std::string>& only = {});

// The modules directory bundled with this binary: <libdir>/muxgate/modules
// relative to <bindir>, valid both in the build tree and in an installed prefix.
std::filesystem::path default_modules_dir();

}  // namespace muxgate::plugin
