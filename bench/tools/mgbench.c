// mgbench: the small, fast programs the benchmark harness needs where Python
// would measure itself instead of the path under test. One binary, four modes:
//
//   mgbench serve                      echo, echo1, sink and source servers
//                                      on 127.0.0.1 (ports printed as JSON)
//   mgbench ping HOST PORT [options]   sequential ping-pong round trips,
//                                      optionally beside a bulk neighbour
//   mgbench connrate HOST PORT [...]   open, echo once, close, C at a time
//                                      (against an echo1 server)
//   mgbench hold HOST PORT --count N   open N connections, echo once on each,
//                                      hold them until stdin closes
//
// Every mode prints one JSON object on stdout. Times are microseconds.
// Built by the harness with `gcc -O2 -pthread`; nothing else to link.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

// Largest single write of the source server and of the bulk neighbour: big
// enough that syscalls do not dominate a multi-Gbit/s transfer.
#define BULK_BLOCK (128 * 1024)
// Echo bytes held per connection when the peer does not read; the echo
// server stops reading that connection until they are out.
#define ECHO_BUF (64 * 1024)
// A round trip that takes longer than this is a broken path, not a slow one.
#define IO_TIMEOUT_S 10

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

__attribute__((noreturn)) static void die(const char* what)
{
    fprintf(stderr, "mgbench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void raise_nofile(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void set_timeouts(int fd)
{
    struct timeval tv = {IO_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static struct sockaddr_in make_addr(const char* host, int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "mgbench: %s is not an IPv4 address\n", host);
        exit(2);
    }
    return a;
}

// Blocking connect with timeouts and TCP_NODELAY; -1 on failure.
static int dial(const struct sockaddr_in* a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    set_timeouts(fd);
    if (connect(fd, (const struct sockaddr*)a, sizeof *a) != 0) {
        close(fd);
        return -1;
    }
    set_nodelay(fd);
    return fd;
}

static int write_all(int fd, const void* buf, size_t n)
{
    const char* p = buf;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, void* buf, size_t n)
{
    char* p = buf;
    while (n) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

// ------------------------------------------------------------- statistics

static int cmp_double(const void* a, const void* b)
{
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

// Nearest-rank percentile of a sorted array.
static double pct(const double* v, size_t n, double q)
{
    if (n == 0) return 0;
    size_t k = (size_t)ceil(q * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

struct samples {
    double* v;
    size_t n, cap;
};

static void push(struct samples* s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof(double));
        if (!s->v) die("realloc");
    }
    s->v[s->n++] = x;
}

static void print_latency(const char* prefix, struct samples* s)
{
    qsort(s->v, s->n, sizeof(double), cmp_double);
    double sum = 0;
    for (size_t i = 0; i < s->n; ++i) sum += s->v[i];
    printf("\"%sn\":%zu,\"%smean_us\":%.1f,\"%smin_us\":%.1f,\"%sp50_us\":%.1f,"
           "\"%sp90_us\":%.1f,\"%sp99_us\":%.1f,\"%sp999_us\":%.1f,\"%smax_us\":%.1f",
           prefix, s->n, prefix, s->n ? sum / (double)s->n : 0, prefix, s->n ? s->v[0] : 0,
           prefix, pct(s->v, s->n, 0.50), prefix, pct(s->v, s->n, 0.90), prefix,
           pct(s->v, s->n, 0.99), prefix, pct(s->v, s->n, 0.999), prefix,
           s->n ? s->v[s->n - 1] : 0);
}

// ------------------------------------------------------------------ serve

enum kind {
    K_ECHO_LISTEN, K_ECHO1_LISTEN, K_SINK_LISTEN, K_SOURCE_LISTEN,
    K_ECHO, K_ECHO1, K_SINK, K_SOURCE
};

// echo1: the connection-rate target. It echoes the first ECHO1_SIZE bytes,
// then half-closes, then closes when the client has closed too. The server
// closing first keeps TIME_WAIT on its own port, not on the client's
// ephemeral ports, so a long run at thousands of connections per second
// never starves connect() of ports (and a tunnel closes gracefully both ways).
#define ECHO1_SIZE 64

struct conn {
    int fd;
    enum kind kind;
    char* buf;       // echo: bytes read and not yet written back
    size_t off, len;
};

static char source_block[BULK_BLOCK];

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = make_addr("127.0.0.1", port);
    if (bind(fd, (struct sockaddr*)&a, sizeof a) != 0) die("bind");
    if (listen(fd, 4096) != 0) die("listen");
    return fd;
}

static int local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr*)&a, &l);
    return ntohs(a.sin_port);
}

static void ep_set(int ep, int op, struct conn* c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, op, c->fd, &ev) != 0 && op != EPOLL_CTL_DEL) die("epoll_ctl");
}

static void drop(int ep, struct conn* c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->buf);
    free(c);
}

static struct conn* add_conn(int ep, int fd, enum kind k, uint32_t events)
{
    struct conn* c = calloc(1, sizeof *c);
    if (!c) die("calloc");
    c->fd = fd;
    c->kind = k;
    ep_set(ep, EPOLL_CTL_ADD, c, events);
    return c;
}

// Writes what the echo connection holds; true when it all went out.
static int echo_flush(int ep, struct conn* c)
{
    while (c->off < c->len) {
        ssize_t w = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                ep_set(ep, EPOLL_CTL_MOD, c, EPOLLOUT);
                return 0;
            }
            return -1;
        }
        c->off += (size_t)w;
    }
    c->off = c->len = 0;
    ep_set(ep, EPOLL_CTL_MOD, c, EPOLLIN | EPOLLRDHUP);
    return 1;
}

static void serve_event(int ep, struct conn* c, uint32_t events)
{
    static char scratch[BULK_BLOCK];
    switch (c->kind) {
    case K_ECHO_LISTEN:
    case K_ECHO1_LISTEN:
    case K_SINK_LISTEN:
    case K_SOURCE_LISTEN:
        for (;;) {
            int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) return;
            set_nodelay(fd);
            if (c->kind == K_ECHO1_LISTEN) {
                struct conn* n = add_conn(ep, fd, K_ECHO1, EPOLLIN | EPOLLRDHUP);
                n->buf = malloc(ECHO1_SIZE);
                if (!n->buf) die("malloc");
            } else if (c->kind == K_ECHO_LISTEN) {
                struct conn* n = add_conn(ep, fd, K_ECHO, EPOLLIN | EPOLLRDHUP);
                n->buf = malloc(ECHO_BUF);
                if (!n->buf) die("malloc");
            } else if (c->kind == K_SINK_LISTEN) {
                add_conn(ep, fd, K_SINK, EPOLLIN | EPOLLRDHUP);
            } else {
                add_conn(ep, fd, K_SOURCE, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
            }
        }
    case K_ECHO:
        if (events & EPOLLOUT) {
            if (echo_flush(ep, c) < 0) drop(ep, c);
            return;
        }
        for (;;) {
            ssize_t r = recv(c->fd, c->buf, ECHO_BUF, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                drop(ep, c);
                return;
            }
            if (r < 0) return;
            c->off = 0;
            c->len = (size_t)r;
            int f = echo_flush(ep, c);
            if (f < 0) {
                drop(ep, c);
                return;
            }
            if (f == 0 || (size_t)r < ECHO_BUF) return;
        }
    case K_ECHO1:
        for (;;) {
            ssize_t r = recv(c->fd, c->len < ECHO1_SIZE ? c->buf + c->len : scratch,
                             c->len < ECHO1_SIZE ? ECHO1_SIZE - c->len : sizeof scratch, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
            if (r <= 0) {  // the client closed after our FIN (or failed): done
                drop(ep, c);
                return;
            }
            if (c->len >= ECHO1_SIZE) continue;  // bytes after the first 64 are dropped
            c->len += (size_t)r;
            if (c->len == ECHO1_SIZE) {
                // 64 bytes fit any socket buffer: one send is enough.
                if (send(c->fd, c->buf, ECHO1_SIZE, MSG_NOSIGNAL) != ECHO1_SIZE ||
                    shutdown(c->fd, SHUT_WR) != 0) {
                    drop(ep, c);
                    return;
                }
            }
        }
    case K_SINK:
        for (;;) {
            ssize_t r = recv(c->fd, scratch, sizeof scratch, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                drop(ep, c);
                return;
            }
            if (r < (ssize_t)sizeof scratch) return;
        }
    case K_SOURCE:
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
            ssize_t r = recv(c->fd, scratch, sizeof scratch, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                drop(ep, c);
                return;
            }
        }
        if (events & EPOLLOUT) {
            ssize_t w = send(c->fd, source_block, sizeof source_block, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR) drop(ep, c);
        }
        return;
    }
}

static int cmd_serve(void)
{
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    memset(source_block, 'x', sizeof source_block);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    int e = listen_on(0), e1 = listen_on(0), s = listen_on(0), o = listen_on(0);
    add_conn(ep, e, K_ECHO_LISTEN, EPOLLIN);
    add_conn(ep, e1, K_ECHO1_LISTEN, EPOLLIN);
    add_conn(ep, s, K_SINK_LISTEN, EPOLLIN);
    add_conn(ep, o, K_SOURCE_LISTEN, EPOLLIN);
    printf("{\"echo\":%d,\"echo1\":%d,\"sink\":%d,\"source\":%d}\n", local_port(e),
           local_port(e1), local_port(s), local_port(o));
    fflush(stdout);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait");
        for (int i = 0; i < n; ++i) serve_event(ep, evs[i].data.ptr, evs[i].events);
    }
}

// ------------------------------------------------------------------- bulk

struct bulk {
    struct sockaddr_in addr;
    int up;                        // 1: we send (to a sink), 0: we receive (from a source)
    atomic_int stop;
    atomic_uint_fast64_t bytes;
    int failed;
    pthread_t thread;
};

static void* bulk_main(void* arg)
{
    struct bulk* b = arg;
    static char block[BULK_BLOCK];
    memset(block, 'y', sizeof block);
    int fd = dial(&b->addr);
    if (fd < 0) {
        b->failed = 1;
        return NULL;
    }
    // Reset rather than linger when we stop (or exit): what is still queued
    // in the tunnel should not drain into the next measurement.
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    while (!atomic_load(&b->stop)) {
        ssize_t n = b->up ? send(fd, block, sizeof block, MSG_NOSIGNAL)
                          : recv(fd, block, sizeof block, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            b->failed = 1;
            break;
        }
        atomic_fetch_add(&b->bytes, (uint64_t)n);
    }
    close(fd);
    return NULL;
}

// ------------------------------------------------------------------- ping

static int cmd_ping(const char* host, int port, int argc, char** argv)
{
    size_t size = 64, max = 1000000;
    double duration = 2.0, ramp = 0.5, warmup = 0.2;
    const char* bulk_dir = NULL;
    int bulk_port = 0;
    for (int i = 0; i < argc; ++i) {
        if (!strcmp(argv[i], "--size") && i + 1 < argc) size = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--max") && i + 1 < argc) max = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atof(argv[++i]);
        else if (!strcmp(argv[i], "--duration") && i + 1 < argc) duration = atof(argv[++i]);
        else if (!strcmp(argv[i], "--ramp") && i + 1 < argc) ramp = atof(argv[++i]);
        else if (!strcmp(argv[i], "--bulk") && i + 1 < argc) bulk_dir = argv[++i];
        else if (!strcmp(argv[i], "--bulk-port") && i + 1 < argc) bulk_port = atoi(argv[++i]);
        else {
            fprintf(stderr, "mgbench ping: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (size == 0 || size > 65536) size = 64;
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in a = make_addr(host, port);
    char* out = malloc(size);
    char* in = malloc(size);
    memset(out, 'p', size);

    struct bulk b;
    memset(&b, 0, sizeof b);
    if (bulk_dir) {
        b.addr = make_addr(host, bulk_port);
        b.up = strcmp(bulk_dir, "up") == 0;
        pthread_create(&b.thread, NULL, bulk_main, &b);
    }

    int fd = dial(&a);
    if (fd < 0) {
        printf("{\"error\":\"connect: %s\"}\n", strerror(errno));
        return 1;
    }
    // Warm-up (at least 3 round trips, then for `warmup` seconds): the
    // first round trips pay connection setup (stream open, the target's
    // accept), which the connection-rate test measures instead. With a bulk
    // neighbour, also give it `ramp` seconds to fill every buffer on the path.
    double until = now_us() + (warmup + (bulk_dir ? ramp : 0)) * 1e6;
    size_t warm = 0;
    for (int i = 0; i < 3 || now_us() < until; ++i, ++warm) {
        if (write_all(fd, out, size) || read_all(fd, in, size)) {
            printf("{\"error\":\"warm-up round trip failed: %s\"}\n", strerror(errno));
            fflush(stdout);
            _exit(1);
        }
    }
    uint64_t bulk_start = atomic_load(&b.bytes);
    struct samples s = {0};
    double t_start = now_us(), deadline = t_start + duration * 1e6;
    int failed = 0;
    while (s.n < max) {
        double t0 = now_us();
        if (t0 >= deadline) break;
        if (write_all(fd, out, size) || read_all(fd, in, size)) {
            failed = 1;
            break;
        }
        push(&s, now_us() - t0);
    }
    double elapsed = (now_us() - t_start) / 1e6;
    uint64_t bulk_bytes = atomic_load(&b.bytes) - bulk_start;
    if (bulk_dir) atomic_store(&b.stop, 1);
    close(fd);
    printf("{");
    print_latency("", &s);
    printf(",\"seconds\":%.3f,\"failed\":%s,\"round_trips\":%zu", elapsed,
           failed ? "true" : "false", warm + s.n);
    if (bulk_dir)
        printf(",\"bulk\":\"%s\",\"bulk_gbps\":%.3f,\"bulk_failed\":%s", bulk_dir,
               (double)bulk_bytes * 8 / 1e9 / (elapsed > 0 ? elapsed : 1),
               b.failed ? "true" : "false");
    printf("}\n");
    fflush(stdout);
    // The bulk thread is not joined: it may be blocked on a full tunnel.
    // Exiting resets its socket (SO_LINGER 0).
    _exit(0);
}

// --------------------------------------------------------------- connrate
//
// One thread, one epoll set, `conc` connections in flight against an echo1
// server: each slot connects (non-blocking), sends 64 bytes, reads them back,
// reads the server's FIN, closes, and starts over. With --client-close
// (against a plain echo server) the client closes right after the echo
// instead: the other common pattern, which leaves TIME_WAIT on the client's
// ephemeral ports, so keep such runs short. Setup time is from
// socket() to the echo's last byte: the tunnel's whole open path plus one
// round trip. A connection counts once it has closed cleanly. Single-
// threaded so the client takes as little CPU as possible from the path under
// test.

struct slot {
    int fd;
    int connected;
    int echoed;
    size_t got;
    double t0;
};

static int slot_start(int ep, struct slot* s, const struct sockaddr_in* a)
{
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) return -1;
    s->t0 = now_us();
    s->connected = 0;
    s->echoed = 0;
    s->got = 0;
    set_nodelay(s->fd);
    int r = connect(s->fd, (const struct sockaddr*)a, sizeof *a);
    if (r != 0 && errno != EINPROGRESS) {
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
    return 0;
}

static int cmd_connrate(const char* host, int port, int argc, char** argv)
{
    int conc = 1;
    double duration = 2.0;
    int client_close = 0;
    const size_t size = ECHO1_SIZE;
    for (int i = 0; i < argc; ++i) {
        if (!strcmp(argv[i], "--conc") && i + 1 < argc) conc = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--duration") && i + 1 < argc) duration = atof(argv[++i]);
        else if (!strcmp(argv[i], "--client-close")) client_close = 1;
        else {
            fprintf(stderr, "mgbench connrate: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (conc < 1) conc = 1;
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    const struct sockaddr_in a = make_addr(host, port);
    char out[ECHO1_SIZE], in[ECHO1_SIZE];
    memset(out, 'c', size);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct slot* slots = calloc((size_t)conc, sizeof *slots);
    struct samples setup = {0};
    uint64_t errors = 0, timeouts = 0, closed = 0;
    const double start = now_us(), deadline = start + duration * 1e6;
    int active = 0;
    for (int i = 0; i < conc; ++i) {
        if (slot_start(ep, &slots[i], &a) == 0) ++active;
        else ++errors;
    }
    struct epoll_event evs[256];
    double last_sweep = start;
    while (active > 0) {
        int n = epoll_wait(ep, evs, 256, 100);
        if (n < 0 && errno == EINTR) continue;
        double now = now_us();
        for (int i = 0; i < n; ++i) {
            struct slot* s = evs[i].data.ptr;
            int done = 0, bad = 0;
            if (!s->connected) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err) {
                    bad = 1;
                } else {
                    s->connected = 1;
                    ssize_t w = send(s->fd, out, size, MSG_NOSIGNAL);
                    if (w != (ssize_t)size) {
                        bad = 1;
                    } else {
                        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
                        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
                    }
                }
            } else {
                for (;;) {
                    ssize_t r = recv(s->fd, in, s->echoed ? sizeof in : size - s->got, 0);
                    if (r > 0 && !s->echoed) {
                        s->got += (size_t)r;
                        if (s->got == size) {
                            s->echoed = 1;
                            push(&setup, now_us() - s->t0);
                            if (client_close) {
                                done = 1;  // close first, without waiting for the server
                                break;
                            }
                        }
                        continue;
                    }
                    if (r > 0) continue;
                    if (r == 0) {
                        if (s->echoed) done = 1;
                        else bad = 1;
                    } else if (errno != EAGAIN && errno != EINTR) {
                        bad = 1;
                    }
                    break;
                }
            }
            if (!done && !bad) continue;
            now = now_us();
            if (done) ++closed;
            else ++errors;
            close(s->fd);  // also removes it from the epoll set
            s->fd = -1;
            --active;
            if (now < deadline) {
                if (slot_start(ep, s, &a) == 0) ++active;
                else ++errors;
            }
        }
        if (now - last_sweep > 1e6) {
            // A connection stuck for IO_TIMEOUT_S is a failure, not a sample.
            last_sweep = now;
            for (int i = 0; i < conc; ++i) {
                struct slot* s = &slots[i];
                if (s->fd < 0 || now - s->t0 < IO_TIMEOUT_S * 1e6) continue;
                close(s->fd);
                s->fd = -1;
                --active;
                ++timeouts;
                if (now < deadline && slot_start(ep, s, &a) == 0) ++active;
            }
        }
    }
    double elapsed = (now_us() - start) / 1e6;
    printf("{\"conc\":%d,\"seconds\":%.3f,\"conns\":%llu,\"errors\":%llu,\"timeouts\":%llu,"
           "\"per_s\":%.1f,",
           conc, elapsed, (unsigned long long)closed, (unsigned long long)errors,
           (unsigned long long)timeouts, (double)closed / elapsed);
    print_latency("setup_", &setup);
    printf("}\n");
    return 0;
}

// ------------------------------------------------------------------- hold

static int cmd_hold(const char* host, int port, int argc, char** argv)
{
    size_t count = 1000, batch = 50;
    for (int i = 0; i < argc; ++i) {
        if (!strcmp(argv[i], "--count") && i + 1 < argc) count = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "mgbench hold: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (batch < 1) batch = 1;
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in a = make_addr(host, port);
    int* fds = calloc(count, sizeof(int));
    char out[64], in[64];
    memset(out, 'h', sizeof out);
    size_t opened = 0, failed = 0;
    double t0 = now_us();
    // Open a batch, send on each, then read each echo: the connection is
    // only counted once its bytes went through the tunnel and back, so the
    // far side's stream and socket exist too.
    for (size_t at = 0; at < count; at += batch) {
        size_t end = at + batch < count ? at + batch : count;
        for (size_t i = at; i < end; ++i) {
            fds[i] = dial(&a);
            if (fds[i] >= 0 && write_all(fds[i], out, sizeof out)) {
                close(fds[i]);
                fds[i] = -1;
            }
        }
        for (size_t i = at; i < end; ++i) {
            if (fds[i] < 0) {
                ++failed;
                continue;
            }
            if (read_all(fds[i], in, sizeof in)) {
                close(fds[i]);
                fds[i] = -1;
                ++failed;
                continue;
            }
            ++opened;
        }
    }
    printf("{\"opened\":%zu,\"failed\":%zu,\"seconds\":%.3f}\n", opened, failed,
           (now_us() - t0) / 1e6);
    fflush(stdout);
    // Hold until the harness closes our stdin.
    char c;
    while (read(0, &c, 1) > 0) {
    }
    for (size_t i = 0; i < count; ++i)
        if (fds[i] >= 0) close(fds[i]);
    return 0;
}

int main(int argc, char** argv)
{
    if (argc >= 2 && !strcmp(argv[1], "serve")) return cmd_serve();
    if (argc >= 4 && !strcmp(argv[1], "ping")) return cmd_ping(argv[2], atoi(argv[3]), argc - 4, argv + 4);
    if (argc >= 4 && !strcmp(argv[1], "connrate"))
        return cmd_connrate(argv[2], atoi(argv[3]), argc - 4, argv + 4);
    if (argc >= 4 && !strcmp(argv[1], "hold")) return cmd_hold(argv[2], atoi(argv[3]), argc - 4, argv + 4);
    fprintf(stderr,
            "usage: mgbench serve\n"
            "       mgbench ping HOST PORT [--size B] [--duration S] [--max N] [--warmup S]\n"
            "                              [--bulk up|down --bulk-port P] [--ramp S]\n"
            "       mgbench connrate HOST PORT [--conc C] [--duration S]   (against echo1)\n"
            "       mgbench connrate HOST PORT --client-close [...]          (against echo)\n"
            "       mgbench hold HOST PORT [--count N] [--batch K]\n");
    return 2;
}
