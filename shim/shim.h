/*
 * The POSIX socket layer over the demi_* API, called by preload/ (and by tests
 * directly). It owns the file descriptors of the sockets and epoll sets it creates;
 * everything else belongs to the kernel. Every shim_* call behaves like the libc
 * call of the same name: it returns -1 and sets errno on failure.
 *
 * The shim never calls an interposed libc function on its own descriptors: it
 * uses raw system calls (syscall(2)), so it needs no table of real libc entry
 * points. The LibOS underneath does call libc (catnap: socket, epoll_wait ...);
 * preload/ sends those to libc because they arrive inside shim_enter()/shim_leave().
 */
#ifndef DEMI_SHIM_H
#define DEMI_SHIM_H

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- lifecycle and ownership ------------------------------------------------ */

/*
 * Start the LibOS once (thread-safe, idempotent). Returns 0 when the shim is active,
 * -1 when it could not start: then it has printed one warning and every call should
 * go to libc (or, with DEMI_PRELOAD_FALLBACK=abort, it has aborted the program).
 */
int shim_init(void);
bool shim_active(void);

/* Re-entrancy guard: calls made by the library itself while inside the shim go to libc. */
extern __thread int shim_depth __attribute__((tls_model("initial-exec")));
static inline bool shim_inside(void) { return shim_depth > 0; }

/* Cheap, lock-free: is fd one of the shim's sockets or epoll sets? */
bool shim_owns(int fd);
bool shim_owns_socket(int fd);
bool shim_owns_epoll(int fd);

/* Would the shim take a socket(2) call with these arguments? (AF_INET stream/datagram) */
bool shim_wants_socket(int domain, int type, int protocol);

/* ---- sockets (fd must be shim_owns_socket, except where noted) --------------- */

int shim_socket(int domain, int type, int protocol);
int shim_bind(int fd, const struct sockaddr *addr, socklen_t len);
int shim_listen(int fd, int backlog);
int shim_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
int shim_connect(int fd, const struct sockaddr *addr, socklen_t len);
int shim_shutdown(int fd, int how);
int shim_getsockopt(int fd, int level, int name, void *val, socklen_t *len);
int shim_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
int shim_getsockname(int fd, struct sockaddr *addr, socklen_t *len);
int shim_getpeername(int fd, struct sockaddr *addr, socklen_t *len);

/* Data: every read/recv variant funnels into shim_recvmsg, every write/send variant into shim_sendmsg. */
ssize_t shim_recvmsg(int fd, struct msghdr *msg, int flags);
ssize_t shim_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t shim_read(int fd, void *buf, size_t len);
ssize_t shim_readv(int fd, const struct iovec *iov, int iovcnt);
ssize_t shim_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src, socklen_t *srclen);
ssize_t shim_write(int fd, const void *buf, size_t len);
ssize_t shim_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t shim_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dst, socklen_t dstlen);
/* out_fd is ours; in_fd is any readable kernel fd (a file). */
ssize_t shim_sendfile(int out_fd, int in_fd, off_t *offset, size_t count);

/* ---- descriptors (fd ours) ----------------------------------------------------- */

int shim_close(int fd);
int shim_fcntl(int fd, int cmd, long arg);
int shim_ioctl(int fd, unsigned long req, void *arg);
int shim_dup(int fd);
/*
 * dup2/dup3 where oldfd or newfd (or both) is ours; dup2 semantics (oldfd == newfd
 * returns newfd) when flags == -1, dup3 semantics otherwise.
 */
int shim_dup3(int oldfd, int newfd, int flags);

/* ---- readiness: epoll, poll, select --------------------------------------------- */

int shim_epoll_create1(int flags);
/* epfd ours; fd may be ours or a kernel fd. */
int shim_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int shim_epoll_pwait(int epfd, struct epoll_event *events, int maxevents, int timeout, const sigset_t *sigmask);
/* Any set; the shim passes kernel fds to the kernel and computes its own. */
int shim_ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout, const sigset_t *sigmask);
int shim_pselect(int nfds, fd_set *r, fd_set *w, fd_set *e, const struct timespec *timeout, const sigset_t *sigmask);
/* Does a poll/select set hold one of our descriptors? (If not, pass it to libc untouched.) */
bool shim_pollset_has_ours(const struct pollfd *fds, nfds_t nfds);
bool shim_fdset_has_ours(int nfds, const fd_set *r, const fd_set *w, const fd_set *e);

#ifdef __cplusplus
}
#endif

#endif /* DEMI_SHIM_H */
