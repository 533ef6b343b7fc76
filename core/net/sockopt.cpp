#include "net/sockopt.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace muxgate::net {

namespace {

bool set_int(int fd, int option, int value)
{
    return ::setsockopt(fd, IPPROTO_TCP, option, &value, sizeof value) == 0;
}

}  // namespace

void set_nodelay(int fd)
{
    set_int(fd, TCP_NODELAY, 1);
}

void tune_agent_socket(int fd, std::uint32_t unsent, std::string_view who)
{
    if (!set_int(fd, TCP_NODELAY, 1))
        spdlog::warn("{}: setsockopt TCP_NODELAY: {}", who, std::strerror(errno));
    // The configuration bounds socket_unsent to 1 GiB, so it fits an int.
    const int v = static_cast<int>(unsent);
    if (v > 0 && !set_int(fd, TCP_NOTSENT_LOWAT, v))
        spdlog::warn("{}: setsockopt TCP_NOTSENT_LOWAT {} (limits.socket_unsent): {}; the kernel's "
                     "default applies", who, unsent, std::strerror(errno));
}

}  // namespace muxgate::net
