/*
 * TCP echo: a server that echoes to many clients at once from one thread, and
 * a client that measures the round trip of each message.
 *
 * The server keeps exactly one operation outstanding per connection (a pop,
 * or the push echoing what that pop returned) plus one accept, and waits on
 * all of them together with demi_wait_any.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "tcp-echo --server ADDR PORT [count]\n"
    "       tcp-echo --client ADDR PORT [size] [count]\n"
    "  server: echo every connection; exit after serving `count` connections (default: run forever)\n"
    "  client: send `count` messages of `size` bytes (default 64, 1000), check each echo\n";

/* ---- server ------------------------------------------------------------------ */

enum op_kind { OP_ACCEPT, OP_POP, OP_PUSH };

/* What an outstanding token is for. With one token per connection this is also the connection. */
struct op {
    enum op_kind kind;
    int qd;
    demi_sgarray_t sga;         /* OP_PUSH: the popped data being echoed */
    struct sockaddr_in peer;
    uint64_t echoed;            /* bytes echoed on this connection so far */
};

/* The tokens to wait on, and what each is for (qts[i] belongs to ops[i]). */
static demi_qtoken_t *qts;
static struct op *ops;
static int nops, capops;

static void add_op(demi_qtoken_t qt, const struct op *op)
{
    if (nops == capops) {
        capops = capops ? 2 * capops : 16;
        qts = realloc(qts, capops * sizeof(*qts));
        ops = realloc(ops, capops * sizeof(*ops));
        if (qts == NULL || ops == NULL)
            die("out of memory");
    }
    qts[nops] = qt;
    ops[nops] = *op;
    nops++;
}

static void remove_op(int i)
{
    nops--;
    qts[i] = qts[nops];
    ops[i] = ops[nops];
}

static void close_conn(struct op *conn, const char *why)
{
    char buf[32];
    printf("connection %s (qd %d): %s, %llu bytes echoed\n", addr_str(&conn->peer, buf, sizeof(buf)), conn->qd,
           why, (unsigned long long)conn->echoed);
    DEMI_CHECK(demi_close(conn->qd));
}

/* Start the next pop on a connection; a connection that cannot pop is closed, not fatal. */
static void start_pop(struct op *conn)
{
    demi_qtoken_t qt;
    int rc = demi_pop(&qt, conn->qd);
    if (rc != 0) {
        close_conn(conn, strerror(rc));
        return;
    }
    conn->kind = OP_POP;
    add_op(qt, conn);
}

static void start_accept(int listen_qd)
{
    demi_qtoken_t qt;
    struct op op = { .kind = OP_ACCEPT, .qd = listen_qd };
    DEMI_CHECK(demi_accept(&qt, listen_qd));
    add_op(qt, &op);
}

static int run_server(const struct sockaddr_in *local, uint32_t count)
{
    char buf[32];
    uint32_t accepted = 0;
    int listen_qd = tcp_listen(local, 64);

    printf("echoing on %s%s\n", addr_str(local, buf, sizeof(buf)), count ? "" : " until killed");
    start_accept(listen_qd);

    while (nops > 0) {
        demi_qresult_t qr;
        int i;
        DEMI_CHECK(demi_wait_any(&qr, &i, qts, nops, NULL));
        struct op op = ops[i];
        remove_op(i);
        bool failed = qr.qr_opcode == DEMI_OPC_FAILED;

        switch (op.kind) {
        case OP_ACCEPT:
            if (failed) {
                warn("accept failed: %s", strerror((int)qr.qr_ret));
            } else {
                struct op conn = { .qd = qr.qr_value.ares.qd, .peer = qr.qr_value.ares.addr };
                accepted++;
                printf("connection %s (qd %d): accepted\n", addr_str(&conn.peer, buf, sizeof(buf)), conn.qd);
                start_pop(&conn);
            }
            if (count == 0 || accepted < count)
                start_accept(listen_qd);
            else
                DEMI_CHECK(demi_close(listen_qd)); /* no more connections: let the rest finish */
            break;

        case OP_POP:
            if (failed) {
                close_conn(&op, strerror((int)qr.qr_ret));
            } else if (sga_len(&qr.qr_value.sga) == 0) {
                free_sga(&qr.qr_value.sga);
                close_conn(&op, "closed by peer");
            } else {
                /* Echo the very buffer we were given; it is freed when the push completes. */
                demi_qtoken_t qt;
                op.sga = qr.qr_value.sga;
                int rc = demi_push(&qt, op.qd, &op.sga);
                if (rc != 0) {
                    free_sga(&op.sga);
                    close_conn(&op, strerror(rc));
                } else {
                    op.kind = OP_PUSH;
                    add_op(qt, &op);
                }
            }
            break;

        case OP_PUSH:
            op.echoed += sga_len(&op.sga);
            free_sga(&op.sga);
            if (failed)
                close_conn(&op, strerror((int)qr.qr_ret));
            else
                start_pop(&op);
            break;
        }
    }
    printf("served %u connections\n", accepted);
    free(qts);
    free(ops);
    return 0;
}

/* ---- client ------------------------------------------------------------------ */

/*
 * Send one message and collect its echo. A large echo starts coming back
 * before the push has finished, so pop while the push is in flight: waiting
 * for the push first deadlocks once the socket buffers both ways are full.
 */
static void echo_one(int qd, const demi_sgarray_t *msg, uint8_t *reply, size_t size)
{
    demi_qtoken_t qts[2]; /* [0] the push, [1] the current pop */
    bool pushing = true;
    size_t got = 0;

    DEMI_CHECK(demi_push(&qts[0], qd, msg));
    DEMI_CHECK(demi_pop(&qts[1], qd));
    while (pushing || got < size) {
        /* Wait on the push while it is pending, and on the pop while echo bytes are missing. */
        int first = pushing ? 0 : 1;
        int n = (pushing ? 1 : 0) + (got < size ? 1 : 0);
        struct timespec timeout = { .tv_sec = OP_TIMEOUT_S, .tv_nsec = 0 };
        demi_qresult_t qr;
        int i;

        int rc = demi_wait_any(&qr, &i, &qts[first], n, &timeout);
        if (rc == ETIMEDOUT)
            die("echo: no progress for %d s, giving up", OP_TIMEOUT_S);
        check_rc(rc, "demi_wait_any");
        bool is_push = first + i == 0;
        if (qr.qr_opcode == DEMI_OPC_FAILED)
            die("%s failed: %s", is_push ? "push" : "pop", strerror((int)qr.qr_ret));
        if (is_push) {
            pushing = false;
            continue;
        }

        size_t len = sga_len(&qr.qr_value.sga);
        if (len == 0)
            die("server closed the connection after echoing %zu of %zu bytes", got, size);
        if (len > size - got)
            die("server sent %zu bytes more than the %zu sent", len - (size - got), size);
        sga_copy(reply + got, &qr.qr_value.sga);
        free_sga(&qr.qr_value.sga);
        got += len;
        if (got < size)
            DEMI_CHECK(demi_pop(&qts[1], qd));
    }
}

static int run_client(const struct sockaddr_in *remote, uint32_t size, uint32_t count)
{
    int qd = tcp_connect(remote);
    demi_sgarray_t sga = alloc_sga(size);
    uint8_t *reply = malloc(size);
    uint64_t *rtt = malloc(count * sizeof(*rtt));
    if (reply == NULL || rtt == NULL)
        die("out of memory");

    uint64_t start = now_ns();
    for (uint32_t i = 0; i < count; i++) {
        /* Each message continues the test stream, so no two messages are alike. */
        fill_pattern(sga_data(&sga), size, (uint64_t)i * size);
        uint64_t t0 = now_ns();
        echo_one(qd, &sga, reply, size);
        rtt[i] = now_ns() - t0;

        if (memcmp(reply, sga_data(&sga), size) != 0) {
            long at = check_pattern(reply, size, (uint64_t)i * size);
            die("message %u: echo differs from what was sent at byte %ld", i, at);
        }
    }
    uint64_t total = now_ns() - start;

    char buf[32];
    printf("%u messages of %u bytes echoed by %s in %.1f ms\n", count, size,
           addr_str(remote, buf, sizeof(buf)), total / 1e6);
    print_latency("round trip", rtt, count);

    free_sga(&sga);
    DEMI_CHECK(demi_close(qd));
    free(reply);
    free(rtt);
    return 0;
}

int main(int argc, char *argv[])
{
    struct cmdline cl;
    parse_cmdline(argc, argv, usage, 2, 4, &cl);
    struct sockaddr_in addr = parse_addr(cl.pos[0], cl.pos[1]);

    if (cl.mode == MODE_SERVER) {
        if (cl.npos > 3)
            usage_exit();
        uint32_t count = cl.npos > 2 ? parse_u32(cl.pos[2], "count", 0, UINT32_MAX) : 0;
        init_libos(argc, argv);
        return run_server(&addr, count);
    }
    uint32_t size = cl.npos > 2 ? parse_u32(cl.pos[2], "size", 1, 1 << 24) : 64;
    uint32_t count = cl.npos > 3 ? parse_u32(cl.pos[3], "count", 1, 100000000) : 1000;
    init_libos(argc, argv);
    return run_client(&addr, size, count);
}
