/*
 * One source, many fake plugins: each is built with exactly one FAKE_<CASE>
 * macro defined and differs from the good plugin (FAKE_GOOD: name "good",
 * protocol_id 200) in that one respect. See tests/plugins/CMakeLists.txt for
 * the list and tests/plugins/README.md for what each one proves.
 *
 * Written in C on purpose: the ABI is C, and a C plugin shows that nothing
 * from the C++ wrapper is needed to be loaded.
 */
#include <muxgate/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(FAKE_NO_DESCRIPTOR)

/* ------------------------------------------------------------ a good plugin */

/* The instance: remembers the host table so later calls can prove that it is
 * still valid (the lifetime test calls through the vtable after dropping the
 * loader's handle on the library). */
typedef struct fake_instance {
    const mg_host_api* host;
    unsigned calls;
} fake_instance;

/* create and destroy are unused in the FAKE_NO_CREATE case. */
__attribute__((unused)) static mg_status fake_create(const mg_host_api* host, mg_str config,
                                                     void** instance, char* err, size_t err_size)
{
    (void)config;
#if defined(FAKE_CREATE_ERROR)
    (void)host;
    (void)instance;
    snprintf(err, err_size, "fake refuses to start: missing \"secret\" in [plugins.createerr]");
    return MG_ERR_INVALID;
#else
    /* A host that is not ABI 1 would be a loader bug; say so loudly. */
    if (!host || host->struct_size < sizeof(mg_host_api) || host->abi_major != MG_ABI_MAJOR) {
        snprintf(err, err_size, "unexpected host table");
        return MG_ERR_INVALID;
    }
    fake_instance* self = (fake_instance*)calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, err_size, "out of memory");
        return MG_ERR_INTERNAL;
    }
    self->host = host;
    *instance = self;
    return MG_OK;
#endif
}

__attribute__((unused)) static void fake_destroy(void* instance) { free(instance); }

/* Answers every registration with MG_INGRESS_ROUTED and a message built from
 * the request and its own call count, so a caller can tell the code ran. */
static mg_status fake_tunnel_register(void* instance, const mg_tunnel_request* request,
                                      mg_tunnel_decision* decision)
{
    fake_instance* self = (fake_instance*)instance;
    ++self->calls;
    static const char hello[] = "fake plugin alive";
    self->host->log(self->host->ctx, MG_LOG_DEBUG, (mg_str){hello, sizeof hello - 1});
    decision->ingress = MG_INGRESS_ROUTED;
    snprintf(decision->message, sizeof decision->message, "fake:%.*s/%.*s#%u",
             (int)request->agent.size, request->agent.data, (int)request->tunnel.size,
             request->tunnel.data, self->calls);
    return MG_OK;
}

/* ------------------------------------------------------------- the defects */

#ifndef FAKE_MAGIC
#define FAKE_MAGIC MG_PLUGIN_MAGIC
#endif
#ifndef FAKE_ABI_MAJOR
#define FAKE_ABI_MAJOR MG_ABI_MAJOR
#endif
#ifndef FAKE_ABI_MINOR
#define FAKE_ABI_MINOR MG_ABI_MINOR
#endif
#ifndef FAKE_DESCRIPTOR_SIZE
#define FAKE_DESCRIPTOR_SIZE sizeof(mg_plugin_descriptor)
#endif
#ifndef FAKE_VTABLE_SIZE
#define FAKE_VTABLE_SIZE sizeof(mg_plugin_vtable)
#endif
#ifndef FAKE_BUILD_KEY
#define FAKE_BUILD_KEY MG_BUILD_KEY
#endif
#ifndef FAKE_NAME
#define FAKE_NAME "good"
#endif
#ifndef FAKE_PROTOCOL_ID
#define FAKE_PROTOCOL_ID 200
#endif

#if defined(FAKE_BAD_MAGIC)
#undef FAKE_MAGIC
#define FAKE_MAGIC 0xdeadbeefu
#elif defined(FAKE_ABI_MAJOR_2)
#undef FAKE_ABI_MAJOR
#define FAKE_ABI_MAJOR 2
#elif defined(FAKE_ABI_MINOR_NEWER)
#undef FAKE_ABI_MINOR
#define FAKE_ABI_MINOR (MG_ABI_MINOR + 1)
#elif defined(FAKE_DESCRIPTOR_SHORT)
/* A descriptor from before `reserved` existed: ABI 1.0 needs all of it. */
#undef FAKE_DESCRIPTOR_SIZE
#define FAKE_DESCRIPTOR_SIZE offsetof(mg_plugin_descriptor, reserved)
#elif defined(FAKE_VTABLE_SHORT)
/* A vtable that ends before on_timer. */
#undef FAKE_VTABLE_SIZE
#define FAKE_VTABLE_SIZE offsetof(mg_plugin_vtable, on_timer)
#elif defined(FAKE_OTHER_PLATFORM)
/* No host muxgate supports runs SPARC Solaris, so this never matches. */
#undef FAKE_BUILD_KEY
#define FAKE_BUILD_KEY "mg1-sparc64-solaris"
#elif defined(FAKE_BAD_NAME)
#undef FAKE_NAME
#define FAKE_NAME "Bad Name"
#elif defined(FAKE_PROTOCOL_0)
#undef FAKE_PROTOCOL_ID
#define FAKE_PROTOCOL_ID 0
#elif defined(FAKE_PROTOCOL_300)
#undef FAKE_PROTOCOL_ID
#define FAKE_PROTOCOL_ID 300
#elif defined(FAKE_DUP_NAME)
/* Same name as good.so, another protocol_id: the later file loses. */
#undef FAKE_PROTOCOL_ID
#define FAKE_PROTOCOL_ID 201
#elif defined(FAKE_DUP_ID)
/* Another name, same protocol_id as good.so. */
#undef FAKE_NAME
#define FAKE_NAME "dupid"
#elif defined(FAKE_CREATE_ERROR)
#undef FAKE_NAME
#define FAKE_NAME "createerr"
#undef FAKE_PROTOCOL_ID
#define FAKE_PROTOCOL_ID 202
#endif

static const mg_plugin_vtable fake_vtable = {
    FAKE_VTABLE_SIZE,
#if defined(FAKE_NO_CREATE)
    NULL, NULL,
#else
    fake_create, fake_destroy,
#endif
    fake_tunnel_register,
    /* everything else: nothing to do */
};

MG_EXPORT extern const mg_plugin_descriptor muxgate_plugin_v1;
const mg_plugin_descriptor muxgate_plugin_v1 = {
    FAKE_MAGIC,
    FAKE_ABI_MAJOR,
    FAKE_ABI_MINOR,
    FAKE_DESCRIPTOR_SIZE,
    FAKE_PROTOCOL_ID,
    FAKE_NAME,
    "0.0.1-fake",
    FAKE_BUILD_KEY,
#if defined(FAKE_NULL_VTABLE)
    NULL,
#else
    &fake_vtable,
#endif
    {NULL, NULL, NULL, NULL},
};

#else

/* A plain shared object: exports a function, but no descriptor. */
MG_EXPORT int not_a_plugin(void) { return 42; }

#endif
