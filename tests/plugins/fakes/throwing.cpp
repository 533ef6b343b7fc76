// A plugin written with the C++ wrapper whose constructor throws. The
// wrapper's create() trampoline must catch it and turn it into an error
// status with the exception's text: nothing may unwind into the host.
// FAKE_THROW_UNKNOWN throws a non-std::exception instead.
#include <muxgate/plugin.hpp>

#include <stdexcept>

namespace {

class throwing_plugin final : public muxgate::sdk::plugin {
public:
    throwing_plugin(muxgate::sdk::host h, std::string_view config_json) : plugin(h)
    {
#if defined(FAKE_THROW_UNKNOWN)
        throw 42;
#else
        throw std::runtime_error("fake constructor throws: config was " + std::string{config_json});
#endif
    }
};

}  // namespace

#if defined(FAKE_THROW_UNKNOWN)
MUXGATE_PLUGIN(throwing_plugin, "throwsint", 204, "0.0.1-fake");
#else
MUXGATE_PLUGIN(throwing_plugin, "throws", 203, "0.0.1-fake");
#endif
