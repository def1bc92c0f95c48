/* Private state of the shim: descriptor table, sockets, epoll sets, and the helpers shim.c and readiness.c share. */
#ifndef DEMI_SHIM_INTERNAL_H
#define DEMI_SHIM_INTERNAL_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

#include <demi/types.h>

#include "shim.h"

/* What a descriptor of ours is. */
enum sfd_kind { SFD_SOCK = 1, SFD_EPOLL = 2 };

struct ssock;
struct sepoll;

/* One app-visible descriptor number. Several may share one socket or epoll set (dup). */
struct sfd {
    uint8_t kind;
    bool cloexec; /* FD_CLOEXEC as the program sees it (the kernel fd always has it) */
    struct ssock *sock;
    struct sepoll *ep;
};

/* One received chunk (TCP) or datagram (UDP), as popped. */
struct rxent {
    demi_sgarray_t sga;
    uint32_t off; /* bytes of it already read (TCP) */
    uint32_t len;
    struct sockaddr_in from;
    struct rxent *next;
};

/* One push in flight. */
struct txent {
    demi_qtoken_t qt;
    demi_sgarray_t sga;
    uint32_t len;
};

enum sstate {
    SS_NEW = 0,     /* created (maybe bound), not connected */
    SS_LISTENING,
    SS_CONNECTING,
    SS_CONNECTED,
};

/* An accepted connection waiting for accept(2). */
struct acc {
    int qd;
    struct sockaddr_in addr;
};

/* A registration of one of our sockets in one of our epoll sets. */
struct epitem {
    struct sepoll *ep;
    struct ssock *s;
    int fd;              /* the descriptor the program registered */
    uint32_t events;     /* interest, incl. EPOLLET / EPOLLONESHOT */
    epoll_data_t data;
    bool disabled;       /* EPOLLONESHOT fired; re-armed by EPOLL_CTL_MOD */
    bool exclusive;      /* added with EPOLLEXCLUSIVE: MOD is refused, as Linux does */
    bool queued;         /* on ep->ready */
    struct epitem *snext, *sprev; /* on s->items */
    struct epitem *rnext, *rprev; /* on ep->ready */
};

/* Registration of a kernel fd in one of our epoll sets: the kernel carries a pointer to this. */
struct kitem {
    int fd;
    uint32_t tag;        /* KITEM_TAG: tells our records from the internal ones */
    epoll_data_t data;   /* the program's data */
    uint32_t events;     /* the program's interest, kept to rebuild the set after fork */
    bool dead;           /* replaced: the kernel may still hold the pointer, never reuse */
};

struct ssock {
    int qd;
    int type;            /* SOCK_STREAM or SOCK_DGRAM */
    int efd;             /* one kernel fd of ours for it: readable <=> socket readable */
    int nfds;            /* program descriptors pointing at it */
    bool nonblock;
    enum sstate state;
    bool bound;
    bool udp_connected;
    bool closing;        /* no descriptor left; waiting for pushes to drain */
    bool linger0;        /* SO_LINGER {1,0}: close resets at once */
    bool efd_set;        /* efd's counter is non-zero */
    int waiters;         /* threads asleep with efd in their sleep set: only then is efd kept in sync */
    bool dead;           /* destroyed while threads slept on it: the last one frees it */
    uint32_t rcvtimeo_ms;  /* SO_RCVTIMEO for blocking receives and accepts, 0 = none */
    uint32_t sndtimeo_ms;  /* SO_SNDTIMEO for blocking sends */

    /* receive */
    struct rxent *rx_head, *rx_tail;
    size_t rx_bytes;
    size_t rx_count;
    bool pop_pending;
    demi_qtoken_t pop_qt;
    bool rx_eof;         /* peer closed or SHUT_RD */
    int rx_err;          /* pending socket error (Linux's sk_err): reported once, by whichever call asks first */
    bool shut_rd, shut_wr;
    bool shut_wr_deferred; /* SHUT_WR requested while pushes were in flight */

    /* transmit */
    struct txent *tx;    /* ring of pushes in flight */
    uint32_t tx_cap, tx_head, tx_len;
    size_t tx_bytes;
    bool reset_seen;     /* the connection ended in an error (reset, timeout): writes get EPIPE */

    /* accept */
    bool acc_pending;
    demi_qtoken_t acc_qt;
    struct acc *accq;
    uint32_t accq_cap, accq_head, accq_len;
    int acc_err;
    int backlog;

    /* connect */
    bool conn_pending;
    demi_qtoken_t conn_qt;
    int so_error;        /* pending error for SO_ERROR / the next connect */
    bool conn_failed;    /* a connect failed: readiness reports ERR|HUP */
    bool unconnecting;   /* a UDP connect(AF_UNSPEC) is in flight */
    bool conn_async;     /* a non-blocking connect completed that no later connect() has seen */
    bool unlistened;     /* shutdown(SHUT_RD) of a listener: accept says EINVAL */
    int status_flags;    /* F_SETFL flags (O_NONBLOCK is `nonblock`) */

    struct epitem *items; /* epoll registrations */
    int fork_new;         /* scratch for fork_child */
    struct ssock *lnext;  /* on the lingering list */
};

struct sepoll {
    int kfd;             /* the kernel epoll fd (one of the program's descriptor numbers) */
    int wake_efd;        /* readable <=> ready list non-empty; registered in kfd */
    int nfds;
    bool wake_set;
    int sleepers;        /* threads asleep on kfd: only then (or when nested) is wake_efd kept in sync */
    bool nested;         /* kfd sits in another epoll set: the kernel must see our readiness */
    bool dead;           /* freed while threads slept on it: the last one frees the memory */
    bool ours_first;     /* alternates which kind of event fills the buffer first */
    struct epitem *ready_head, *ready_tail;
    struct kitem **kitems; /* by fd */
    int kitems_cap;
    int nkitems;         /* kernel fds registered: without any, no need to ask the kernel set */
    int fork_new;        /* scratch for fork_child */
};

#endif /* DEMI_SHIM_INTERNAL_H */
