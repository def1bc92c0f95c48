/* The libc-named entry points of libdemikernel_preload.so: each call on one of the shim's descriptors goes to shim/, every other call goes unchanged to the next definition (libc). */

/*
 * Shape of every wrapper:
 *
 *     if (fd is ours && not inside the library)  -> shim_*() [+ trace line]
 *     else                                       -> next definition (dlsym RTLD_NEXT)
 *
 * The ownership test comes first because it is the cheap, lock-free one and it
 * is false for almost every call of a program (files, pipes, stdio): the cost
 * for a kernel fd is one call to shim_owns*() plus one indirect call. Nothing
 * here allocates, takes a lock or touches the signal mask on that path.
 *
 * The next definitions are looked up lazily, once each, and cached in an atomic
 * pointer: several threads may race to look the same name up and store the same
 * value. When dlsym() itself re-enters us (an allocator that reads a file while
 * dlsym allocates) or cannot find the name, the wrapper makes the raw system
 * call instead, so a wrapper always has somewhere to go, even in a constructor
 * that runs before main().
 */

/* The fortified inline wrappers of <unistd.h> and friends would clash with our definitions. */
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * glibc declares the address argument of the socket calls as a transparent union
 * under _GNU_SOURCE (and as a plain pointer otherwise); SA() gets the pointer.
 */
#ifdef __SOCKADDR_ARG
#define SA(a) (a)
#else
#define SA(a) ((a).__sockaddr__)
#endif

/* Fortified variants glibc routes read/recv/poll through under _FORTIFY_SOURCE; not declared without it. */
extern void __chk_fail(void) __attribute__((noreturn));
ssize_t __read_chk(int fd, void *buf, size_t nbytes, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *__restrict buf, size_t n, size_t buflen, int flags, __SOCKADDR_ARG addr,
                       socklen_t *__restrict addrlen);
int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen);
int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout, const sigset_t *ss, size_t fdslen);

/* ---- next definitions ------------------------------------------------------------------ */

/* A name dlsym() could not find: do not ask again, use the system call. */
#define NEXT_MISSING ((void *)1)

/* Set while this thread is inside dlsym(), so a call re-entering us from there does not recurse. */
static __thread int resolving __attribute__((tls_model("initial-exec")));

static __attribute__((noinline, cold)) void *resolve_slow(void **slot, const char *name)
{
    if (resolving)
        return NULL;
    int saved = errno;
    resolving = 1;
    void *p = dlsym(RTLD_NEXT, name);
    resolving = 0;
    errno = saved;
    __atomic_store_n(slot, p != NULL ? p : NEXT_MISSING, __ATOMIC_RELEASE);
    return p;
}

static inline void *resolve(void **slot, const char *name)
{
    void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (LIKELY(p != NULL))
        return p == NEXT_MISSING ? NULL : p;
    return resolve_slow(slot, name);
}

/*
 * PASS(name, raw, args...): return name(args...) of the next definition, or the
 * expression raw (a system call) when there is none. Needs a `static void
 * *next_<name>` slot, declared by NEXT_SLOT(name).
 */
#define NEXT_SLOT(name) static void *next_##name
#define PASS(name, raw, ...)                                                                                           \
    do {                                                                                                               \
        __typeof__(&name) f_ = (__typeof__(&name))resolve(&next_##name, #name);                                        \
        if (LIKELY(f_ != NULL))                                                                                        \
            return f_(__VA_ARGS__);                                                                                    \
        return raw;                                                                                                    \
    } while (0)

NEXT_SLOT(socket);
NEXT_SLOT(socketpair);
NEXT_SLOT(bind);
NEXT_SLOT(listen);
NEXT_SLOT(accept);
NEXT_SLOT(accept4);
NEXT_SLOT(connect);
NEXT_SLOT(shutdown);
NEXT_SLOT(close);
NEXT_SLOT(read);
NEXT_SLOT(readv);
NEXT_SLOT(recv);
NEXT_SLOT(recvfrom);
NEXT_SLOT(recvmsg);
NEXT_SLOT(recvmmsg);
NEXT_SLOT(write);
NEXT_SLOT(writev);
NEXT_SLOT(send);
NEXT_SLOT(sendto);
NEXT_SLOT(sendmsg);
NEXT_SLOT(sendmmsg);
NEXT_SLOT(sendfile);
NEXT_SLOT(sendfile64);
NEXT_SLOT(getsockopt);
NEXT_SLOT(setsockopt);
NEXT_SLOT(getsockname);
NEXT_SLOT(getpeername);
NEXT_SLOT(fcntl);
NEXT_SLOT(fcntl64);
NEXT_SLOT(ioctl);
NEXT_SLOT(dup);
NEXT_SLOT(dup2);
NEXT_SLOT(dup3);
NEXT_SLOT(epoll_create);
NEXT_SLOT(epoll_create1);
NEXT_SLOT(epoll_ctl);
NEXT_SLOT(epoll_wait);
NEXT_SLOT(epoll_pwait);
NEXT_SLOT(poll);
NEXT_SLOT(ppoll);
NEXT_SLOT(select);
NEXT_SLOT(pselect);

/* ---- raw system calls, for when there is no next definition -------------------------- */

#define SIGSET_BYTES (_NSIG / 8)

static long raw_ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout, const sigset_t *ss)
{
    struct timespec t, *tp = NULL;
    if (timeout != NULL) {
        t = *timeout; /* the kernel writes the time left back; ppoll(3) does not */
        tp = &t;
    }
    return syscall(SYS_ppoll, fds, nfds, tp, ss, SIGSET_BYTES);
}

static long raw_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    struct timespec t = {timeout / 1000, (long)(timeout % 1000) * 1000000L};
    return syscall(SYS_ppoll, fds, nfds, timeout < 0 ? NULL : &t, NULL, SIGSET_BYTES);
}

static long raw_pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timespec *timeout, const sigset_t *ss)
{
    struct {
        const sigset_t *ss;
        size_t len;
    } mask = {ss, SIGSET_BYTES};
    return syscall(SYS_pselect6, nfds, r, w, e, timeout, ss != NULL ? &mask : NULL);
}

static long raw_select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
    struct timespec t, *tp = NULL;
    if (tv != NULL) {
        t.tv_sec = tv->tv_sec + tv->tv_usec / 1000000;
        t.tv_nsec = (tv->tv_usec % 1000000) * 1000;
        tp = &t;
    }
    long rc = raw_pselect(nfds, r, w, e, tp, NULL);
    if (tv != NULL && (rc >= 0 || errno == EINTR)) {
        tv->tv_sec = t.tv_sec;
        tv->tv_usec = t.tv_nsec / 1000;
    }
    return rc;
}

static long raw_dup2(int oldfd, int newfd)
{
#ifdef SYS_dup2
    return syscall(SYS_dup2, oldfd, newfd);
#else
    if (oldfd == newfd)
        return syscall(SYS_fcntl, oldfd, F_GETFD) < 0 ? -1 : newfd;
    return syscall(SYS_dup3, oldfd, newfd, 0);
#endif
}

/* ---- tracing (DEMI_PRELOAD_TRACE=1) ------------------------------------------------------ */

static int trace_on;

#define TRACE_LINE_MAX 512

/* One trace line, built on the stack without libc's stdio (no allocation, no locks). */
struct line {
    size_t n;
    bool cut;
    char b[TRACE_LINE_MAX];
};

/* Room kept at the end for "...\n". */
#define LINE_ROOM (TRACE_LINE_MAX - 4)

static void put_c(struct line *l, char c)
{
    if (l->n < LINE_ROOM)
        l->b[l->n++] = c;
    else
        l->cut = true;
}

static void put_s(struct line *l, const char *s)
{
    while (*s != '\0')
        put_c(l, *s++);
}

static void put_u(struct line *l, unsigned long v, unsigned base)
{
    char t[24];
    int i = 0;
    do {
        t[i++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v != 0);
    while (i > 0)
        put_c(l, t[--i]);
}

static void put_d(struct line *l, long v)
{
    if (v < 0) {
        put_c(l, '-');
        put_u(l, 0ul - (unsigned long)v, 10);
    } else {
        put_u(l, (unsigned long)v, 10);
    }
}

static void put_hex(struct line *l, unsigned long v)
{
    put_s(l, "0x");
    put_u(l, v, 16);
}

static void put_sockaddr(struct line *l, const struct sockaddr *sa, socklen_t len)
{
    if (sa == NULL) {
        put_s(l, "NULL");
        return;
    }
    if (len < sizeof(sa_family_t)) {
        put_s(l, "{}"); /* nothing returned (a stream socket's recvfrom) */
        return;
    }
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        const unsigned char *a = (const unsigned char *)&sin->sin_addr;
        for (int i = 0; i < 4; i++) {
            if (i > 0)
                put_c(l, '.');
            put_u(l, a[i], 10);
        }
        put_c(l, ':');
        put_u(l, ntohs(sin->sin_port), 10);
        return;
    }
    put_s(l, "{family ");
    put_u(l, sa->sa_family, 10);
    put_s(l, ", len ");
    put_u(l, len, 10);
    put_c(l, '}');
}

static void put_domain(struct line *l, int domain)
{
    if (domain == AF_INET)
        put_s(l, "AF_INET");
    else
        put_d(l, domain);
}

static void put_socktype(struct line *l, int type)
{
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (base == SOCK_STREAM)
        put_s(l, "SOCK_STREAM");
    else if (base == SOCK_DGRAM)
        put_s(l, "SOCK_DGRAM");
    else
        put_d(l, base);
    if (type & SOCK_NONBLOCK)
        put_s(l, "|SOCK_NONBLOCK");
    if (type & SOCK_CLOEXEC)
        put_s(l, "|SOCK_CLOEXEC");
}

/*
 * Write one line "demi-preload[pid:tid] CALL = RESULT [ERRNO (text)]" to stderr with a
 * single write(2) system call, so lines from several threads do not interleave and
 * our own write() is never involved. The call is formatted from fmt, which knows
 * %d (int), %u (unsigned), %x (unsigned, hex), %l (long), %z (size_t), %p (pointer),
 * %s (string), %D (address family), %T (socket type), %A (const struct sockaddr *
 * then socklen_t).
 * errno is read as the call left it, and left as it was.
 */
static __attribute__((noinline, cold)) void trace_call(long result, const char *fmt, ...)
{
    int err = errno;
    struct line l;
    l.n = 0;
    l.cut = false;
    put_s(&l, "demi-preload[");
    put_d(&l, (long)syscall(SYS_getpid));
    put_c(&l, ':');
    put_d(&l, (long)syscall(SYS_gettid));
    put_s(&l, "] ");
    va_list ap;
    va_start(ap, fmt);
    for (const char *p = fmt; *p != '\0'; p++) {
        if (*p != '%' || p[1] == '\0') {
            put_c(&l, *p);
            continue;
        }
        switch (*++p) {
        case 'd':
            put_d(&l, va_arg(ap, int));
            break;
        case 'u':
            put_u(&l, va_arg(ap, unsigned), 10);
            break;
        case 'x':
            put_hex(&l, va_arg(ap, unsigned));
            break;
        case 'l':
            put_d(&l, va_arg(ap, long));
            break;
        case 'z':
            put_u(&l, va_arg(ap, size_t), 10);
            break;
        case 'p': {
            const void *q = va_arg(ap, const void *);
            if (q == NULL)
                put_s(&l, "NULL");
            else
                put_hex(&l, (unsigned long)(uintptr_t)q);
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            put_s(&l, s != NULL ? s : "NULL");
            break;
        }
        case 'D':
            put_domain(&l, va_arg(ap, int));
            break;
        case 'T':
            put_socktype(&l, va_arg(ap, int));
            break;
        case 'A': {
            const struct sockaddr *sa = va_arg(ap, const struct sockaddr *);
            socklen_t len = va_arg(ap, socklen_t);
            put_sockaddr(&l, sa, len);
            break;
        }
        default:
            put_c(&l, '%');
            put_c(&l, *p);
            break;
        }
    }
    va_end(ap);
    put_s(&l, " = ");
    put_d(&l, result);
    if (result < 0) {
        const char *name = strerrorname_np(err);
        const char *desc = strerrordesc_np(err);
        put_c(&l, ' ');
        if (name != NULL)
            put_s(&l, name);
        else
            put_d(&l, err);
        if (desc != NULL) {
            put_s(&l, " (");
            put_s(&l, desc);
            put_c(&l, ')');
        }
    }
    if (l.cut) {
        memcpy(l.b + l.n, "...", 3);
        l.n += 3;
    }
    l.b[l.n++] = '\n';
    (void)syscall(SYS_write, STDERR_FILENO, l.b, l.n);
    errno = err;
}

/* After a shim call: one trace line when tracing is on (it is read when the shim starts). */
#define TRACE(result, ...)                                                                                             \
    do {                                                                                                               \
        if (UNLIKELY(__atomic_load_n(&trace_on, __ATOMIC_RELAXED)))                                                    \
            trace_call((long)(result), __VA_ARGS__);                                                                   \
    } while (0)

/* ---- start-up and fork ------------------------------------------------------------------- */

/*
 * fork(): the core and the LibOS repair their state in the child from
 * pthread_atfork handlers (catnap makes a new epoll set, closes the shared one,
 * re-adds its sockets). Those handlers call libc, and they run outside any shim
 * call, so without help their epoll_create1/epoll_ctl/close would come back here
 * and be taken for the program's. The forking thread therefore counts as inside
 * the library from our prepare handler (run before every handler registered
 * earlier, i.e. the core's) to our parent/child handlers (run after them).
 */
static void fork_prepare(void) { shim_depth++; }
static void fork_parent(void) { shim_depth--; }
static void fork_child(void) { shim_depth--; }

static pthread_once_t started_once = PTHREAD_ONCE_INIT;

/* Once, after the shim has started (so after the core registered its fork handlers). */
static void started(void)
{
    const char *v = getenv("DEMI_PRELOAD_TRACE");
    __atomic_store_n(&trace_on, v != NULL && v[0] != '\0' && strcmp(v, "0") != 0, __ATOMIC_RELAXED);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- when a call is ours ----------------------------------------------------------------- */

/*
 * Start the shim for a socket()/epoll_create*() call that it would take. False when it
 * could not start (it has warned once, or aborted): the call then goes to libc.
 */
static bool start(void)
{
    if (shim_init() != 0)
        return false;
    pthread_once(&started_once, started);
    return true;
}

/* Each is false for every kernel fd, and before the shim has started. */
static inline bool our_socket(int fd) { return UNLIKELY(shim_owns_socket(fd)) && !shim_inside(); }
static inline bool our_epoll(int fd) { return UNLIKELY(shim_owns_epoll(fd)) && !shim_inside(); }
static inline bool our_fd(int fd) { return UNLIKELY(shim_owns(fd)) && !shim_inside(); }

/* ---- sockets ------------------------------------------------------------------------------- */

int socket(int domain, int type, int protocol)
{
    if (!shim_inside() && shim_wants_socket(domain, type, protocol) && start()) {
        int rc = shim_socket(domain, type, protocol);
        TRACE(rc, "socket(%D, %T, %d)", domain, type, protocol);
        return rc;
    }
    PASS(socket, syscall(SYS_socket, domain, type, protocol), domain, type, protocol);
}

/* Never ours: the LibOSes carry AF_INET only, and a socketpair is AF_UNIX. */
int socketpair(int domain, int type, int protocol, int sv[2])
{
    PASS(socketpair, syscall(SYS_socketpair, domain, type, protocol, sv), domain, type, protocol, sv);
}

int bind(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
    if (our_socket(fd)) {
        int rc = shim_bind(fd, SA(addr), len);
        TRACE(rc, "bind(%d, %A, %u)", fd, SA(addr), len, len);
        return rc;
    }
    PASS(bind, syscall(SYS_bind, fd, SA(addr), len), fd, addr, len);
}

int listen(int fd, int backlog)
{
    if (our_socket(fd)) {
        int rc = shim_listen(fd, backlog);
        TRACE(rc, "listen(%d, %d)", fd, backlog);
        return rc;
    }
    PASS(listen, syscall(SYS_listen, fd, backlog), fd, backlog);
}

static int shim_accept_traced(const char *name, int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    int rc = shim_accept4(fd, addr, len, flags);
    TRACE(rc, "%s(%d, %A, %p, %x)", name, fd, rc >= 0 ? addr : NULL, rc >= 0 && len != NULL ? *len : 0, (void *)len,
          (unsigned)flags);
    return rc;
}

int accept(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len)
{
    if (our_socket(fd))
        return shim_accept_traced("accept", fd, SA(addr), len, 0);
    PASS(accept, syscall(SYS_accept4, fd, SA(addr), len, 0), fd, addr, len);
}

int accept4(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len, int flags)
{
    if (our_socket(fd))
        return shim_accept_traced("accept4", fd, SA(addr), len, flags);
    PASS(accept4, syscall(SYS_accept4, fd, SA(addr), len, flags), fd, addr, len, flags);
}

int connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
    if (our_socket(fd)) {
        int rc = shim_connect(fd, SA(addr), len);
        TRACE(rc, "connect(%d, %A, %u)", fd, SA(addr), len, len);
        return rc;
    }
    PASS(connect, syscall(SYS_connect, fd, SA(addr), len), fd, addr, len);
}

int shutdown(int fd, int how)
{
    if (our_socket(fd)) {
        int rc = shim_shutdown(fd, how);
        TRACE(rc, "shutdown(%d, %d)", fd, how);
        return rc;
    }
    PASS(shutdown, syscall(SYS_shutdown, fd, how), fd, how);
}

int getsockopt(int fd, int level, int name, void *__restrict val, socklen_t *__restrict len)
{
    if (our_socket(fd)) {
        int rc = shim_getsockopt(fd, level, name, val, len);
        TRACE(rc, "getsockopt(%d, %d, %d, %p, %u)", fd, level, name, val, len != NULL ? *len : 0);
        return rc;
    }
    PASS(getsockopt, syscall(SYS_getsockopt, fd, level, name, val, len), fd, level, name, val, len);
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    if (our_socket(fd)) {
        int rc = shim_setsockopt(fd, level, name, val, len);
        TRACE(rc, "setsockopt(%d, %d, %d, %p, %u)", fd, level, name, val, len);
        return rc;
    }
    PASS(setsockopt, syscall(SYS_setsockopt, fd, level, name, val, len), fd, level, name, val, len);
}

int getsockname(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len)
{
    if (our_socket(fd)) {
        int rc = shim_getsockname(fd, SA(addr), len);
        TRACE(rc, "getsockname(%d, %A)", fd, rc == 0 ? SA(addr) : NULL, rc == 0 && len != NULL ? *len : 0);
        return rc;
    }
    PASS(getsockname, syscall(SYS_getsockname, fd, SA(addr), len), fd, addr, len);
}

int getpeername(int fd, __SOCKADDR_ARG addr, socklen_t *__restrict len)
{
    if (our_socket(fd)) {
        int rc = shim_getpeername(fd, SA(addr), len);
        TRACE(rc, "getpeername(%d, %A)", fd, rc == 0 ? SA(addr) : NULL, rc == 0 && len != NULL ? *len : 0);
        return rc;
    }
    PASS(getpeername, syscall(SYS_getpeername, fd, SA(addr), len), fd, addr, len);
}

/* ---- receiving ------------------------------------------------------------------------------ */

static inline ssize_t do_read(int fd, void *buf, size_t len)
{
    if (our_socket(fd)) {
        ssize_t rc = shim_read(fd, buf, len);
        TRACE(rc, "read(%d, %p, %z)", fd, buf, len);
        return rc;
    }
    PASS(read, syscall(SYS_read, fd, buf, len), fd, buf, len);
}

ssize_t read(int fd, void *buf, size_t len) { return do_read(fd, buf, len); }

ssize_t __read_chk(int fd, void *buf, size_t nbytes, size_t buflen)
{
    if (nbytes > buflen)
        __chk_fail();
    return do_read(fd, buf, nbytes);
}

ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
    if (our_socket(fd)) {
        ssize_t rc = shim_readv(fd, iov, iovcnt);
        TRACE(rc, "readv(%d, %p, %d)", fd, iov, iovcnt);
        return rc;
    }
    PASS(readv, syscall(SYS_readv, fd, iov, iovcnt), fd, iov, iovcnt);
}

static inline ssize_t do_recv(int fd, void *buf, size_t len, int flags)
{
    if (our_socket(fd)) {
        ssize_t rc = shim_recvfrom(fd, buf, len, flags, NULL, NULL);
        TRACE(rc, "recv(%d, %p, %z, %x)", fd, buf, len, (unsigned)flags);
        return rc;
    }
    PASS(recv, syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL), fd, buf, len, flags);
}

ssize_t recv(int fd, void *buf, size_t len, int flags) { return do_recv(fd, buf, len, flags); }

ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    if (n > buflen)
        __chk_fail();
    return do_recv(fd, buf, n, flags);
}

static inline ssize_t do_recvfrom(int fd, void *buf, size_t len, int flags, __SOCKADDR_ARG addr, socklen_t *alen)
{
    if (our_socket(fd)) {
        ssize_t rc = shim_recvfrom(fd, buf, len, flags, SA(addr), alen);
        TRACE(rc, "recvfrom(%d, %p, %z, %x, %A)", fd, buf, len, (unsigned)flags, rc >= 0 ? SA(addr) : NULL,
              rc >= 0 && alen != NULL ? *alen : 0);
        return rc;
    }
    PASS(recvfrom, syscall(SYS_recvfrom, fd, buf, len, flags, SA(addr), alen), fd, buf, len, flags, addr, alen);
}

ssize_t recvfrom(int fd, void *__restrict buf, size_t len, int flags, __SOCKADDR_ARG addr,
                 socklen_t *__restrict alen)
{
    return do_recvfrom(fd, buf, len, flags, addr, alen);
}

ssize_t __recvfrom_chk(int fd, void *__restrict buf, size_t n, size_t buflen, int flags, __SOCKADDR_ARG addr,
                       socklen_t *__restrict alen)
{
    if (n > buflen)
        __chk_fail();
    return do_recvfrom(fd, buf, n, flags, addr, alen);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (our_socket(fd)) {
        ssize_t rc = shim_recvmsg(fd, msg, flags);
        TRACE(rc, "recvmsg(%d, %p, %x)", fd, msg, (unsigned)flags);
        return rc;
    }
    PASS(recvmsg, syscall(SYS_recvmsg, fd, msg, flags), fd, msg, flags);
}

static long ts_ns(const struct timespec *t) { return (long)t->tv_sec * 1000000000L + t->tv_nsec; }

/*
 * recvmmsg(2) on one of ours, one shim_recvmsg() per message, as Linux does it: a
 * blocking socket waits for vlen messages unless MSG_WAITFORONE; the timeout is
 * checked only after each message and is updated with the time left; an error
 * after at least one message ends the batch with the count.
 */
static int shim_recvmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags, struct timespec *tmo)
{
    struct timespec t0;
    if (tmo != NULL) {
        if (tmo->tv_sec < 0 || tmo->tv_nsec < 0 || tmo->tv_nsec >= 1000000000L) {
            errno = EINVAL;
            return -1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
    }
    if (vlen > UIO_MAXIOV)
        vlen = UIO_MAXIOV;
    int each = flags & ~MSG_WAITFORONE;
    unsigned n = 0;
    while (n < vlen) {
        ssize_t rc = shim_recvmsg(fd, &vec[n].msg_hdr, each);
        if (rc < 0) {
            if (n == 0)
                return -1;
            break;
        }
        vec[n++].msg_len = (unsigned)rc;
        if (flags & MSG_WAITFORONE)
            each |= MSG_DONTWAIT;
        if (tmo != NULL) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (ts_ns(&now) - ts_ns(&t0) >= ts_ns(tmo))
                break;
        }
    }
    if (tmo != NULL) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = ts_ns(tmo) - (ts_ns(&now) - ts_ns(&t0));
        if (left < 0)
            left = 0;
        tmo->tv_sec = left / 1000000000L;
        tmo->tv_nsec = left % 1000000000L;
    }
    return (int)n;
}

int recvmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags, struct timespec *tmo)
{
    if (our_socket(fd)) {
        int rc = shim_recvmmsg(fd, vec, vlen, flags, tmo);
        TRACE(rc, "recvmmsg(%d, %p, %u, %x, %p)", fd, vec, vlen, (unsigned)flags, tmo);
        return rc;
    }
    PASS(recvmmsg, syscall(SYS_recvmmsg, fd, vec, vlen, flags, tmo), fd, vec, vlen, flags, tmo);
}

/* ---- sending ---------------------------------------------------------------------------------- */

ssize_t write(int fd, const void *buf, size_t len)
{
    if (our_socket(fd)) {
        ssize_t rc = shim_write(fd, buf, len);
        TRACE(rc, "write(%d, %p, %z)", fd, buf, len);
        return rc;
    }
    PASS(write, syscall(SYS_write, fd, buf, len), fd, buf, len);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (our_socket(fd)) {
        ssize_t rc = shim_writev(fd, iov, iovcnt);
        TRACE(rc, "writev(%d, %p, %d)", fd, iov, iovcnt);
        return rc;
    }
    PASS(writev, syscall(SYS_writev, fd, iov, iovcnt), fd, iov, iovcnt);
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    if (our_socket(fd)) {
        ssize_t rc = shim_sendto(fd, buf, len, flags, NULL, 0);
        TRACE(rc, "send(%d, %p, %z, %x)", fd, buf, len, (unsigned)flags);
        return rc;
    }
    PASS(send, syscall(SYS_sendto, fd, buf, len, flags, NULL, 0), fd, buf, len, flags);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, __CONST_SOCKADDR_ARG addr, socklen_t alen)
{
    if (our_socket(fd)) {
        ssize_t rc = shim_sendto(fd, buf, len, flags, SA(addr), alen);
        TRACE(rc, "sendto(%d, %p, %z, %x, %A)", fd, buf, len, (unsigned)flags, SA(addr), alen);
        return rc;
    }
    PASS(sendto, syscall(SYS_sendto, fd, buf, len, flags, SA(addr), alen), fd, buf, len, flags, addr, alen);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    if (our_socket(fd)) {
        ssize_t rc = shim_sendmsg(fd, msg, flags);
        TRACE(rc, "sendmsg(%d, %p, %x)", fd, msg, (unsigned)flags);
        return rc;
    }
    PASS(sendmsg, syscall(SYS_sendmsg, fd, msg, flags), fd, msg, flags);
}

/* sendmmsg(2) on one of ours: one shim_sendmsg() per message; an error after the first ends the batch. */
static int shim_sendmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags)
{
    if (vlen > UIO_MAXIOV)
        vlen = UIO_MAXIOV;
    unsigned n = 0;
    while (n < vlen) {
        ssize_t rc = shim_sendmsg(fd, &vec[n].msg_hdr, flags);
        if (rc < 0) {
            if (n == 0)
                return -1;
            break;
        }
        vec[n++].msg_len = (unsigned)rc;
    }
    return (int)n;
}

int sendmmsg(int fd, struct mmsghdr *vec, unsigned int vlen, int flags)
{
    if (our_socket(fd)) {
        int rc = shim_sendmmsg(fd, vec, vlen, flags);
        TRACE(rc, "sendmmsg(%d, %p, %u, %x)", fd, vec, vlen, (unsigned)flags);
        return rc;
    }
    PASS(sendmmsg, syscall(SYS_sendmmsg, fd, vec, vlen, flags), fd, vec, vlen, flags);
}

ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
    if (our_socket(out_fd) || our_socket(in_fd)) {
        ssize_t rc = shim_sendfile(out_fd, in_fd, offset, count);
        TRACE(rc, "sendfile(%d, %d, %p, %z)", out_fd, in_fd, offset, count);
        return rc;
    }
    PASS(sendfile, syscall(SYS_sendfile, out_fd, in_fd, offset, count), out_fd, in_fd, offset, count);
}

/* off64_t and off_t are the same type on the 64-bit targets this builds for. */
_Static_assert(sizeof(off64_t) == sizeof(off_t), "sendfile64 assumes a 64-bit off_t");

ssize_t sendfile64(int out_fd, int in_fd, off64_t *offset, size_t count)
{
    if (our_socket(out_fd) || our_socket(in_fd)) {
        ssize_t rc = shim_sendfile(out_fd, in_fd, (off_t *)offset, count);
        TRACE(rc, "sendfile64(%d, %d, %p, %z)", out_fd, in_fd, offset, count);
        return rc;
    }
    PASS(sendfile64, syscall(SYS_sendfile, out_fd, in_fd, offset, count), out_fd, in_fd, offset, count);
}

/* ---- descriptors ------------------------------------------------------------------------------- */

/* The one call every program makes on every file: one lock-free test, then libc. */
int close(int fd)
{
    if (our_fd(fd)) {
        int rc = shim_close(fd);
        TRACE(rc, "close(%d)", fd);
        return rc;
    }
    PASS(close, syscall(SYS_close, fd), fd);
}

/*
 * The third argument of fcntl(2), read with the type the command passes: none,
 * an int, or a pointer (also for commands we do not know, as glibc does).
 */
static long fcntl_arg(int cmd, va_list ap)
{
    switch (cmd) {
    case F_GETFD:
    case F_GETFL:
    case F_GETOWN:
    case F_GETSIG:
    case F_GETLEASE:
    case F_GETPIPE_SZ:
    case F_GET_SEALS:
        return 0;
    case F_DUPFD:
    case F_DUPFD_CLOEXEC:
    case F_SETFD:
    case F_SETFL:
    case F_SETOWN:
    case F_SETSIG:
    case F_SETLEASE:
    case F_NOTIFY:
    case F_SETPIPE_SZ:
    case F_ADD_SEALS:
        return va_arg(ap, int);
    default:
        return (long)(uintptr_t)va_arg(ap, void *);
    }
}

static int do_fcntl(const char *name, void **slot, int fd, int cmd, long arg)
{
    if (our_fd(fd)) {
        int rc = shim_fcntl(fd, cmd, arg);
        TRACE(rc, "%s(%d, %d, %l)", name, fd, cmd, arg);
        return rc;
    }
    int (*f)(int, int, ...) = (int (*)(int, int, ...))resolve(slot, name);
    if (LIKELY(f != NULL))
        return f(fd, cmd, arg);
    return (int)syscall(SYS_fcntl, fd, cmd, arg);
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = fcntl_arg(cmd, ap);
    va_end(ap);
    return do_fcntl("fcntl", &next_fcntl, fd, cmd, arg);
}

int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = fcntl_arg(cmd, ap);
    va_end(ap);
    return do_fcntl("fcntl64", &next_fcntl64, fd, cmd, arg);
}

int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (our_fd(fd)) {
        int rc = shim_ioctl(fd, req, arg);
        TRACE(rc, "ioctl(%d, %x, %p)", fd, (unsigned)req, arg);
        return rc;
    }
    PASS(ioctl, syscall(SYS_ioctl, fd, req, arg), fd, req, arg);
}

int dup(int fd)
{
    if (our_fd(fd)) {
        int rc = shim_dup(fd);
        TRACE(rc, "dup(%d)", fd);
        return rc;
    }
    PASS(dup, syscall(SYS_dup, fd), fd);
}

/* dup2/dup3 go to the shim when either end is ours: duplicating onto one of ours closes it. */
static inline bool our_pair(int oldfd, int newfd)
{
    return UNLIKELY(shim_owns(oldfd) || shim_owns(newfd)) && !shim_inside();
}

int dup2(int oldfd, int newfd)
{
    if (our_pair(oldfd, newfd)) {
        int rc = shim_dup3(oldfd, newfd, -1);
        TRACE(rc, "dup2(%d, %d)", oldfd, newfd);
        return rc;
    }
    PASS(dup2, raw_dup2(oldfd, newfd), oldfd, newfd);
}

int dup3(int oldfd, int newfd, int flags)
{
    /* Bad flags fail with EINVAL before anything else, in libc; -1 must not reach the shim as "dup2". */
    if ((flags & ~O_CLOEXEC) == 0 && our_pair(oldfd, newfd)) {
        int rc = shim_dup3(oldfd, newfd, flags);
        TRACE(rc, "dup3(%d, %d, %x)", oldfd, newfd, (unsigned)flags);
        return rc;
    }
    PASS(dup3, syscall(SYS_dup3, oldfd, newfd, flags), oldfd, newfd, flags);
}

/* ---- epoll ------------------------------------------------------------------------------------- */

int epoll_create(int size)
{
    if (size <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (!shim_inside() && start()) {
        int rc = shim_epoll_create1(0);
        TRACE(rc, "epoll_create(%d)", size);
        return rc;
    }
    PASS(epoll_create, syscall(SYS_epoll_create1, 0), size);
}

int epoll_create1(int flags)
{
    if (!shim_inside() && start()) {
        int rc = shim_epoll_create1(flags);
        TRACE(rc, "epoll_create1(%x)", (unsigned)flags);
        return rc;
    }
    PASS(epoll_create1, syscall(SYS_epoll_create1, flags), flags);
}

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    if (our_epoll(epfd)) {
        int rc = shim_epoll_ctl(epfd, op, fd, ev);
        TRACE(rc, "epoll_ctl(%d, %d, %d, %x)", epfd, op, fd, ev != NULL ? (unsigned)ev->events : 0u);
        return rc;
    }
    PASS(epoll_ctl, syscall(SYS_epoll_ctl, epfd, op, fd, ev), epfd, op, fd, ev);
}

int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
    if (our_epoll(epfd)) {
        int rc = shim_epoll_pwait(epfd, events, maxevents, timeout, NULL);
        TRACE(rc, "epoll_wait(%d, %p, %d, %d)", epfd, events, maxevents, timeout);
        return rc;
    }
    PASS(epoll_wait, syscall(SYS_epoll_pwait, epfd, events, maxevents, timeout, NULL, SIGSET_BYTES), epfd, events,
         maxevents, timeout);
}

int epoll_pwait(int epfd, struct epoll_event *events, int maxevents, int timeout, const sigset_t *ss)
{
    if (our_epoll(epfd)) {
        int rc = shim_epoll_pwait(epfd, events, maxevents, timeout, ss);
        TRACE(rc, "epoll_pwait(%d, %p, %d, %d, %p)", epfd, events, maxevents, timeout, ss);
        return rc;
    }
    PASS(epoll_pwait, syscall(SYS_epoll_pwait, epfd, events, maxevents, timeout, ss, SIGSET_BYTES), epfd, events,
         maxevents, timeout, ss);
}

/* ---- poll and select ---------------------------------------------------------------------------- */

/*
 * <poll.h> declares the pollfd array write-only (access attribute), which is not what
 * poll does: it reads fd and events. GCC then warns that we read it.
 */
#ifndef __clang__
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

static inline int do_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    if (!shim_inside() && UNLIKELY(shim_pollset_has_ours(fds, nfds))) {
        struct timespec ts = {timeout / 1000, (long)(timeout % 1000) * 1000000L};
        int rc = shim_ppoll(fds, nfds, timeout < 0 ? NULL : &ts, NULL);
        TRACE(rc, "poll(%p, %z, %d)", fds, (size_t)nfds, timeout);
        return rc;
    }
    PASS(poll, raw_poll(fds, nfds, timeout), fds, nfds, timeout);
}

int poll(struct pollfd *fds, nfds_t nfds, int timeout) { return do_poll(fds, nfds, timeout); }

int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen)
{
    if (fdslen / sizeof(*fds) < nfds)
        __chk_fail();
    return do_poll(fds, nfds, timeout);
}

static inline int do_ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout, const sigset_t *ss)
{
    if (!shim_inside() && UNLIKELY(shim_pollset_has_ours(fds, nfds))) {
        int rc = shim_ppoll(fds, nfds, timeout, ss);
        TRACE(rc, "ppoll(%p, %z, %p, %p)", fds, (size_t)nfds, timeout, ss);
        return rc;
    }
    PASS(ppoll, raw_ppoll(fds, nfds, timeout, ss), fds, nfds, timeout, ss);
}

int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout, const sigset_t *ss)
{
    return do_ppoll(fds, nfds, timeout, ss);
}

int __ppoll_chk(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout, const sigset_t *ss, size_t fdslen)
{
    if (fdslen / sizeof(*fds) < nfds)
        __chk_fail();
    return do_ppoll(fds, nfds, timeout, ss);
}

#ifndef __clang__
#pragma GCC diagnostic pop
#endif

static inline bool our_fdset(int nfds, const fd_set *r, const fd_set *w, const fd_set *e)
{
    return nfds > 0 && !shim_inside() && UNLIKELY(shim_fdset_has_ours(nfds, r, w, e));
}

/*
 * select(2) on a set holding one of ours: the timeval becomes a timespec the way
 * Linux converts it (a negative result is EINVAL), and is written back with the
 * time left, measured here (approximately what Linux reports).
 */
static int shim_select(int nfds, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv)
{
    struct timespec ts, t0;
    if (tv != NULL) {
        ts.tv_sec = tv->tv_sec + tv->tv_usec / 1000000;
        ts.tv_nsec = (tv->tv_usec % 1000000) * 1000;
        if (ts.tv_sec < 0 || ts.tv_nsec < 0) {
            errno = EINVAL;
            return -1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
    }
    int rc = shim_pselect(nfds, r, w, e, tv != NULL ? &ts : NULL, NULL);
    if (tv != NULL && (rc >= 0 || errno == EINTR)) {
        int err = errno;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent_us = (ts_ns(&now) - ts_ns(&t0)) / 1000;
        long left_us = rc == 0 ? 0 : (long)ts.tv_sec * 1000000L + ts.tv_nsec / 1000 - spent_us;
        if (left_us < 0)
            left_us = 0;
        tv->tv_sec = left_us / 1000000L;
        tv->tv_usec = left_us % 1000000L;
        errno = err;
    }
    return rc;
}

int select(int nfds, fd_set *__restrict r, fd_set *__restrict w, fd_set *__restrict e,
           struct timeval *__restrict tv)
{
    if (our_fdset(nfds, r, w, e)) {
        int rc = shim_select(nfds, r, w, e, tv);
        TRACE(rc, "select(%d, %p, %p, %p, %p)", nfds, r, w, e, tv);
        return rc;
    }
    PASS(select, raw_select(nfds, r, w, e, tv), nfds, r, w, e, tv);
}

static long raw_pselect_const(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *timeout,
                              const sigset_t *ss)
{
    struct timespec t, *tp = NULL;
    if (timeout != NULL) {
        t = *timeout; /* pselect(3) leaves the caller's timeout alone */
        tp = &t;
    }
    return raw_pselect(nfds, r, w, e, tp, ss);
}

int pselect(int nfds, fd_set *__restrict r, fd_set *__restrict w, fd_set *__restrict e,
            const struct timespec *__restrict timeout, const sigset_t *__restrict ss)
{
    if (our_fdset(nfds, r, w, e)) {
        int rc = shim_pselect(nfds, r, w, e, timeout, ss);
        TRACE(rc, "pselect(%d, %p, %p, %p, %p, %p)", nfds, r, w, e, timeout, ss);
        return rc;
    }
    PASS(pselect, raw_pselect_const(nfds, r, w, e, timeout, ss), nfds, r, w, e, timeout, ss);
}
