/*
 * The qd table: maps queue descriptors to queues. Freed qds are reused in FIFO
 * order and only after many others have been freed, so a stale qd held by a
 * careless caller is very unlikely to name a new queue. Called with the core lock held.
 */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#define QD_MAX (1u << 20)         /* hard cap on open queues */
#define QD_REUSE_DELAY 1024u      /* freed qds wait behind this many others before reuse */

static struct core_queue **table; /* qd -> queue, NULL if free */
static uint32_t table_cap;
static uint32_t next_fresh;       /* next never-used qd */
static uint32_t *fifo;            /* freed qds, oldest first */
static uint32_t fifo_cap, fifo_head, fifo_len;

static int grow_table(void)
{
    uint32_t ncap = table_cap ? table_cap * 2 : 256;
    if (ncap > QD_MAX)
        ncap = QD_MAX;
    if (ncap <= table_cap)
        return -EMFILE;
    struct core_queue **nt = realloc(table, ncap * sizeof(*nt));
    if (nt == NULL)
        return -ENOMEM;
    for (uint32_t i = table_cap; i < ncap; i++)
        nt[i] = NULL;
    table = nt;
    table_cap = ncap;
    return 0;
}

static int fifo_push(uint32_t qd)
{
    if (fifo_len == fifo_cap) {
        uint32_t ncap = fifo_cap ? fifo_cap * 2 : 1024;
        uint32_t *nf = malloc(ncap * sizeof(*nf));
        if (nf == NULL)
            return -ENOMEM;
        for (uint32_t i = 0; i < fifo_len; i++)
            nf[i] = fifo[(fifo_head + i) % fifo_cap];
        free(fifo);
        fifo = nf;
        fifo_cap = ncap;
        fifo_head = 0;
    }
    fifo[(fifo_head + fifo_len) % fifo_cap] = qd;
    fifo_len++;
    return 0;
}

int core_qd_alloc(struct core_queue **q_out, enum core_qkind kind)
{
    uint32_t qd;
    if (fifo_len > QD_REUSE_DELAY || (next_fresh >= QD_MAX && fifo_len > 0)) {
        qd = fifo[fifo_head];
        fifo_head = (fifo_head + 1) % fifo_cap;
        fifo_len--;
    } else {
        if (next_fresh >= QD_MAX)
            return -EMFILE;
        if (next_fresh >= table_cap) {
            int rc = grow_table();
            if (rc < 0)
                return rc;
        }
        qd = next_fresh++;
    }
    struct core_queue *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        if (qd == next_fresh - 1)
            next_fresh--;
        else
            (void)fifo_push(qd);
        return -ENOMEM;
    }
    q->qd = (int)qd;
    q->kind = kind;
    q->fork_gen = core.fork_gen;
    q->state = kind == CORE_Q_PIPE ? CORE_QS_CONNECTED : CORE_QS_CREATED;
    table[qd] = q;
    *q_out = q;
    return (int)qd;
}

struct core_queue *core_qd_get(int qd)
{
    if (qd < 0 || (uint32_t)qd >= next_fresh)
        return NULL;
    return table[qd];
}

void core_qd_free(struct core_queue *q)
{
    uint32_t qd = (uint32_t)q->qd;
    table[qd] = NULL;
    free(q);
    /* If the FIFO cannot grow the qd is simply never reused. */
    (void)fifo_push(qd);
}

void core_qd_reset(void)
{
    for (uint32_t i = 0; i < next_fresh; i++)
        free(table ? table[i] : NULL);
    free(table);
    free(fifo);
    table = NULL;
    fifo = NULL;
    table_cap = next_fresh = fifo_cap = fifo_head = fifo_len = 0;
}

int core_queue_new(enum core_qkind kind, void *priv, struct core_queue **q_out)
{
    struct core_queue *q;
    int qd = core_qd_alloc(&q, kind);
    if (qd < 0)
        return qd;
    q->state = CORE_QS_CONNECTED;
    q->priv = priv;
    if (q_out)
        *q_out = q;
    return qd;
}
