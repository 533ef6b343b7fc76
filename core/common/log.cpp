#include "common/log.hpp"

#include <spdlog/sinks/stdout_sinks.h>

namespace muxgate::log {

bool valid_level(std::string_view level)
{
    return level == "trace" || level == "debug" || level == "info" || level == "warn" ||
           level == "error" || level == "off";
}

bool setup(std::string_view level, std::string_view program)
{
    if (!valid_level(level)) return false;
    auto logger = spdlog::stderr_logger_mt(std::string{program});
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%-5l%$ %v", spdlog::pattern_time_type::utc);
    logger->set_level(spdlog::level::from_str(std::string{level}));
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
    return true;
}

}  // namespace muxgate::log
