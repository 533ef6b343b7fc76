#include "config/cli.hpp"

#include <fmt/format.h>

namespace muxgate::cli {

std::optional<parsed> parse(int argc, const char* const* argv, int first,
                            const std::vector<option>& options, std::string& error)
{
    parsed out;
    for (int i = first; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg.size() < 3 || arg.substr(0, 2) != "--") {
            if (arg == "-h") {
                out.values["help"].push_back("");
                continue;
            }
            out.positionals.emplace_back(arg);
            continue;
        }
        std::string_view name = arg.substr(2);
        std::optional<std::string> inline_value;
        if (const auto eq = name.find('='); eq != std::string_view::npos) {
            inline_value = std::string{name.substr(eq + 1)};
            name = name.substr(0, eq);
        }
        const option* spec = nullptr;
        for (const auto& o : options)
            if (o.name == name) spec = &o;
        if (!spec) {
            error = fmt::format("unknown option --{} (see --help)", name);
            return std::nullopt;
        }
        auto& slot = out.values[spec->name];
        if (!slot.empty() && !spec->repeatable) {
            error = fmt::format("--{} given twice", name);
            return std::nullopt;
        }
        if (!spec->takes_value) {
            if (inline_value) {
                error = fmt::format("--{} takes no value", name);
                return std::nullopt;
            }
            slot.emplace_back();
            continue;
        }
        if (inline_value) {
            slot.push_back(*inline_value);
        } else if (i + 1 < argc) {
            slot.emplace_back(argv[++i]);
        } else {
            error = fmt::format("--{} needs a value", name);
            return std::nullopt;
        }
    }
    return out;
}

}  // namespace muxgate::cli
