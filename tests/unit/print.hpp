// Lets doctest print a std::vector<std::string> in a failed CHECK, so a
// mismatch in a list of events or problems shows both lists, one per line.
#pragma once

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace doctest {
template <>
struct StringMaker<std::vector<std::string>> {
    static String convert(const std::vector<std::string>& v)
    {
        std::string out = "{";
        for (const auto& s : v) out += "\n    \"" + s + "\"";
        out += v.empty() ? "}" : "\n}";
        return String{out.c_str()};
    }
};
}  // namespace doctest
