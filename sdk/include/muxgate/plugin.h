/*
 * muxgate plugin ABI, major 1.
 *
 * This is the whole binary boundary between the muxgate gateway/agent (the
 * host) and a protocol plugin (a shared object). It is plain C so that any
 * compiler can produce a plugin; the C++ wrapper in <muxgate/plugin.hpp> is a
 * header-only convenience on top of it and never crosses the boundary.
 *
 * Rules (see sdk/README.md for the full policy):
 *  - A plugin exports exactly one symbol, MG_PLUGIN_SYMBOL, an object of type
 *    mg_plugin_descriptor. The host checks magic, ABI major/minor, struct
 *    sizes and build key before calling anything.
 *  - Every struct starts with `struct_size`; a reader uses only fields that lie
 *    within the size the writer declared. A minor version may append fields at
 *    the end of a struct and functions at the end of a table, nothing else.
 *  - Nothing unwinds across the boundary: functions return mg_status.
 *  - Strings are (pointer, size) pairs, not necessarily NUL-terminated, valid
 *    only for the duration of the call unless stated otherwise.
 *  - OWNERSHIP: comments say who frees what.
 */
#ifndef MUXGATE_PLUGIN_H
#define MUXGATE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MG_ABI_MAJOR 1
#define MG_ABI_MINOR 1

/* "MGP1" in ASCII: the first field of every descriptor. */
#define MG_PLUGIN_MAGIC 0x4d475031u

/* The one symbol a plugin exports (an object, not a function). */
#define MG_PLUGIN_SYMBOL "muxgate_plugin_v1"

/* Build key: what must match between host and plugin for the C ABI to be
 * callable at all (ABI major, CPU architecture, OS and C library family).
 * Compiler and C++ standard library do not matter: no C++ type crosses. */
#if defined(__x86_64__) || defined(_M_X64)
#define MG_ARCH_ "x86_64"
#elif defined(__aarch64__)
#define MG_ARCH_ "aarch64"
#elif defined(__i386__)
#define MG_ARCH_ "i386"
#elif defined(__arm__)
#define MG_ARCH_ "arm"
#elif defined(__riscv) && __riscv_xlen == 64
#define MG_ARCH_ "riscv64"
#else
#define MG_ARCH_ "unknown"
#endif
#if defined(__linux__) && defined(__GLIBC__)
#define MG_OS_ "linux-gnu"
#elif defined(__linux__)
#define MG_OS_ "linux-other"
#elif defined(__APPLE__)
#define MG_OS_ "darwin"
#elif defined(__FreeBSD__)
#define MG_OS_ "freebsd"
#else
#define MG_OS_ "unknown"
#endif
#define MG_BUILD_KEY "mg1-" MG_ARCH_ "-" MG_OS_

#if defined(_WIN32)
#define MG_EXPORT __declspec(dllexport)
#else
#define MG_EXPORT __attribute__((visibility("default")))
#endif

/* True when a struct received across the boundary is long enough to hold
 * `field` (structs only grow at the end within an ABI major). */
#define MG_HAS_FIELD(ptr, type, field) \
    ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type*)0)->field))

/* ---------------------------------------------------------------- basics */

typedef enum mg_status {
    MG_OK = 0,
    /* write(): the bytes were taken, but the pipe's outbound buffer is now
     * above its high watermark; stop producing until on_writable. */
    MG_AGAIN = 1,
    MG_ERR_INVALID = -1,     /* bad argument or call in the wrong state */
    MG_ERR_GONE = -2,        /* the handle is closed or never existed */
    MG_ERR_NOT_FOUND = -3,   /* no such tunnel / route */
    MG_ERR_OFFLINE = -4,     /* tunnel known, its agent is not connected */
    MG_ERR_DENIED = -5,      /* refused by policy (ACL, role) */
    MG_ERR_LIMIT = -6,       /* a configured limit was reached */
    MG_ERR_UNSUPPORTED = -7, /* not available in this role or host */
    MG_ERR_INTERNAL = -8,
    MG_ERR_IO = -9           /* socket / system error */
} mg_status;

typedef enum mg_role { MG_ROLE_GATEWAY = 1, MG_ROLE_AGENT = 2 } mg_role;

typedef enum mg_log_level {
    MG_LOG_TRACE = 0,
    MG_LOG_DEBUG = 1,
    MG_LOG_INFO = 2,
    MG_LOG_WARN = 3,
    MG_LOG_ERROR = 4
} mg_log_level;

typedef struct mg_str {
    const char* data;
    size_t size;
} mg_str;

/* A pipe: a bidirectional byte stream owned by the host. It is one of
 *  - a public connection accepted by the gateway (plain TCP or TLS),
 *  - a tunnel stream (one multiplexed stream over the agent's WebSocket),
 *  - an outbound connection the agent made to a local target.
 * Handles are never reused within a process; 0 is never a valid handle. */
typedef uint64_t mg_handle;
#define MG_HANDLE_NONE ((mg_handle)0)

typedef uint64_t mg_timer;

/* Why a pipe ended (mg_close_info.reason). */
typedef enum mg_close_reason {
    MG_CLOSE_DONE = 0,       /* both directions finished cleanly (FIN both ways) */
    MG_CLOSE_RESET = 1,      /* aborted by the remote side (RST / stream reset) */
    MG_CLOSE_ABORTED = 2,    /* aborted locally (plugin reset, limit, shutdown) */
    MG_CLOSE_REFUSED = 3,    /* never established: agent refused / connect failed */
    MG_CLOSE_TIMEOUT = 4,    /* an idle or open timeout fired */
    MG_CLOSE_ERROR = 5       /* I/O or protocol error */
} mg_close_reason;

typedef struct mg_close_info {
    uint32_t struct_size;
    int32_t reason;          /* mg_close_reason */
    mg_str message;          /* human-readable detail, may be empty */
    uint64_t bytes_in;       /* bytes received from this pipe's remote */
    uint64_t bytes_out;      /* bytes written to this pipe's remote */
    uint64_t duration_us;    /* from creation to close */
} mg_close_info;

/* Static facts about a pipe (host_api.pipe_info). */
typedef enum mg_pipe_kind {
    MG_PIPE_PUBLIC = 1,      /* gateway: accepted public connection */
    MG_PIPE_STREAM = 2,      /* either side: a tunnel stream */
    MG_PIPE_LOCAL = 3        /* agent: outbound connection to a local target */
} mg_pipe_kind;

typedef struct mg_pipe_info {
    uint32_t struct_size;
    int32_t kind;            /* mg_pipe_kind */
    mg_str peer;             /* "ip:port" of the remote socket, or of the public client for streams */
    mg_str local;            /* "ip:port" of the local socket, empty for streams */
    mg_str agent;            /* agent name (streams; public pipes once routed) */
    mg_str tunnel;           /* tunnel name (streams; public pipes of a tunnel port) */
    uint32_t stream_id;      /* wire stream id for MG_PIPE_STREAM, else 0 */
    uint32_t tls;            /* 1 when the public connection arrived over TLS */
    mg_str sni;              /* TLS server name the client asked for, if any */
} mg_pipe_info;
/* OWNERSHIP: the strings in mg_pipe_info point into host memory that lives as
 * long as the pipe; copy them if you need them after on_closed. */

/* ------------------------------------------------------ tunnel registration */

/* Gateway: an agent asks to register a tunnel served by this plugin. */
typedef struct mg_tunnel_request {
    uint32_t struct_size;
    mg_str agent;            /* authenticated agent name */
    mg_str tunnel;           /* tunnel name, unique per agent */
    uint32_t remote_port;    /* public port the agent asked for, 0 if none */
    mg_str options_json;     /* JSON object from the agent's Register.options, "{}" if none */
    mg_str acl_json;         /* JSON object: this plugin's section of the agent's ACL entry, "{}" if none */
} mg_tunnel_request;

/* How public traffic reaches a registered tunnel. */
typedef enum mg_ingress {
    /* The host binds remote_port and hands every accepted connection to
     * on_accept with the tunnel's name in mg_accept_info. */
    MG_INGRESS_PORT = 1,
    /* No port of its own: the plugin routes connections from its own
     * listeners (or the shared HTTPS port) to the tunnel by name. */
    MG_INGRESS_ROUTED = 2
} mg_ingress;

typedef struct mg_tunnel_decision {
    uint32_t struct_size;
    int32_t ingress;         /* mg_ingress, used when tunnel_register returns MG_OK */
    /* Filled by the plugin: the public address to report to the agent on
     * success (e.g. "https://app.example.com"), or the reason on refusal.
     * Empty means the host reports "bind:port" for MG_INGRESS_PORT. */
    char message[512];
} mg_tunnel_decision;

/* ----------------------------------------------------------- pipe events */

typedef struct mg_accept_info {
    uint32_t struct_size;
    void* listener_user;     /* what the plugin passed to listen(), or NULL for tunnel ports */
    mg_str agent;            /* tunnel ports: owning agent; else empty */
    mg_str tunnel;           /* tunnel ports: tunnel name; else empty */
    mg_str peer;             /* client "ip:port" */
    uint32_t tls;            /* 1 when the host terminated TLS for this connection */
    mg_str sni;              /* TLS server name, if any */
} mg_accept_info;

typedef struct mg_stream_info {
    uint32_t struct_size;
    mg_str tunnel;           /* tunnel name */
    mg_str target_host;      /* agent's configured local target host ("" if none) */
    uint32_t target_port;    /* and port (0 if none) */
    mg_str options_json;     /* agent-side tunnel options, "{}" if none */
    mg_str meta_json;        /* what the gateway plugin passed to open_stream, "{}" if none */
    mg_str peer;             /* public client "ip:port" as seen by the gateway */
} mg_stream_info;

/* ------------------------------------------------------------ host side */

/* Functions the host offers. All are thread-safe and never block: they may be
 * called from any thread, including threads the plugin starts itself.
 * Effects on a pipe happen in call order per pipe. */
typedef struct mg_host_api {
    uint32_t struct_size;
    uint16_t abi_major;
    uint16_t abi_minor;
    void* ctx;               /* pass back as the first argument of every call */
    int32_t role;            /* mg_role of this host */

    void (*log)(void* ctx, int32_t level, mg_str message);

    /* Queue bytes toward the pipe's remote. OWNERSHIP: the host copies.
     * MG_OK: taken. MG_AGAIN: taken, but above the high watermark: pause your
     * source until on_writable. Stream pipes never send beyond the peer's
     * credit window; the host holds the excess. */
    mg_status (*write)(void* ctx, mg_handle pipe, const void* data, size_t size);
    /* Half-close: no more bytes toward the remote (FIN); reading goes on. */
    mg_status (*shutdown_write)(void* ctx, mg_handle pipe);
    /* Abort both directions (RST / stream Reset) with a short reason. */
    mg_status (*reset)(void* ctx, mg_handle pipe, mg_str reason);
    /* Graceful close: flush queued bytes, send FIN, discard further input. */
    mg_status (*close)(void* ctx, mg_handle pipe);
    /* Stop (0) or resume (1) delivering on_data for this pipe. For a stream,
     * credit is returned to the peer only for bytes delivered, so a paused
     * stream stalls only itself. */
    mg_status (*set_reading)(void* ctx, mg_handle pipe, int32_t enabled);
    /* The opaque pointer passed back with every event of this pipe. */
    mg_status (*set_user)(void* ctx, mg_handle pipe, void* user);

    /* Hand both pipes to the host's relay: bytes, FIN and reset flow between
     * them under flow control without further plugin involvement. The plugin
     * still gets on_closed for each (with byte counts) and nothing else. Bytes
     * already written with write() go first. */
    mg_status (*link)(void* ctx, mg_handle a, mg_handle b);

    /* Bridge a pipe to a file descriptor for libraries that want one (libssh):
     * the host creates a socketpair, relays one end to the pipe and returns
     * the other. OWNERSHIP: the plugin owns and must close the returned fd.
     * Returns the fd, or a negative mg_status. After this call the pipe
     * delivers no on_data/on_fin/on_writable; on_closed still comes. */
    int64_t (*bridge_fd)(void* ctx, mg_handle pipe);

    /* Fill *out with facts about a pipe (strings valid until on_closed). */
    mg_status (*pipe_info)(void* ctx, mg_handle pipe, mg_pipe_info* out);

    /* Gateway: open a stream to the agent serving `agent`/`tunnel` (the
     * tunnel must be registered with this plugin's protocol). Bytes may be
     * written at once; they are sent under the stream's initial credit.
     * meta_json (a JSON object or empty) reaches the agent plugin as
     * mg_stream_info.meta_json. Events of the new pipe are serialized with
     * those of `owner` (may be MG_HANDLE_NONE). Returns the handle, or 0 with
     * *status set (MG_ERR_NOT_FOUND, MG_ERR_OFFLINE, MG_ERR_LIMIT ...). */
    mg_handle (*open_stream)(void* ctx, mg_str agent, mg_str tunnel, mg_str meta_json,
                             mg_handle owner, void* user, mg_status* status);

    /* Agent: connect to a local target. options_json may be empty or
     * {"tls":true,"verify":true,"sni":"name","ca":"file"} for a TLS target.
     * Writes are queued until connected; failure arrives as on_closed with
     * MG_CLOSE_REFUSED. Events are serialized with those of `owner`. */
    mg_handle (*connect)(void* ctx, mg_str host, uint32_t port, mg_str options_json,
                         mg_handle owner, void* user, mg_status* status);

    /* Agent: confirm an incoming stream (sends Opened) when the plugin serves
     * it itself. Linking the stream to a local pipe confirms it when that
     * pipe connects; writing to it confirms it implicitly. Resetting an
     * unconfirmed stream refuses it. */
    mg_status (*accept_stream)(void* ctx, mg_handle stream);

    /* Gateway: listen on an address of the plugin's own ("ip:port" or
     * "[ip6]:port"); connections arrive at on_accept with listener_user.
     * options_json may be empty or {"tls":true} to terminate TLS with the
     * gateway's certificate. */
    mg_status (*listen)(void* ctx, mg_str address, mg_str options_json, void* listener_user);

    /* Gateway: receive the connections on the gateway's own TLS port whose
     * HTTP request is not the agent WebSocket handshake. At most one plugin
     * may claim this. The bytes the host already read arrive as the first
     * on_data. */
    mg_status (*claim_https)(void* ctx, void* listener_user);

    /* One-shot timer; on_timer(user) fires on the strand of `owner` (or any
     * thread if MG_HANDLE_NONE). Returns 0 on failure. */
    mg_timer (*timer_start)(void* ctx, uint32_t milliseconds, mg_handle owner, void* user);
    /* Cancel a timer; harmless if it already fired. */
    void (*timer_cancel)(void* ctx, mg_timer timer);
} mg_host_api;

/* ----------------------------------------------------------- plugin side */

/* Functions the plugin offers. Any may be NULL where the plugin has nothing to
 * do; a plugin without tunnel_register cannot serve tunnels on the gateway and
 * one without on_stream cannot serve them on the agent.
 *
 * Threading: events for one pipe, and for all pipes sharing an owner, never
 * run concurrently; events for unrelated pipes may run on different threads
 * at once. No call may block. */
typedef struct mg_plugin_vtable {
    uint32_t struct_size;

    /* Create the plugin instance for this process. config_json is the plugin's
     * section of the host configuration ("{}" if none). On success store a
     * non-NULL instance and return MG_OK (a NULL instance counts as failure).
     * On failure write a NUL-terminated reason into err (err_size bytes) and
     * return an error; destroy is then not called. `host` stays valid until
     * destroy returns. */
    mg_status (*create)(const mg_host_api* host, mg_str config_json, void** instance,
                        char* err, size_t err_size);
    /* Called once, after every pipe of the plugin is closed. */
    void (*destroy)(void* instance);

    /* Gateway: accept or refuse a tunnel registration (no I/O here). */
    mg_status (*tunnel_register)(void* instance, const mg_tunnel_request* request,
                                 mg_tunnel_decision* decision);
    /* Gateway: the tunnel is gone (agent left, replaced or unregistered). */
    void (*tunnel_unregister)(void* instance, mg_str agent, mg_str tunnel);
    /* Gateway: a public connection arrived on a tunnel port or a plugin
     * listener. The plugin owns the pipe from now on. */
    void (*on_accept)(void* instance, mg_handle pipe, const mg_accept_info* info);

    /* Agent: the gateway opened a stream for one of this plugin's tunnels. */
    void (*on_stream)(void* instance, mg_handle stream, const mg_stream_info* info);

    /* Pipe events. `user` is what set_user/open_stream/connect stored. */
    void (*on_data)(void* instance, mg_handle pipe, void* user, const void* data, size_t size);
    void (*on_fin)(void* instance, mg_handle pipe, void* user);
    void (*on_writable)(void* instance, mg_handle pipe, void* user);
    /* The pipe is established (stream confirmed by the agent, local
     * connection made). */
    void (*on_open)(void* instance, mg_handle pipe, void* user);
    /* Final event; the handle is invalid once this returns. */
    void (*on_closed)(void* instance, mg_handle pipe, void* user, const mg_close_info* info);
    void (*on_timer)(void* instance, mg_timer timer, void* user);

    /* ---- ABI 1.1 ---- (the host calls these only if struct_size covers them) */

    /* Agent: check one tunnel's configuration at start, before any I/O
     * (`info` carries tunnel, target_host, target_port and options_json; meta
     * and peer are empty). Return MG_OK, or an error with a NUL-terminated
     * reason in err; the agent then refuses to start and reports the reason
     * at the tunnel's place in the configuration. */
    mg_status (*check_tunnel)(void* instance, const mg_stream_info* info, char* err,
                              size_t err_size);
} mg_plugin_vtable;

typedef struct mg_plugin_descriptor {
    uint32_t magic;          /* MG_PLUGIN_MAGIC */
    uint16_t abi_major;      /* MG_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;      /* MG_ABI_MINOR the plugin was built with */
    uint32_t struct_size;    /* sizeof(mg_plugin_descriptor) as built */
    uint32_t protocol_id;    /* 1..255, unique among loaded plugins */
    const char* name;        /* NUL-terminated, [a-z0-9_-]{1,32}, unique */
    const char* version;     /* plugin version, free text */
    const char* build_key;   /* MG_BUILD_KEY */
    const mg_plugin_vtable* vtable;
    void* reserved[4];       /* zero; room for growth within major 1 */
} mg_plugin_descriptor;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MUXGATE_PLUGIN_H */
