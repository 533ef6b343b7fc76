// fuzz_control: wire::parse_control over arbitrary bytes (the whole input is
// one control payload).
//
// Checked: a failure has an error text and unknown_type only for well-formed
// JSON; a success serializes to JSON that parses again to the same type with
// the same fields. Object fields (Register.options, Open.meta) must come back
// as JSON objects; their text is not compared because Boost.JSON 1.81 may
// round a double differently from simdjson on the way through.
#include "fuzz_util.hpp"
#include "wire/control.hpp"

#include <string>

using namespace muxgate;
namespace msg = wire::msg;

namespace {

// The message with its object fields blanked, serialized: equal for two
// messages with the same type and the same scalar and string fields.
std::string scalar_fields(wire::control_message m)
{
    if (auto* r = std::get_if<msg::register_tunnel>(&m)) r->options = "{}";
    if (auto* o = std::get_if<msg::open>(&m)) o->meta = "{}";
    return wire::serialize(m);
}

bool object_text_ok(const wire::control_message& m)
{
    const std::string* text = nullptr;
    if (auto* r = std::get_if<msg::register_tunnel>(&m)) text = &r->options;
    if (auto* o = std::get_if<msg::open>(&m)) text = &o->meta;
    return !text || (!text->empty() && text->front() == '{' && text->back() == '}');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view text{reinterpret_cast<const char*>(data), size};
    const auto r = wire::parse_control(text);
    if (!r.ok) {
        FUZZ_REQUIRE(!r.error.empty());
        if (r.unknown_type) FUZZ_REQUIRE(r.error.rfind("unknown control message type \"", 0) == 0);
        return 0;
    }
    FUZZ_REQUIRE(r.error.empty());
    FUZZ_REQUIRE(!r.unknown_type);
    FUZZ_REQUIRE(object_text_ok(r.message));

    const std::string once = wire::serialize(r.message);
    const auto again = wire::parse_control(once);
    FUZZ_REQUIRE(again.ok);
    FUZZ_REQUIRE(wire::type_name(again.message) == wire::type_name(r.message));
    FUZZ_REQUIRE(object_text_ok(again.message));
    FUZZ_REQUIRE(scalar_fields(again.message) == scalar_fields(r.message));
    return 0;
}
