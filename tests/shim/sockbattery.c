/* sockbattery: a fixed, deterministic battery of POSIX socket calls whose output is diffed between a native run and a run under libdemikernel_preload.so, so every line is a return value, errno and data that must match the kernel's. */
/*
 * Layout. The top-level process runs each scenario in a fresh child (exec of this
 * binary with --scenario NAME), so a hang or crash in one scenario is confined to
 * it and reported as a status line. A scenario talks to a "peer" that owns the
 * other end of every connection, over an AF_UNIX control socket (never ours):
 *   --peer thread  (default) the peer is a thread of the same process, so under the
 *                  preload both ends are shim sockets (shim-to-shim over catnap);
 *   --peer native  the peer is this binary re-executed in a helper role without
 *                  LD_PRELOAD, so the shim talks to a kernel peer. Only the
 *                  scenarios that use a peer run in this mode.
 * Every line is "step rc=R errno=E[ data=D]". Values that legitimately differ are
 * normalised: descriptors print as FD (after checking they are >= 0 and distinct
 * from every live descriptor of the scenario), kernel-chosen ports as EPHEMERAL,
 * and the battery compares them among themselves ("match=yes") instead.
 * A watchdog (alarm, re-armed at every line) turns a hang into a WATCHDOG line.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define WATCHDOG_SECS 6      /* longest silence between two lines of a scenario */
#define PEER_WAIT_MS 5000    /* longest wait for one peer reply */
#define SCENARIO_SECS 40     /* backstop for a scenario whose watchdog cannot fire */
#define PBUF (70 * 1024)     /* largest peer payload (a maximal UDP datagram fits) */
#define BIG (8u << 20)       /* the large blocking transfer */
#define NSLOT 32
#define LSLOT 31             /* peer slot used for its transient listeners */

/* Arguments the compiler must not see as NULL (the calls are meant to fail). */
static void *volatile g_null;
static volatile int g_neg = -1, g_iovmax1 = IOV_MAX + 1;

/* ---- output --------------------------------------------------------------------------------- */

static char g_last[128] = "start";

static void out_raw(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(1, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            _exit(2);
        }
        s += w;
        n -= (size_t)w;
    }
}

static void outf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void outf(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    out_raw(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static const char *ename(int e)
{
    static char b[4][24];
    static int k;
    if (e == 0)
        return "0";
    const char *s = strerrorname_np(e);
    if (s)
        return s;
    k = (k + 1) % 4;
    snprintf(b[k], sizeof b[k], "E%d", e);
    return b[k];
}

static void harness_fail(const char *what)
{
    outf("HARNESS-ERROR %s after=%s errno=%s\n", what, g_last, ename(errno));
    _exit(2);
}

static void watchdog_handler(int sig)
{
    (void)sig;
    char buf[200];
    int n = snprintf(buf, sizeof buf, "WATCHDOG no progress for %ds after step %s\n", WATCHDOG_SECS, g_last);
    if (n > 0)
        out_raw(buf, (size_t)n);
    _exit(3);
}

static void crash_handler(int sig)
{
    char buf[200];
    int n = snprintf(buf, sizeof buf, "CRASH %s after step %s\n", sigabbrev_np(sig) ? sigabbrev_np(sig) : "?", g_last);
    if (n > 0)
        out_raw(buf, (size_t)n);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void crash_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = crash_handler;
    sa.sa_flags = SA_NODEFER | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGABRT, &sa, NULL);
    sigaction(SIGFPE, &sa, NULL);
    sigaction(SIGILL, &sa, NULL);
}

static void watchdog_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = watchdog_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm(WATCHDOG_SECS);
}

/* One line per step; it also re-arms the watchdog. */
static void rep(const char *name, long rc, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void rep(const char *name, long rc, int err, const char *fmt, ...)
{
    char data[1400] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(data, sizeof data, fmt, ap);
        va_end(ap);
    }
    outf("%s rc=%ld errno=%s%s%s\n", name, rc, rc < 0 ? ename(err) : "0", fmt ? " data=" : "", data);
    snprintf(g_last, sizeof g_last, "%s", name);
    alarm(WATCHDOG_SECS);
}

static long R;
static int E;
#define DO(expr) ((void)(errno = 0, R = (long)(expr), E = errno))
#define T(name, expr) do { DO(expr); rep(name, R, E, NULL); } while (0)
#define TD(name, expr, ...) do { DO(expr); rep(name, R, E, __VA_ARGS__); } while (0)

/* Descriptors: every fd a scenario holds is tracked so a new one that collides is caught. */
static bool g_live[65536];

static const char *fdcheck(long fd)
{
    if (fd < 0)
        return NULL;
    if (fd >= 65536)
        return "FD-OUT-OF-RANGE";
    if (g_live[fd])
        return "FD-COLLIDES";
    g_live[fd] = true;
    return "FD";
}

static void untrack(int fd)
{
    if (fd >= 0 && fd < 65536)
        g_live[fd] = false;
}

/* A step returning a new descriptor: prints rc=FD. */
static void repfd(const char *name, long rc, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void repfd(const char *name, long rc, int err, const char *fmt, ...)
{
    char data[1400] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(data, sizeof data, fmt, ap);
        va_end(ap);
    }
    const char *tag = fdcheck(rc);
    if (tag)
        outf("%s rc=%s errno=0%s%s\n", name, tag, fmt ? " data=" : "", data);
    else
        outf("%s rc=%ld errno=%s%s%s\n", name, rc, ename(err), fmt ? " data=" : "", data);
    snprintf(g_last, sizeof g_last, "%s", name);
    alarm(WATCHDOG_SECS);
}
#define TF(name, expr) do { DO(expr); repfd(name, R, E, NULL); } while (0)

/* A step returning a descriptor number the caller chose (dup2, dup3): rc=FD when it is that number. */
static void repsame(const char *name, long rc, int err, long want, const char *data)
{
    if (rc >= 0)
        outf("%s rc=%s errno=0%s%s\n", name, rc == want ? "FD" : "FD-WRONG-NUMBER", data ? " data=" : "", data ? data : "");
    else
        outf("%s rc=%ld errno=%s%s%s\n", name, rc, ename(err), data ? " data=" : "", data ? data : "");
    snprintf(g_last, sizeof g_last, "%s", name);
    alarm(WATCHDOG_SECS);
}

static void xclose(const char *name, int fd)
{
    DO(close(fd));
    if (R == 0)
        untrack(fd);
    rep(name, R, E, NULL);
}

/* Close without a line (cleanup at the end of a scenario). */
static void qclose(int fd)
{
    if (fd >= 0 && close(fd) == 0)
        untrack(fd);
}

/* ---- data: deterministic patterns, hashes, hex --------------------------------------------- */

static unsigned char pat(uint64_t i, unsigned seed)
{
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t)seed * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    x *= 0x94D049BB133111EBull;
    return (unsigned char)(x >> 32);
}

static void fill(unsigned char *b, size_t n, uint64_t off, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = pat(off + i, seed);
}

#define FNV0 0xcbf29ce484222325ull
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t pat_hash(uint64_t off, size_t n, unsigned seed)
{
    uint64_t h = FNV0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = pat(off + i, seed);
        h = fnv(h, &c, 1);
    }
    return h;
}

/* Small buffers print as hex, larger ones as length and hash. */
static const char *hexs(const void *p, long n)
{
    static char b[8][160];
    static int k;
    k = (k + 1) % 8;
    if (n <= 0)
        return "-";
    if (n > 32) {
        snprintf(b[k], sizeof b[k], "len%ld:%016llx", n, (unsigned long long)fnv(FNV0, p, (size_t)n));
        return b[k];
    }
    const unsigned char *c = p;
    for (long i = 0; i < n; i++)
        snprintf(b[k] + 2 * i, 3, "%02x", c[i]);
    return b[k];
}

static const char *yesno(bool v) { return v ? "yes" : "no"; }

/* ---- formatting of addresses, flags and events -------------------------------------------- */

static const char *addrs(const void *sa, socklen_t len)
{
    static char b[4][64];
    static int k;
    k = (k + 1) % 4;
    const struct sockaddr_in *in = sa;
    if (len < sizeof(sa_family_t)) {
        snprintf(b[k], sizeof b[k], "len%u", (unsigned)len);
    } else if (in->sin_family != AF_INET || len < sizeof *in) {
        snprintf(b[k], sizeof b[k], "fam%u/len%u", in->sin_family, (unsigned)len);
    } else {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(b[k], sizeof b[k], "%s:%s/len%u", ip, in->sin_port ? "EPHEMERAL" : "0", (unsigned)len);
    }
    return b[k];
}

static const char *pollbits(unsigned v)
{
    static char b[4][96];
    static int k;
    static const struct { unsigned bit; const char *n; } tab[] = {
        {POLLIN, "IN"}, {POLLPRI, "PRI"}, {POLLOUT, "OUT"}, {POLLERR, "ERR"}, {POLLHUP, "HUP"},
        {POLLNVAL, "NVAL"}, {POLLRDNORM, "RDNORM"}, {POLLRDBAND, "RDBAND"}, {POLLWRNORM, "WRNORM"},
        {POLLWRBAND, "WRBAND"}, {POLLRDHUP, "RDHUP"}};
    k = (k + 1) % 4;
    b[k][0] = 0;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (v & tab[i].bit) {
            if (b[k][0])
                strcat(b[k], "|");
            strcat(b[k], tab[i].n);
            v &= ~tab[i].bit;
        }
    if (v)
        snprintf(b[k] + strlen(b[k]), sizeof b[k] - strlen(b[k]), "%s0x%x", b[k][0] ? "|" : "", v);
    if (!b[k][0])
        strcpy(b[k], "0");
    return b[k];
}

static const char *epbits(uint32_t v)
{
    static char b[4][96];
    static int k;
    static const struct { uint32_t bit; const char *n; } tab[] = {
        {EPOLLIN, "IN"}, {EPOLLPRI, "PRI"}, {EPOLLOUT, "OUT"}, {EPOLLERR, "ERR"}, {EPOLLHUP, "HUP"},
        {EPOLLRDNORM, "RDNORM"}, {EPOLLRDBAND, "RDBAND"}, {EPOLLWRNORM, "WRNORM"},
        {EPOLLWRBAND, "WRBAND"}, {EPOLLRDHUP, "RDHUP"}};
    k = (k + 1) % 4;
    b[k][0] = 0;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (v & tab[i].bit) {
            if (b[k][0])
                strcat(b[k], "|");
            strcat(b[k], tab[i].n);
            v &= ~tab[i].bit;
        }
    if (v)
        snprintf(b[k] + strlen(b[k]), sizeof b[k] - strlen(b[k]), "%s0x%x", b[k][0] ? "|" : "", v);
    if (!b[k][0])
        strcpy(b[k], "0");
    return b[k];
}

static const char *flstr(long fl)
{
    static char b[4][96];
    static int k;
    k = (k + 1) % 4;
    if (fl < 0)
        return "-";
    const char *acc = (fl & O_ACCMODE) == O_RDONLY ? "RDONLY" : (fl & O_ACCMODE) == O_WRONLY ? "WRONLY" : "RDWR";
    long rest = fl & ~(long)O_ACCMODE & ~(long)O_NONBLOCK & ~(long)O_APPEND;
    snprintf(b[k], sizeof b[k], "%s%s%s", acc, (fl & O_NONBLOCK) ? "|NONBLOCK" : "", (fl & O_APPEND) ? "|APPEND" : "");
    if (rest)
        snprintf(b[k] + strlen(b[k]), sizeof b[k] - strlen(b[k]), "|0x%lx", rest);
    return b[k];
}

/* ---- small helpers ------------------------------------------------------------------------- */

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static struct sockaddr_in lo(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    return a;
}
#define SA(p) ((struct sockaddr *)(p))

/* Port of a bound socket, read with a plain getsockname (not a reported step). */
static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    if (getsockname(fd, SA(&a), &l) < 0)
        return -1;
    return ntohs(a.sin_port);
}

static int peerport_of(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    if (getpeername(fd, SA(&a), &l) < 0)
        return -1;
    return ntohs(a.sin_port);
}

static int getfl(int fd) { return fcntl(fd, F_GETFL); }
static int getfd(int fd) { return fcntl(fd, F_GETFD); }

static int set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -1;
    return fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
}

static int int_opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t l = sizeof v;
    if (getsockopt(fd, level, name, &v, &l) < 0)
        return -1000 - errno;
    return v;
}

/* A plain poll used to wait for something the step after it depends on; reported. */
static void wait_ev(const char *name, int fd, short events, int ms)
{
    struct pollfd p = {fd, events, 0};
    TD(name, poll(&p, 1, ms), "%s", pollbits((unsigned)p.revents));
}

static void mkpipe(int p[2])
{
    if (pipe(p) < 0)
        harness_fail("pipe");
    fdcheck(p[0]);
    fdcheck(p[1]);
}

static int mkfile(size_t n, unsigned seed)
{
    int fd = open("/tmp", O_TMPFILE | O_RDWR, 0600);
    if (fd < 0) {
        char tmpl[] = "/tmp/sockbattery.XXXXXX";
        fd = mkstemp(tmpl);
        if (fd < 0)
            harness_fail("mkstemp");
        unlink(tmpl);
    }
    unsigned char buf[65536];
    size_t done = 0;
    while (done < n) {
        size_t k = n - done < sizeof buf ? n - done : sizeof buf;
        fill(buf, k, done, seed);
        if (write(fd, buf, k) != (ssize_t)k)
            harness_fail("write tmpfile");
        done += k;
    }
    lseek(fd, 0, SEEK_SET);
    fdcheck(fd);
    return fd;
}

/* Counting signal handlers, installed with or without SA_RESTART for the EINTR steps. */
static volatile sig_atomic_t g_sigalrm, g_sigpipe;
static void count_alrm(int s) { (void)s; g_sigalrm++; }
static void count_pipe(int s) { (void)s; g_sigpipe++; }

static void on_signal(int sig, void (*fn)(int), bool restart)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) < 0)
        harness_fail("sigaction");
}

/* Fire SIGALRM once after ms, through the counting handler (the watchdog is off meanwhile). */
static void eintr_arm(bool restart, int ms)
{
    alarm(0);
    g_sigalrm = 0;
    on_signal(SIGALRM, count_alrm, restart);
    struct itimerval it = {{0, 0}, {ms / 1000, (long)(ms % 1000) * 1000L}};
    if (setitimer(ITIMER_REAL, &it, NULL) < 0)
        harness_fail("setitimer");
}

static void eintr_disarm(void)
{
    struct itimerval it = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
    watchdog_install();
}

/* ---- the peer: the other end of every connection ------------------------------------------ */

enum {
    OP_TCP_LISTEN = 1, OP_TCP_BIND, OP_UDP_BIND, OP_ACCEPT, OP_CONNECT, OP_LOCALPORT, OP_SEND,
    OP_SENDPAT, OP_RECV, OP_REMOTEPORT, OP_RECVN, OP_DRAIN, OP_RECV_DONTWAIT, OP_SHUTDOWN, OP_CLOSE, OP_RST,
    OP_SLEEP_SEND, OP_SLEEP_CONNECT, OP_SENDTO, OP_RECVFROM, OP_QUIT,
};

struct preq {
    int32_t op, slot, a, b;
    uint32_t len;
};

struct prep {
    int64_t rc;
    int32_t err, aux;
    uint32_t len;
    uint64_t hash;
};

static int readall(int fd, void *p, size_t n)
{
    char *c = p;
    while (n > 0) {
        ssize_t r = read(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static int writeall(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t r = write(fd, c, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

static long peer_sendall(int fd, const unsigned char *d, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(fd, d + done, n - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        done += (size_t)w;
    }
    return (long)done;
}

/* Executes requests one at a time; the same code serves as a thread (loopback) or a process (native). */
static void peer_loop(int ctl)
{
    int fd[NSLOT];
    for (int i = 0; i < NSLOT; i++)
        fd[i] = -1;
    unsigned char *in = malloc(PBUF), *out = malloc(PBUF);
    if (!in || !out)
        return;
    for (;;) {
        struct preq q;
        if (readall(ctl, &q, sizeof q) < 0 || q.len > PBUF || (q.len && readall(ctl, in, q.len) < 0))
            break;
        struct prep r;
        memset(&r, 0, sizeof r);
        r.hash = FNV0;
        int s = q.slot >= 0 && q.slot < NSLOT ? q.slot : 0;
        errno = 0;
        switch (q.op) {
        case OP_TCP_LISTEN:
        case OP_TCP_BIND:
        case OP_UDP_BIND: {
            int t = socket(AF_INET, q.op == OP_UDP_BIND ? SOCK_DGRAM : SOCK_STREAM, 0);
            struct sockaddr_in a = lo(0);
            if (t < 0 || bind(t, SA(&a), sizeof a) < 0 || (q.op == OP_TCP_LISTEN && listen(t, 64) < 0)) {
                r.rc = -1;
                if (t >= 0)
                    close(t);
                break;
            }
            fd[s] = t;
            r.rc = port_of(t);
            break;
        }
        case OP_ACCEPT:
            fd[s] = accept(fd[q.a], NULL, NULL);
            r.rc = fd[s] < 0 ? -1 : 0;
            break;
        case OP_SLEEP_CONNECT:
            msleep(q.b);
            /* fall through */
        case OP_CONNECT: {
            struct sockaddr_in a = lo(q.a);
            fd[s] = socket(AF_INET, SOCK_STREAM, 0);
            r.rc = fd[s] < 0 ? -1 : connect(fd[s], SA(&a), sizeof a);
            r.aux = port_of(fd[s]);
            break;
        }
        case OP_LOCALPORT:
            r.rc = port_of(fd[s]);
            break;
        case OP_REMOTEPORT:
            r.rc = peerport_of(fd[s]);
            break;
        case OP_SLEEP_SEND:
            msleep(q.a);
            /* fall through */
        case OP_SEND:
            r.rc = peer_sendall(fd[s], in, q.len);
            break;
        case OP_SENDPAT: {
            size_t done = 0, n = (size_t)(uint32_t)q.a;
            r.rc = 0;
            while (done < n) {
                size_t k = n - done < PBUF ? n - done : PBUF;
                fill(out, k, done, (unsigned)q.b);
                r.hash = fnv(r.hash, out, k);
                if (peer_sendall(fd[s], out, k) < 0) {
                    r.rc = -1;
                    break;
                }
                done += k;
            }
            if (r.rc == 0)
                r.rc = (long)done;
            break;
        }
        case OP_RECV:
            r.rc = recv(fd[s], out, (size_t)q.a < PBUF ? (size_t)q.a : PBUF, 0);
            if (r.rc > 0)
                r.len = (uint32_t)r.rc;
            break;
        case OP_RECV_DONTWAIT:
            r.rc = recv(fd[s], out, PBUF, MSG_DONTWAIT);
            if (r.rc > 0)
                r.len = (uint32_t)r.rc;
            break;
        case OP_RECVN:
        case OP_DRAIN: {
            /* Until a byte count (RECVN) or EOF; aux=1 when EOF was seen. */
            uint64_t want = q.op == OP_RECVN ? (uint32_t)q.a : UINT64_MAX, got = 0;
            r.rc = 0;
            while (got < want) {
                size_t k = want - got < PBUF ? (size_t)(want - got) : PBUF;
                ssize_t n = recv(fd[s], out, k, 0);
                if (n < 0 && errno == EINTR)
                    continue;
                if (n < 0) {
                    r.rc = -1;
                    break;
                }
                if (n == 0) {
                    r.aux = 1;
                    break;
                }
                r.hash = fnv(r.hash, out, (size_t)n);
                got += (uint64_t)n;
            }
            if (r.rc == 0)
                r.rc = (long)got;
            break;
        }
        case OP_SHUTDOWN:
            r.rc = shutdown(fd[s], q.a);
            break;
        case OP_CLOSE:
            r.rc = close(fd[s]);
            fd[s] = -1;
            break;
        case OP_RST: {
            struct linger l = {1, 0};
            r.rc = setsockopt(fd[s], SOL_SOCKET, SO_LINGER, &l, sizeof l);
            if (r.rc == 0)
                r.rc = close(fd[s]);
            fd[s] = -1;
            break;
        }
        case OP_SENDTO: {
            struct sockaddr_in a = lo(q.a);
            r.rc = sendto(fd[s], in, q.len, 0, SA(&a), sizeof a);
            break;
        }
        case OP_RECVFROM: {
            struct sockaddr_in a;
            socklen_t l = sizeof a;
            memset(&a, 0, sizeof a);
            r.rc = recvfrom(fd[s], out, PBUF, 0, SA(&a), &l);
            if (r.rc > 0)
                r.len = (uint32_t)r.rc;
            r.aux = ntohs(a.sin_port);
            break;
        }
        case OP_QUIT:
            r.rc = 0;
            break;
        default:
            r.rc = -1;
            errno = EINVAL;
        }
        r.err = r.rc < 0 ? errno : 0;
        if (r.len)
            r.hash = fnv(FNV0, out, r.len);
        if (writeall(ctl, &r, sizeof r) < 0 || (r.len && writeall(ctl, out, r.len) < 0) || q.op == OP_QUIT)
            break;
    }
    for (int i = 0; i < NSLOT; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    free(in);
    free(out);
}

static int g_native;          /* 1 in --peer native */
static int g_ctl = -1;        /* main's end of the control socket */
static pid_t g_peer_pid = -1;
static pthread_t g_peer_thread;
static int g_peer_thread_on;
static int g_peer_started;
static const char *g_self = "/proc/self/exe";

static void *peer_thread_main(void *arg)
{
    peer_loop((int)(intptr_t)arg);
    close((int)(intptr_t)arg);
    return NULL;
}

static void peer_start(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        harness_fail("socketpair");
    fdcheck(sv[0]);
    g_ctl = sv[0];
    if (g_native) {
        /* The peer end must survive exec; everything LD_PRELOAD-related is dropped. */
        if (fcntl(sv[1], F_SETFD, 0) < 0)
            harness_fail("fcntl ctl");
        char fdarg[16];
        snprintf(fdarg, sizeof fdarg, "%d", sv[1]);
        size_t n = 0;
        while (environ[n])
            n++;
        char **env = calloc(n + 1, sizeof *env);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
                env[k++] = environ[i];
        char *argv[] = {"sockbattery", "--role", "peer", "--ctl", fdarg, NULL};
        int e = posix_spawn(&g_peer_pid, g_self, NULL, NULL, argv, env);
        free(env);
        if (e) {
            errno = e;
            harness_fail("posix_spawn peer");
        }
        close(sv[1]);
    } else {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);  /* signals go to the main thread only */
        int e = pthread_create(&g_peer_thread, NULL, peer_thread_main, (void *)(intptr_t)sv[1]);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (e) {
            errno = e;
            harness_fail("pthread_create");
        }
        fdcheck(sv[1]);
        g_peer_thread_on = 1;
    }
    g_peer_started = 1;
}

/* Result of the last peer request. */
static struct {
    long rc;
    int err, aux;
    uint32_t len;
    uint64_t hash;
    unsigned char data[PBUF];
} PR;

static void psend(int op, int slot, int a, int b, const void *d, uint32_t len)
{
    struct preq q = {op, slot, a, b, len};
    if (writeall(g_ctl, &q, sizeof q) < 0 || (len && writeall(g_ctl, d, len) < 0))
        harness_fail("peer request");
}

static void pwait(void)
{
    struct pollfd p = {g_ctl, POLLIN, 0};
    double end = now_ms() + PEER_WAIT_MS;
    for (;;) {
        int left = (int)(end - now_ms());
        if (left <= 0) {
            outf("PEER-TIMEOUT no reply within %d ms after step %s\n", PEER_WAIT_MS, g_last);
            _exit(4);
        }
        int n = poll(&p, 1, left);
        if (n > 0)
            break;
        if (n < 0 && errno != EINTR)
            harness_fail("poll ctl");
    }
    struct prep r;
    if (readall(g_ctl, &r, sizeof r) < 0 || r.len > PBUF || (r.len && readall(g_ctl, PR.data, r.len) < 0)) {
        outf("PEER-GONE after step %s\n", g_last);
        _exit(4);
    }
    PR.rc = (long)r.rc;
    PR.err = r.err;
    PR.aux = r.aux;
    PR.len = r.len;
    PR.hash = r.hash;
}

static long pc(int op, int slot, int a, int b, const void *d, uint32_t len)
{
    psend(op, slot, a, b, d, len);
    pwait();
    return PR.rc;
}

/* A line for the last peer result; data is what the peer received (or the given text). */
static void pline(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pline(const char *name, const char *fmt, ...)
{
    char data[600];
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(data, sizeof data, fmt, ap);
        va_end(ap);
    } else {
        snprintf(data, sizeof data, "%s", hexs(PR.data, PR.len));
    }
    rep(name, PR.rc, PR.err, "%s", data);
}

/* A peer call that returns a kernel-chosen port: the line shows rc=EPHEMERAL. */
static long pportcall(const char *name, int op, int slot)
{
    long port = pc(op, slot, 0, 0, NULL, 0);
    if (port > 0)
        outf("%s rc=EPHEMERAL errno=0\n", name);
    else
        rep(name, PR.rc, PR.err, NULL);
    snprintf(g_last, sizeof g_last, "%s", name);
    alarm(WATCHDOG_SECS);
    return port;
}

static long psends(int slot, const char *s)
{
    return pc(OP_SEND, slot, 0, 0, s, (uint32_t)strlen(s));
}

static void peer_stop(void)
{
    if (!g_peer_started)
        return;
    psend(OP_QUIT, 0, 0, 0, NULL, 0);
    pwait();
    if (g_native) {
        int st;
        waitpid(g_peer_pid, &st, 0);
    } else if (g_peer_thread_on) {
        pthread_join(g_peer_thread, NULL);
    }
}

/* ---- connection set-up (one line each) ------------------------------------------------------ */

/* We connect to a fresh peer listener; the peer accepts into slot ps. Returns our fd. */
static int conn_out(const char *tag, int ps, int *peer_listen_port)
{
    char nm[128];
    snprintf(nm, sizeof nm, "%s.conn", tag);
    const char *fail = NULL;
    int err = 0, fd = -1;
    long port = pc(OP_TCP_LISTEN, LSLOT, 0, 0, NULL, 0);
    if (port <= 0) {
        fail = "peer-listen";
        err = PR.err;
    } else if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0) {
        fail = "socket";
        err = errno;
    } else {
        struct sockaddr_in a = lo((int)port);
        if (connect(fd, SA(&a), sizeof a) < 0) {
            fail = "connect";
            err = errno;
        } else if (pc(OP_ACCEPT, ps, LSLOT, 0, NULL, 0) < 0) {
            fail = "peer-accept";
            err = PR.err;
        }
    }
    pc(OP_CLOSE, LSLOT, 0, 0, NULL, 0);
    if (peer_listen_port)
        *peer_listen_port = (int)port;
    if (fail) {
        rep(nm, -1, err, "failed-at:%s", fail);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    repfd(nm, fd, 0, NULL);
    return fd;
}

/* A listener of ours on 127.0.0.1:0; returns the fd, port in *port. */
static int our_listener(const char *tag, int *port)
{
    char nm[128];
    snprintf(nm, sizeof nm, "%s.listener", tag);
    int fd = socket(AF_INET, SOCK_STREAM, 0), err = 0;
    struct sockaddr_in a = lo(0);
    const char *fail = NULL;
    if (fd < 0) {
        fail = "socket";
        err = errno;
    } else if (bind(fd, SA(&a), sizeof a) < 0) {
        fail = "bind";
        err = errno;
    } else if (listen(fd, 64) < 0) {
        fail = "listen";
        err = errno;
    }
    if (fail) {
        rep(nm, -1, err, "failed-at:%s", fail);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = port_of(fd);
    repfd(nm, fd, 0, NULL);
    return fd;
}

static int our_udp(const char *tag, int *port)
{
    char nm[128];
    snprintf(nm, sizeof nm, "%s.udp", tag);
    int fd = socket(AF_INET, SOCK_DGRAM, 0), err = 0;
    struct sockaddr_in a = lo(0);
    if (fd < 0 || bind(fd, SA(&a), sizeof a) < 0) {
        err = errno;
        rep(nm, -1, err, "failed");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = port_of(fd);
    repfd(nm, fd, 0, NULL);
    return fd;
}

#define NEED(x) do { if ((x) < 0) return; } while (0)

/* ============================================================================================ */
/* Scenarios                                                                                    */
/* ============================================================================================ */

static void sc_socket(void)
{
    int fds[8], n = 0;
    TF("socket.tcp", fds[n++] = socket(AF_INET, SOCK_STREAM, 0));
    TF("socket.udp", fds[n++] = socket(AF_INET, SOCK_DGRAM, 0));
    TF("socket.tcp-proto", fds[n++] = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP));
    TF("socket.udp-proto", fds[n++] = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP));
    DO(fds[n++] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    repfd("socket.tcp-nonblock-cloexec", R, E, "fl=%s,fd=%d", flstr(getfl((int)R)), getfd((int)R));
    DO(fds[n++] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
    repfd("socket.udp-nonblock", R, E, "fl=%s,fd=%d", flstr(getfl((int)R)), getfd((int)R));
    DO(fds[n++] = socket(AF_INET, SOCK_STREAM, 0));
    repfd("socket.tcp-defaults", R, E, "fl=%s,fd=%d", flstr(getfl((int)R)), getfd((int)R));
    TF("socket.bad-domain", socket(12345, SOCK_STREAM, 0));
    TF("socket.bad-type", socket(AF_INET, 12345, 0));
    TF("socket.bad-type-flag", socket(AF_INET, SOCK_STREAM | 0x4000, 0));
    TF("socket.seqpacket", socket(AF_INET, SOCK_SEQPACKET, 0));
    TF("socket.stream-udp-proto", socket(AF_INET, SOCK_STREAM, IPPROTO_UDP));
    TF("socket.dgram-tcp-proto", socket(AF_INET, SOCK_DGRAM, IPPROTO_TCP));
    TF("socket.stream-bad-proto", socket(AF_INET, SOCK_STREAM, 9999));
    TF("socket.negative-proto", socket(AF_INET, SOCK_STREAM, -1));
    /* Kernel descriptors opened after ours must not collide with them. */
    int p[2];
    DO(pipe(p));
    const char *t0 = R == 0 ? fdcheck(p[0]) : "-", *t1 = R == 0 ? fdcheck(p[1]) : "-";
    rep("socket.pipe-after", R, E, "distinct=%s,%s", t0, t1);
    int up[2];
    DO(socketpair(AF_UNIX, SOCK_STREAM, 0, up));
    rep("socket.socketpair-unix", R, E, NULL);
    fdcheck(up[0]);
    fdcheck(up[1]);
    TD("socket.socketpair-write", write(up[0], "sp", 2), NULL);
    char b[8];
    TD("socket.socketpair-read", read(up[1], b, sizeof b), "%s", hexs(b, R));
    T("socket.socketpair-inet", socketpair(AF_INET, SOCK_STREAM, 0, up));
    for (int i = 0; i < n; i++)
        qclose(fds[i]);
    qclose(p[0]);
    qclose(p[1]);
}

static void sc_bind(void)
{
    struct sockaddr_in a = lo(0);
    int s, t, p[2];
    TF("bind.socket", s = socket(AF_INET, SOCK_STREAM, 0));
    T("bind.badfd", bind(-1, SA(&a), sizeof a));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    close(c);
    T("bind.closedfd", bind(c, SA(&a), sizeof a));
    mkpipe(p);
    T("bind.pipe", bind(p[0], SA(&a), sizeof a));
    int f = mkfile(16, 1);
    T("bind.file", bind(f, SA(&a), sizeof a));
    T("bind.null-addr", bind(s, g_null, sizeof a));
    T("bind.null-addr-zero-len", bind(s, g_null, 0));
    T("bind.short-len", bind(s, SA(&a), 8));
    T("bind.huge-len", bind(s, SA(&a), 200));
    struct sockaddr_in b6 = a;
    b6.sin_family = AF_INET6;
    T("bind.family-inet6", bind(s, SA(&b6), sizeof b6));
    struct sockaddr_in bu = a;
    bu.sin_family = AF_UNSPEC;
    T("bind.family-unspec-loopback", bind(s, SA(&bu), sizeof bu));
    struct sockaddr_in nl = a;
    inet_pton(AF_INET, "192.0.2.1", &nl.sin_addr);
    T("bind.nonlocal", bind(s, SA(&nl), sizeof nl));
    T("bind.ok", bind(s, SA(&a), sizeof a));
    struct sockaddr_in got;
    socklen_t gl = sizeof got;
    TD("bind.getsockname", getsockname(s, SA(&got), &gl), "%s", addrs(&got, gl));
    int port = ntohs(got.sin_port);
    T("bind.again", bind(s, SA(&a), sizeof a));
    struct sockaddr_in same = lo(port);
    TF("bind.socket2", t = socket(AF_INET, SOCK_STREAM, 0));
    T("bind.inuse", bind(t, SA(&same), sizeof same));
    struct sockaddr_in anyp = same;
    anyp.sin_addr.s_addr = htonl(INADDR_ANY);
    T("bind.inuse-any", bind(t, SA(&anyp), sizeof anyp));
    T("bind.after-inuse-port0", bind(t, SA(&a), sizeof a));
    TD("bind.port0-distinct", 0, "differ=%s", yesno(port_of(t) != port && port_of(t) > 0));
    /* Longer address buffers are accepted (sockaddr_storage). */
    int w;
    TF("bind.socket3", w = socket(AF_INET, SOCK_STREAM, 0));
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, &a, sizeof a);
    T("bind.storage-len", bind(w, SA(&ss), sizeof ss));
    /* SO_REUSEADDR on both, neither listening: allowed; listening: not. */
    int u, v, x, one = 1;
    TF("bind.reuse-socket-a", u = socket(AF_INET, SOCK_STREAM, 0));
    TF("bind.reuse-socket-b", v = socket(AF_INET, SOCK_STREAM, 0));
    T("bind.reuse-opt-a", setsockopt(u, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    T("bind.reuse-opt-b", setsockopt(v, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    T("bind.reuse-a", bind(u, SA(&a), sizeof a));
    struct sockaddr_in up = lo(port_of(u));
    T("bind.reuse-b-same-port", bind(v, SA(&up), sizeof up));
    T("bind.reuse-listen-a", listen(u, 8));
    TF("bind.reuse-socket-c", x = socket(AF_INET, SOCK_STREAM, 0));
    setsockopt(x, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    T("bind.reuse-c-while-listening", bind(x, SA(&up), sizeof up));
    /* A listener that never had a connection leaves no TIME_WAIT: its port is free again. */
    int lp = port_of(u);
    xclose("bind.close-listener-a", u);
    xclose("bind.close-b", v);
    struct sockaddr_in lpa = lo(lp);
    T("bind.rebind-after-close", bind(x, SA(&lpa), sizeof lpa));
    /* UDP and TCP port spaces are separate; UDP conflicts like TCP. */
    int d1, d2;
    TF("bind.udp-socket", d1 = socket(AF_INET, SOCK_DGRAM, 0));
    T("bind.udp-same-port-as-tcp", bind(d1, SA(&same), sizeof same));
    TF("bind.udp-socket2", d2 = socket(AF_INET, SOCK_DGRAM, 0));
    T("bind.udp-inuse", bind(d2, SA(&same), sizeof same));
    T("bind.udp-again", bind(d1, SA(&a), sizeof a));
    T("bind.udp-short-len", bind(d2, SA(&a), 4));
    qclose(s);
    qclose(t);
    qclose(w);
    qclose(x);
    qclose(d1);
    qclose(d2);
    qclose(p[0]);
    qclose(p[1]);
    qclose(f);
}

static void sc_listen(void)
{
    int s, u, p[2];
    mkpipe(p);
    T("listen.badfd", listen(-1, 5));
    T("listen.pipe", listen(p[0], 5));
    TF("listen.udp-socket", u = socket(AF_INET, SOCK_DGRAM, 0));
    T("listen.udp", listen(u, 5));
    TF("listen.socket", s = socket(AF_INET, SOCK_STREAM, 0));
    TD("listen.acceptconn-before", 0, "%d", int_opt(s, SOL_SOCKET, SO_ACCEPTCONN));
    T("listen.unbound-autobind", listen(s, 5));
    struct sockaddr_in got;
    socklen_t gl = sizeof got;
    TD("listen.autobind-name", getsockname(s, SA(&got), &gl), "%s", addrs(&got, gl));
    TD("listen.acceptconn-after", 0, "%d", int_opt(s, SOL_SOCKET, SO_ACCEPTCONN));
    T("listen.twice", listen(s, 10));
    int n, z;
    struct sockaddr_in a = lo(0);
    TF("listen.socket-neg", n = socket(AF_INET, SOCK_STREAM, 0));
    bind(n, SA(&a), sizeof a);
    T("listen.backlog-negative", listen(n, -1));
    TF("listen.socket-zero", z = socket(AF_INET, SOCK_STREAM, 0));
    bind(z, SA(&a), sizeof a);
    T("listen.backlog-zero", listen(z, 0));
    T("listen.backlog-huge", listen(z, INT_MAX));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    close(c);
    T("listen.closedfd", listen(c, 5));
    qclose(s);
    qclose(u);
    qclose(n);
    qclose(z);
    qclose(p[0]);
    qclose(p[1]);
}

static void sc_accept(void)
{
    int port, l, p[2], nl, ub, u;
    NEED(l = our_listener("accept", &port));
    mkpipe(p);
    TF("accept.badfd", accept(-1, NULL, NULL));
    TF("accept.pipe", accept(p[0], NULL, NULL));
    struct sockaddr_in a = lo(0);
    TF("accept.socket-bound", nl = socket(AF_INET, SOCK_STREAM, 0));
    bind(nl, SA(&a), sizeof a);
    TF("accept.not-listening", accept(nl, NULL, NULL));
    TF("accept.socket-unbound", ub = socket(AF_INET, SOCK_STREAM, 0));
    TF("accept.unbound", accept(ub, NULL, NULL));
    TF("accept.socket-udp", u = socket(AF_INET, SOCK_DGRAM, 0));
    TF("accept.udp", accept(u, NULL, NULL));
    TF("accept4.bad-flags", accept4(l, NULL, NULL, 0x1234));
    T("accept.set-nonblock", set_nonblock(l, true));
    TF("accept.nonblock-empty", accept(l, NULL, NULL));
    TF("accept4.nonblock-empty-flags", accept4(l, NULL, NULL, SOCK_NONBLOCK));
    T("accept.set-blocking", set_nonblock(l, false));

    /* NULL address allowed; the accepted socket is blocking, no CLOEXEC. */
    pc(OP_CONNECT, 1, port, 0, NULL, 0);
    int pport = PR.aux;
    pline("accept.peer-connect-1", "-");
    int f1;
    DO(f1 = accept(l, NULL, NULL));
    repfd("accept.null-addr", R, E, "fl=%s,fd=%d,peer-match=%s", flstr(getfl(f1)), getfd(f1),
          yesno(peerport_of(f1) == pport));

    pc(OP_CONNECT, 2, port, 0, NULL, 0);
    pport = PR.aux;
    pline("accept.peer-connect-2", "-");
    struct sockaddr_in pa;
    memset(&pa, 0, sizeof pa);
    socklen_t pl = sizeof pa;
    int f2;
    DO(f2 = accept(l, SA(&pa), &pl));
    repfd("accept.with-addr", R, E, "%s,port-match=%s", addrs(&pa, pl), yesno(ntohs(pa.sin_port) == pport));

    pc(OP_CONNECT, 3, port, 0, NULL, 0);
    pline("accept.peer-connect-3", "-");
    unsigned char small[16];
    memset(small, 0xee, sizeof small);
    socklen_t sl = 4;
    int f3;
    DO(f3 = accept(l, SA(small), &sl));
    repfd("accept.addrlen-truncated", R, E, "len=%u,family=%u,untouched=%s", (unsigned)sl,
          (unsigned)((struct sockaddr *)small)->sa_family, yesno(small[4] == 0xee && small[15] == 0xee));

    pc(OP_CONNECT, 4, port, 0, NULL, 0);
    pline("accept.peer-connect-4", "-");
    int f4;
    DO(f4 = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC));
    repfd("accept4.nonblock-cloexec", R, E, "fl=%s,fd=%d", flstr(getfl(f4)), getfd(f4));
    char buf[64];
    T("accept4.nonblock-read-empty", read(f4, buf, sizeof buf));

    pc(OP_CONNECT, 5, port, 0, NULL, 0);
    pline("accept.peer-connect-5", "-");
    int f5;
    DO(f5 = accept4(l, NULL, NULL, SOCK_CLOEXEC));
    repfd("accept4.cloexec", R, E, "fl=%s,fd=%d", flstr(getfl(f5)), getfd(f5));

    /* O_NONBLOCK of the listener is not inherited. */
    set_nonblock(l, true);
    pc(OP_CONNECT, 6, port, 0, NULL, 0);
    pline("accept.peer-connect-6", "-");
    wait_ev("accept.poll-pending", l, POLLIN, 2000);
    int f6;
    DO(f6 = accept(l, NULL, NULL));
    repfd("accept.from-nonblock-listener", R, E, "fl=%s", flstr(getfl(f6)));
    TF("accept.nonblock-drained", accept(l, NULL, NULL));

    /* Connected, sent and closed before we accept: data then EOF. */
    pc(OP_CONNECT, 7, port, 0, NULL, 0);
    pline("accept.peer-connect-7", "-");
    psends(7, "bye");
    pline("accept.peer-send-bye", "-");
    pc(OP_CLOSE, 7, 0, 0, NULL, 0);
    pline("accept.peer-close-7", "-");
    msleep(50);
    int f7;
    set_nonblock(l, false);
    TF("accept.closed-before-accept", f7 = accept(l, NULL, NULL));
    TD("accept.closed-read", read(f7, buf, sizeof buf), "%s", hexs(buf, R));
    TD("accept.closed-read-eof", read(f7, buf, sizeof buf), "%s", hexs(buf, R));

    /* Several pending connections: a non-blocking accept loop takes all, then EAGAIN. */
    for (int i = 8; i < 11; i++)
        pc(OP_CONNECT, i, port, 0, NULL, 0);
    rep("accept.peer-connect-3-more", PR.rc, PR.err, NULL);
    msleep(50);
    set_nonblock(l, true);
    int got = 0, acc[3] = {-1, -1, -1}, e = 0;
    for (int i = 0; i < 4; i++) {
        int f = accept(l, NULL, NULL);
        if (f < 0) {
            e = errno;
            break;
        }
        if (got < 3)
            acc[got] = f;
        got++;
    }
    bool distinct = true;
    for (int i = 0; i < got && i < 3; i++) {
        const char *tag = fdcheck(acc[i]);
        if (!tag || strcmp(tag, "FD") != 0)
            distinct = false;
    }
    rep("accept.loop", got, 0, "accepted=%d,then=%s,distinct=%s", got, ename(e), yesno(distinct));

    /* shutdown of a listener stops it: accept then fails with EINVAL. */
    T("accept.shutdown-listener", shutdown(l, SHUT_RDWR));
    set_nonblock(l, false);
    TF("accept.after-shutdown", accept(l, NULL, NULL));
    T("accept.closedfd", (close(nl), untrack(nl), accept(nl, NULL, NULL)));

    int fs[] = {f1, f2, f3, f4, f5, f6, f7, acc[0], acc[1], acc[2], l, ub, u, p[0], p[1]};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        qclose(fs[i]);
}

static void sc_connect(void)
{
    int pport, s, p[2];
    mkpipe(p);
    long lport = pportcall("connect.peer-listen", OP_TCP_LISTEN, 0);
    pport = (int)lport;
    struct sockaddr_in a = lo(pport);
    T("connect.badfd", connect(-1, SA(&a), sizeof a));
    T("connect.pipe", connect(p[0], SA(&a), sizeof a));
    TF("connect.socket", s = socket(AF_INET, SOCK_STREAM, 0));
    T("connect.null-addr", connect(s, g_null, sizeof a));
    T("connect.short-len", connect(s, SA(&a), 8));
    struct sockaddr_in b6 = a;
    b6.sin_family = AF_INET6;
    T("connect.family-inet6", connect(s, SA(&b6), sizeof b6));
    T("connect.ok", connect(s, SA(&a), sizeof a));
    pc(OP_ACCEPT, 1, 0, 0, NULL, 0);
    pline("connect.peer-accept", "-");
    struct sockaddr_in n;
    socklen_t nl = sizeof n;
    TD("connect.getsockname", getsockname(s, SA(&n), &nl), "%s", addrs(&n, nl));
    int myport = ntohs(n.sin_port);
    nl = sizeof n;
    TD("connect.getpeername", getpeername(s, SA(&n), &nl), "%s,port-match=%s", addrs(&n, nl),
       yesno(ntohs(n.sin_port) == pport));
    pc(OP_REMOTEPORT, 1, 0, 0, NULL, 0);
    rep("connect.peer-sees-our-port", 0, 0, "match=%s", yesno(PR.rc == myport));
    T("connect.again-isconn", connect(s, SA(&a), sizeof a));
    T("connect.listen-on-connected", listen(s, 5));
    T("connect.bind-on-connected", bind(s, SA(&a), sizeof a));
    int l, lp;
    NEED(l = our_listener("connect", &lp));
    T("connect.on-listener", connect(l, SA(&a), sizeof a));

    /* Refused: a peer port bound but not listening. */
    long rport = pportcall("connect.peer-bind-nolisten", OP_TCP_BIND, 2);
    struct sockaddr_in ra = lo((int)rport);
    int r;
    TF("connect.refused-socket", r = socket(AF_INET, SOCK_STREAM, 0));
    T("connect.refused", connect(r, SA(&ra), sizeof ra));
    int v = -1;
    socklen_t vl = sizeof v;
    TD("connect.refused-so-error", getsockopt(r, SOL_SOCKET, SO_ERROR, &v, &vl), "%s", ename(v));
    T("connect.refused-again", connect(r, SA(&ra), sizeof ra));
    T("connect.refused-then-ok", connect(r, SA(&a), sizeof a));
    pc(OP_ACCEPT, 3, 0, 0, NULL, 0);
    pline("connect.peer-accept-after-refused", "-");

    /* Non-blocking: EINPROGRESS, writability, SO_ERROR; a second connect returns 0, a third EISCONN. */
    int nb;
    TF("connect.nb-socket", nb = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    T("connect.nb", connect(nb, SA(&a), sizeof a));
    wait_ev("connect.nb-poll-out", nb, POLLOUT, 2000);
    v = -1;
    vl = sizeof v;
    TD("connect.nb-so-error", getsockopt(nb, SOL_SOCKET, SO_ERROR, &v, &vl), "%s", ename(v));
    T("connect.nb-second", connect(nb, SA(&a), sizeof a));
    T("connect.nb-third", connect(nb, SA(&a), sizeof a));
    pc(OP_ACCEPT, 4, 0, 0, NULL, 0);
    pline("connect.peer-accept-nb", "-");
    psends(4, "nb-data");
    wait_ev("connect.nb-data-ready", nb, POLLIN, 2000);
    char buf[64];
    TD("connect.nb-read", read(nb, buf, sizeof buf), "%s", hexs(buf, R));

    /* Non-blocking to the refusing port: the error comes through SO_ERROR, once. */
    int nr;
    TF("connect.nb-refused-socket", nr = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    T("connect.nb-refused", connect(nr, SA(&ra), sizeof ra));
    wait_ev("connect.nb-refused-poll", nr, POLLOUT, 2000);
    v = -1;
    vl = sizeof v;
    TD("connect.nb-refused-so-error", getsockopt(nr, SOL_SOCKET, SO_ERROR, &v, &vl), "%s", ename(v));
    v = -1;
    vl = sizeof v;
    TD("connect.nb-refused-so-error-again", getsockopt(nr, SOL_SOCKET, SO_ERROR, &v, &vl), "%s", ename(v));
    T("connect.nb-refused-write", send(nr, "x", 1, MSG_NOSIGNAL));

    /* Connected UDP; AF_UNSPEC dissolves the association. */
    int u, up;
    NEED(u = our_udp("connect", &up));
    long uport = pportcall("connect.peer-udp-bind", OP_UDP_BIND, 5);
    struct sockaddr_in ua = lo((int)uport);
    T("connect.udp-connect", connect(u, SA(&ua), sizeof ua));
    nl = sizeof n;
    TD("connect.udp-getpeername", getpeername(u, SA(&n), &nl), "%s", addrs(&n, nl));
    T("connect.udp-send", send(u, "hi", 2, 0));
    pc(OP_RECVFROM, 5, 0, 0, NULL, 0);
    pline("connect.udp-peer-recv", "%s,src-match=%s", hexs(PR.data, PR.len), yesno(PR.aux == up));
    pc(OP_SENDTO, 5, up, 0, "yo", 2);
    pline("connect.udp-peer-send", "-");
    TD("connect.udp-recv", recv(u, buf, sizeof buf, 0), "%s", hexs(buf, R));
    struct sockaddr_in un;
    memset(&un, 0, sizeof un);
    un.sin_family = AF_UNSPEC;
    T("connect.udp-unspec", connect(u, SA(&un), sizeof un));
    nl = sizeof n;
    T("connect.udp-unspec-getpeername", getpeername(u, SA(&n), &nl));
    T("connect.udp-unspec-send", send(u, "x", 1, 0));
    int fs[] = {s, l, r, nb, nr, u, p[0], p[1]};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        qclose(fs[i]);
}

static void sc_shutdown(void)
{
    int s, p[2], l, lp;
    char buf[64];
    mkpipe(p);
    T("shutdown.badfd", shutdown(-1, SHUT_WR));
    T("shutdown.pipe", shutdown(p[0], SHUT_WR));
    TF("shutdown.socket", s = socket(AF_INET, SOCK_STREAM, 0));
    T("shutdown.unconnected", shutdown(s, SHUT_WR));
    T("shutdown.bad-how-unconnected", shutdown(s, 3));
    NEED(l = our_listener("shutdown", &lp));
    T("shutdown.listener-wr", shutdown(l, SHUT_WR));

    int a;
    NEED(a = conn_out("shutdown.a", 1, NULL));
    T("shutdown.bad-how-3", shutdown(a, 3));
    T("shutdown.bad-how-neg", shutdown(a, -1));
    T("shutdown.wr", shutdown(a, SHUT_WR));
    wait_ev("shutdown.wr-poll-self", a, POLLIN | POLLOUT | POLLRDHUP, 0);
    pc(OP_RECV, 1, 64, 0, NULL, 0);
    pline("shutdown.wr-peer-reads-eof", NULL);
    T("shutdown.wr-then-send", send(a, "x", 1, MSG_NOSIGNAL));
    psends(1, "back");
    pline("shutdown.wr-peer-writes-back", "-");
    TD("shutdown.wr-read-back", read(a, buf, sizeof buf), "%s", hexs(buf, R));
    T("shutdown.wr-again", shutdown(a, SHUT_WR));
    pc(OP_CLOSE, 1, 0, 0, NULL, 0);
    pline("shutdown.wr-peer-close", "-");
    TD("shutdown.wr-read-eof", read(a, buf, sizeof buf), "%s", hexs(buf, R));

    /* SHUT_RD keeps what had already arrived, then reads EOF; writing still works. */
    int b;
    NEED(b = conn_out("shutdown.b", 2, NULL));
    psends(2, "abc");
    pline("shutdown.rd-peer-send", "-");
    wait_ev("shutdown.rd-data-ready", b, POLLIN, 2000);
    msleep(20);
    T("shutdown.rd", shutdown(b, SHUT_RD));
    wait_ev("shutdown.rd-poll", b, POLLIN | POLLOUT | POLLRDHUP, 0);
    TD("shutdown.rd-read-queued", read(b, buf, sizeof buf), "%s", hexs(buf, R));
    TD("shutdown.rd-read-eof", read(b, buf, sizeof buf), "%s", hexs(buf, R));
    TD("shutdown.rd-read-eof-again", recv(b, buf, sizeof buf, 0), "%s", hexs(buf, R));
    T("shutdown.rd-write", write(b, "w", 1));
    pc(OP_RECV, 2, 64, 0, NULL, 0);
    pline("shutdown.rd-peer-recv", NULL);

    /* SHUT_RDWR: both directions. */
    int c;
    NEED(c = conn_out("shutdown.c", 3, NULL));
    T("shutdown.rdwr", shutdown(c, SHUT_RDWR));
    TD("shutdown.rdwr-read", read(c, buf, sizeof buf), "%s", hexs(buf, R));
    T("shutdown.rdwr-send", send(c, "x", 1, MSG_NOSIGNAL));
    pc(OP_RECV, 3, 64, 0, NULL, 0);
    pline("shutdown.rdwr-peer-reads-eof", NULL);
    wait_ev("shutdown.rdwr-poll", c, POLLIN | POLLOUT | POLLRDHUP, 0);

    /* UDP. */
    int u, up;
    NEED(u = our_udp("shutdown", &up));
    T("shutdown.udp-unconnected", shutdown(u, SHUT_WR));
    int v, vp;
    NEED(v = our_udp("shutdown.v", &vp));
    long pu = pc(OP_UDP_BIND, 4, 0, 0, NULL, 0);
    struct sockaddr_in ua = lo((int)pu);
    T("shutdown.udp-connect", connect(v, SA(&ua), sizeof ua));
    T("shutdown.udp-wr", shutdown(v, SHUT_WR));
    T("shutdown.udp-wr-send", send(v, "x", 1, MSG_NOSIGNAL));
    int fs[] = {s, l, a, b, c, u, v, p[0], p[1]};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        qclose(fs[i]);
}

static void sc_read(void)
{
    char buf[256];
    int s, l, lp;
    TF("read.socket", s = socket(AF_INET, SOCK_STREAM, 0));
    T("read.unconnected", read(s, buf, sizeof buf));
    T("read.recv-unconnected", recv(s, buf, sizeof buf, MSG_DONTWAIT));
    NEED(l = our_listener("read", &lp));
    T("read.on-listener", read(l, buf, sizeof buf));

    int a;
    NEED(a = conn_out("read", 1, NULL));
    T("read.dontwait-empty", recv(a, buf, sizeof buf, MSG_DONTWAIT));
    T("read.zero-len-empty", read(a, buf, 0));
    T("read.recv-zero-len-dontwait-empty", recv(a, buf, 0, MSG_DONTWAIT));
    T("read.null-zero-len", read(a, g_null, 0));

    /* Partial reads: 100 bytes read as 30 then 70. */
    pc(OP_SENDPAT, 1, 100, 11, NULL, 0);
    pline("read.peer-send-100", "hash-ok=%s", yesno(PR.hash == pat_hash(0, 100, 11)));
    wait_ev("read.ready-100", a, POLLIN, 2000);
    msleep(20);
    unsigned char ex[100];
    fill(ex, 100, 0, 11);
    TD("read.partial-30", read(a, buf, 30), "%s,match=%s", hexs(buf, R), yesno(R == 30 && !memcmp(buf, ex, 30)));
    TD("read.partial-70", read(a, buf, sizeof buf), "%s,match=%s", hexs(buf, R),
       yesno(R == 70 && !memcmp(buf, ex + 30, 70)));

    /* MSG_PEEK leaves the data for the next read. */
    psends(1, "hello world");
    pline("read.peer-send-hello", "-");
    wait_ev("read.ready-hello", a, POLLIN, 2000);
    msleep(20);
    TD("read.peek-5", recv(a, buf, 5, MSG_PEEK), "%s", hexs(buf, R));
    TD("read.peek-all", recv(a, buf, sizeof buf, MSG_PEEK), "%s", hexs(buf, R));
    TD("read.after-peek", read(a, buf, sizeof buf), "%s", hexs(buf, R));

    /* Zero-length reads do not consume. */
    psends(1, "z");
    wait_ev("read.ready-z", a, POLLIN, 2000);
    T("read.zero-len-with-data", read(a, buf, 0));
    TD("read.z", read(a, buf, sizeof buf), "%s", hexs(buf, R));

    /* readv over three buffers, one of them empty. */
    psends(1, "0123456789abcdefghijklmno");
    wait_ev("read.ready-readv", a, POLLIN, 2000);
    msleep(20);
    char v1[10], v2[1], v3[20];
    struct iovec iov[3] = {{v1, 10}, {v2, 0}, {v3, 20}};
    TD("read.readv", readv(a, iov, 3), "%s/%s", hexs(v1, R > 10 ? 10 : R), hexs(v3, R > 10 ? R - 10 : 0));
    T("read.readv-iovcnt-0", readv(a, iov, 0));
    T("read.readv-iovcnt-neg", readv(a, iov, g_neg));
    T("read.readv-iovcnt-huge", readv(a, iov, g_iovmax1));

    /* recvfrom on a stream socket: the address is not filled in (length 0). */
    psends(1, "from");
    wait_ev("read.ready-from", a, POLLIN, 2000);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    socklen_t sl = sizeof sa;
    TD("read.recvfrom", recvfrom(a, buf, sizeof buf, 0, SA(&sa), &sl), "%s,addrlen=%u", hexs(buf, R), (unsigned)sl);
    psends(1, "f2");
    wait_ev("read.ready-f2", a, POLLIN, 2000);
    TD("read.recvfrom-null-addr", recvfrom(a, buf, sizeof buf, 0, NULL, NULL), "%s", hexs(buf, R));

    /* recvmsg with two buffers and a name. */
    psends(1, "0123456789");
    wait_ev("read.ready-msg", a, POLLIN, 2000);
    msleep(20);
    char m1[4], m2[16];
    struct iovec miov[2] = {{m1, 4}, {m2, 16}};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = miov;
    mh.msg_iovlen = 2;
    mh.msg_name = &sa;
    mh.msg_namelen = sizeof sa;
    TD("read.recvmsg-peek", recvmsg(a, &mh, MSG_PEEK), "%s/%s,flags=0x%x", hexs(m1, R > 4 ? 4 : R),
       hexs(m2, R > 4 ? R - 4 : 0), (unsigned)mh.msg_flags);
    mh.msg_namelen = sizeof sa;
    mh.msg_flags = -1;
    TD("read.recvmsg", recvmsg(a, &mh, 0), "%s/%s,flags=0x%x,namelen=%u", hexs(m1, R > 4 ? 4 : R),
       hexs(m2, R > 4 ? R - 4 : 0), (unsigned)mh.msg_flags, (unsigned)mh.msg_namelen);

    /* MSG_WAITALL waits for the whole length across two sends. */
    psends(1, "aaaaaaaaaa");
    psend(OP_SLEEP_SEND, 1, 200, 0, "bbbbbbbbbb", 10);
    TD("read.waitall-20", recv(a, buf, 20, MSG_WAITALL), "%s", hexs(buf, R));
    pwait();
    pline("read.waitall-peer-late-send", "-");

    /* Blocking read wakes up when data arrives later. */
    psend(OP_SLEEP_SEND, 1, 150, 0, "late", 4);
    TD("read.blocking-wakeup", read(a, buf, sizeof buf), "%s", hexs(buf, R));
    pwait();

    /* MSG_WAITALL stops at EOF; reads after EOF return 0, repeatedly, in every form. */
    psends(1, "12345");
    pc(OP_SHUTDOWN, 1, SHUT_WR, 0, NULL, 0);
    pline("read.peer-shutdown-wr", "-");
    TD("read.waitall-eof", recv(a, buf, 20, MSG_WAITALL), "%s", hexs(buf, R));
    TD("read.eof-1", read(a, buf, sizeof buf), "%s", hexs(buf, R));
    TD("read.eof-2", read(a, buf, sizeof buf), "%s", hexs(buf, R));
    TD("read.eof-recv", recv(a, buf, sizeof buf, 0), "%s", hexs(buf, R));
    TD("read.eof-dontwait", recv(a, buf, sizeof buf, MSG_DONTWAIT), "%s", hexs(buf, R));
    TD("read.eof-readv", readv(a, iov, 3), "%s", hexs(v1, R));
    mh.msg_namelen = sizeof sa;
    TD("read.eof-recvmsg", recvmsg(a, &mh, 0), "flags=0x%x", (unsigned)mh.msg_flags);
    TD("read.eof-peek", recv(a, buf, sizeof buf, MSG_PEEK), "%s", hexs(buf, R));
    wait_ev("read.eof-poll", a, POLLIN | POLLOUT | POLLRDHUP, 0);
    qclose(a);
    qclose(s);
    qclose(l);
}

static void sc_write(void)
{
    char buf[256];
    int a;
    NEED(a = conn_out("write", 1, NULL));
    /* What the kernel accepted, in order; the peer must receive exactly that. */
    char acc[64] = "";
#define WR(name, expr, text) do { DO(expr); rep(name, R, E, NULL); if (R > 0) strncat(acc, text, (size_t)R); } while (0)
    WR("write.write", write(a, "abcde", 5), "abcde");
    struct iovec iov[3] = {{"ab", 2}, {"", 0}, {"cde", 3}};
    WR("write.writev", writev(a, iov, 3), "abcde");
    WR("write.send", send(a, "fgh", 3, 0), "fgh");
    WR("write.sendto-null-addr", sendto(a, "ij", 2, 0, NULL, 0), "ij");
    struct sockaddr_in other = lo(9);
    WR("write.sendto-addr-on-connected", sendto(a, "kl", 2, 0, SA(&other), sizeof other), "kl");
    struct iovec miov[2] = {{"mn", 2}, {"op", 2}};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = miov;
    mh.msg_iovlen = 2;
    WR("write.sendmsg", sendmsg(a, &mh, 0), "mnop");
    mh.msg_name = &other;
    mh.msg_namelen = sizeof other;
    WR("write.sendmsg-name-on-connected", sendmsg(a, &mh, 0), "mnop");
    mh.msg_name = NULL;
    mh.msg_namelen = 0;
    WR("write.zero", write(a, buf, 0), "");
    WR("write.send-zero", send(a, buf, 0, 0), "");
    WR("write.writev-iovcnt-0", writev(a, iov, 0), "");
    WR("write.send-more", send(a, "qr", 2, MSG_MORE), "qr");
    WR("write.send-after-more", send(a, "st", 2, 0), "st");
    WR("write.send-dontwait", send(a, "uv", 2, MSG_DONTWAIT), "uv");
#undef WR
    size_t total = strlen(acc);
    pc(OP_RECVN, 1, (int)total, 0, NULL, 0);
    pline("write.peer-receives", "n=%ld,match=%s", PR.rc, yesno(PR.hash == fnv(FNV0, acc, total)));
    T("write.writev-iovcnt-neg", writev(a, iov, g_neg));
    T("write.writev-iovcnt-huge", writev(a, iov, g_iovmax1));
    pc(OP_RECV_DONTWAIT, 1, 0, 0, NULL, 0);
    pline("write.peer-nothing-more", NULL);

    /* Writing on an unconnected TCP socket: EPIPE, with SIGPIPE unless MSG_NOSIGNAL. */
    on_signal(SIGPIPE, count_pipe, true);
    g_sigpipe = 0;
    int u;
    TF("write.unconnected-socket", u = socket(AF_INET, SOCK_STREAM, 0));
    TD("write.unconnected-nosignal", send(u, "x", 1, MSG_NOSIGNAL), "sigpipe=%d", (int)g_sigpipe);
    TD("write.unconnected-write", write(u, "x", 1), "sigpipe=%d", (int)g_sigpipe);

    qclose(a);
    qclose(u);
}

static void sc_write_large(void)
{
    int a;
    NEED(a = conn_out("write-large", 1, NULL));
    /* 8 MiB in one blocking write completes fully while the peer drains. */
    unsigned char *big = malloc(BIG);
    if (!big)
        harness_fail("malloc");
    fill(big, BIG, 0, 21);
    psend(OP_RECVN, 1, (int)BIG, 0, NULL, 0);
    T("write.large-8MiB", write(a, big, BIG));
    pwait();
    pline("write.large-peer", "n=%ld,match=%s", PR.rc, yesno(PR.hash == fnv(FNV0, big, BIG)));
    psend(OP_RECVN, 1, (int)BIG, 0, NULL, 0);
    struct iovec biov[2] = {{big, BIG / 2}, {big + BIG / 2, BIG / 2}};
    T("write.large-writev", writev(a, biov, 2));
    pwait();
    pline("write.large-writev-peer", "n=%ld,match=%s", PR.rc, yesno(PR.hash == fnv(FNV0, big, BIG)));
    psend(OP_RECVN, 1, (int)BIG, 0, NULL, 0);
    T("write.large-send", send(a, big, BIG, 0));
    pwait();
    pline("write.large-send-peer", "n=%ld,match=%s", PR.rc, yesno(PR.hash == fnv(FNV0, big, BIG)));
    free(big);
    qclose(a);
}

static void sc_write_epipe(void)
{
    char buf[64];
    int a;
    NEED(a = conn_out("write-epipe", 1, NULL));
    unsigned char *big = malloc(65536);
    if (!big)
        harness_fail("malloc");
    fill(big, 65536, 0, 21);

    /* Non-blocking: fill until EAGAIN; the peer then receives exactly what was accepted. */
    set_nonblock(a, true);
    long sent = 0;
    int e = 0;
    uint64_t h = FNV0;   /* of exactly what each write accepted (a partial write may come anywhere) */
    for (int i = 0; i < 4096; i++) {
        ssize_t w = write(a, big, 65536);
        if (w < 0) {
            e = errno;
            break;
        }
        h = fnv(h, big, (size_t)w);
        sent += w;
    }
    rep("write.nonblock-fill", sent > 0 ? 0 : -1, e, "stopped-by=%s,some=%s", ename(e), yesno(sent > 0));
    psend(OP_RECVN, 1, (int)sent, 0, NULL, 0);
    wait_ev("write.nonblock-poll-out", a, POLLOUT, 3000);
    pwait();
    rep("write.nonblock-peer", PR.rc == sent ? 0 : PR.rc, PR.err, "all=%s,match=%s", yesno(PR.rc == sent),
        yesno(PR.hash == h));
    set_nonblock(a, false);

    /* Peer closed: the first write is accepted (and answered by RST), then EPIPE. */
    pc(OP_CLOSE, 1, 0, 0, NULL, 0);
    pline("write.peer-close", "-");
    TD("write.read-eof", read(a, buf, sizeof buf), "%s", hexs(buf, R));
    T("write.after-close-first", send(a, "x", 1, MSG_NOSIGNAL));
    wait_ev("write.wait-rst", a, 0, 2000);
    g_sigpipe = 0;
    TD("write.epipe-nosignal", send(a, "y", 1, MSG_NOSIGNAL), "sigpipe=%d", (int)g_sigpipe);
    TD("write.epipe-write", write(a, "z", 1), "sigpipe=%d", (int)g_sigpipe);
    struct iovec iov[3] = {{"ab", 2}, {"", 0}, {"cde", 3}};
    TD("write.epipe-writev", writev(a, iov, 3), "sigpipe=%d", (int)g_sigpipe);
    struct iovec miov[2] = {{"mn", 2}, {"op", 2}};
    TD("write.epipe-sendmsg-nosignal", sendmsg(a, &(struct msghdr){.msg_iov = miov, .msg_iovlen = 2}, MSG_NOSIGNAL),
       "sigpipe=%d", (int)g_sigpipe);
    free(big);
    qclose(a);
}

static void sc_sendfile(void)
{
    int f = mkfile(10000, 7), a, p[2];
    NEED(a = conn_out("sendfile", 1, NULL));
    off_t off = 100;
    TD("sendfile.offset", sendfile(a, f, &off, 5000), "off=%ld,pos=%ld", (long)off, (long)lseek(f, 0, SEEK_CUR));
    pc(OP_RECVN, 1, 5000, 0, NULL, 0);
    pline("sendfile.offset-peer", "n=%ld,match=%s", PR.rc, yesno(PR.hash == pat_hash(100, 5000, 7)));
    lseek(f, 0, SEEK_SET);
    TD("sendfile.null-offset", sendfile(a, f, NULL, 3000), "pos=%ld", (long)lseek(f, 0, SEEK_CUR));
    pc(OP_RECVN, 1, 3000, 0, NULL, 0);
    pline("sendfile.null-offset-peer", "n=%ld,match=%s", PR.rc, yesno(PR.hash == pat_hash(0, 3000, 7)));
    TD("sendfile.null-offset-continues", sendfile(a, f, NULL, 1000), "pos=%ld", (long)lseek(f, 0, SEEK_CUR));
    pc(OP_RECVN, 1, 1000, 0, NULL, 0);
    pline("sendfile.continues-peer", "n=%ld,match=%s", PR.rc, yesno(PR.hash == pat_hash(3000, 1000, 7)));
    off = 0;
    TD("sendfile.count-0", sendfile(a, f, &off, 0), "off=%ld", (long)off);
    off = 10000;
    TD("sendfile.at-eof", sendfile(a, f, &off, 100), "off=%ld", (long)off);
    off = 9000;
    TD("sendfile.past-eof", sendfile(a, f, &off, 5000), "off=%ld", (long)off);
    pc(OP_RECVN, 1, 1000, 0, NULL, 0);
    pline("sendfile.past-eof-peer", "n=%ld,match=%s", PR.rc, yesno(PR.hash == pat_hash(9000, 1000, 7)));
    off = 0;
    T("sendfile.bad-in", sendfile(a, -1, &off, 10));
    T("sendfile.bad-out", sendfile(-1, f, &off, 10));
    mkpipe(p);
    psends(1, "sf");
    wait_ev("sendfile.in-socket-ready", a, POLLIN, 2000);
    msleep(20);
    set_nonblock(a, true);
    T("sendfile.in-socket", sendfile(p[1], a, NULL, 10));
    set_nonblock(a, false);
    char sb[8];
    set_nonblock(p[0], true);
    TD("sendfile.in-socket-pipe", read(p[0], sb, sizeof sb), "%s", hexs(sb, R));
    TD("sendfile.in-socket-left", recv(a, sb, sizeof sb, MSG_DONTWAIT), "%s", hexs(sb, R));
    int wo = open("/dev/null", O_WRONLY);
    fdcheck(wo);
    T("sendfile.in-writeonly", sendfile(a, wo, NULL, 10));
    off = -1;
    T("sendfile.negative-offset", sendfile(a, f, &off, 10));

    /* 4 MiB from a file while the peer drains. */
    int g = mkfile(4u << 20, 9);
    off = 0;
    psend(OP_RECVN, 1, 4 << 20, 0, NULL, 0);
    long done = 0;
    int e = 0;
    while (done < (4 << 20)) {
        ssize_t n = sendfile(a, g, &off, (size_t)((4 << 20) - done));
        if (n <= 0) {
            e = n < 0 ? errno : 0;
            break;
        }
        done += n;
    }
    rep("sendfile.large", done == (4 << 20) ? done : -1, e, "off=%ld", (long)off);
    pwait();
    pline("sendfile.large-peer", "n=%ld,match=%s", PR.rc, yesno(PR.hash == pat_hash(0, 4u << 20, 9)));
    int fs[] = {f, g, a, p[0], p[1], wo};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        qclose(fs[i]);
}

static void opt_get(const char *name, int fd, int level, int opt)
{
    int v = -77;
    socklen_t l = sizeof v;
    TD(name, getsockopt(fd, level, opt, &v, &l), "val=%d,len=%u", R == 0 ? v : -77, (unsigned)l);
}

static void sc_sockopt(void)
{
    int s, u, one = 1, zero = 0, p[2];
    TF("sockopt.tcp", s = socket(AF_INET, SOCK_STREAM, 0));
    TF("sockopt.udp", u = socket(AF_INET, SOCK_DGRAM, 0));
    mkpipe(p);
    opt_get("sockopt.reuseaddr-initial", s, SOL_SOCKET, SO_REUSEADDR);
    T("sockopt.reuseaddr-set", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    opt_get("sockopt.reuseaddr-get", s, SOL_SOCKET, SO_REUSEADDR);
    int seven = 7;
    T("sockopt.reuseaddr-set-7", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &seven, sizeof seven));
    opt_get("sockopt.reuseaddr-get-normalised", s, SOL_SOCKET, SO_REUSEADDR);
    T("sockopt.reuseaddr-clear", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof zero));
    opt_get("sockopt.reuseaddr-cleared", s, SOL_SOCKET, SO_REUSEADDR);
    opt_get("sockopt.keepalive-initial", s, SOL_SOCKET, SO_KEEPALIVE);
    T("sockopt.keepalive-set", setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
    opt_get("sockopt.keepalive-get", s, SOL_SOCKET, SO_KEEPALIVE);
    int want = 65536, v = 0;
    socklen_t l = sizeof v;
    T("sockopt.rcvbuf-set", setsockopt(s, SOL_SOCKET, SO_RCVBUF, &want, sizeof want));
    TD("sockopt.rcvbuf-get", getsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, &l), "ge-set=%s,len=%u", yesno(v >= want),
       (unsigned)l);
    l = sizeof v;
    T("sockopt.sndbuf-set", setsockopt(s, SOL_SOCKET, SO_SNDBUF, &want, sizeof want));
    TD("sockopt.sndbuf-get", getsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, &l), "ge-set=%s,len=%u", yesno(v >= want),
       (unsigned)l);
    opt_get("sockopt.error", s, SOL_SOCKET, SO_ERROR);
    opt_get("sockopt.type-tcp", s, SOL_SOCKET, SO_TYPE);
    opt_get("sockopt.type-udp", u, SOL_SOCKET, SO_TYPE);
    opt_get("sockopt.domain", s, SOL_SOCKET, SO_DOMAIN);
    opt_get("sockopt.protocol-tcp", s, SOL_SOCKET, SO_PROTOCOL);
    opt_get("sockopt.protocol-udp", u, SOL_SOCKET, SO_PROTOCOL);
    opt_get("sockopt.acceptconn", s, SOL_SOCKET, SO_ACCEPTCONN);
    T("sockopt.type-set", setsockopt(s, SOL_SOCKET, SO_TYPE, &one, sizeof one));
    opt_get("sockopt.nodelay-initial", s, IPPROTO_TCP, TCP_NODELAY);
    T("sockopt.nodelay-set", setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    opt_get("sockopt.nodelay-get", s, IPPROTO_TCP, TCP_NODELAY);
    struct linger lg = {1, 5}, lgo;
    T("sockopt.linger-set", setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    memset(&lgo, 0, sizeof lgo);
    l = sizeof lgo;
    TD("sockopt.linger-get", getsockopt(s, SOL_SOCKET, SO_LINGER, &lgo, &l), "onoff=%d,linger=%d,len=%u",
       lgo.l_onoff, lgo.l_linger, (unsigned)l);
    T("sockopt.linger-short", setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, 4));
    int tos = 0x10;
    T("sockopt.ip-tos-set", setsockopt(s, IPPROTO_IP, IP_TOS, &tos, sizeof tos));
    opt_get("sockopt.ip-tos-get", s, IPPROTO_IP, IP_TOS);
    T("sockopt.broadcast-set-udp", setsockopt(u, SOL_SOCKET, SO_BROADCAST, &one, sizeof one));
    opt_get("sockopt.broadcast-get-udp", u, SOL_SOCKET, SO_BROADCAST);
    opt_get("sockopt.unknown-get", s, SOL_SOCKET, 9999);
    T("sockopt.unknown-set", setsockopt(s, SOL_SOCKET, 9999, &one, sizeof one));
    opt_get("sockopt.unknown-tcp-get", s, IPPROTO_TCP, 9999);
    T("sockopt.unknown-tcp-set", setsockopt(s, IPPROTO_TCP, 9999, &one, sizeof one));
    opt_get("sockopt.unknown-level-get", s, 9999, 1);
    T("sockopt.unknown-level-set", setsockopt(s, 9999, 1, &one, sizeof one));
    T("sockopt.tcp-opt-on-udp", setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    T("sockopt.set-short-len", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, 2));
    T("sockopt.set-zero-len", setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, 0));
    T("sockopt.nodelay-short-len", setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, 2));
    v = -77;
    l = (socklen_t)-1;
    T("sockopt.get-negative-len", getsockopt(s, SOL_SOCKET, SO_REUSEADDR, &v, &l));
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    unsigned char sb[4] = {0xee, 0xee, 0xee, 0xee};
    l = 2;
    TD("sockopt.get-short-len", getsockopt(s, SOL_SOCKET, SO_REUSEADDR, sb, &l), "len=%u,bytes=%s", (unsigned)l,
       hexs(sb, 4));
    l = 0;
    TD("sockopt.get-zero-len", getsockopt(s, SOL_SOCKET, SO_REUSEADDR, sb, &l), "len=%u", (unsigned)l);
    memset(sb, 0xee, 4);
    l = 2;
    TD("sockopt.nodelay-get-short-len", getsockopt(s, IPPROTO_TCP, TCP_NODELAY, sb, &l), "len=%u,bytes=%s",
       (unsigned)l, hexs(sb, 4));
    T("sockopt.set-null-val", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, g_null, sizeof(int)));
    l = sizeof v;
    T("sockopt.get-null-val", getsockopt(s, SOL_SOCKET, SO_REUSEADDR, g_null, &l));
    T("sockopt.get-null-len", getsockopt(s, SOL_SOCKET, SO_REUSEADDR, &v, g_null));
    l = sizeof v;
    T("sockopt.get-badfd", getsockopt(-1, SOL_SOCKET, SO_TYPE, &v, &l));
    T("sockopt.set-badfd", setsockopt(-1, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    l = sizeof v;
    T("sockopt.get-pipe", getsockopt(p[0], SOL_SOCKET, SO_TYPE, &v, &l));
    T("sockopt.set-pipe", setsockopt(p[0], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    qclose(s);
    qclose(u);
    qclose(p[0]);
    qclose(p[1]);
}

static void sc_sockopt_conn(void)
{
    int a, one = 1;
    NEED(a = conn_out("sockopt-conn", 1, NULL));
    opt_get("sockopt-conn.error", a, SOL_SOCKET, SO_ERROR);
    opt_get("sockopt-conn.acceptconn", a, SOL_SOCKET, SO_ACCEPTCONN);
    T("sockopt-conn.nodelay-set", setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    opt_get("sockopt-conn.nodelay-get", a, IPPROTO_TCP, TCP_NODELAY);
    T("sockopt-conn.keepalive-set", setsockopt(a, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
    opt_get("sockopt-conn.keepalive-get", a, SOL_SOCKET, SO_KEEPALIVE);
    opt_get("sockopt-conn.type", a, SOL_SOCKET, SO_TYPE);
    T("sockopt-conn.write", write(a, "ok", 2));
    pc(OP_RECVN, 1, 2, 0, NULL, 0);
    pline("sockopt-conn.peer", "n=%ld", PR.rc);
    /* An accepted socket carries the listener's options it inherits on Linux (here: nodelay, keepalive). */
    int l, lp;
    NEED(l = our_listener("sockopt-conn", &lp));
    setsockopt(l, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(l, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    pc(OP_CONNECT, 2, lp, 0, NULL, 0);
    int c;
    TF("sockopt-conn.accept", c = accept(l, NULL, NULL));
    opt_get("sockopt-conn.accepted-nodelay", c, IPPROTO_TCP, TCP_NODELAY);
    opt_get("sockopt-conn.accepted-keepalive", c, SOL_SOCKET, SO_KEEPALIVE);
    qclose(a);
    qclose(l);
    qclose(c);
}

static void sc_names(void)
{
    int s, p[2];
    mkpipe(p);
    struct sockaddr_in n;
    socklen_t nl = sizeof n;
    TF("names.socket", s = socket(AF_INET, SOCK_STREAM, 0));
    memset(&n, 0xee, sizeof n);
    TD("names.getsockname-unbound", getsockname(s, SA(&n), &nl), "%s", addrs(&n, nl));
    nl = sizeof n;
    T("names.getpeername-unconnected", getpeername(s, SA(&n), &nl));
    unsigned char small[16];
    memset(small, 0xee, sizeof small);
    nl = 4;
    TD("names.getsockname-truncated", getsockname(s, SA(small), &nl), "len=%u,family=%u,untouched=%s",
       (unsigned)nl, (unsigned)((struct sockaddr *)small)->sa_family, yesno(small[4] == 0xee));
    nl = sizeof n;
    T("names.getsockname-null-addr", getsockname(s, g_null, &nl));
    T("names.getsockname-null-len", getsockname(s, SA(&n), g_null));
    nl = sizeof n;
    T("names.getsockname-badfd", getsockname(-1, SA(&n), &nl));
    T("names.getsockname-pipe", getsockname(p[0], SA(&n), &nl));
    T("names.getpeername-pipe", getpeername(p[0], SA(&n), &nl));
    int l, lp;
    NEED(l = our_listener("names", &lp));
    nl = sizeof n;
    T("names.getpeername-listener", getpeername(l, SA(&n), &nl));
    nl = sizeof n;
    TD("names.getsockname-listener", getsockname(l, SA(&n), &nl), "%s", addrs(&n, nl));

    int a, pl;
    NEED(a = conn_out("names", 1, &pl));
    nl = sizeof n;
    TD("names.getsockname-connected", getsockname(a, SA(&n), &nl), "%s", addrs(&n, nl));
    int mine = ntohs(n.sin_port);
    pc(OP_REMOTEPORT, 1, 0, 0, NULL, 0);
    rep("names.peer-port-match", 0, 0, "match=%s", yesno(PR.rc == mine));
    nl = sizeof n;
    TD("names.getpeername-connected", getpeername(a, SA(&n), &nl), "%s,match=%s", addrs(&n, nl),
       yesno(ntohs(n.sin_port) == pl));
    nl = 4;
    memset(small, 0xee, sizeof small);
    TD("names.getpeername-truncated", getpeername(a, SA(small), &nl), "len=%u,untouched=%s", (unsigned)nl,
       yesno(small[4] == 0xee));

    /* UDP: unbound name, then the implicit bind of a first sendto. */
    int u;
    TF("names.udp", u = socket(AF_INET, SOCK_DGRAM, 0));
    nl = sizeof n;
    TD("names.udp-unbound", getsockname(u, SA(&n), &nl), "%s", addrs(&n, nl));
    long pu = pc(OP_UDP_BIND, 2, 0, 0, NULL, 0);
    struct sockaddr_in ua = lo((int)pu);
    T("names.udp-sendto", sendto(u, "n", 1, 0, SA(&ua), sizeof ua));
    nl = sizeof n;
    TD("names.udp-autobound", getsockname(u, SA(&n), &nl), "%s", addrs(&n, nl));
    int uport = ntohs(n.sin_port);
    pc(OP_RECVFROM, 2, 0, 0, NULL, 0);
    pline("names.udp-peer-recv", "%s,src-match=%s", hexs(PR.data, PR.len), yesno(PR.aux == uport));

    /* getpeername survives the peer's close (CLOSE_WAIT), not a reset. */
    char buf[16];
    pc(OP_CLOSE, 1, 0, 0, NULL, 0);
    TD("names.peer-closed-read", read(a, buf, sizeof buf), "%s", hexs(buf, R));
    nl = sizeof n;
    TD("names.getpeername-close-wait", getpeername(a, SA(&n), &nl), "%s", addrs(&n, nl));
    int b;
    NEED(b = conn_out("names.b", 3, NULL));
    pc(OP_RST, 3, 0, 0, NULL, 0);
    pline("names.peer-rst", "-");
    wait_ev("names.wait-rst", b, 0, 2000);
    nl = sizeof n;
    T("names.getpeername-after-rst", getpeername(b, SA(&n), &nl));
    nl = sizeof n;
    TD("names.getsockname-after-rst", getsockname(b, SA(&n), &nl), "%s", addrs(&n, nl));
    int fs[] = {s, l, a, u, b, p[0], p[1]};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        qclose(fs[i]);
}

static void sc_fcntl(void)
{
    char buf[64];
    int a;
    NEED(a = conn_out("fcntl", 1, NULL));
    TD("fcntl.getfl", fcntl(a, F_GETFL), "%s", flstr(R));
    T("fcntl.setfl-nonblock", fcntl(a, F_SETFL, O_RDWR | O_NONBLOCK));
    TD("fcntl.getfl-nonblock", fcntl(a, F_GETFL), "%s", flstr(R));
    T("fcntl.nonblock-read", read(a, buf, sizeof buf));
    T("fcntl.setfl-clear", fcntl(a, F_SETFL, 0));
    TD("fcntl.getfl-cleared", fcntl(a, F_GETFL), "%s", flstr(R));
    T("fcntl.setfl-append", fcntl(a, F_SETFL, O_APPEND));
    TD("fcntl.getfl-append", fcntl(a, F_GETFL), "%s", flstr(R));
    fcntl(a, F_SETFL, 0);
    TD("fcntl.getfd", fcntl(a, F_GETFD), "%ld", R);
    T("fcntl.setfd-cloexec", fcntl(a, F_SETFD, FD_CLOEXEC));
    TD("fcntl.getfd-cloexec", fcntl(a, F_GETFD), "%ld", R);
    T("fcntl.setfd-clear", fcntl(a, F_SETFD, 0));
    TD("fcntl.getfd-cleared", fcntl(a, F_GETFD), "%ld", R);

    int d;
    DO(d = fcntl(a, F_DUPFD, 100));
    repfd("fcntl.dupfd-100", R, E, "ge100=%s,cloexec=%d", yesno(R >= 100), getfd(d));
    T("fcntl.dupfd-write", write(d, "dup1", 4));
    pc(OP_RECVN, 1, 4, 0, NULL, 0);
    pline("fcntl.dupfd-peer", "n=%ld,match=%s", PR.rc, yesno(PR.hash == fnv(FNV0, "dup1", 4)));
    psends(1, "back");
    TD("fcntl.dupfd-read", read(d, buf, sizeof buf), "%s", hexs(buf, R));
    int dc;
    DO(dc = fcntl(a, F_DUPFD_CLOEXEC, 0));
    repfd("fcntl.dupfd-cloexec", R, E, "dup-cloexec=%d,orig-cloexec=%d", getfd(dc), getfd(a));
    T("fcntl.dupfd-cloexec-write", write(dc, "dup2", 4));
    pc(OP_RECVN, 1, 4, 0, NULL, 0);
    pline("fcntl.dupfd-cloexec-peer", "n=%ld,match=%s", PR.rc, yesno(PR.hash == fnv(FNV0, "dup2", 4)));
    /* O_NONBLOCK belongs to the open file description, shared by duplicates; FD_CLOEXEC does not. */
    T("fcntl.dup-setfl-nonblock", fcntl(d, F_SETFL, O_NONBLOCK));
    TD("fcntl.orig-sees-nonblock", fcntl(a, F_GETFL), "%s", flstr(R));
    T("fcntl.orig-read-nonblock", read(a, buf, sizeof buf));
    fcntl(a, F_SETFL, 0);
    TD("fcntl.dup-sees-cleared", fcntl(d, F_GETFL), "%s", flstr(R));
    T("fcntl.dupfd-negative", fcntl(a, F_DUPFD, -1));
    T("fcntl.bad-cmd", fcntl(a, 9999));
    T("fcntl.getfl-badfd", fcntl(-1, F_GETFL));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    close(c);
    T("fcntl.getfl-closed", fcntl(c, F_GETFL));
    int u, up;
    NEED(u = our_udp("fcntl", &up));
    TD("fcntl.udp-getfl", fcntl(u, F_GETFL), "%s", flstr(R));
    T("fcntl.udp-setfl-nonblock", fcntl(u, F_SETFL, O_NONBLOCK));
    T("fcntl.udp-nonblock-recv", recv(u, buf, sizeof buf, 0));
    int l, lp;
    NEED(l = our_listener("fcntl", &lp));
    T("fcntl.listener-setfl-nonblock", fcntl(l, F_SETFL, O_NONBLOCK));
    TF("fcntl.listener-nonblock-accept", accept(l, NULL, NULL));
    int fs[] = {a, d, dc, u, l};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        qclose(fs[i]);
}

static void sc_ioctl(void)
{
    char buf[256];
    int a, n;
    NEED(a = conn_out("ioctl", 1, NULL));
    n = -77;
    TD("ioctl.fionread-empty", ioctl(a, FIONREAD, &n), "%d", n);
    pc(OP_SENDPAT, 1, 123, 3, NULL, 0);
    wait_ev("ioctl.ready", a, POLLIN, 2000);
    msleep(50);
    n = -77;
    TD("ioctl.fionread", ioctl(a, FIONREAD, &n), "%d", n);
    TD("ioctl.read-23", read(a, buf, 23), "n=%ld", R);
    n = -77;
    TD("ioctl.fionread-after-read", ioctl(a, FIONREAD, &n), "%d", n);
    n = -77;
    TD("ioctl.siocinq", ioctl(a, SIOCINQ, &n), "%d", n);
    int one = 1, zero = 0;
    T("ioctl.fionbio-on", ioctl(a, FIONBIO, &one));
    TD("ioctl.fionbio-getfl", fcntl(a, F_GETFL), "%s", flstr(R));
    TD("ioctl.fionbio-read", read(a, buf, sizeof buf), "n=%ld", R);
    T("ioctl.fionbio-read-empty", read(a, buf, sizeof buf));
    n = -77;
    TD("ioctl.fionread-drained", ioctl(a, FIONREAD, &n), "%d", n);
    T("ioctl.fionbio-off", ioctl(a, FIONBIO, &zero));
    TD("ioctl.fionbio-off-getfl", fcntl(a, F_GETFL), "%s", flstr(R));
    n = -77;
    TD("ioctl.siocoutq", ioctl(a, SIOCOUTQ, &n), "%d", n);
    T("ioctl.fionread-null", ioctl(a, FIONREAD, g_null));
    T("ioctl.bad-request", ioctl(a, 0x12345, &n));
    T("ioctl.tcgets-on-socket", ioctl(a, 0x5401 /* TCGETS */, buf));
    T("ioctl.badfd", ioctl(-1, FIONREAD, &n));
    int l, lp;
    NEED(l = our_listener("ioctl", &lp));
    T("ioctl.fionread-listener", ioctl(l, FIONREAD, &n));

    /* UDP: FIONREAD is the size of the next datagram. */
    int u, up;
    NEED(u = our_udp("ioctl", &up));
    n = -77;
    TD("ioctl.udp-fionread-empty", ioctl(u, FIONREAD, &n), "%d", n);
    pc(OP_UDP_BIND, 2, 0, 0, NULL, 0);
    char d10[10] = "0123456789", d20[20] = "abcdefghijklmnopqrst";
    pc(OP_SENDTO, 2, up, 0, d10, 10);
    pc(OP_SENDTO, 2, up, 0, d20, 20);
    pline("ioctl.udp-peer-send", "-");
    wait_ev("ioctl.udp-ready", u, POLLIN, 2000);
    msleep(50);
    n = -77;
    TD("ioctl.udp-fionread", ioctl(u, FIONREAD, &n), "%d", n);
    TD("ioctl.udp-recv-1", recv(u, buf, sizeof buf, 0), "%s", hexs(buf, R));
    n = -77;
    TD("ioctl.udp-fionread-2", ioctl(u, FIONREAD, &n), "%d", n);
    qclose(a);
    qclose(l);
    qclose(u);
}

static void sc_dup(void)
{
    char buf[64];
    int a, d;
    NEED(a = conn_out("dup", 1, NULL));
    TF("dup.dup", d = dup(a));
    T("dup.write-via-dup", write(d, "d1", 2));
    pc(OP_RECVN, 1, 2, 0, NULL, 0);
    pline("dup.peer-recv", "n=%ld", PR.rc);
    psends(1, "r1");
    TD("dup.read-via-dup", read(d, buf, sizeof buf), "%s", hexs(buf, R));
    xclose("dup.close-original", a);
    T("dup.write-after-close-original", write(d, "d2", 2));
    pc(OP_RECVN, 1, 2, 0, NULL, 0);
    pline("dup.peer-recv-2", "n=%ld", PR.rc);
    pc(OP_RECV_DONTWAIT, 1, 0, 0, NULL, 0);
    pline("dup.peer-no-eof-yet", NULL);
    xclose("dup.close-dup", d);
    pc(OP_RECV, 1, 64, 0, NULL, 0);
    pline("dup.peer-eof", NULL);
}

static void sc_dup2(void)
{
    struct sockaddr_in n;
    socklen_t nl;
    /* dup2 onto itself; onto a pipe's descriptor; then close the original. */
    int b, p[2];
    NEED(b = conn_out("dup.b", 2, NULL));
    DO(dup2(b, b));
    repsame("dup.dup2-same", R, E, b, NULL);
    mkpipe(p);
    DO(dup2(b, p[0]));
    repsame("dup.dup2-onto-pipe", R, E, p[0], NULL);
    T("dup.write-via-dup2", write(p[0], "via", 3));
    pc(OP_RECVN, 2, 3, 0, NULL, 0);
    pline("dup.dup2-peer", "n=%ld", PR.rc);
    xclose("dup.dup2-close-original", b);
    T("dup.dup2-still-works", write(p[0], "still", 5));
    pc(OP_RECVN, 2, 5, 0, NULL, 0);
    pline("dup.dup2-peer-2", "n=%ld", PR.rc);
    nl = sizeof n;
    TD("dup.dup2-getpeername", getpeername(p[0], SA(&n), &nl), "%s", addrs(&n, nl));
    xclose("dup.dup2-close-last", p[0]);
    pc(OP_RECV, 2, 64, 0, NULL, 0);
    pline("dup.dup2-peer-eof", NULL);

    qclose(p[1]);
}

static void sc_dup2_socket(void)
{
    char buf[64];
    /* dup2 of one socket onto another closes the second (its peer sees EOF). */
    int c, e;
    NEED(c = conn_out("dup.c", 3, NULL));
    NEED(e = conn_out("dup.e", 4, NULL));
    DO(dup2(c, e));
    repsame("dup.dup2-socket-onto-socket", R, E, e, NULL);
    pc(OP_RECV, 4, 64, 0, NULL, 0);
    pline("dup.replaced-socket-peer-eof", NULL);
    T("dup.write-via-replaced", write(e, "x", 1));
    pc(OP_RECVN, 3, 1, 0, NULL, 0);
    pline("dup.replaced-peer-recv", "n=%ld", PR.rc);
    /* A kernel pipe dup2'ed onto one of our numbers: that number is now the pipe. */
    int q[2];
    mkpipe(q);
    DO(dup2(q[1], c));
    repsame("dup.dup2-pipe-onto-socket", R, E, c, NULL);
    T("dup.write-pipe-via-old-socket-number", write(c, "p", 1));
    TD("dup.pipe-read", read(q[0], buf, sizeof buf), "%s", hexs(buf, R));
    T("dup.socket-call-on-pipe-now", send(c, "p", 1, 0));
    pc(OP_RECV_DONTWAIT, 3, 0, 0, NULL, 0);
    pline("dup.socket-still-open-via-e", NULL);
    xclose("dup.close-e", e);
    pc(OP_RECV, 3, 64, 0, NULL, 0);
    pline("dup.peer-eof-after-last-ref", NULL);

    int fs[] = {q[0], q[1], c};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        qclose(fs[i]);
}

static void sc_dup3(void)
{
    /* dup3. */
    int f;
    NEED(f = conn_out("dup.f", 5, NULL));
    TF("dup.dup3-same", dup3(f, f, 0));
    TF("dup.dup3-bad-flags", dup3(f, 200, 0x1234));
    DO(dup3(f, 200, O_CLOEXEC));
    char cx[32];
    snprintf(cx, sizeof cx, "cloexec=%d", getfd(200));
    repsame("dup.dup3-cloexec", R, E, 200, cx);
    if (R == 200)
        fdcheck(200);
    T("dup.dup3-write", write(200, "3", 1));
    pc(OP_RECVN, 5, 1, 0, NULL, 0);
    pline("dup.dup3-peer", "n=%ld", PR.rc);
    TF("dup.dup-badfd", dup(-1));
    TF("dup.dup2-badfd", dup2(-1, 201));
    TF("dup.dup2-negative-new", dup2(f, -1));
    TF("dup.dup3-badfd", dup3(-1, 201, 0));

    qclose(f);
    qclose(200);
}

static void sc_dup_chain(void)
{
    struct sockaddr_in n;
    socklen_t nl;
    /* Chains closed out of order: the last reference still works, and its close ends the connection. */
    int g, d1, d2;
    NEED(g = conn_out("dup.g", 6, NULL));
    TF("dup.chain-1", d1 = dup(g));
    TF("dup.chain-2", d2 = dup(d1));
    xclose("dup.chain-close-middle", d1);
    xclose("dup.chain-close-first", g);
    T("dup.chain-write-last", write(d2, "L", 1));
    nl = sizeof n;
    TD("dup.chain-getpeername", getpeername(d2, SA(&n), &nl), "%s", addrs(&n, nl));
    pc(OP_RECVN, 6, 1, 0, NULL, 0);
    pline("dup.chain-peer", "n=%ld", PR.rc);
    xclose("dup.chain-close-last", d2);
    pc(OP_RECV, 6, 64, 0, NULL, 0);
    pline("dup.chain-peer-eof", NULL);
}

/* Every call on a closed descriptor: EBADF. Every socket call on a pipe, a file, an eventfd: ENOTSOCK. */
static void sc_badfd(void)
{
    int s, ep;
    char buf[16];
    struct sockaddr_in a = lo(1);
    socklen_t al = sizeof a;
    int v = 0;
    socklen_t vl = sizeof v;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    TF("badfd.epoll", ep = epoll_create1(0));
    int f = mkfile(100, 1);
    TF("badfd.socket", s = socket(AF_INET, SOCK_STREAM, 0));
    xclose("badfd.close", s);
    T("badfd.close-again", close(s));
    T("badfd.close-negative", close(-1));
    T("badfd.bind", bind(s, SA(&a), sizeof a));
    T("badfd.listen", listen(s, 1));
    TF("badfd.accept", accept(s, NULL, NULL));
    TF("badfd.accept4", accept4(s, NULL, NULL, SOCK_CLOEXEC));
    T("badfd.connect", connect(s, SA(&a), sizeof a));
    T("badfd.shutdown", shutdown(s, SHUT_RDWR));
    T("badfd.read", read(s, buf, sizeof buf));
    T("badfd.write", write(s, buf, sizeof buf));
    T("badfd.readv", readv(s, &iov, 1));
    T("badfd.writev", writev(s, &iov, 1));
    T("badfd.recv", recv(s, buf, sizeof buf, 0));
    T("badfd.send", send(s, buf, sizeof buf, MSG_NOSIGNAL));
    T("badfd.recvfrom", recvfrom(s, buf, sizeof buf, 0, SA(&a), &al));
    T("badfd.sendto", sendto(s, buf, sizeof buf, MSG_NOSIGNAL, SA(&a), sizeof a));
    T("badfd.recvmsg", recvmsg(s, &mh, 0));
    T("badfd.sendmsg", sendmsg(s, &mh, MSG_NOSIGNAL));
    T("badfd.getsockopt", getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &vl));
    T("badfd.setsockopt", setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &v, sizeof v));
    T("badfd.getsockname", getsockname(s, SA(&a), &al));
    T("badfd.getpeername", getpeername(s, SA(&a), &al));
    T("badfd.fcntl-getfl", fcntl(s, F_GETFL));
    T("badfd.fcntl-setfl", fcntl(s, F_SETFL, O_NONBLOCK));
    T("badfd.fcntl-dupfd", fcntl(s, F_DUPFD, 0));
    T("badfd.ioctl-fionread", ioctl(s, FIONREAD, &v));
    T("badfd.ioctl-fionbio", ioctl(s, FIONBIO, &v));
    TF("badfd.dup", dup(s));
    TF("badfd.dup2", dup2(s, 210));
    TF("badfd.dup3", dup3(s, 210, 0));
    T("badfd.sendfile-out", sendfile(s, f, NULL, 10));
    T("badfd.sendfile-in", sendfile(f, s, NULL, 10));
    struct epoll_event ev = {EPOLLIN, {.u64 = 1}};
    T("badfd.epoll-ctl-add", epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev));
    T("badfd.epoll-wait", epoll_wait(s, &ev, 1, 0));
    struct pollfd pf = {s, POLLIN, 0};
    TD("badfd.poll", poll(&pf, 1, 0), "%s", pollbits((unsigned)pf.revents));
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(s, &rs);
    struct timeval tv = {0, 0};
    T("badfd.select", select(s + 1, &rs, NULL, NULL, &tv));

    int p[2];
    mkpipe(p);
    int evf = eventfd(0, 0);
    fdcheck(evf);
    const struct { const char *kind; int fd; } ks[] = {{"pipe", p[0]}, {"file", f}, {"eventfd", evf}};
    for (size_t k = 0; k < 3; k++) {
        int x = ks[k].fd;
        char nm[64];
#define NS(call, expr) do { snprintf(nm, sizeof nm, "notsock.%s.%s", ks[k].kind, call); T(nm, expr); } while (0)
        al = sizeof a;
        vl = sizeof v;
        NS("bind", bind(x, SA(&a), sizeof a));
        NS("listen", listen(x, 1));
        NS("accept", accept(x, NULL, NULL));
        NS("accept4", accept4(x, NULL, NULL, 0));
        NS("connect", connect(x, SA(&a), sizeof a));
        NS("shutdown", shutdown(x, SHUT_RD));
        NS("recv", recv(x, buf, sizeof buf, MSG_DONTWAIT));
        NS("send", send(x, buf, sizeof buf, MSG_NOSIGNAL));
        NS("recvfrom", recvfrom(x, buf, sizeof buf, MSG_DONTWAIT, SA(&a), &al));
        NS("sendto", sendto(x, buf, sizeof buf, MSG_NOSIGNAL, SA(&a), sizeof a));
        NS("recvmsg", recvmsg(x, &mh, MSG_DONTWAIT));
        NS("sendmsg", sendmsg(x, &mh, MSG_NOSIGNAL));
        NS("getsockopt", getsockopt(x, SOL_SOCKET, SO_TYPE, &v, &vl));
        NS("setsockopt", setsockopt(x, SOL_SOCKET, SO_REUSEADDR, &v, sizeof v));
        NS("getsockname", getsockname(x, SA(&a), &al));
        NS("getpeername", getpeername(x, SA(&a), &al));
#undef NS
    }
    /* Ordinary calls on those kernel descriptors still work with the library loaded. */
    T("notsock.pipe-write", write(p[1], "pp", 2));
    TD("notsock.pipe-read", read(p[0], buf, sizeof buf), "%s", hexs(buf, R));
    TD("notsock.file-pread", pread(f, buf, 8, 0), "%s", hexs(buf, R));
    uint64_t one = 1;
    T("notsock.eventfd-write", write(evf, &one, sizeof one));
    int fs[] = {ep, f, p[0], p[1], evf};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        qclose(fs[i]);
}

static void sc_eintr(void)
{
    char buf[64];
    int a;
    NEED(a = conn_out("eintr", 1, NULL));
    eintr_arm(false, 150);
    TD("eintr.read-no-restart", read(a, buf, sizeof buf), "signals=%d", (int)g_sigalrm);
    eintr_disarm();
    eintr_arm(false, 150);
    TD("eintr.recv-no-restart", recv(a, buf, sizeof buf, 0), "signals=%d", (int)g_sigalrm);
    eintr_disarm();
    eintr_arm(false, 150);
    struct iovec iov = {buf, sizeof buf};
    TD("eintr.readv-no-restart", readv(a, &iov, 1), "signals=%d", (int)g_sigalrm);
    eintr_disarm();

    /* With SA_RESTART the read resumes and returns the data that arrives later. */
    psend(OP_SLEEP_SEND, 1, 500, 0, "late", 4);
    eintr_arm(true, 150);
    TD("eintr.read-restart", read(a, buf, sizeof buf), "%s,signals=%d", hexs(buf, R), (int)g_sigalrm);
    eintr_disarm();
    pwait();
    pline("eintr.peer-late-send", "-");

    /* MSG_WAITALL interrupted after part of the data: the part is returned. */
    psends(1, "12345");
    wait_ev("eintr.waitall-ready", a, POLLIN, 2000);
    eintr_arm(false, 150);
    TD("eintr.waitall-partial", recv(a, buf, 20, MSG_WAITALL), "%s,signals=%d", hexs(buf, R), (int)g_sigalrm);
    eintr_disarm();

    int l, lp;
    NEED(l = our_listener("eintr", &lp));
    eintr_arm(false, 150);
    TD("eintr.accept-no-restart", accept(l, NULL, NULL), "signals=%d", (int)g_sigalrm);
    eintr_disarm();
    psend(OP_SLEEP_CONNECT, 2, lp, 500, NULL, 0);
    eintr_arm(true, 150);
    int c;
    DO(c = accept(l, NULL, NULL));
    repfd("eintr.accept-restart", R, E, "signals=%d", (int)g_sigalrm);
    eintr_disarm();
    pwait();
    pline("eintr.peer-late-connect", "-");

    /* poll, select, epoll_wait are never restarted. */
    struct pollfd pf = {a, POLLIN, 0};
    eintr_arm(true, 150);
    TD("eintr.poll-restart-flag", poll(&pf, 1, 3000), "signals=%d", (int)g_sigalrm);
    eintr_disarm();
    fd_set rs;
    FD_ZERO(&rs);
    FD_SET(a, &rs);
    struct timeval tv = {3, 0};
    eintr_arm(true, 150);
    TD("eintr.select-restart-flag", select(a + 1, &rs, NULL, NULL, &tv), "signals=%d", (int)g_sigalrm);
    eintr_disarm();
    int ep = epoll_create1(0);
    fdcheck(ep);
    struct epoll_event ev = {EPOLLIN, {.u64 = 7}};
    epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev);
    eintr_arm(true, 150);
    TD("eintr.epoll-wait-restart-flag", epoll_wait(ep, &ev, 1, 3000), "signals=%d", (int)g_sigalrm);
    eintr_disarm();
    /* A signal blocked by epoll_pwait's mask does not interrupt it. */
    sigset_t blk;
    sigemptyset(&blk);
    sigaddset(&blk, SIGALRM);
    eintr_arm(false, 100);
    TD("eintr.epoll-pwait-masked", epoll_pwait(ep, &ev, 1, 400, &blk), "signals-during=%d", (int)g_sigalrm);
    msleep(10);
    rep("eintr.epoll-pwait-masked-after", 0, 0, "signals=%d", (int)g_sigalrm);
    eintr_disarm();
    int fs[] = {a, l, c, ep};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        qclose(fs[i]);
}

static void sc_udp(void)
{
    char buf[256];
    int u, up;
    NEED(u = our_udp("udp", &up));
    long pp = pportcall("udp.peer-bind", OP_UDP_BIND, 1);
    struct sockaddr_in pa = lo((int)pp), from;
    socklen_t fl;
    T("udp.sendto", sendto(u, "dgram1", 6, 0, SA(&pa), sizeof pa));
    pc(OP_RECVFROM, 1, 0, 0, NULL, 0);
    pline("udp.peer-recvfrom", "%s,src-match=%s", hexs(PR.data, PR.len), yesno(PR.aux == up));
    pc(OP_SENDTO, 1, up, 0, "reply1", 6);
    pline("udp.peer-sendto", "-");
    memset(&from, 0, sizeof from);
    fl = sizeof from;
    TD("udp.recvfrom", recvfrom(u, buf, sizeof buf, 0, SA(&from), &fl), "%s,from=%s,src-match=%s", hexs(buf, R),
       addrs(&from, fl), yesno(ntohs(from.sin_port) == pp));

    /* Boundaries are kept. */
    unsigned char d[64];
    fill(d, sizeof d, 0, 5);
    pc(OP_SENDTO, 1, up, 0, d, 10);
    pc(OP_SENDTO, 1, up, 0, d, 20);
    pc(OP_SENDTO, 1, up, 0, d, 30);
    pline("udp.peer-send-3", "-");
    TD("udp.boundary-1", recv(u, buf, sizeof buf, 0), "n=%ld", R);
    TD("udp.boundary-2", recv(u, buf, sizeof buf, 0), "n=%ld", R);
    TD("udp.boundary-3", recv(u, buf, sizeof buf, 0), "n=%ld", R);

    /* Truncation: the rest of the datagram is dropped; recvmsg flags it; MSG_TRUNC returns the real size. */
    pc(OP_SENDTO, 1, up, 0, d, 50);
    TD("udp.truncate-recv", recv(u, buf, 20, 0), "%s", hexs(buf, R));
    T("udp.truncate-rest-gone", recv(u, buf, sizeof buf, MSG_DONTWAIT));
    pc(OP_SENDTO, 1, up, 0, d, 50);
    struct iovec iov = {buf, 20};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_name = &from;
    mh.msg_namelen = sizeof from;
    TD("udp.recvmsg-trunc", recvmsg(u, &mh, 0), "flags=0x%x%s,name=%s", (unsigned)mh.msg_flags,
       (mh.msg_flags & MSG_TRUNC) ? "(TRUNC)" : "", addrs(&from, mh.msg_namelen));
    pc(OP_SENDTO, 1, up, 0, d, 50);
    TD("udp.recv-msg-trunc-flag", recv(u, buf, 20, MSG_TRUNC), "real-len=%ld", R);
    pc(OP_SENDTO, 1, up, 0, "peek", 4);
    TD("udp.peek", recv(u, buf, sizeof buf, MSG_PEEK), "%s", hexs(buf, R));
    TD("udp.after-peek", recv(u, buf, sizeof buf, 0), "%s", hexs(buf, R));
    T("udp.empty-dontwait", recvfrom(u, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL));
    set_nonblock(u, true);
    T("udp.empty-nonblock", recvfrom(u, buf, sizeof buf, 0, NULL, NULL));
    set_nonblock(u, false);
    wait_ev("udp.poll-empty", u, POLLIN | POLLOUT, 0);

    /* Largest datagram, and one byte more. */
    unsigned char *big = malloc(65508);
    fill(big, 65508, 0, 13);
    T("udp.sendto-max", sendto(u, big, 65507, 0, SA(&pa), sizeof pa));
    pc(OP_RECVFROM, 1, 0, 0, NULL, 0);
    pline("udp.peer-recv-max", "n=%ld,match=%s", PR.rc, yesno(PR.hash == fnv(FNV0, big, 65507)));
    T("udp.sendto-too-big", sendto(u, big, 65508, 0, SA(&pa), sizeof pa));
    free(big);

    T("udp.sendto-no-addr", sendto(u, "x", 1, 0, NULL, 0));
    T("udp.send-unconnected", send(u, "x", 1, 0));
    struct sockaddr_in bad = pa;
    bad.sin_family = AF_INET6;
    T("udp.sendto-bad-family", sendto(u, "x", 1, 0, SA(&bad), sizeof bad));
    T("udp.sendto-short-len", sendto(u, "x", 1, 0, SA(&pa), 4));
    pc(OP_SENDTO, 1, up, 0, "trunc", 5);
    unsigned char small[16];
    memset(small, 0xee, sizeof small);
    fl = 4;
    TD("udp.recvfrom-addrlen-truncated", recvfrom(u, buf, sizeof buf, 0, SA(small), &fl), "%s,len=%u,untouched=%s",
       hexs(buf, R), (unsigned)fl, yesno(small[4] == 0xee));

    /* Connected: send/recv without addresses; datagrams from others are filtered out. */
    T("udp.connect", connect(u, SA(&pa), sizeof pa));
    T("udp.send-connected", send(u, "c1", 2, 0));
    pc(OP_RECVFROM, 1, 0, 0, NULL, 0);
    pline("udp.peer-recv-connected", "%s", hexs(PR.data, PR.len));
    long op = pc(OP_UDP_BIND, 2, 0, 0, NULL, 0);
    pc(OP_SENDTO, 2, up, 0, "other", 5);
    pline("udp.other-sends", "-");
    pc(OP_SENDTO, 1, up, 0, "c2", 2);
    TD("udp.recv-connected", recv(u, buf, sizeof buf, 0), "%s", hexs(buf, R));
    T("udp.recv-connected-filtered", recv(u, buf, sizeof buf, MSG_DONTWAIT));
    struct sockaddr_in oa = lo((int)op);
    T("udp.sendto-other-while-connected", sendto(u, "o", 1, 0, SA(&oa), sizeof oa));
    pc(OP_RECVFROM, 2, 0, 0, NULL, 0);
    pline("udp.other-peer-recv", "%s", hexs(PR.data, PR.len));

    /* ICMP port unreachable turns into ECONNREFUSED on a connected socket. */
    int v, vp;
    NEED(v = our_udp("udp.v", &vp));
    long cp = pc(OP_UDP_BIND, 3, 0, 0, NULL, 0);
    pc(OP_CLOSE, 3, 0, 0, NULL, 0);
    struct sockaddr_in ca = lo((int)cp);
    T("udp.connect-closed-port", connect(v, SA(&ca), sizeof ca));
    T("udp.send-closed-port", send(v, "x", 1, 0));
    wait_ev("udp.wait-icmp", v, 0, 2000);
    T("udp.recv-refused", recv(v, buf, sizeof buf, MSG_DONTWAIT));
    T("udp.recv-after-refused", recv(v, buf, sizeof buf, MSG_DONTWAIT));
    qclose(u);
    qclose(v);
}

static void sc_poll(void)
{
    char buf[64];
    int a, b, p[2];
    NEED(a = conn_out("poll.a", 1, NULL));
    NEED(b = conn_out("poll.b", 2, NULL));
    mkpipe(p);
    write(p[1], "p", 1);
    struct pollfd f[3] = {{a, POLLIN, 0}, {p[0], POLLIN, 0}, {b, POLLIN, 0}};
    TD("poll.mix-in", poll(f, 3, 0), "a=%s,pipe=%s,b=%s", pollbits((unsigned)f[0].revents),
       pollbits((unsigned)f[1].revents), pollbits((unsigned)f[2].revents));
    psends(2, "b");
    wait_ev("poll.b-ready", b, POLLIN, 2000);
    for (int i = 0; i < 3; i++) {
        f[i].events = POLLIN | POLLOUT;
        f[i].revents = 0;
    }
    TD("poll.mix-inout", poll(f, 3, 0), "a=%s,pipe=%s,b=%s", pollbits((unsigned)f[0].revents),
       pollbits((unsigned)f[1].revents), pollbits((unsigned)f[2].revents));
    /* The pipe end is read only; the write end reports OUT. */
    struct pollfd g[4] = {{-1, POLLIN, 0x7f}, {p[1], POLLOUT, 0}, {a, POLLIN, 0}, {b, POLLIN, 0}};
    TD("poll.negative-fd-ignored", poll(g, 4, 0), "neg=%s,pipe-w=%s,a=%s,b=%s", pollbits((unsigned)g[0].revents),
       pollbits((unsigned)g[1].revents), pollbits((unsigned)g[2].revents), pollbits((unsigned)g[3].revents));
    int c = socket(AF_INET, SOCK_STREAM, 0);
    close(c);
    struct pollfd h[2] = {{c, POLLIN, 0}, {a, POLLOUT, 0}};
    TD("poll.closed-fd-nval", poll(h, 2, 0), "closed=%s,a=%s", pollbits((unsigned)h[0].revents),
       pollbits((unsigned)h[1].revents));
    struct pollfd one = {a, POLLIN, 0};
    TD("poll.timeout-0-nothing", poll(&one, 1, 0), "%s", pollbits((unsigned)one.revents));
    double t0 = now_ms();
    TD("poll.timeout-100-nothing", poll(&one, 1, 100), "waited=%s", yesno(now_ms() - t0 >= 90));
    t0 = now_ms();
    TD("poll.nfds-0", poll(NULL, 0, 50), "waited=%s", yesno(now_ms() - t0 >= 40));
    psend(OP_SLEEP_SEND, 1, 200, 0, "w", 1);
    one.revents = 0;
    TD("poll.blocking-wakeup", poll(&one, 1, 3000), "%s", pollbits((unsigned)one.revents));
    pwait();
    TD("poll.read-w", read(a, buf, sizeof buf), "%s", hexs(buf, R));

    /* A fresh socket, a listener with a pending connection. */
    int s;
    TF("poll.fresh-socket", s = socket(AF_INET, SOCK_STREAM, 0));
    wait_ev("poll.fresh", s, POLLIN | POLLOUT | POLLRDHUP, 0);
    int l, lp;
    NEED(l = our_listener("poll", &lp));
    wait_ev("poll.listener-idle", l, POLLIN | POLLOUT, 0);
    pc(OP_CONNECT, 3, lp, 0, NULL, 0);
    wait_ev("poll.listener-pending", l, POLLIN | POLLOUT, 2000);
    int ac;
    TF("poll.accept", ac = accept(l, NULL, NULL));
    int u, up;
    NEED(u = our_udp("poll", &up));
    wait_ev("poll.udp-idle", u, POLLIN | POLLOUT, 0);

    /* ppoll with a timeout and a mask. */
    struct timespec ts = {0, 0};
    sigset_t m;
    sigemptyset(&m);
    struct pollfd pp[2] = {{a, POLLIN | POLLOUT, 0}, {p[0], POLLIN, 0}};
    TD("poll.ppoll", ppoll(pp, 2, &ts, &m), "a=%s,pipe=%s", pollbits((unsigned)pp[0].revents),
       pollbits((unsigned)pp[1].revents));

    /* Peer half-closes: IN|RDHUP. Peer resets: ERR|HUP. */
    pc(OP_SHUTDOWN, 2, SHUT_WR, 0, NULL, 0);
    TD("poll.b-read", read(b, buf, sizeof buf), "%s", hexs(buf, R));
    wait_ev("poll.peer-shut-wr", b, POLLIN | POLLRDHUP, 2000);
    wait_ev("poll.peer-shut-wr-all", b, POLLIN | POLLOUT | POLLRDHUP, 0);
    pc(OP_RST, 1, 0, 0, NULL, 0);
    wait_ev("poll.peer-rst-wait", a, 0, 2000);
    wait_ev("poll.peer-rst", a, POLLIN | POLLOUT | POLLRDHUP, 0);

    /* select: the same mix. */
    int x, y;
    NEED(x = conn_out("select.x", 4, NULL));
    NEED(y = conn_out("select.y", 5, NULL));
    psends(5, "y");
    wait_ev("select.y-ready", y, POLLIN, 2000);
    fd_set rs, ws;
    FD_ZERO(&rs);
    FD_ZERO(&ws);
    FD_SET(x, &rs);
    FD_SET(y, &rs);
    FD_SET(p[0], &rs);
    FD_SET(x, &ws);
    int mx = x > y ? x : y;
    mx = mx > p[0] ? mx : p[0];
    struct timeval tv = {0, 0};
    TD("select.mix", select(mx + 1, &rs, &ws, NULL, &tv), "r-x=%d,r-y=%d,r-pipe=%d,w-x=%d", FD_ISSET(x, &rs),
       FD_ISSET(y, &rs), FD_ISSET(p[0], &rs), FD_ISSET(x, &ws));
    FD_ZERO(&rs);
    FD_SET(x, &rs);
    tv.tv_sec = 0;
    tv.tv_usec = 0;
    TD("select.nothing", select(x + 1, &rs, NULL, NULL, &tv), "r-x=%d", FD_ISSET(x, &rs));
    FD_ZERO(&rs);
    FD_SET(x, &rs);
    tv.tv_usec = 100000;
    t0 = now_ms();
    TD("select.timeout-100", select(x + 1, &rs, NULL, NULL, &tv), "waited=%s", yesno(now_ms() - t0 >= 90));
    int cz = socket(AF_INET, SOCK_STREAM, 0);
    close(cz);
    FD_ZERO(&rs);
    FD_SET(cz, &rs);
    FD_SET(x, &rs);
    tv.tv_usec = 0;
    T("select.closed-fd", select((cz > x ? cz : x) + 1, &rs, NULL, NULL, &tv));
    T("select.nfds-negative", select(-1, NULL, NULL, NULL, &tv));
    psend(OP_SLEEP_SEND, 4, 200, 0, "s", 1);
    FD_ZERO(&rs);
    FD_SET(x, &rs);
    tv.tv_sec = 3;
    TD("select.blocking-wakeup", select(x + 1, &rs, NULL, NULL, &tv), "r-x=%d", FD_ISSET(x, &rs));
    pwait();
    FD_ZERO(&rs);
    FD_SET(x, &rs);
    FD_SET(y, &rs);
    struct timespec pts = {0, 0};
    TD("select.pselect", pselect(mx + 1, &rs, NULL, NULL, &pts, &m), "r-x=%d,r-y=%d", FD_ISSET(x, &rs),
       FD_ISSET(y, &rs));
    FD_ZERO(&rs);
    FD_SET(l, &rs);
    pc(OP_CONNECT, 6, lp, 0, NULL, 0);
    tv.tv_sec = 2;
    tv.tv_usec = 0;
    TD("select.listener-pending", select(l + 1, &rs, NULL, NULL, &tv), "r-l=%d", FD_ISSET(l, &rs));
    int fs[] = {a, b, p[0], p[1], s, l, ac, u, x, y};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        qclose(fs[i]);
}

/* epoll_wait reported as count plus each event's tag and mask. */
static void epw(const char *name, int ep, int max, int ms)
{
    struct epoll_event ev[8];
    memset(ev, 0, sizeof ev);
    DO(epoll_wait(ep, ev, max, ms));
    char d[400] = "";
    for (long i = 0; i < R && i < 8; i++)
        snprintf(d + strlen(d), sizeof d - strlen(d), "%s%llx:%s", i ? "," : "", (unsigned long long)ev[i].data.u64,
                 epbits(ev[i].events));
    rep(name, R, E, "%s", d[0] ? d : "-");
}

static int ep_add(int ep, int fd, uint32_t events, uint64_t tag)
{
    struct epoll_event ev = {events, {.u64 = tag}};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static int ep_mod(int ep, int fd, uint32_t events, uint64_t tag)
{
    struct epoll_event ev = {events, {.u64 = tag}};
    return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

static void sc_epoll(void)
{
    char buf[64];
    int e0, e1, e2;
    TF("epoll.create-0", epoll_create(0));
    TF("epoll.create-1", e1 = epoll_create(1));
    DO(e2 = epoll_create1(EPOLL_CLOEXEC));
    repfd("epoll.create1-cloexec", R, E, "cloexec=%d", getfd(e2));
    TF("epoll.create1-bad-flags", epoll_create1(0x1234));
    TF("epoll.create1", e0 = epoll_create1(0));
    int a, b;
    NEED(a = conn_out("epoll.a", 1, NULL));
    NEED(b = conn_out("epoll.b", 2, NULL));
    int f = mkfile(10, 1), ep = e0;
    T("epoll.add", ep_add(ep, a, EPOLLIN, 0xa));
    /* Level-triggered: reported while unread. */
    epw("epoll.lt-idle", ep, 8, 0);
    psends(1, "0123456789");
    epw("epoll.lt-arrival", ep, 8, 2000);
    epw("epoll.lt-again", ep, 8, 0);
    TD("epoll.lt-read-5", read(a, buf, 5), "%s", hexs(buf, R));
    epw("epoll.lt-still", ep, 8, 0);
    TD("epoll.lt-read-rest", read(a, buf, sizeof buf), "%s", hexs(buf, R));
    epw("epoll.lt-drained", ep, 8, 0);

    /* Edge-triggered: once per arrival. */
    T("epoll.mod-et", ep_mod(ep, a, EPOLLIN | EPOLLET, 0xa));
    epw("epoll.et-idle", ep, 8, 0);
    psends(1, "abcd");
    epw("epoll.et-arrival", ep, 8, 2000);
    epw("epoll.et-not-again", ep, 8, 0);
    psends(1, "efgh");
    epw("epoll.et-second-arrival", ep, 8, 2000);
    epw("epoll.et-not-again-2", ep, 8, 0);
    msleep(20);
    TD("epoll.et-read", read(a, buf, sizeof buf), "%s", hexs(buf, R));

    /* One-shot: once until re-armed with MOD. */
    T("epoll.mod-oneshot", ep_mod(ep, a, EPOLLIN | EPOLLONESHOT, 0xa));
    psends(1, "one");
    epw("epoll.oneshot-arrival", ep, 8, 2000);
    epw("epoll.oneshot-disarmed", ep, 8, 0);
    psends(1, "two");
    msleep(50);
    epw("epoll.oneshot-still-disarmed", ep, 8, 0);
    T("epoll.oneshot-rearm", ep_mod(ep, a, EPOLLIN | EPOLLONESHOT, 0xa));
    epw("epoll.oneshot-rearmed", ep, 8, 0);
    TD("epoll.oneshot-read", read(a, buf, sizeof buf), "%s", hexs(buf, R));
    T("epoll.mod-lt", ep_mod(ep, a, EPOLLIN, 0xa));

    /* EPOLLOUT, level and edge. */
    T("epoll.add-out", ep_add(ep, b, EPOLLOUT, 0xb));
    epw("epoll.out", ep, 8, 0);
    T("epoll.mod-out-et", ep_mod(ep, b, EPOLLOUT | EPOLLET, 0xb));
    epw("epoll.out-et", ep, 8, 0);
    epw("epoll.out-et-once", ep, 8, 0);
    T("epoll.del", epoll_ctl(ep, EPOLL_CTL_DEL, b, NULL));
    T("epoll.del-again", epoll_ctl(ep, EPOLL_CTL_DEL, b, NULL));
    T("epoll.add-exclusive", ep_add(ep, b, EPOLLIN | EPOLLEXCLUSIVE, 0xb));
    T("epoll.mod-exclusive", ep_mod(ep, b, EPOLLIN, 0xb));
    T("epoll.del-exclusive", epoll_ctl(ep, EPOLL_CTL_DEL, b, NULL));

    /* Peer half-close: RDHUP; peer reset: ERR|HUP. */
    int c, d;
    NEED(c = conn_out("epoll.c", 3, NULL));
    NEED(d = conn_out("epoll.d", 4, NULL));
    T("epoll.add-rdhup", ep_add(e1, c, EPOLLIN | EPOLLRDHUP, 0xc));
    pc(OP_SHUTDOWN, 3, SHUT_WR, 0, NULL, 0);
    epw("epoll.rdhup", e1, 8, 2000);
    T("epoll.add-reset", ep_add(e1, d, EPOLLIN | EPOLLOUT | EPOLLRDHUP, 0xd));
    T("epoll.del-c", epoll_ctl(e1, EPOLL_CTL_DEL, c, NULL));
    epw("epoll.before-reset", e1, 8, 0);
    T("epoll.mod-reset-in", ep_mod(e1, d, EPOLLIN | EPOLLRDHUP, 0xd));
    pc(OP_RST, 4, 0, 0, NULL, 0);
    epw("epoll.reset", e1, 8, 2000);
    T("epoll.reset-read", read(d, buf, sizeof buf));
    T("epoll.mod-events-0", ep_mod(e1, d, 0, 0xd));
    epw("epoll.reset-no-events-requested", e1, 8, 0);

    /* Closing the only descriptor removes it; with a duplicate open it stays registered. */
    int g, gd;
    NEED(g = conn_out("epoll.g", 5, NULL));
    int e3;
    TF("epoll.create-e3", e3 = epoll_create1(0));
    T("epoll.add-g", ep_add(e3, g, EPOLLOUT, 0x6));
    TF("epoll.dup-g", gd = dup(g));
    xclose("epoll.close-g", g);
    epw("epoll.closed-but-duplicated", e3, 8, 0);
    T("epoll.del-closed", epoll_ctl(e3, EPOLL_CTL_DEL, g, NULL));
    xclose("epoll.close-dup", gd);
    epw("epoll.closed-all", e3, 8, 0);

    /* maxevents smaller than the ready set. */
    int h[3];
    for (int i = 0; i < 3; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "epoll.h%d", i);
        NEED(h[i] = conn_out(nm, 6 + i, NULL));
        ep_add(e3, h[i], EPOLLOUT, 0x10 + (uint64_t)i);
    }
    struct epoll_event two[2];
    T("epoll.maxevents-2", epoll_wait(e3, two, 2, 0));
    T("epoll.maxevents-2-again", epoll_wait(e3, two, 2, 0));
    sigset_t m;
    sigemptyset(&m);
    T("epoll.pwait", epoll_pwait(e3, two, 2, 0, &m));

    /* Nested: an epoll set inside another, and inside poll. */
    int outer;
    TF("epoll.outer", outer = epoll_create1(0));
    T("epoll.add-inner", ep_add(outer, ep, EPOLLIN, 0xe));
    epw("epoll.nested-idle", outer, 8, 0);
    psends(1, "nest");
    epw("epoll.nested-arrival", outer, 8, 2000);
    wait_ev("epoll.inner-in-poll", ep, POLLIN, 0);
    epw("epoll.inner-wait", ep, 8, 0);
    TD("epoll.nested-read", read(a, buf, sizeof buf), "%s", hexs(buf, R));
    epw("epoll.nested-drained", outer, 8, 0);
    T("epoll.add-outer-into-inner-loop", ep_add(ep, outer, EPOLLIN, 0xf));

    /* Kernel descriptors mixed with ours: eventfd, timerfd, pipe, socket in one set. */
    int mix, evf, tfd, p[2];
    TF("epoll.mix-create", mix = epoll_create1(0));
    evf = eventfd(0, EFD_NONBLOCK);
    fdcheck(evf);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    fdcheck(tfd);
    mkpipe(p);
    T("epoll.mix-add-sock", ep_add(mix, a, EPOLLIN, 0xa));
    T("epoll.mix-add-eventfd", ep_add(mix, evf, EPOLLIN, 0xef));
    T("epoll.mix-add-timerfd", ep_add(mix, tfd, EPOLLIN, 0x7f));
    T("epoll.mix-add-pipe", ep_add(mix, p[0], EPOLLIN, 0x99));
    epw("epoll.mix-idle", mix, 8, 0);
    uint64_t one = 1;
    write(evf, &one, sizeof one);
    struct itimerspec its = {{0, 0}, {0, 50 * 1000000L}};
    timerfd_settime(tfd, 0, &its, NULL);
    write(p[1], "p", 1);
    psends(1, "mixed");
    /* Collect until all four have been seen (each stays ready: level-triggered). */
    double end = now_ms() + 2000;
    int seen = 0;
    struct epoll_event evs[8];
    int n = 0;
    while (now_ms() < end) {
        n = epoll_wait(mix, evs, 8, 100);
        seen = 0;
        for (int i = 0; i < n; i++)
            seen |= evs[i].data.u64 == 0xa ? 1 : evs[i].data.u64 == 0xef ? 2 : evs[i].data.u64 == 0x7f ? 4 : 8;
        if (seen == 15)
            break;
    }
    rep("epoll.mix-all-ready", n, 0, "sock=%s,eventfd=%s,timerfd=%s,pipe=%s", yesno(seen & 1), yesno(seen & 2),
        yesno(seen & 4), yesno(seen & 8));
    struct pollfd pf[4] = {{a, POLLIN, 0}, {evf, POLLIN, 0}, {tfd, POLLIN, 0}, {p[0], POLLIN, 0}};
    TD("epoll.mix-poll", poll(pf, 4, 0), "sock=%s,eventfd=%s,timerfd=%s,pipe=%s", pollbits((unsigned)pf[0].revents),
       pollbits((unsigned)pf[1].revents), pollbits((unsigned)pf[2].revents), pollbits((unsigned)pf[3].revents));
    TD("epoll.mix-read-sock", read(a, buf, sizeof buf), "%s", hexs(buf, R));
    read(evf, &one, sizeof one);
    read(tfd, &one, sizeof one);
    read(p[0], buf, 1);
    epw("epoll.mix-drained", mix, 8, 0);
    /* Only a kernel fd becomes ready while we sleep: we must wake. */
    its.it_value.tv_nsec = 100 * 1000000L;
    timerfd_settime(tfd, 0, &its, NULL);
    epw("epoll.mix-wake-by-timerfd", mix, 8, 2000);
    read(tfd, &one, sizeof one);
    /* Only our socket becomes ready while we sleep. */
    psend(OP_SLEEP_SEND, 1, 150, 0, "late", 4);
    epw("epoll.mix-wake-by-socket", mix, 8, 2000);
    pwait();
    read(a, buf, sizeof buf);
    double t0 = now_ms();
    epw("epoll.mix-timeout-100", mix, 8, 100);
    rep("epoll.mix-timeout-waited", 0, 0, "%s", yesno(now_ms() - t0 >= 90));

    /* A listener with a pending connection. */
    int l, lp;
    NEED(l = our_listener("epoll", &lp));
    T("epoll.add-listener", ep_add(mix, l, EPOLLIN, 0x1));
    pc(OP_CONNECT, 12, lp, 0, NULL, 0);
    epw("epoll.listener-pending", mix, 8, 2000);
    int fs[] = {e0, e1, e2, a, b, c, d, f, e3, h[0], h[1], h[2], outer, mix, evf, tfd, p[0], p[1], l};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        qclose(fs[i]);
}

/* epoll_ctl and epoll_wait argument errors, apart so a crash here does not hide the semantics above. */
static void sc_epoll_errors(void)
{
    int ep, a, b;
    TF("epoll-errors.create1", ep = epoll_create1(0));
    NEED(a = conn_out("epoll-errors.a", 1, NULL));
    NEED(b = conn_out("epoll-errors.b", 2, NULL));
    int f = mkfile(10, 1);
    T("epoll-errors.add", ep_add(ep, a, EPOLLIN, 0xa));
    T("epoll-errors.add-again", ep_add(ep, a, EPOLLIN, 0xa));
    T("epoll-errors.mod-unregistered", ep_mod(ep, b, EPOLLIN, 0xb));
    T("epoll-errors.del-unregistered", epoll_ctl(ep, EPOLL_CTL_DEL, b, NULL));
    T("epoll-errors.add-self", ep_add(ep, ep, EPOLLIN, 0));
    T("epoll-errors.add-regular-file", ep_add(ep, f, EPOLLIN, 0));
    T("epoll-errors.epfd-is-socket", ep_add(b, a, EPOLLIN, 0));
    struct epoll_event ev = {EPOLLIN, {0}};
    T("epoll-errors.bad-op", epoll_ctl(ep, 99, b, &ev));
    T("epoll-errors.wait-maxevents-0", epoll_wait(ep, &ev, 0, 0));
    T("epoll-errors.wait-maxevents-neg", epoll_wait(ep, &ev, g_neg, 0));
    T("epoll-errors.wait-on-socket", epoll_wait(a, &ev, 1, 0));
    T("epoll-errors.wait-badfd", epoll_wait(-1, &ev, 1, 0));
    T("epoll-errors.add-bad-epfd", ep_add(-1, a, EPOLLIN, 0));
    T("epoll-errors.add-null-event", epoll_ctl(ep, EPOLL_CTL_ADD, b, g_null));
    T("epoll-errors.add-badfd", ep_add(ep, -1, EPOLLIN, 0));
    T("epoll-errors.add-closed-fd", (close(f), untrack(f), ep_add(ep, f, EPOLLIN, 0)));
    T("epoll-errors.wait-after", epoll_wait(ep, &ev, 1, 0));
    qclose(a);
    qclose(b);
    qclose(ep);
}

/* Zero-length UDP datagrams exist, in both directions. */
static void sc_udp_zero(void)
{
    char buf[16];
    int u, up;
    NEED(u = our_udp("udp-zero", &up));
    long pp = pportcall("udp-zero.peer-bind", OP_UDP_BIND, 1);
    struct sockaddr_in pa = lo((int)pp);
    T("udp-zero.sendto-zero", sendto(u, buf, 0, 0, SA(&pa), sizeof pa));
    T("udp-zero.sendto-marker", sendto(u, "m", 1, 0, SA(&pa), sizeof pa));
    pc(OP_RECVFROM, 1, 0, 0, NULL, 0);
    pline("udp-zero.peer-recv-first", "n=%ld,src-match=%s", PR.rc, yesno(PR.aux == up));
    pc(OP_SENDTO, 1, up, 0, NULL, 0);
    pline("udp-zero.peer-send-zero", "-");
    pc(OP_SENDTO, 1, up, 0, "M", 1);
    wait_ev("udp-zero.ready", u, POLLIN, 2000);
    msleep(20);
    TD("udp-zero.recv-first", recv(u, buf, sizeof buf, MSG_DONTWAIT), "%s", hexs(buf, R));
    TD("udp-zero.recv-second", recv(u, buf, sizeof buf, MSG_DONTWAIT), "%s", hexs(buf, R));
    qclose(u);
}

/* NULL buffers with a non-zero length: EFAULT from the kernel, and nothing consumed or sent. One call per scenario, so a crash hides nothing else. */
static const char *g_scenario = "";

/* "<scenario>.<step>", for scenarios that share one function. */
static const char *SN(const char *step)
{
    static char b[8][96];
    static int k;
    k = (k + 1) % 8;
    snprintf(b[k], sizeof b[k], "%s.%s", g_scenario, step);
    return b[k];
}

static void sc_efault(void)
{
    char buf[64];
    const char *which = g_scenario + strlen("efault-");
    if (!strcmp(which, "udp-sendto")) {
        int u, up;
        NEED(u = our_udp(g_scenario, &up));
        long pp = pportcall(SN("peer-bind"), OP_UDP_BIND, 1);
        struct sockaddr_in pa = lo((int)pp);
        T(SN("udp-sendto-null-buf"), sendto(u, g_null, 4, 0, SA(&pa), sizeof pa));
        T(SN("udp-sendto-after"), sendto(u, "ok", 2, 0, SA(&pa), sizeof pa));
        pc(OP_RECVFROM, 1, 0, 0, NULL, 0);
        pline(SN("udp-peer-recv"), NULL);
        pc(OP_SENDTO, 1, up, 0, "in", 2);
        wait_ev(SN("udp-ready"), u, POLLIN, 2000);
        T(SN("udp-recv-null-buf"), recv(u, g_null, 10, 0));
        T(SN("udp-datagram-dropped"), recv(u, buf, sizeof buf, MSG_DONTWAIT));
        qclose(u);
        return;
    }
    int a;
    NEED(a = conn_out(g_scenario, 1, NULL));
    if (!strcmp(which, "read") || !strcmp(which, "recv") || !strcmp(which, "readv")) {
        psends(1, "null");
        wait_ev(SN("ready"), a, POLLIN, 2000);
        msleep(20);
        struct iovec iov = {g_null, 10};
        if (!strcmp(which, "read"))
            T(SN("read-null-buf"), read(a, g_null, 10));
        else if (!strcmp(which, "recv"))
            T(SN("recv-null-buf"), recv(a, g_null, 10, 0));
        else
            T(SN("readv-null-base"), readv(a, &iov, 1));
        TD(SN("data-still-there"), read(a, buf, sizeof buf), "%s", hexs(buf, R));
    } else {
        struct iovec iov = {g_null, 10};
        struct msghdr mh;
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        if (!strcmp(which, "write"))
            T(SN("write-null-buf"), write(a, g_null, 10));
        else if (!strcmp(which, "send"))
            T(SN("send-null-buf"), send(a, g_null, 10, MSG_NOSIGNAL));
        else if (!strcmp(which, "writev"))
            T(SN("writev-null-base"), writev(a, &iov, 1));
        else {
            mh.msg_iov = g_null;
            T(SN("sendmsg-null-iov"), sendmsg(a, &mh, MSG_NOSIGNAL));
        }
        T(SN("write-after"), write(a, "ok", 2));
        pc(OP_RECV, 1, 64, 0, NULL, 0);
        pline(SN("peer-recv"), NULL);
    }
    qclose(a);
}

static void sc_reset(void)
{
    char buf[64];
    int a, b, c, d, e;
    NEED(a = conn_out("reset.a", 1, NULL));
    pc(OP_RST, 1, 0, 0, NULL, 0);
    pline("reset.a-peer-rst", "-");
    wait_ev("reset.a-wait", a, 0, 2000);
    wait_ev("reset.a-poll", a, POLLIN | POLLOUT | POLLRDHUP, 0);
    T("reset.a-read", read(a, buf, sizeof buf));
    T("reset.a-read-again", read(a, buf, sizeof buf));
    T("reset.a-send", send(a, "x", 1, MSG_NOSIGNAL));
    opt_get("reset.a-so-error", a, SOL_SOCKET, SO_ERROR);

    NEED(b = conn_out("reset.b", 2, NULL));
    pc(OP_RST, 2, 0, 0, NULL, 0);
    wait_ev("reset.b-wait", b, 0, 2000);
    int v = -1;
    socklen_t vl = sizeof v;
    TD("reset.b-so-error", getsockopt(b, SOL_SOCKET, SO_ERROR, &v, &vl), "%s", ename(v));
    v = -1;
    TD("reset.b-so-error-again", getsockopt(b, SOL_SOCKET, SO_ERROR, &v, &vl), "%s", ename(v));
    T("reset.b-read", read(b, buf, sizeof buf));

    NEED(c = conn_out("reset.c", 3, NULL));
    pc(OP_RST, 3, 0, 0, NULL, 0);
    wait_ev("reset.c-wait", c, 0, 2000);
    T("reset.c-send", send(c, "x", 1, MSG_NOSIGNAL));
    T("reset.c-send-again", send(c, "x", 1, MSG_NOSIGNAL));
    T("reset.c-read", read(c, buf, sizeof buf));

    /* Data that arrived before the reset is still read first. */
    NEED(d = conn_out("reset.d", 4, NULL));
    psends(4, "data");
    wait_ev("reset.d-data", d, POLLIN, 2000);
    msleep(20);
    pc(OP_RST, 4, 0, 0, NULL, 0);
    wait_ev("reset.d-wait", d, 0, 2000);
    TD("reset.d-read-data", read(d, buf, sizeof buf), "%s", hexs(buf, R));
    T("reset.d-read-reset", read(d, buf, sizeof buf));
    T("reset.d-read-after", read(d, buf, sizeof buf));

    /* A peer that closes with unread data sends a reset instead of a FIN. */
    NEED(e = conn_out("reset.e", 5, NULL));
    T("reset.e-send", send(e, "unread", 6, 0));
    msleep(50);
    pc(OP_CLOSE, 5, 0, 0, NULL, 0);
    wait_ev("reset.e-wait", e, 0, 2000);
    T("reset.e-read", read(e, buf, sizeof buf));

    /* Our own SO_LINGER 0 close resets the peer. */
    int f;
    NEED(f = conn_out("reset.f", 6, NULL));
    struct linger lg = {1, 0};
    T("reset.f-linger0", setsockopt(f, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    xclose("reset.f-close", f);
    pc(OP_RECV, 6, 64, 0, NULL, 0);
    pline("reset.f-peer-recv", NULL);
    int fs[] = {a, b, c, d, e};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        qclose(fs[i]);
}

/* Our listener, the peer connects: the accepted side under test for data and close. */
static void sc_server_side(void)
{
    char buf[64];
    int l, lp, s;
    NEED(l = our_listener("server", &lp));
    pc(OP_CONNECT, 1, lp, 0, NULL, 0);
    pline("server.peer-connect", "-");
    TF("server.accept", s = accept(l, NULL, NULL));
    psends(1, "request");
    TD("server.read", read(s, buf, sizeof buf), "%s", hexs(buf, R));
    T("server.write", write(s, "response", 8));
    pc(OP_RECVN, 1, 8, 0, NULL, 0);
    pline("server.peer-recv", "n=%ld", PR.rc);
    unsigned char *big = malloc(BIG);
    if (!big)
        harness_fail("malloc");
    psend(OP_SENDPAT, 1, (int)BIG, 17, NULL, 0);
    long got = 0;
    uint64_t h = FNV0;
    int e = 0;
    while (got < (long)BIG) {
        ssize_t n = read(s, big, BIG);
        if (n <= 0) {
            e = n < 0 ? errno : 0;
            break;
        }
        h = fnv(h, big, (size_t)n);
        got += n;
    }
    rep("server.read-8MiB", got, e, "match=%s", yesno(h == pat_hash(0, BIG, 17)));
    pwait();
    pline("server.peer-sent-8MiB", "n=%ld", PR.rc);
    xclose("server.close", s);
    pc(OP_RECV, 1, 64, 0, NULL, 0);
    pline("server.peer-eof", NULL);
    free(big);
    qclose(l);
}

/* ---- scenario table and process roles --------------------------------------------------------- */

static const struct scenario {
    const char *name;
    void (*fn)(void);
    bool peer;   /* uses a peer: runs in --peer native too */
} g_sc[] = {
    {"socket", sc_socket, false},
    {"bind", sc_bind, false},
    {"listen", sc_listen, false},
    {"accept", sc_accept, true},
    {"connect", sc_connect, true},
    {"shutdown", sc_shutdown, true},
    {"read", sc_read, true},
    {"write", sc_write, true},
    {"write-large", sc_write_large, true},
    {"write-epipe", sc_write_epipe, true},
    {"sendfile", sc_sendfile, true},
    {"sockopt", sc_sockopt, false},
    {"sockopt-conn", sc_sockopt_conn, true},
    {"names", sc_names, true},
    {"fcntl", sc_fcntl, true},
    {"ioctl", sc_ioctl, true},
    {"dup", sc_dup, true},
    {"dup2", sc_dup2, true},
    {"dup2-socket", sc_dup2_socket, true},
    {"dup3", sc_dup3, true},
    {"dup-chain", sc_dup_chain, true},
    {"badfd", sc_badfd, false},
    {"eintr", sc_eintr, true},
    {"udp", sc_udp, true},
    {"poll", sc_poll, true},
    {"epoll", sc_epoll, true},
    {"epoll-errors", sc_epoll_errors, true},
    {"udp-zero", sc_udp_zero, true},
    {"efault-read", sc_efault, true},
    {"efault-recv", sc_efault, true},
    {"efault-readv", sc_efault, true},
    {"efault-write", sc_efault, true},
    {"efault-send", sc_efault, true},
    {"efault-writev", sc_efault, true},
    {"efault-sendmsg", sc_efault, true},
    {"efault-udp-sendto", sc_efault, true},
    {"reset", sc_reset, true},
    {"server", sc_server_side, true},
};
#define NSC (sizeof g_sc / sizeof g_sc[0])

static int run_scenario(const char *name)
{
    const struct scenario *sc = NULL;
    for (size_t i = 0; i < NSC; i++)
        if (!strcmp(g_sc[i].name, name))
            sc = &g_sc[i];
    if (!sc) {
        fprintf(stderr, "sockbattery: no scenario %s\n", name);
        return 2;
    }
    /* Reserve the descriptors we inherited, so collisions with them are caught too. */
    for (int fd = 0; fd < 3; fd++)
        g_live[fd] = true;
    on_signal(SIGPIPE, count_pipe, true);
    g_scenario = name;
    crash_install();
    watchdog_install();
    if (sc->peer)
        peer_start();
    sc->fn();
    snprintf(g_last, sizeof g_last, "%s:end", name);
    if (sc->peer)
        peer_stop();
    alarm(0);
    return 0;
}

static int run_all(const char *mode, const char *only)
{
    int harness = 0;
    for (size_t i = 0; i < NSC; i++) {
        if (g_native && !g_sc[i].peer)
            continue;
        if (only && strcmp(only, g_sc[i].name) != 0)
            continue;
        outf("== %s\n", g_sc[i].name);
        char *argv[] = {"sockbattery", "--scenario", (char *)g_sc[i].name, "--peer", (char *)mode, NULL};
        pid_t pid;
        int e = posix_spawn(&pid, g_self, NULL, NULL, argv, environ);
        if (e) {
            errno = e;
            fprintf(stderr, "sockbattery: posix_spawn: %s\n", strerror(e));
            return 2;
        }
        double end = now_ms() + SCENARIO_SECS * 1000.0;
        int st = 0;
        pid_t w;
        while ((w = waitpid(pid, &st, WNOHANG)) == 0 && now_ms() < end)
            msleep(10);
        if (w == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            outf("== %s status=TIMEOUT(%ds)\n", g_sc[i].name, SCENARIO_SECS);
            continue;
        }
        if (WIFEXITED(st)) {
            outf("== %s status=exit:%d\n", g_sc[i].name, WEXITSTATUS(st));
            if (WEXITSTATUS(st) == 2)
                harness = 1;
        } else {
            outf("== %s status=signal:%s\n", g_sc[i].name, sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?");
        }
    }
    return harness ? 1 : 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: sockbattery [--peer thread|native] [--only SCENARIO] [--list]\n"
            "  Runs the socket battery; each scenario in its own process. --peer thread (default) keeps\n"
            "  both ends in one process; --peer native runs the peer without LD_PRELOAD.\n");
}

int main(int argc, char **argv)
{
    const char *mode = "thread", *scenario = NULL, *role = NULL, *only = NULL;
    int ctl = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--peer") && i + 1 < argc)
            mode = argv[++i];
        else if (!strcmp(argv[i], "--scenario") && i + 1 < argc)
            scenario = argv[++i];
        else if (!strcmp(argv[i], "--role") && i + 1 < argc)
            role = argv[++i];
        else if (!strcmp(argv[i], "--ctl") && i + 1 < argc)
            ctl = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--list")) {
            for (size_t k = 0; k < NSC; k++)
                printf("%s%s\n", g_sc[k].name, g_sc[k].peer ? "" : " (loopback only)");
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    if (role && !strcmp(role, "peer")) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGPIPE, SIG_IGN);
        peer_loop(ctl);
        return 0;
    }
    if (strcmp(mode, "thread") && strcmp(mode, "native")) {
        usage();
        return 2;
    }
    g_native = !strcmp(mode, "native");
    if (scenario)
        return run_scenario(scenario);
    return run_all(mode, only);
}
