/*
 * One hashed timer wheel per stack: intrusive timers embedded in their owners
 * (TCP control blocks), armed and cancelled in O(1), no allocation. Chain:
 * ns_poll -> ns_tw_run -> each expired timer's fn (tcp_timer.c handlers).
 */
#ifndef NS_TIMER_WHEEL_H
#define NS_TIMER_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "defaults.h"

struct netstack;

struct ns_timer {
    struct ns_timer *next;
    struct ns_timer **pprev;     /* NULL: not armed */
    uint64_t expires;            /* tick at or after which it fires */
    void (*fn)(struct netstack *ns, struct ns_timer *t);
};

struct ns_timer_wheel {
    struct ns_timer *slot[NS_TW_SLOTS];
    uint64_t tick;               /* last tick processed */
    uint64_t next;               /* no timer fires before this tick (a lower bound) */
    uint64_t tick_ns;
    uint32_t armed;
};

void ns_tw_init(struct ns_timer_wheel *w, uint64_t now_ns);
static inline bool ns_timer_armed(const struct ns_timer *t) { return t->pprev != NULL; }
/* (Re)arm t to fire at the first tick at or after at_ns (never in an already processed tick). */
void ns_tw_arm(struct ns_timer_wheel *w, struct ns_timer *t, uint64_t at_ns);
void ns_tw_cancel(struct ns_timer_wheel *w, struct ns_timer *t);
/* Fire every timer due at now_ns; a handler may arm or cancel any timer. */
void ns_tw_run(struct ns_timer_wheel *w, struct netstack *ns, uint64_t now_ns);
/* Earliest time (ns) a timer may be due, UINT64_MAX when none is armed. */
uint64_t ns_tw_next_ns(const struct ns_timer_wheel *w);

#endif /* NS_TIMER_WHEEL_H */
