// Command-line options: "--name value", "--name=value", flags and
// repeatable options, checked against a list so a typo is an error.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace muxgate::cli {

struct option {
    std::string name;         // without the dashes
    bool takes_value = false;
    bool repeatable = false;
};

struct parsed {
    std::map<std::string, std::vector<std::string>> values;
    std::vector<std::string> positionals;

    bool has(const std::string& name) const { return values.count(name) != 0; }
    std::optional<std::string> get(const std::string& name) const
    {
        auto it = values.find(name);
        if (it == values.end() || it->second.empty()) return std::nullopt;
        return it->second.back();
    }
    std::vector<std::string> all(const std::string& name) const
    {
        auto it = values.find(name);
        return it == values.end() ? std::vector<std::string>{} : it->second;
    }
};

// Parses argv[first..argc). nullopt with `error` on an unknown option, a
// missing value, or a repeated option that may appear once.
std::optional<parsed> parse(int argc, const char* const* argv, int first,
                            const std::vector<option>& options, std::string& error);

}  // namespace muxgate::cli
