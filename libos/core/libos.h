/*
 * The contract between the core and a LibOS: the ops table a LibOS fills, the
 * queue and operation objects the core hands it, and the calls a LibOS makes
 * back into the core to allocate queues and report completions.
 *
 * Rules every LibOS follows:
 *  - Every op is called with the core lock held; a LibOS needs no lock of its own
 *    for state touched only from its ops.
 *  - Ops return >= 0 on success or a negative errno; they never set errno.
 *  - The core has already validated the qd, the queue kind, the queue state and
 *    every pointer and size before an op runs (see core.c); an op checks only
 *    what depends on the backend.
 *  - An asynchronous op (accept, connect, push, pushto, pop) either completes
 *    the operation at once (core_op_complete_* / core_op_fail) or keeps it and
 *    completes it later from poll(). Returning a negative errno instead means
 *    the operation was never started: the core drops it and the caller of
 *    demi_* gets that errno.
 *  - close() must end every operation still pending on the queue with
 *    core_op_fail(op, ECANCELED) before it returns.
 */
#ifndef DEMI_CORE_LIBOS_H
#define DEMI_CORE_LIBOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <demi/types.h>

struct core_config;

/* What a queue is; fixed at creation. */
enum core_qkind {
    CORE_Q_TCP = 1,
    CORE_Q_UDP,
    CORE_Q_PIPE,
};

/* Socket state as the core tracks it for validation (Linux semantics). */
enum core_qstate {
    CORE_QS_CREATED = 0, /* socket, not bound */
    CORE_QS_BOUND,       /* bind succeeded */
    CORE_QS_LISTENING,   /* listen succeeded */
    CORE_QS_CONNECTING,  /* a connect is pending */
    CORE_QS_CONNECTED,   /* connect or accept completed; pipes start here */
};

struct core_op;

/* Intrusive FIFO of operations; a LibOS keeps its pending operations in these. */
struct core_oplist {
    struct core_op *head;
    struct core_op *tail;
};

/* One queue (socket or pipe end). The core owns it; priv is the LibOS's. */
struct core_queue {
    int qd;
    enum core_qkind kind;
    enum core_qstate state;
    bool shut_rd;         /* shutdown(SHUT_RD) done */
    bool shut_wr;         /* shutdown(SHUT_WR) done */
    bool udp_connected;   /* UDP socket has a default peer */
    uint32_t npending;    /* operations started and not yet completed (core-maintained) */
    uint32_t fork_gen;    /* core.fork_gen when created: a LibOS without fork_child cannot use older queues */
    void *priv;           /* LibOS state for this queue */
};

/* One asynchronous operation, from demi_push/pop/accept/connect to its completion. */
struct core_op {
    demi_qtoken_t qt;        /* token handed to the application */
    struct core_queue *q;    /* queue it runs on (NULL after the queue is gone) */
    demi_opcode_t opcode;    /* PUSH, POP, ACCEPT or CONNECT: what was asked */
    demi_sgarray_t sga;      /* PUSH: the application's sga (data stays in its buffer) */
    struct sockaddr_in addr; /* CONNECT/PUSHTO: the target; has_addr says if set */
    bool has_addr;
    uint32_t progress;       /* LibOS scratch: bytes of a push already sent */
    uint64_t deadline_ns;    /* LibOS scratch: e.g. connect timeout, 0 = none */
    struct core_op *next;    /* links for a core_oplist owned by the LibOS */
    struct core_op *prev;
    /* fields below are the core's; a LibOS does not touch them */
    int state;
    demi_qresult_t result;
    struct core_op *cnext, *cprev; /* completed-not-consumed list */
};

/*
 * The ops table. Each member documents its allowed negative returns beyond the
 * generic -ENOMEM. A NULL optional member makes the core answer ENOTSUP.
 */
struct libos_ops {
    const char *name;

    /* Set up the LibOS from the configuration. -EINVAL bad config, -ENODEV missing device. */
    int (*init)(const struct core_config *cfg);
    /* Tear everything down at exit (queues are already closed). Optional. */
    void (*fini)(void);

    /* Create a socket of q->kind (TCP or UDP) and set q->priv. -EMFILE, -ENFILE, -EACCES. */
    int (*socket)(struct core_queue *q, int domain, int type, int protocol);
    /* Create/open a named pipe for q and set q->priv. -EEXIST, -ENOENT, -EINVAL bad name. Optional. */
    int (*create_pipe)(struct core_queue *q, const char *name);
    int (*open_pipe)(struct core_queue *q, const char *name);

    /* -EADDRINUSE, -EADDRNOTAVAIL, -EACCES. */
    int (*bind)(struct core_queue *q, const struct sockaddr_in *addr);
    /* -EADDRINUSE. */
    int (*listen)(struct core_queue *q, int backlog);

    /* Asynchronous operations: complete op now or later; see the rules above. */
    int (*accept)(struct core_queue *q, struct core_op *op);
    int (*connect)(struct core_queue *q, struct core_op *op);            /* target in op->addr */
    int (*push)(struct core_queue *q, struct core_op *op);               /* data in op->sga; UDP target in op->addr if has_addr */
    int (*pop)(struct core_queue *q, struct core_op *op);

    /* End the queue: fail pending operations with ECANCELED, release the backend object. */
    int (*close)(struct core_queue *q);
    /* SHUT_RD/SHUT_WR/SHUT_RDWR. -ENOTCONN. Optional. */
    int (*shutdown)(struct core_queue *q, int how);

    /* -ENOPROTOOPT unknown option, -EINVAL bad value. Optional. */
    int (*setsockopt)(struct core_queue *q, int level, int optname, const void *optval, socklen_t optlen);
    int (*getsockopt)(struct core_queue *q, int level, int optname, void *optval, socklen_t *optlen);
    /* -ENOTCONN. Optional. */
    int (*getpeername)(struct core_queue *q, struct sockaddr_in *addr);
    int (*getsockname)(struct core_queue *q, struct sockaddr_in *addr);

    /* Make progress without blocking; returns the number of operations completed. */
    int (*poll)(void);
    /*
     * A kernel fd that is readable when poll() may have work, or -ENOTSUP if the
     * LibOS can only busy-poll. The core blocks on it after spinning. It must not
     * stay readable while poll() has nothing to do (no busy wake-ups). Optional.
     */
    int (*wait_fd)(void);
    /*
     * Optional, used instead of wait_fd, for a LibOS whose peers wake it through
     * futexes in shared memory (catmem). block_prepare runs with the lock held:
     * it arms the wake-ups (e.g. tells peers "I sleep") and returns > 0 if poll()
     * already has work, so the core does not sleep, or 0. block then runs WITHOUT
     * the lock, in one thread at a time, and sleeps until a wake-up armed by
     * block_prepare, until *wake no longer equals seen (the core bumps *wake and
     * FUTEX_WAKEs it, process-private, to interrupt the sleep), or until deadline_ns
     * (core_now_ns clock; UINT64_MAX = none). Returning early is always allowed.
     */
    int (*block_prepare)(void);
    void (*block)(const uint32_t *wake, uint32_t seen, uint64_t deadline_ns);

    /*
     * Called in the child after fork(2), lock held: make the LibOS's kernel state
     * private to the child (e.g. a new epoll set holding the inherited sockets), so
     * neither process consumes the other's events. Optional: without it, a child
     * shares the parent's state, which is only safe if it never calls demi_*.
     */
    void (*fork_child)(void);

    /*
     * Counter i of the LibOS's network stack (netstack LibOSes): its name, a one-line
     * description and its value. -ENOENT when i is past the last counter. Optional:
     * NULL makes demi_netstack_stats answer ENOTSUP.
     */
    int (*stats)(unsigned i, const char **name, const char **help, uint64_t *value);

    /* Buffer allocation for sgas; NULL means the core's pool. Optional. */
    demi_sgarray_t (*sgaalloc)(size_t size);
    int (*sgafree)(demi_sgarray_t *sga);
};

/* --- registry ------------------------------------------------------------ */

/* Each LibOS exports one of these; the registry list lives in registry.c. */
#define LIBOS_REGISTER(sym) const struct libos_ops *libos_register_##sym(void)

/* Find a built-in LibOS by name (used by demi_init and by delegating LibOSes such as catloop). */
const struct libos_ops *core_registry_find(const char *name);
/* Comma-separated names of the LibOSes built in, for messages. */
const char *core_registry_names(void);

/* --- calls a LibOS makes into the core ------------------------------------ */

/* Create a new queue (e.g. for an accepted connection) in state CONNECTED; returns its qd or -errno. */
int core_queue_new(enum core_qkind kind, void *priv, struct core_queue **q_out);

void core_op_complete_push(struct core_op *op);
/* Ownership of sga's buffer passes to the application. */
void core_op_complete_pop(struct core_op *op, const demi_sgarray_t *sga);
void core_op_complete_accept(struct core_op *op, int new_qd, const struct sockaddr_in *peer);
void core_op_complete_connect(struct core_op *op);
/* err is a positive errno: ECONNREFUSED, ECONNRESET, ETIMEDOUT, ECANCELED ... */
void core_op_fail(struct core_op *op, int err);

/* The core's sga pool (any LibOS may use it for popped data). */
demi_sgarray_t core_sga_alloc(size_t size);
int core_sga_free(demi_sgarray_t *sga);

/* Monotonic clock in nanoseconds. */
uint64_t core_now_ns(void);

/* Intrusive list helpers. */
static inline void core_oplist_push(struct core_oplist *l, struct core_op *op)
{
    op->next = NULL;
    op->prev = l->tail;
    if (l->tail)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
}

static inline void core_oplist_remove(struct core_oplist *l, struct core_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        l->head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    else
        l->tail = op->prev;
    op->next = op->prev = NULL;
}

/* Fail every operation in l with err (used by close). */
static inline void core_oplist_fail_all(struct core_oplist *l, int err)
{
    struct core_op *op;
    while ((op = l->head) != NULL) {
        core_oplist_remove(l, op);
        core_op_fail(op, err);
    }
}

#endif /* DEMI_CORE_LIBOS_H */
