/*
 * nsglue: the libos_ops a LibOS gets by handing a struct netdev to netstack
 * (catpowder today, catnip later). Call chain: core (demi_*) -> NSGLUE_OPS
 * here -> ns_* (netstack) -> the device's netdev ops. One stack per process,
 * driven under the core lock like every LibOS.
 */
#ifndef DEMI_NSGLUE_H
#define DEMI_NSGLUE_H

#include <stdint.h>

#include "libos.h"
#include "netdev.h"

/* One counter a device keeps itself (ring drops, truncated frames ...), shown next to the stack's. */
struct nsglue_devstat {
    const char *name;            /* stable, [a-z0-9_], starts with "dev_" by convention */
    const char *help;
    const uint64_t *value;       /* read under the core lock */
};

/* What a LibOS hands to nsglue_start. */
struct nsglue_device {
    struct netdev *dev;          /* rx/tx/buffers; its buffers are loaned to the application on pop */
    int fd;                      /* readable when frames may be waiting (poll(2) POLLIN), -1: busy-poll only */
    uint32_t pool_size;          /* buffers the device can hand out; bounds zero-copy loans (0: no loans) */
    const struct nsglue_devstat *stats;
    unsigned nstats;
};

/*
 * Build the stack over d from the configuration (local_ipv4_addr required;
 * netmask, gateway, MAC, MTU, static ARP, ARP and TCP tunables), the pcap
 * capture if DEMI_PCAP is set, and the counters file. The device stays the
 * caller's: nsglue_stop does not close it. -EINVAL bad or missing
 * configuration (logged), -ENOMEM, or the errno of opening DEMI_PCAP.
 */
int nsglue_start(const char *libos, const struct core_config *cfg, const struct nsglue_device *d);
/* Close every socket, free the stack, stop the capture, remove the counters file. */
void nsglue_stop(void);

/* The socket ops; a LibOS puts NSGLUE_OPS into its libos_ops and adds name, init and fini. */
int nsglue_socket(struct core_queue *q, int domain, int type, int protocol);
int nsglue_bind(struct core_queue *q, const struct sockaddr_in *addr);
int nsglue_listen(struct core_queue *q, int backlog);
int nsglue_accept(struct core_queue *q, struct core_op *op);
int nsglue_connect(struct core_queue *q, struct core_op *op);
int nsglue_push(struct core_queue *q, struct core_op *op);
int nsglue_pop(struct core_queue *q, struct core_op *op);
int nsglue_close(struct core_queue *q);
int nsglue_shutdown(struct core_queue *q, int how);
int nsglue_setsockopt(struct core_queue *q, int level, int optname, const void *optval, socklen_t optlen);
int nsglue_getsockopt(struct core_queue *q, int level, int optname, void *optval, socklen_t *optlen);
int nsglue_getpeername(struct core_queue *q, struct sockaddr_in *addr);
int nsglue_getsockname(struct core_queue *q, struct sockaddr_in *addr);
int nsglue_poll(void);
int nsglue_wait_fd(void);
void nsglue_fork_child(void);
int nsglue_sgafree(demi_sgarray_t *sga);
int nsglue_stats(unsigned i, const char **name, const char **help, uint64_t *value);

#define NSGLUE_OPS                                                                                    \
    .socket = nsglue_socket, .bind = nsglue_bind, .listen = nsglue_listen, .accept = nsglue_accept,   \
    .connect = nsglue_connect, .push = nsglue_push, .pop = nsglue_pop, .close = nsglue_close,          \
    .shutdown = nsglue_shutdown, .setsockopt = nsglue_setsockopt, .getsockopt = nsglue_getsockopt,    \
    .getpeername = nsglue_getpeername, .getsockname = nsglue_getsockname, .poll = nsglue_poll,        \
    .wait_fd = nsglue_wait_fd, .fork_child = nsglue_fork_child, .sgafree = nsglue_sgafree,            \
    .stats = nsglue_stats

/* ---- inside nsglue: pcap capture (pcap.c) and the counters file (stats.c) */

/* Wrap dev so every frame in and out is also written to path; *out is what the stack drives. */
int nsglue_pcap_open(const char *path, struct netdev *dev, struct netdev **out);
void nsglue_pcap_close(void);
uint64_t nsglue_pcap_frames(void);

struct nsglue_stat_src {
    const char *name;
    const char *help;
};
/* Create /dev/shm/demi-netstack.<pid> holding n counters with these names (0 on failure: counters
 * stay readable through demi_netstack_stats, only the file is missing). */
int nsglue_shm_open(const char *libos, const struct nsglue_stat_src *src, unsigned n);
/* Publish n values (seqlock: a reader never sees a torn set). */
void nsglue_shm_publish(const uint64_t *values, unsigned n);
/* Remove the file (only in the process that made it). */
void nsglue_shm_close(void);
/* In a forked child: forget the mapping without removing the parent's file. */
void nsglue_shm_forget(void);

#endif /* DEMI_NSGLUE_H */
