/*
 * The demi_* entry points: validate everything the API contract covers (qd,
 * queue kind, socket state, pointers, sizes), then dispatch to the active
 * LibOS's ops table. Internal -errno results become the API's positive errno here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <demi/ext.h>
#include <demi/libos.h>
#include <demi/sga.h>

#include "internal.h"

struct core_state core = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake_efd = -1,
};

/* ---- fork ------------------------------------------------------------------- */

/*
 * A fork from one thread while another holds a core lock would leave the child
 * with a lock nobody can release: take both locks across fork. The child has only
 * the forking thread, so nobody sleeps in a wait there; its wake-up eventfd is its
 * own, so a parent's completion never wakes the child's waiters.
 */
static void fork_prepare(void)
{
    pthread_mutex_lock(&core.lock);
    core_sga_pool_lock();
}

static void fork_parent(void)
{
    core_sga_pool_unlock();
    pthread_mutex_unlock(&core.lock);
}

static void fork_child(void)
{
    core.leader = false;
    core.followers = 0;
    if (core.initialized && core.ops->fork_child) {
        core.ops->fork_child();
    } else if (core.initialized) {
        /*
         * This LibOS cannot hand its queues to a child: every queue made before
         * the fork is refused here (see enter), loudly, rather than half-working.
         */
        core.fork_gen++;
        LOG_ERROR("LibOS %s cannot share queues across fork: the child's inherited queues fail with ENOTSUP",
                  core.ops->name);
    }
    if (core.wake_efd >= 0) {
        close(core.wake_efd);
        core.wake_efd = -1;
        (void)core_wait_init();
    }
    core_sga_pool_unlock();
    pthread_mutex_unlock(&core.lock);
}

static void atfork_once(void)
{
    static bool done;
    if (!done) {
        pthread_atfork(fork_prepare, fork_parent, fork_child);
        done = true;
    }
}

/* ---- demi_init ------------------------------------------------------------ */

/*
 * Pick the LibOS: a `--NAME` argument naming a built-in LibOS wins, then the
 * configuration (DEMI_LIBOS, else LIBOS, else the file), then catnap.
 * `--cat...` arguments naming no built-in LibOS are an error, so a typo or a
 * LibOS this build lacks is not silently replaced by the default.
 */
static int choose_libos(const struct demi_args *args, const struct libos_ops **out)
{
    const char *name = NULL;
    for (int i = 1; i < args->argc; i++) {
        const char *a = args->argv[i];
        if (a == NULL || strncmp(a, "--", 2) != 0)
            continue;
        if (core_registry_find(a + 2) != NULL || strncmp(a + 2, "cat", 3) == 0) {
            name = a + 2;
            break;
        }
    }
    if (name == NULL && core.cfg.libos[0] != '\0')
        name = core.cfg.libos;
    if (name == NULL)
        name = "catnap";
    const struct libos_ops *ops = core_registry_find(name);
    if (ops == NULL) {
        fprintf(stderr, "demikernel: unknown LibOS '%s'; this build contains: %s\n", name,
                core_registry_names());
        return -EINVAL;
    }
    *out = ops;
    return 0;
}

int demi_init(const struct demi_args *args)
{
    if (args == NULL || args->argc <= 0 || args->argv == NULL)
        return EINVAL;
    pthread_mutex_lock(&core.lock);
    if (core.initialized) {
        pthread_mutex_unlock(&core.lock);
        return EEXIST;
    }
    (void)core_log_init();
    char err[512] = "";
    int rc = core_config_load(&core.cfg, NULL, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "demikernel: configuration: %s\n", err[0] ? err : strerror(-rc));
        goto fail;
    }
    const struct libos_ops *ops;
    if ((rc = choose_libos(args, &ops)) < 0)
        goto fail_cfg;
    if (ops->poll == NULL) {
        rc = -EINVAL;
        goto fail_cfg;
    }
    if (core.wake_efd < 0 && (rc = core_wait_init()) < 0)
        goto fail_cfg;
    atfork_once();
    core_sga_pool_init(core.cfg.sga_pool_max_bytes);
    if (ops->init && (rc = ops->init(&core.cfg)) < 0) {
        fprintf(stderr, "demikernel: LibOS %s failed to start: %s\n", ops->name, strerror(-rc));
        goto fail_cfg;
    }
    __atomic_store_n(&core.ops, ops, __ATOMIC_RELEASE);
    core.initialized = true;
    LOG_INFO("LibOS %s ready", ops->name);
    pthread_mutex_unlock(&core.lock);
    return 0;
fail_cfg:
    core_config_free(&core.cfg);
fail:
    pthread_mutex_unlock(&core.lock);
    return -rc;
}

const char *demi_libos_name(void)
{
    pthread_mutex_lock(&core.lock);
    const char *n = core.initialized ? core.ops->name : NULL;
    pthread_mutex_unlock(&core.lock);
    return n;
}

/* ---- helpers -------------------------------------------------------------- */

/* Lock and look up qd; on failure unlock and return the API errno. */
static int enter(int qd, struct core_queue **q)
{
    core_lock();
    if (!core.initialized) {
        core_unlock();
        return EINVAL;
    }
    *q = core_qd_get(qd);
    if (*q == NULL) {
        core_unlock();
        return EBADF;
    }
    if ((*q)->fork_gen != core.fork_gen) {
        LOG_ERROR("qd %d was inherited across fork, which LibOS %s cannot share", qd, core.ops->name);
        core_unlock();
        return ENOTSUP;
    }
    return 0;
}

static inline int leave(int rc)
{
    core_unlock();
    return rc < 0 ? -rc : rc;
}

static int check_addr(const struct sockaddr *addr, socklen_t size)
{
    if (addr == NULL || size < sizeof(struct sockaddr_in) || addr->sa_family != AF_INET)
        return -EINVAL;
    return 0;
}

static int check_sga(const demi_sgarray_t *sga)
{
    if (sga == NULL || sga->sga_numsegs != 1 || sga->sga_segs[0].sgaseg_buf == NULL ||
        sga->sga_segs[0].sgaseg_len == 0)
        return -EINVAL;
    return 0;
}

static bool is_socket(const struct core_queue *q) { return q->kind == CORE_Q_TCP || q->kind == CORE_Q_UDP; }

static const char *opcode_name(demi_opcode_t opc)
{
    static const char *const names[] = {"invalid", "push", "pop", "accept", "connect", "close", "failed"};
    return (unsigned)opc < sizeof(names) / sizeof(names[0]) ? names[opc] : "?";
}

/* Start an asynchronous op: allocate its token, call the LibOS, hand the token out. */
static int start_op(struct core_queue *q, demi_opcode_t opc, int (*fn)(struct core_queue *, struct core_op *),
                    const demi_sgarray_t *sga, const struct sockaddr *addr, demi_qtoken_t *qt_out)
{
    if (fn == NULL)
        return -ENOTSUP;
    struct core_op *op = core_op_alloc(q, opc);
    if (op == NULL)
        return -ENOMEM;
    if (sga)
        op->sga = *sga;
    if (addr) {
        memcpy(&op->addr, addr, sizeof(op->addr));
        op->has_addr = true;
    }
    demi_qtoken_t qt = op->qt;
    LOG_TRACE("qd %d: start %s, token %#llx", q->qd, opcode_name(opc), (unsigned long long)qt);
    int rc = fn(q, op);
    if (rc < 0) {
        LOG_TRACE("qd %d: %s not started: %s", q->qd, opcode_name(opc), strerror(-rc));
        core_op_release(op);
        return rc;
    }
    *qt_out = qt;
    return 0;
}

/* ---- control calls -------------------------------------------------------- */

int demi_socket(int *sockqd_out, int domain, int type, int protocol)
{
    if (sockqd_out == NULL)
        return EINVAL;
    int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    enum core_qkind kind;
    if (domain != AF_INET)
        return ENOTSUP;
    if (base == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP))
        kind = CORE_Q_TCP;
    else if (base == SOCK_DGRAM && (protocol == 0 || protocol == IPPROTO_UDP))
        kind = CORE_Q_UDP;
    else
        return ENOTSUP;
    core_lock();
    if (!core.initialized)
        return leave(-EINVAL);
    if (core.ops->socket == NULL)
        return leave(-ENOTSUP);
    struct core_queue *q;
    int qd = core_qd_alloc(&q, kind);
    if (qd < 0)
        return leave(qd);
    int rc = core.ops->socket(q, domain, base, protocol);
    if (rc < 0) {
        core_qd_free(q);
        return leave(rc);
    }
    *sockqd_out = qd;
    LOG_DEBUG("qd %d: %s socket", qd, kind == CORE_Q_TCP ? "TCP" : "UDP");
    return leave(0);
}

static int open_pipe(int *memqd_out, const char *name, bool create)
{
    if (memqd_out == NULL || name == NULL)
        return EINVAL;
    core_lock();
    if (!core.initialized)
        return leave(-EINVAL);
    int (*fn)(struct core_queue *, const char *) = create ? core.ops->create_pipe : core.ops->open_pipe;
    if (fn == NULL)
        return leave(-ENOTSUP);
    struct core_queue *q;
    int qd = core_qd_alloc(&q, CORE_Q_PIPE);
    if (qd < 0)
        return leave(qd);
    int rc = fn(q, name);
    if (rc < 0) {
        core_qd_free(q);
        return leave(rc);
    }
    *memqd_out = qd;
    return leave(0);
}

int demi_create_pipe(int *memqd_out, const char *name) { return open_pipe(memqd_out, name, true); }
int demi_open_pipe(int *memqd_out, const char *name) { return open_pipe(memqd_out, name, false); }

int demi_bind(int sockqd, const struct sockaddr *addr, socklen_t size)
{
    struct core_queue *q;
    int rc = enter(sockqd, &q);
    if (rc)
        return rc;
    if (!is_socket(q) || (rc = check_addr(addr, size)) < 0)
        return leave(-EINVAL);
    if (q->state != CORE_QS_CREATED)
        return leave(-EINVAL);
    if (core.ops->bind == NULL)
        return leave(-ENOTSUP);
    struct sockaddr_in sin;
    memcpy(&sin, addr, sizeof(sin));
    rc = core.ops->bind(q, &sin);
    if (rc == 0)
        q->state = CORE_QS_BOUND;
    return leave(rc);
}

int demi_listen(int sockqd, int backlog)
{
    struct core_queue *q;
    int rc = enter(sockqd, &q);
    if (rc)
        return rc;
    if (q->kind != CORE_Q_TCP)
        return leave(-EINVAL);
    if (q->state == CORE_QS_CONNECTING || q->state == CORE_QS_CONNECTED)
        return leave(-EINVAL);
    if (core.ops->listen == NULL)
        return leave(-ENOTSUP);
    /* As Linux: a negative or huge backlog means "the system maximum". */
    if (backlog < 0 || backlog > SOMAXCONN)
        backlog = SOMAXCONN;
    rc = core.ops->listen(q, backlog);
    if (rc == 0)
        q->state = CORE_QS_LISTENING;
    return leave(rc);
}

int demi_accept(demi_qtoken_t *qt_out, int sockqd)
{
    if (qt_out == NULL)
        return EINVAL;
    struct core_queue *q;
    int rc = enter(sockqd, &q);
    if (rc)
        return rc;
    if (q->kind != CORE_Q_TCP || q->state != CORE_QS_LISTENING)
        return leave(-EINVAL);
    return leave(start_op(q, DEMI_OPC_ACCEPT, core.ops->accept, NULL, NULL, qt_out));
}

int demi_connect(demi_qtoken_t *qt_out, int sockqd, const struct sockaddr *addr, socklen_t size)
{
    if (qt_out == NULL)
        return EINVAL;
    struct core_queue *q;
    int rc = enter(sockqd, &q);
    if (rc)
        return rc;
    /*
     * Extension, as connect(2): AF_UNSPEC on a datagram socket dissolves its
     * association (the completion leaves it unconnected).
     */
    struct sockaddr_in target;
    memset(&target, 0, sizeof(target));
    if (q->kind == CORE_Q_UDP && addr != NULL && size >= sizeof(sa_family_t) && addr->sa_family == AF_UNSPEC) {
        target.sin_family = AF_UNSPEC;
    } else {
        if (!is_socket(q) || check_addr(addr, size) < 0)
            return leave(-EINVAL);
        memcpy(&target, addr, sizeof(target));
    }
    if (q->kind == CORE_Q_TCP) {
        if (q->state == CORE_QS_CONNECTING)
            return leave(-EALREADY);
        if (q->state == CORE_QS_CONNECTED || q->state == CORE_QS_LISTENING)
            return leave(-EISCONN);
    }
    enum core_qstate before = q->state;
    if (q->kind == CORE_Q_TCP)
        q->state = CORE_QS_CONNECTING;
    rc = start_op(q, DEMI_OPC_CONNECT, core.ops->connect, NULL, (const struct sockaddr *)&target, qt_out);
    if (rc < 0 && q->state == CORE_QS_CONNECTING)
        q->state = before;
    return leave(rc);
}

int demi_close(int qd)
{
    struct core_queue *q;
    int rc = enter(qd, &q);
    if (rc)
        return rc;
    LOG_DEBUG("qd %d: close (%u operations pending)", qd, q->npending);
    rc = core.ops->close ? core.ops->close(q) : 0;
    if (q->npending != 0)
        LOG_ERROR("LibOS %s left %u operations pending on closed qd %d", core.ops->name, q->npending, qd);
    core_qd_free(q);
    return leave(rc);
}

int demi_shutdown(int qd, int how)
{
    struct core_queue *q;
    int rc = enter(qd, &q);
    if (rc)
        return rc;
    if (!is_socket(q) || (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR))
        return leave(-EINVAL);
    if (q->kind == CORE_Q_TCP && q->state != CORE_QS_CONNECTED)
        return leave(-ENOTCONN);
    if (core.ops->shutdown == NULL)
        return leave(-ENOTSUP);
    rc = core.ops->shutdown(q, how);
    if (rc == 0) {
        q->shut_rd |= how != SHUT_WR;
        q->shut_wr |= how != SHUT_RD;
    }
    return leave(rc);
}

/* ---- data calls ----------------------------------------------------------- */

int demi_push(demi_qtoken_t *qt_out, int qd, const demi_sgarray_t *sga)
{
    if (qt_out == NULL)
        return EINVAL;
    struct core_queue *q;
    int rc = enter(qd, &q);
    if (rc)
        return rc;
    if (check_sga(sga) < 0)
        return leave(-EINVAL);
    if (q->kind == CORE_Q_TCP && q->state != CORE_QS_CONNECTED)
        return leave(-ENOTCONN);
    if (q->kind == CORE_Q_UDP && !q->udp_connected)
        return leave(-EDESTADDRREQ);
    if (q->shut_wr)
        return leave(-EPIPE);
    return leave(start_op(q, DEMI_OPC_PUSH, core.ops->push, sga, NULL, qt_out));
}

int demi_pushto(demi_qtoken_t *qt_out, int sockqd, const demi_sgarray_t *sga, const struct sockaddr *dest_addr,
                socklen_t size)
{
    if (qt_out == NULL)
        return EINVAL;
    struct core_queue *q;
    int rc = enter(sockqd, &q);
    if (rc)
        return rc;
    if (!is_socket(q) || check_sga(sga) < 0 || check_addr(dest_addr, size) < 0)
        return leave(-EINVAL);
    if (q->shut_wr)
        return leave(-EPIPE);
    if (q->kind == CORE_Q_TCP) {
        /* As Linux: on a connected stream socket the address is ignored. */
        if (q->state != CORE_QS_CONNECTED)
            return leave(-ENOTCONN);
        return leave(start_op(q, DEMI_OPC_PUSH, core.ops->push, sga, NULL, qt_out));
    }
    return leave(start_op(q, DEMI_OPC_PUSH, core.ops->push, sga, dest_addr, qt_out));
}

int demi_pushto_empty(demi_qtoken_t *qt_out, int sockqd, const struct sockaddr *dest_addr, socklen_t size)
{
    if (qt_out == NULL)
        return EINVAL;
    struct core_queue *q;
    int rc = enter(sockqd, &q);
    if (rc)
        return rc;
    if (q->kind != CORE_Q_UDP || (dest_addr != NULL && check_addr(dest_addr, size) < 0))
        return leave(-EINVAL);
    if (dest_addr == NULL && !q->udp_connected)
        return leave(-EDESTADDRREQ);
    if (q->shut_wr)
        return leave(-EPIPE);
    /* One segment of no bytes: the LibOS sends what the segment holds, which is nothing. */
    demi_sgarray_t none;
    memset(&none, 0, sizeof(none));
    none.sga_numsegs = 1;
    return leave(start_op(q, DEMI_OPC_PUSH, core.ops->push, &none, dest_addr, qt_out));
}

int demi_pop(demi_qtoken_t *qt_out, int qd)
{
    if (qt_out == NULL)
        return EINVAL;
    struct core_queue *q;
    int rc = enter(qd, &q);
    if (rc)
        return rc;
    if (q->kind == CORE_Q_TCP && q->state != CORE_QS_CONNECTED)
        return leave(q->state == CORE_QS_LISTENING ? -EINVAL : -ENOTCONN);
    return leave(start_op(q, DEMI_OPC_POP, core.ops->pop, NULL, NULL, qt_out));
}

/* ---- options and names ---------------------------------------------------- */

int demi_setsockopt(int qd, int level, int optname, const void *optval, socklen_t optlen)
{
    struct core_queue *q;
    int rc = enter(qd, &q);
    if (rc)
        return rc;
    if (!is_socket(q) || optval == NULL || optlen == 0)
        return leave(-EINVAL);
    if (core.ops->setsockopt == NULL)
        return leave(-ENOTSUP);
    return leave(core.ops->setsockopt(q, level, optname, optval, optlen));
}

int demi_getsockopt(int qd, int level, int optname, void *optval, socklen_t *optlen)
{
    struct core_queue *q;
    int rc = enter(qd, &q);
    if (rc)
        return rc;
    if (!is_socket(q) || optval == NULL || optlen == NULL || *optlen == 0)
        return leave(-EINVAL);
    if (core.ops->getsockopt == NULL)
        return leave(-ENOTSUP);
    return leave(core.ops->getsockopt(q, level, optname, optval, optlen));
}

static int get_name(int qd, struct sockaddr *addr, socklen_t *addrlen, bool peer)
{
    struct core_queue *q;
    int rc = enter(qd, &q);
    if (rc)
        return rc;
    if (!is_socket(q) || addr == NULL || addrlen == NULL)
        return leave(-EINVAL);
    int (*fn)(struct core_queue *, struct sockaddr_in *) = peer ? core.ops->getpeername : core.ops->getsockname;
    if (fn == NULL)
        return leave(-ENOTSUP);
    if (peer && ((q->kind == CORE_Q_TCP && q->state != CORE_QS_CONNECTED) ||
                 (q->kind == CORE_Q_UDP && !q->udp_connected)))
        return leave(-ENOTCONN);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    rc = fn(q, &sin);
    if (rc == 0) {
        /* As getpeername(2): truncate to the caller's buffer, report the full size. */
        size_t n = *addrlen < sizeof(sin) ? *addrlen : sizeof(sin);
        memcpy(addr, &sin, n);
        *addrlen = sizeof(sin);
    }
    return leave(rc);
}

int demi_getpeername(int qd, struct sockaddr *addr, socklen_t *addrlen) { return get_name(qd, addr, addrlen, true); }
int demi_getsockname(int qd, struct sockaddr *addr, socklen_t *addrlen) { return get_name(qd, addr, addrlen, false); }

int demi_wait_fd(int *fd_out)
{
    if (fd_out == NULL)
        return EINVAL;
    core_lock();
    if (!core.initialized)
        return leave(-EINVAL);
    int fd = core.ops->wait_fd ? core.ops->wait_fd() : -ENOTSUP;
    if (fd < 0)
        return leave(fd);
    *fd_out = fd;
    return leave(0);
}

int demi_netstack_stats(unsigned index, const char **name_out, const char **help_out, uint64_t *value_out)
{
    if (value_out == NULL)
        return EINVAL;
    core_lock();
    if (!core.initialized)
        return leave(-EINVAL);
    if (core.ops->stats == NULL)
        return leave(-ENOTSUP);
    const char *name = NULL, *help = NULL;
    uint64_t v = 0;
    int rc = core.ops->stats(index, &name, &help, &v);
    if (rc == 0) {
        if (name_out)
            *name_out = name;
        if (help_out)
            *help_out = help;
        *value_out = v;
    }
    return leave(rc);
}

/* ---- buffers -------------------------------------------------------------- */

demi_sgarray_t demi_sgaalloc(size_t size)
{
    demi_sgarray_t none;
    memset(&none, 0, sizeof(none));
    /* No lock: ops is published once, with release order, by demi_init. */
    const struct libos_ops *ops = __atomic_load_n(&core.ops, __ATOMIC_ACQUIRE);
    demi_sgarray_t (*fn)(size_t) = ops ? ops->sgaalloc : NULL;
    if (ops == NULL || size == 0)
        return none;
    return fn ? fn(size) : core_sga_alloc(size);
}

int demi_sgafree(demi_sgarray_t *sga)
{
    if (sga == NULL)
        return EINVAL;
    const struct libos_ops *ops = __atomic_load_n(&core.ops, __ATOMIC_ACQUIRE);
    int (*fn)(demi_sgarray_t *) = ops ? ops->sgafree : NULL;
    if (ops == NULL)
        return EINVAL;
    int rc = fn ? fn(sga) : core_sga_free(sga);
    return rc < 0 ? -rc : rc;
}

/* ---- test hooks (internal; not exported from the shared library) ------------ */

/* Start the core on a given ops table and configuration, bypassing the registry. */
int core_test_init(const struct libos_ops *ops, const struct core_config *cfg)
{
    pthread_mutex_lock(&core.lock);
    int rc = 0;
    if (core.initialized) {
        rc = -EEXIST;
        goto out;
    }
    core.cfg = *cfg;
    if (core.wake_efd < 0 && (rc = core_wait_init()) < 0)
        goto out;
    atfork_once();
    core_sga_pool_init(cfg->sga_pool_max_bytes);
    if (ops->init && (rc = ops->init(&core.cfg)) < 0)
        goto out;
    __atomic_store_n(&core.ops, ops, __ATOMIC_RELEASE);
    core.initialized = true;
out:
    pthread_mutex_unlock(&core.lock);
    return rc;
}

/* Forget every queue, operation and buffer, so the next test starts clean. */
void core_test_reset(void)
{
    pthread_mutex_lock(&core.lock);
    if (core.initialized && core.ops->fini)
        core.ops->fini();
    core_qd_reset();
    core_ops_reset();
    core_sga_pool_reset();
    __atomic_store_n(&core.ops, NULL, __ATOMIC_RELEASE);
    core.initialized = false;
    pthread_mutex_unlock(&core.lock);
}
