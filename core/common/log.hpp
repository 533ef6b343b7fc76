// Logging: spdlog, one line per event, fields as key=value so lines can be
// grepped by agent, tunnel and stream.
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

namespace muxgate::log {

// Sets the default logger: stderr, "2026-11-25T06:44:26.123Z level message".
// `level` is one of trace, debug, info, warn, error, off; returns false if not.
bool setup(std::string_view level, std::string_view program);
bool valid_level(std::string_view level);

}  // namespace muxgate::log
