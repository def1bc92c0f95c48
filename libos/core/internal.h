/* Core-private state shared by core.c, queue.c, wait.c and sga.c; never included by a LibOS. */
#ifndef DEMI_CORE_INTERNAL_H
#define DEMI_CORE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "libos.h"
#include "log.h"

/* Operation states. */
enum { CORE_OP_FREE = 0, CORE_OP_PENDING, CORE_OP_DONE };

struct core_state {
    pthread_mutex_t lock;
    bool initialized;
    const struct libos_ops *ops;
    struct core_config cfg;

    /* wait machinery (wait.c) */
    pthread_cond_t cond;       /* followers sleep here */
    int wake_efd;              /* eventfd that interrupts the leader's kernel sleep */
    bool leader;               /* a thread is (about to be) asleep in the kernel */
    unsigned followers;        /* threads asleep on cond */
    uint64_t completions;      /* bumped by every completion */
    uint64_t notified;         /* value of completions last announced to sleepers */
    uint32_t wake_word;        /* futex the leader sleeps on inside ops->block; bumped to wake it */
    uint32_t fork_gen;         /* bumped in a child whose LibOS cannot share its queues across fork */
    uint32_t lock_waiters;     /* threads blocked in core_lock (atomic access): a spinning waiter lets go for them */
};

extern struct core_state core;

/*
 * Take the core lock. A thread that finds it taken says so in lock_waiters, so a
 * waiter spinning with the lock held (wait_loop keeps it across a few rounds) lets
 * go at once rather than at its next periodic release.
 */
static inline void core_lock(void)
{
    if (pthread_mutex_trylock(&core.lock) == 0)
        return;
    __atomic_add_fetch(&core.lock_waiters, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&core.lock);
    __atomic_sub_fetch(&core.lock_waiters, 1, __ATOMIC_RELAXED);
}
/* Unlock, waking sleepers first if operations completed since they last looked. */
void core_unlock(void);

/* queue.c: the qd table. */
int core_qd_alloc(struct core_queue **q_out, enum core_qkind kind);
struct core_queue *core_qd_get(int qd);
void core_qd_free(struct core_queue *q);
void core_qd_reset(void);

/* wait.c: the qtoken table and waiting. */
struct core_op *core_op_alloc(struct core_queue *q, demi_opcode_t opc);
void core_op_release(struct core_op *op);       /* drop an op that never started */
struct core_op *core_op_lookup(demi_qtoken_t qt); /* PENDING or DONE op of this token, or NULL */
void core_ops_reset(void);
int core_wait_init(void);
/* Upper bound of the operation table; tests use it to check for leaks. */
size_t core_ops_live(void);

/* sga.c: the buffer pool. */
void core_sga_pool_init(uint64_t max_bytes);
uint64_t core_sga_pool_in_use(void);
void core_sga_pool_reset(void);
void core_sga_pool_lock(void);
void core_sga_pool_unlock(void);


/* Test hooks (core.c). */
int core_test_init(const struct libos_ops *ops, const struct core_config *cfg);
void core_test_reset(void);

#endif /* DEMI_CORE_INTERNAL_H */
