// The TCP plugin: a public port on the gateway per tunnel, relayed byte for
// byte to a host:port the agent can reach. It only wires pipes together: the
// host relays the bytes with flow control, half-close and reset.
#include <muxgate/plugin.hpp>

#include <string>

namespace {

using muxgate::sdk::view;

class tcp_plugin final : public muxgate::sdk::plugin {
public:
    tcp_plugin(muxgate::sdk::host h, std::string_view /*config_json*/) : plugin(h) {}

    // Gateway: a TCP tunnel is a public port (remote_port 0: the gateway
    // picks one and reports it).
    mg_status tunnel_register(const muxgate::sdk::tunnel_request&,
                              muxgate::sdk::tunnel_decision& d) override
    {
        d.ingress = MG_INGRESS_PORT;
        return MG_OK;
    }

    // Gateway: a client connected to the tunnel's port.
    void on_accept(mg_handle client, const mg_accept_info& info) override
    {
        auto s = host_.open_stream(view(info.agent), view(info.tunnel), {}, client);
        if (!s) {
            host_.reset(client, muxgate::sdk::status_text(s.status));
            return;
        }
        host_.link(client, s.pipe);
    }

    // Agent, at start: a tcp tunnel is nothing without a target.
    mg_status check_tunnel(const mg_stream_info& info, std::string& why) override
    {
        if (info.target_host.size == 0 || info.target_port == 0) {
            why = "a tcp tunnel needs local = \"host:port\"";
            return MG_ERR_INVALID;
        }
        return MG_OK;
    }

    // Agent: the gateway opened a stream; connect to the local target.
    void on_stream(mg_handle stream, const mg_stream_info& info) override
    {
        if (info.target_host.size == 0 || info.target_port == 0) {
            host_.reset(stream, "tunnel has no local target");
            return;
        }
        auto c = host_.connect(view(info.target_host), info.target_port, {}, stream);
        if (!c) {
            host_.reset(stream, muxgate::sdk::status_text(c.status));
            return;
        }
        // The host confirms the stream (Opened) once the connection is made,
        // or refuses it if the connection fails.
        host_.link(stream, c.pipe);
    }
};

}  // namespace

MUXGATE_PLUGIN(tcp_plugin, "tcp", 3, "1.0.0");
