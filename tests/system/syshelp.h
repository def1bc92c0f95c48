/*
 * Helpers for the system tests: run a server and a client role in two forked
 * child processes over a real LibOS, with checks that end a child with an exit
 * code (gtest assertions do not cross fork), and a parent that reaps or kills
 * every child it started by PID.
 */
#ifndef DEMI_TESTS_SYSHELP_H
#define DEMI_TESTS_SYSHELP_H

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <functional>
#include <string>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define SYSHELP_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define SYSHELP_LSAN 1
#endif
#endif

#include <demi/ext.h>
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>

namespace syshelp {

/* Exit codes of a child role. */
constexpr int kExitOk = 0;
constexpr int kExitFail = 1;
constexpr int kExitSkip = 77; /* the role could not run on this machine; it says why on stderr */

/* Seconds one demi_wait in a child may take before the role gives up (well under the ctest timeout). */
constexpr int kOpTimeoutS = 20;

inline uint64_t now_ns()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Print a failure from a child, naming its role and pid, and end it. */
[[noreturn]] inline void child_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
inline void child_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "[child %d] %s:%d: check failed: %s: %s\n", (int)getpid(), file, line, expr, msg);
    fflush(stderr);
    _exit(kExitFail);
}

/*
 * A page shared by the parent and the children it forks, where a role that
 * skips leaves its reason for the parent's GTEST_SKIP message. Mapped by the
 * parent before the first fork.
 */
constexpr size_t kNoteSize = 512;
inline char *skip_note()
{
    static char *page = nullptr;
    if (page == nullptr) {
        void *p = mmap(nullptr, kNoteSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return nullptr;
        page = (char *)p;
    }
    return page;
}

inline void clear_skip_note()
{
    char *note = skip_note();
    if (note != nullptr)
        note[0] = '\0';
}

[[noreturn]] inline void child_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
inline void child_skip(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char *note = skip_note();
    if (note != nullptr)
        snprintf(note, kNoteSize, "%s", msg);
    fprintf(stderr, "[child %d] SKIP: %s\n", (int)getpid(), msg);
    fflush(stderr);
    _exit(kExitSkip);
}

/* CHECK(cond, fmt, ...): in a child, end it with kExitFail and a message when cond is false. */
#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond))                                                                       \
            ::syshelp::child_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                 \
    } while (0)

/* GTEST_SKIP unless the test can run a child as a second user ("nobody"); sets uid and gid. */
#define REQUIRE_SECOND_USER(uid, gid)                                                      \
    do {                                                                                   \
        if (geteuid() != 0)                                                                \
            GTEST_SKIP() << "needs root to switch to a second user";                       \
        struct passwd *pw_ = getpwnam("nobody");                                           \
        if (pw_ == nullptr)                                                                \
            GTEST_SKIP() << "no user 'nobody'";                                            \
        (uid) = pw_->pw_uid;                                                               \
        (gid) = pw_->pw_gid;                                                               \
    } while (0)

/* In a child: drop to that user (supplementary groups too), or end the child with kExitFail. */
#define BECOME_USER(uid, gid)                                                              \
    CHECK(setgroups(0, nullptr) == 0 && setgid(gid) == 0 && setuid(uid) == 0,              \
          "cannot become uid %u: %s", (unsigned)(uid), strerror(errno))

/* CHECK_DEMI(call): a demi_* call that must return 0. */
#define CHECK_DEMI(call)                                                                   \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_ != 0)                                                                      \
            ::syshelp::child_fail(__FILE__, __LINE__, #call, "returned %d (%s)", rc_,      \
                                  strerror(rc_));                                          \
    } while (0)

inline const char *opname(int opc)
{
    switch (opc) {
    case DEMI_OPC_INVALID: return "INVALID";
    case DEMI_OPC_PUSH: return "PUSH";
    case DEMI_OPC_POP: return "POP";
    case DEMI_OPC_ACCEPT: return "ACCEPT";
    case DEMI_OPC_CONNECT: return "CONNECT";
    case DEMI_OPC_CLOSE: return "CLOSE";
    case DEMI_OPC_FAILED: return "FAILED";
    default: return "?";
    }
}

/* CPU time (user + system) this process has used so far, in seconds. */
inline double process_cpu_seconds()
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

inline struct timespec secs(int s)
{
    struct timespec ts = {s, 0};
    return ts;
}

/* demi_wait with the role timeout; the result must have opcode `want` (ends the child otherwise). */
#define WAIT_FOR(qr, qt, want)                                                             \
    do {                                                                                   \
        struct timespec to_ = ::syshelp::secs(::syshelp::kOpTimeoutS);                     \
        int rc_ = demi_wait(&(qr), (qt), &to_);                                            \
        CHECK(rc_ == 0, "demi_wait returned %d (%s)", rc_, strerror(rc_));                 \
        CHECK((qr).qr_opcode == (want), "opcode %s (qr_ret %lld: %s), expected %s",        \
              ::syshelp::opname((qr).qr_opcode), (long long)(qr).qr_ret,                   \
              strerror((int)(qr).qr_ret), ::syshelp::opname(want));                        \
    } while (0)

/* Select the LibOS and bring it up in this (child) process. */
inline void child_init(const char *libos = "catnap")
{
    setenv("DEMI_LIBOS", libos, 1);
    char arg0[] = "system-test";
    char *argv[] = {arg0, NULL};
    struct demi_args args;
    memset(&args, 0, sizeof(args));
    args.argc = 1;
    args.argv = argv;
    int rc = demi_init(&args);
    if (rc == ENODEV || rc == ENOTSUP)
        child_skip("demi_init(%s): %s", libos, strerror(rc));
    CHECK(rc == 0, "demi_init(%s) returned %d (%s)", libos, rc, strerror(rc));
}

inline struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

inline std::string addr_str(const struct sockaddr_in &a)
{
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &a.sin_addr, ip, sizeof(ip));
    return std::string(ip) + ":" + std::to_string(ntohs(a.sin_port));
}

/*
 * A port on 127.0.0.1 that was free a moment ago: the kernel picks it for a
 * socket bound to port 0, which is then closed. Probes TCP and UDP so the port
 * serves either. Returns 0 if no port could be found.
 */
inline uint16_t free_port()
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (t < 0)
            return 0;
        struct sockaddr_in a = loopback(0);
        socklen_t len = sizeof(a);
        if (bind(t, (struct sockaddr *)&a, sizeof(a)) < 0 || getsockname(t, (struct sockaddr *)&a, &len) < 0) {
            close(t);
            return 0;
        }
        int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        bool ok = u >= 0 && bind(u, (struct sockaddr *)&a, sizeof(a)) == 0;
        if (u >= 0)
            close(u);
        close(t);
        if (ok)
            return ntohs(a.sin_port);
    }
    return 0;
}

/* Raise RLIMIT_NOFILE to at least `want`; false if the hard limit forbids it. */
inline bool raise_nofile(rlim_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return false;
    if (rl.rlim_cur >= want)
        return true;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want) {
        /* Root may raise the hard limit too. */
        struct rlimit up = {want, want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            return true;
        return false;
    }
    rl.rlim_cur = want;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

/*
 * A one-way signal between the two roles (a kernel pipe, made before fork):
 * e.g. "the server is listening" or "the client's pop is posted".
 */
struct Signal {
    int fd[2] = {-1, -1};

    Signal()
    {
        if (pipe2(fd, O_CLOEXEC) < 0)
            fd[0] = fd[1] = -1;
    }
    ~Signal() { close_all(); }
    Signal(const Signal &) = delete;
    Signal &operator=(const Signal &) = delete;

    bool ok() const { return fd[0] >= 0; }

    void close_all()
    {
        for (int &f : fd) {
            if (f >= 0)
                close(f);
            f = -1;
        }
    }

    /* In a child: send one byte. */
    void raise()
    {
        char c = 1;
        ssize_t n;
        do
            n = write(fd[1], &c, 1);
        while (n < 0 && errno == EINTR);
        CHECK(n == 1, "signal write: %s", strerror(errno));
    }

    /* In a child: wait for one byte, at most timeout_s seconds. */
    void await(int timeout_s = kOpTimeoutS)
    {
        struct pollfd p = {fd[0], POLLIN, 0};
        int r;
        do
            r = poll(&p, 1, timeout_s * 1000);
        while (r < 0 && errno == EINTR);
        CHECK(r == 1, "no signal from the peer role within %d s", timeout_s);
        char c;
        ssize_t n = read(fd[0], &c, 1);
        CHECK(n == 1, "signal read returned %zd: peer role gone?", n);
    }
};

/* Outcome of one child role as seen by the parent. */
struct ChildResult {
    pid_t pid = -1;
    int status = 0;     /* from waitpid */
    bool timed_out = false;
    bool fork_failed = false;

    bool exited() const { return !timed_out && !fork_failed && WIFEXITED(status); }
    int code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
    bool ok() const { return exited() && code() == kExitOk; }
    bool skipped() const { return exited() && code() == kExitSkip; }
    std::string describe() const
    {
        if (fork_failed)
            return "fork failed";
        if (timed_out)
            return "timed out (killed)";
        if (WIFEXITED(status))
            return "exit code " + std::to_string(WEXITSTATUS(status));
        if (WIFSIGNALED(status))
            return std::string("killed by signal ") + strsignal(WTERMSIG(status));
        return "status " + std::to_string(status);
    }
};

/* Fork a child that runs role() and _exits with its return value (never returns into gtest). */
inline pid_t spawn(const std::function<int()> &role)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        /* A child must never outlive the test run, even if the parent is killed. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int rc = role();
#ifdef SYSHELP_LSAN
        /* _exit skips LeakSanitizer's exit-time check; a role that passed must not leak either. */
        if (rc == kExitOk && __lsan_do_recoverable_leak_check() != 0) {
            fprintf(stderr, "[child %d] LeakSanitizer found leaks\n", (int)getpid());
            rc = kExitFail;
        }
#endif
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    return pid;
}

/*
 * Reap every pid in pids[0..n), waiting at most timeout_s seconds in total;
 * children still running then are killed with SIGKILL (by PID) and reaped.
 */
inline void reap(ChildResult *res, int n, int timeout_s)
{
    uint64_t deadline = now_ns() + (uint64_t)timeout_s * 1000000000ull;
    int left = 0;
    for (int i = 0; i < n; i++) {
        if (res[i].pid > 0)
            left++;
        else if (res[i].pid == -1)
            res[i].fork_failed = true; /* fork() returned -1, or the role was never started */
    }
    while (left > 0) {
        for (int i = 0; i < n; i++) {
            if (res[i].pid <= 0)
                continue;
            int st;
            pid_t r = waitpid(res[i].pid, &st, WNOHANG);
            if (r == res[i].pid) {
                res[i].status = st;
                res[i].pid = -res[i].pid; /* reaped; keep the number for messages */
                left--;
            }
        }
        if (left == 0)
            break;
        if (now_ns() >= deadline) {
            for (int i = 0; i < n; i++) {
                if (res[i].pid <= 0)
                    continue;
                kill(res[i].pid, SIGKILL);
                int st;
                while (waitpid(res[i].pid, &st, 0) < 0 && errno == EINTR) {
                }
                res[i].status = st;
                res[i].timed_out = true;
                res[i].pid = -res[i].pid;
            }
            break;
        }
        usleep(2000);
    }
}

/*
 * Run server() and client() in two child processes, each with its own LibOS
 * instance, and reap both (killing them after timeout_s). A failing role that
 * leaves its peer blocked is covered by the per-wait timeouts and the kill.
 */
struct PairResult {
    ChildResult server, client;
    bool any_skip() const { return server.skipped() || client.skipped(); }
    bool both_ok() const { return server.ok() && client.ok(); }
    std::string describe() const
    {
        return "server: " + server.describe() + ", client: " + client.describe();
    }
};

inline PairResult run_pair(const std::function<int()> &server, const std::function<int()> &client,
                           int timeout_s = 60)
{
    ChildResult r[2];
    clear_skip_note();
    r[0].pid = spawn(server);
    if (r[0].pid > 0)
        r[1].pid = spawn(client);
    reap(r, 2, timeout_s);
    PairResult p;
    p.server = r[0];
    p.client = r[1];
    return p;
}

inline ChildResult run_one(const std::function<int()> &role, int timeout_s = 60)
{
    ChildResult r;
    clear_skip_note();
    r.pid = spawn(role);
    reap(&r, 1, timeout_s);
    return r;
}

/* ---- small LibOS conveniences for roles ---------------------------------------- */

/* A TCP queue listening on 127.0.0.1:port. */
inline int tcp_listener(uint16_t port, int backlog = 16)
{
    int qd = -1;
    CHECK_DEMI(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
    int one = 1;
    CHECK_DEMI(demi_setsockopt(qd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
    struct sockaddr_in a = loopback(port);
    CHECK_DEMI(demi_bind(qd, (const struct sockaddr *)&a, sizeof(a)));
    CHECK_DEMI(demi_listen(qd, backlog));
    return qd;
}

/* Accept one connection on a listening qd; returns the new qd. */
inline int tcp_accept(int lqd)
{
    demi_qtoken_t qt;
    CHECK_DEMI(demi_accept(&qt, lqd));
    demi_qresult_t qr;
    WAIT_FOR(qr, qt, DEMI_OPC_ACCEPT);
    return qr.qr_value.ares.qd;
}

/* A TCP queue connected to 127.0.0.1:port. */
inline int tcp_connect(uint16_t port)
{
    int qd = -1;
    CHECK_DEMI(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
    struct sockaddr_in a = loopback(port);
    demi_qtoken_t qt;
    CHECK_DEMI(demi_connect(&qt, qd, (const struct sockaddr *)&a, sizeof(a)));
    demi_qresult_t qr;
    WAIT_FOR(qr, qt, DEMI_OPC_CONNECT);
    return qd;
}

/* Push len bytes from buf (copied into a fresh sga) and wait for the push to complete. */
inline void push_bytes(int qd, const void *buf, size_t len)
{
    demi_sgarray_t sga = demi_sgaalloc(len);
    CHECK(sga.sga_numsegs == 1, "demi_sgaalloc(%zu) failed", len);
    CHECK(sga.sga_segs[0].sgaseg_len >= len, "sga of %u bytes for %zu", sga.sga_segs[0].sgaseg_len, len);
    memcpy(sga.sga_segs[0].sgaseg_buf, buf, len);
    sga.sga_segs[0].sgaseg_len = (uint32_t)len;
    demi_qtoken_t qt;
    CHECK_DEMI(demi_push(&qt, qd, &sga));
    demi_qresult_t qr;
    WAIT_FOR(qr, qt, DEMI_OPC_PUSH);
    CHECK_DEMI(demi_sgafree(&sga));
}

/* Pop until exactly len bytes have arrived into buf (fails on EOF or error first). */
inline void pop_exact(int qd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        demi_qtoken_t qt;
        CHECK_DEMI(demi_pop(&qt, qd));
        demi_qresult_t qr;
        WAIT_FOR(qr, qt, DEMI_OPC_POP);
        uint32_t n = qr.qr_value.sga.sga_segs[0].sgaseg_len;
        CHECK(n > 0, "end of stream after %zu of %zu bytes", got, len);
        CHECK(got + n <= len, "%u bytes more than the %zu expected", (unsigned)(got + n - len), len);
        memcpy((char *)buf + got, qr.qr_value.sga.sga_segs[0].sgaseg_buf, n);
        got += n;
        CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
    }
}

/* ---- deterministic data ------------------------------------------------------- */

/* splitmix64: small, fast, and the same stream in both processes for one seed. */
struct Prng {
    uint64_t s;
    explicit Prng(uint64_t seed) : s(seed) {}
    uint64_t next()
    {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    /* Uniform in [lo, hi]. */
    uint32_t range(uint32_t lo, uint32_t hi) { return lo + (uint32_t)(next() % ((uint64_t)hi - lo + 1)); }
};

/* A byte stream: fill() hands out the next bytes of the stream for a seed. */
struct ByteStream {
    Prng p;
    uint64_t word = 0;
    int left = 0; /* bytes of `word` not handed out yet */
    explicit ByteStream(uint64_t seed) : p(seed ^ 0x5eedda7a5eedda7aull) {}
    void fill(uint8_t *dst, size_t n)
    {
        for (size_t i = 0; i < n; i++) {
            if (left == 0) {
                word = p.next();
                left = 8;
            }
            dst[i] = (uint8_t)word;
            word >>= 8;
            left--;
        }
    }
};

/* The seed of a randomised test: $DEMI_TEST_SEED if set (to replay a failure), else time and pid. */
inline uint64_t test_seed()
{
    const char *s = getenv("DEMI_TEST_SEED");
    if (s != NULL && *s != '\0')
        return strtoull(s, NULL, 0);
    return now_ns() ^ ((uint64_t)getpid() << 32);
}

/* The reason the last role that skipped gave, for GTEST_SKIP. */
inline std::string skip_reason()
{
    const char *n = skip_note();
    return n != nullptr && n[0] != '\0' ? std::string(n) : std::string("(no reason recorded)");
}

} // namespace syshelp

#endif /* DEMI_TESTS_SYSHELP_H */
