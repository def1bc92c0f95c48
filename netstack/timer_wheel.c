/*
 * The stack's timer wheel (see timer_wheel.h): ns_poll -> ns_tw_run -> timer
 * handlers. Slots hold timers whose expiry tick maps to them; a timer more
 * than one rotation away stays in its slot until its tick comes round.
 */
#include "timer_wheel.h"

#define TW_MASK (NS_TW_SLOTS - 1)
_Static_assert((NS_TW_SLOTS & TW_MASK) == 0, "NS_TW_SLOTS must be a power of two");

void ns_tw_init(struct ns_timer_wheel *w, uint64_t now_ns)
{
    for (unsigned i = 0; i < NS_TW_SLOTS; i++)
        w->slot[i] = NULL;
    w->tick_ns = (uint64_t)NS_TIMER_GRANULARITY_MS * 1000000ull;
    w->tick = now_ns / w->tick_ns;
    w->next = UINT64_MAX;
    w->armed = 0;
}

static void link_into(struct ns_timer **head, struct ns_timer *t)
{
    t->next = *head;
    if (t->next)
        t->next->pprev = &t->next;
    *head = t;
    t->pprev = head;
}

static void unlink_t(struct ns_timer *t)
{
    *t->pprev = t->next;
    if (t->next)
        t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
}

void ns_tw_arm(struct ns_timer_wheel *w, struct ns_timer *t, uint64_t at_ns)
{
    if (t->pprev)
        unlink_t(t);
    else
        w->armed++;
    uint64_t e = (at_ns + w->tick_ns - 1) / w->tick_ns;
    if (e <= w->tick)
        e = w->tick + 1;         /* that tick was processed already: the next run takes it */
    t->expires = e;
    link_into(&w->slot[e & TW_MASK], t);
    if (e < w->next)
        w->next = e;
}

void ns_tw_cancel(struct ns_timer_wheel *w, struct ns_timer *t)
{
    if (!t->pprev)
        return;
    unlink_t(t);
    w->armed--;
}

/* A lower bound of the next expiry: the first slot ahead holding a timer of this rotation. */
static void recompute_next(struct ns_timer_wheel *w)
{
    w->next = UINT64_MAX;
    if (w->armed == 0)
        return;
    uint64_t horizon = w->tick + NS_TW_SLOTS;
    for (uint64_t k = w->tick + 1; k <= horizon; k++) {
        for (struct ns_timer *t = w->slot[k & TW_MASK]; t; t = t->next) {
            if (t->expires < w->next)
                w->next = t->expires;
        }
        if (w->next <= horizon)
            return;
    }
    /* Only timers beyond one rotation: look again when the wheel has turned. */
    if (w->next > horizon)
        w->next = horizon;
}

void ns_tw_run(struct ns_timer_wheel *w, struct netstack *ns, uint64_t now_ns)
{
    uint64_t now = now_ns / w->tick_ns;
    if (now <= w->tick)
        return;
    if (w->armed == 0 || now < w->next) {
        w->tick = now;
        return;
    }
    uint64_t from = w->tick + 1;
    if (now - from >= NS_TW_SLOTS)
        from = now - NS_TW_SLOTS + 1;  /* every slot once */
    w->tick = now;                     /* handlers re-arming "now" land in the next tick */
    for (uint64_t k = from; k <= now; k++) {
        struct ns_timer **head = &w->slot[k & TW_MASK];
        if (!*head)
            continue;
        /* Move the slot to a private list so handlers may arm/cancel freely. */
        struct ns_timer *tmp = *head;
        *head = NULL;
        tmp->pprev = &tmp;
        while (tmp) {
            struct ns_timer *t = tmp;
            unlink_t(t);
            if (t->expires <= now) {
                w->armed--;
                t->fn(ns, t);
            } else {
                link_into(&w->slot[t->expires & TW_MASK], t);
            }
        }
    }
    recompute_next(w);
}

uint64_t ns_tw_next_ns(const struct ns_timer_wheel *w)
{
    if (w->armed == 0)
        return UINT64_MAX;
    return w->next * w->tick_ns;
}
