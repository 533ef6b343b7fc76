// echo: a muxgate protocol plugin that answers every byte with itself.
//
// Gateway: a tunnel is a public port; each client gets a stream to the agent,
// linked to the client by the host's relay (like the tcp plugin).
// Agent: the plugin serves the stream itself instead of connecting anywhere.
// It stays in the data path: every on_data is written back with write(); when
// write() answers MG_AGAIN the stream is paused with set_reading(false) and
// resumed on on_writable, so a client that does not read stalls only its own
// stream and the agent's memory stays bounded by the pipe's high watermark.
// A FIN from the client is answered with a FIN after the last echoed byte.
#include <muxgate/plugin.hpp>

#include <cstdint>
#include <string>

namespace {

using muxgate::sdk::view;

// Agent side, one per stream, held as the pipe's `user` pointer. Events of one
// pipe never run concurrently, so no lock is needed.
struct echo_stream {
    std::uint64_t echoed = 0;  // bytes handed back to write()
    std::uint64_t pauses = 0;  // times write() answered MG_AGAIN
    bool paused = false;       // reading is off until on_writable
    // on_data calls while paused: always 0 if the host honours set_reading.
    std::uint64_t data_while_paused = 0;
};

class echo_plugin final : public muxgate::sdk::plugin {
public:
    echo_plugin(muxgate::sdk::host h, std::string_view /*config_json*/) : plugin(h) {}

    // ---- gateway

    mg_status tunnel_register(const muxgate::sdk::tunnel_request&,
                              muxgate::sdk::tunnel_decision& d) override
    {
        d.ingress = MG_INGRESS_PORT;  // the host binds the port and reports it
        return MG_OK;
    }

    void on_accept(mg_handle client, const mg_accept_info& info) override
    {
        auto s = host_.open_stream(view(info.agent), view(info.tunnel), {}, client);
        if (!s) {
            host_.reset(client, muxgate::sdk::status_text(s.status));
            return;
        }
        host_.link(client, s.pipe);
    }

    // ---- agent

    void on_stream(mg_handle stream, const mg_stream_info&) override
    {
        auto* state = new echo_stream;
        if (host_.set_user(stream, state) != MG_OK) {
            delete state;  // the stream is already gone: no event will carry it
            return;
        }
        // Confirm the stream to the gateway (Opened): we serve it ourselves.
        if (const mg_status st = host_.accept_stream(stream); st != MG_OK)
            host_.reset(stream, muxgate::sdk::status_text(st));
    }

    // ---- pipe events (on the gateway only on_closed arrives: its pipes are linked)

    void on_data(mg_handle pipe, void* user, const std::uint8_t* data, std::size_t size) override
    {
        auto* state = static_cast<echo_stream*>(user);
        if (state && state->paused) ++state->data_while_paused;
        const mg_status st = host_.write(pipe, data, size);
        if (st < 0) {
            host_.reset(pipe, muxgate::sdk::status_text(st));
            return;
        }
        if (state) state->echoed += size;
        if (st == MG_AGAIN) {
            // The bytes were taken, but the way back is full: stop taking
            // more from the peer until the host says the queue drained.
            host_.set_reading(pipe, false);
            if (state) {
                state->paused = true;
                ++state->pauses;
            }
            host_.debug("stream " + std::to_string(pipe) + " paused: write answered MG_AGAIN");
        }
    }

    void on_writable(mg_handle pipe, void* user) override
    {
        if (auto* state = static_cast<echo_stream*>(user)) state->paused = false;
        host_.debug("stream " + std::to_string(pipe) + " resumed: on_writable");
        host_.set_reading(pipe, true);
    }

    void on_fin(mg_handle pipe, void*) override
    {
        // Everything the client sent has been echoed (on_fin comes after the
        // last on_data); close our direction too.
        host_.shutdown_write(pipe);
    }

    void on_closed(mg_handle pipe, void* user, const mg_close_info& info) override
    {
        auto* state = static_cast<echo_stream*>(user);
        if (!state) return;  // gateway pipes carry no state
        std::string line = "stream " + std::to_string(pipe) + " closed: echoed " +
                           std::to_string(state->echoed) + " bytes, paused " +
                           std::to_string(state->pauses) + " times, " +
                           std::to_string(state->data_while_paused) +
                           " on_data while paused, close reason " + std::to_string(info.reason);
        if (info.message.size) line += " (" + std::string{view(info.message)} + ")";
        host_.info(line);
        delete state;
    }
};

}  // namespace

MUXGATE_PLUGIN(echo_plugin, "echo", 42, "1.0.0");
