/*
 * System tests of the catnap LibOS: a server and a client in two separate
 * processes over 127.0.0.1, each with its own demi_init. The gtest process
 * itself never brings a LibOS up; it forks the roles, reaps them (killing them
 * by PID on a timeout) and asserts on their exit codes.
 */
#include <gtest/gtest.h>

#include <netinet/tcp.h>

#include <vector>

#include "syshelp.h"

using namespace syshelp;

namespace {

constexpr size_t kTransferBytes = 8u << 20;
constexpr uint32_t kMaxPush = 64u << 10;
constexpr int kPushWindow = 8; /* pushes outstanding at once while streaming */

/* Assert on a pair of roles: both passed, or skip if one could not run here. */
#define EXPECT_PAIR_OK(res, extra)                                                         \
    do {                                                                                   \
        if ((res).any_skip() && !(res).server.timed_out && !(res).client.timed_out)        \
            GTEST_SKIP() << "a role could not run on this machine: " << skip_reason()      \
                         << " (" << (res).describe() << ")";                               \
        EXPECT_TRUE((res).server.ok()) << (res).describe() << extra;                       \
        EXPECT_TRUE((res).client.ok()) << (res).describe() << extra;                       \
    } while (0)

#define EXPECT_ONE_OK(res)                                                                 \
    do {                                                                                   \
        if ((res).skipped())                                                               \
            GTEST_SKIP() << "the role could not run on this machine: " << skip_reason();   \
        EXPECT_TRUE((res).ok()) << (res).describe();                                       \
    } while (0)

/* ---- byte-exact transfer ------------------------------------------------------ */

/* Stream kTransferBytes of the seed's data in pushes of random size (1 B .. 64 KiB), several in flight. */
void send_stream(int qd, uint64_t seed)
{
    Prng sizes(seed);
    ByteStream data(seed);
    struct Inflight {
        demi_sgarray_t sga;
        demi_qtoken_t qt;
        uint32_t len;
    };
    std::vector<Inflight> ring(kPushWindow);
    size_t head = 0, count = 0, sent = 0, pushes = 0, completed = 0;

    auto complete_oldest = [&]() {
        Inflight &f = ring[head];
        demi_qresult_t qr;
        WAIT_FOR(qr, f.qt, DEMI_OPC_PUSH);
        CHECK(qr.qr_qd == qd, "push completed on qd %d, expected %d", qr.qr_qd, qd);
        CHECK(qr.qr_qt == f.qt, "result names another token");
        CHECK_DEMI(demi_sgafree(&f.sga));
        head = (head + 1) % kPushWindow;
        count--;
        completed++;
    };

    while (sent < kTransferBytes) {
        if (count == (size_t)kPushWindow)
            complete_oldest();
        uint32_t n = sizes.range(1, kMaxPush);
        if (n > kTransferBytes - sent)
            n = (uint32_t)(kTransferBytes - sent);
        Inflight &f = ring[(head + count) % kPushWindow];
        f.sga = demi_sgaalloc(n);
        CHECK(f.sga.sga_numsegs == 1, "demi_sgaalloc(%u) failed", n);
        f.sga.sga_segs[0].sgaseg_len = n;
        data.fill((uint8_t *)f.sga.sga_segs[0].sgaseg_buf, n);
        f.len = n;
        CHECK_DEMI(demi_push(&f.qt, qd, &f.sga));
        count++;
        pushes++;
        sent += n;
    }
    while (count > 0)
        complete_oldest();
    CHECK(completed == pushes, "%zu of %zu pushes completed", completed, pushes);
}

/* Pop until end of stream, checking every byte against the seed's data and the total count. */
void receive_stream(int qd, uint64_t seed)
{
    ByteStream data(seed);
    std::vector<uint8_t> expect;
    size_t got = 0;
    for (;;) {
        demi_qtoken_t qt;
        CHECK_DEMI(demi_pop(&qt, qd));
        demi_qresult_t qr;
        WAIT_FOR(qr, qt, DEMI_OPC_POP);
        CHECK(qr.qr_value.sga.sga_numsegs == 1, "popped sga has %u segments", qr.qr_value.sga.sga_numsegs);
        uint32_t n = qr.qr_value.sga.sga_segs[0].sgaseg_len;
        if (n == 0) {
            CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
            break;
        }
        CHECK(got + n <= kTransferBytes, "received %zu bytes, more than the %zu sent", got + n, kTransferBytes);
        expect.resize(n);
        data.fill(expect.data(), n);
        const uint8_t *buf = (const uint8_t *)qr.qr_value.sga.sga_segs[0].sgaseg_buf;
        if (memcmp(buf, expect.data(), n) != 0) {
            size_t i = 0;
            while (buf[i] == expect[i])
                i++;
            CHECK(false, "byte %zu of the stream is 0x%02x, expected 0x%02x", got + i, buf[i], expect[i]);
        }
        got += n;
        CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
    }
    CHECK(got == kTransferBytes, "end of stream after %zu bytes, expected %zu", got, kTransferBytes);
}

void transfer(bool client_sends)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0) << "no free port on 127.0.0.1";
    uint64_t seed = test_seed();
    Signal ready;
    ASSERT_TRUE(ready.ok());

    auto server = [&]() {
        child_init();
        int lqd = tcp_listener(port);
        ready.raise();
        int qd = tcp_accept(lqd);
        if (client_sends)
            receive_stream(qd, seed);
        else
            send_stream(qd, seed);
        CHECK_DEMI(demi_close(qd));
        CHECK_DEMI(demi_close(lqd));
        return kExitOk;
    };
    auto client = [&]() {
        child_init();
        ready.await();
        int qd = tcp_connect(port);
        if (client_sends)
            send_stream(qd, seed);
        else
            receive_stream(qd, seed);
        CHECK_DEMI(demi_close(qd));
        return kExitOk;
    };
    PairResult r = run_pair(server, client, 100);
    EXPECT_PAIR_OK(r, " (seed " << seed << "; replay with DEMI_TEST_SEED=" << seed << ")");
}

TEST(CatnapSystem, Transfer8MiBClientToServer) { transfer(true); }

TEST(CatnapSystem, Transfer8MiBServerToClient) { transfer(false); }

/* ---- 1,000 concurrent connections ---------------------------------------------- */

constexpr int kConns = 1000;
constexpr int kConnectBatch = 100;
constexpr size_t kMsgLen = 16;
constexpr rlim_t kNoFile = 4096;

void conn_message(int i, char out[kMsgLen])
{
    char tmp[kMsgLen + 1];
    snprintf(tmp, sizeof(tmp), "conn %06d ....", i);
    memcpy(out, tmp, kMsgLen);
}

[[noreturn]] void nofile_skip()
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    child_skip("cannot raise RLIMIT_NOFILE to %llu for %d connections (soft %llu, hard %llu)",
               (unsigned long long)kNoFile, kConns, (unsigned long long)rl.rlim_cur,
               (unsigned long long)rl.rlim_max);
}

/* Remove entry i from parallel vectors by swapping in the last one. */
template <typename A, typename B> void swap_remove(std::vector<A> &a, std::vector<B> &b, size_t i)
{
    a[i] = a.back();
    a.pop_back();
    b[i] = b.back();
    b.pop_back();
}

TEST(CatnapSystem, ThousandConcurrentConnections)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0) << "no free port on 127.0.0.1";
    Signal ready;
    ASSERT_TRUE(ready.ok());

    auto server = [&]() {
        if (!raise_nofile(kNoFile))
            nofile_skip();
        child_init();
        int lqd = tcp_listener(port, 1024);
        ready.raise();

        /* One accept outstanding while more are due, plus one pop per open connection. */
        std::vector<demi_qtoken_t> qts;
        std::vector<int> owner; /* qd popped on, or -1 for the accept */
        demi_qtoken_t qt;
        CHECK_DEMI(demi_accept(&qt, lqd));
        qts.push_back(qt);
        owner.push_back(-1);
        int accepted = 0, closed = 0, open = 0, max_open = 0, echoed = 0;
        while (closed < kConns) {
            CHECK(!qts.empty(), "nothing left to wait for (%d accepted, %d closed)", accepted, closed);
            demi_qresult_t qr;
            int off = -1;
            struct timespec to = secs(kOpTimeoutS);
            int rc = demi_wait_any(&qr, &off, qts.data(), (int)qts.size(), &to);
            CHECK(rc == 0, "demi_wait_any over %zu tokens: %s (%d accepted, %d closed)", qts.size(), strerror(rc),
                  accepted, closed);
            CHECK(off >= 0 && off < (int)qts.size(), "ready offset %d of %zu", off, qts.size());
            CHECK(qr.qr_qt == qts[off], "result token differs from qts[%d]", off);
            int q = owner[off];
            swap_remove(qts, owner, (size_t)off);
            if (q == -1) {
                CHECK(qr.qr_opcode == DEMI_OPC_ACCEPT, "accept #%d: %s (%s)", accepted + 1, opname(qr.qr_opcode),
                      strerror((int)qr.qr_ret));
                int nq = qr.qr_value.ares.qd;
                accepted++;
                open++;
                if (open > max_open)
                    max_open = open;
                CHECK_DEMI(demi_pop(&qt, nq));
                qts.push_back(qt);
                owner.push_back(nq);
                if (accepted < kConns) {
                    CHECK_DEMI(demi_accept(&qt, lqd));
                    qts.push_back(qt);
                    owner.push_back(-1);
                }
                continue;
            }
            CHECK(qr.qr_opcode == DEMI_OPC_POP, "pop on qd %d: %s (%s)", q, opname(qr.qr_opcode),
                  strerror((int)qr.qr_ret));
            CHECK(qr.qr_qd == q, "pop result names qd %d, expected %d", qr.qr_qd, q);
            demi_sgarray_t sga = qr.qr_value.sga;
            if (sga.sga_segs[0].sgaseg_len == 0) {
                CHECK_DEMI(demi_sgafree(&sga));
                CHECK_DEMI(demi_close(q));
                open--;
                closed++;
                continue;
            }
            /* Echo the popped buffer itself, then pop again. */
            demi_qtoken_t pqt;
            CHECK_DEMI(demi_push(&pqt, q, &sga));
            demi_qresult_t pr;
            WAIT_FOR(pr, pqt, DEMI_OPC_PUSH);
            CHECK_DEMI(demi_sgafree(&sga));
            echoed++;
            CHECK_DEMI(demi_pop(&qt, q));
            qts.push_back(qt);
            owner.push_back(q);
        }
        CHECK(accepted == kConns, "accepted %d connections", accepted);
        CHECK(max_open == kConns, "at most %d connections were open at once, expected %d", max_open, kConns);
        CHECK(echoed >= kConns, "only %d echoes", echoed);
        CHECK_DEMI(demi_close(lqd));
        return kExitOk;
    };

    auto client = [&]() {
        if (!raise_nofile(kNoFile))
            nofile_skip();
        child_init();
        ready.await();
        std::vector<int> qds(kConns, -1);
        struct sockaddr_in sa = loopback(port);

        /* Connect in batches; every connect of a batch is outstanding at once. */
        for (int b = 0; b < kConns; b += kConnectBatch) {
            std::vector<demi_qtoken_t> qts;
            std::vector<int> idx;
            for (int i = b; i < b + kConnectBatch && i < kConns; i++) {
                CHECK_DEMI(demi_socket(&qds[i], AF_INET, SOCK_STREAM, 0));
                demi_qtoken_t qt;
                CHECK_DEMI(demi_connect(&qt, qds[i], (const struct sockaddr *)&sa, sizeof(sa)));
                qts.push_back(qt);
                idx.push_back(i);
            }
            while (!qts.empty()) {
                demi_qresult_t qr;
                int off = -1;
                struct timespec to = secs(kOpTimeoutS);
                int rc = demi_wait_any(&qr, &off, qts.data(), (int)qts.size(), &to);
                CHECK(rc == 0, "demi_wait_any over %zu connects: %s", qts.size(), strerror(rc));
                CHECK(qr.qr_opcode == DEMI_OPC_CONNECT, "connect #%d: %s (%s)", idx[off], opname(qr.qr_opcode),
                      strerror((int)qr.qr_ret));
                CHECK(qr.qr_qd == qds[idx[off]], "connect result on qd %d, expected %d", qr.qr_qd, qds[idx[off]]);
                swap_remove(qts, idx, (size_t)off);
            }
        }

        /* All open now; each carries its index and must get exactly that back. */
        for (int i = 0; i < kConns; i++) {
            struct sockaddr_in peer;
            socklen_t plen = sizeof(peer);
            CHECK_DEMI(demi_getpeername(qds[i], (struct sockaddr *)&peer, &plen));
            CHECK(peer.sin_port == sa.sin_port, "connection %d is to port %u", i, ntohs(peer.sin_port));
            char msg[kMsgLen];
            conn_message(i, msg);
            push_bytes(qds[i], msg, kMsgLen);
        }

        std::vector<std::string> got(kConns);
        std::vector<demi_qtoken_t> qts;
        std::vector<int> idx;
        for (int i = 0; i < kConns; i++) {
            demi_qtoken_t qt;
            CHECK_DEMI(demi_pop(&qt, qds[i]));
            qts.push_back(qt);
            idx.push_back(i);
        }
        int verified = 0;
        while (!qts.empty()) {
            demi_qresult_t qr;
            int off = -1;
            struct timespec to = secs(kOpTimeoutS);
            int rc = demi_wait_any(&qr, &off, qts.data(), (int)qts.size(), &to);
            CHECK(rc == 0, "demi_wait_any over %zu pops: %s (%d verified)", qts.size(), strerror(rc), verified);
            int i = idx[off];
            swap_remove(qts, idx, (size_t)off);
            CHECK(qr.qr_opcode == DEMI_OPC_POP, "pop on connection %d: %s (%s)", i, opname(qr.qr_opcode),
                  strerror((int)qr.qr_ret));
            uint32_t n = qr.qr_value.sga.sga_segs[0].sgaseg_len;
            CHECK(n > 0, "connection %d ended after %zu echoed bytes", i, got[i].size());
            got[i].append((const char *)qr.qr_value.sga.sga_segs[0].sgaseg_buf, n);
            CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
            CHECK(got[i].size() <= kMsgLen, "connection %d: %zu bytes echoed for %zu sent", i, got[i].size(), kMsgLen);
            if (got[i].size() < kMsgLen) {
                demi_qtoken_t qt;
                CHECK_DEMI(demi_pop(&qt, qds[i]));
                qts.push_back(qt);
                idx.push_back(i);
                continue;
            }
            char msg[kMsgLen];
            conn_message(i, msg);
            CHECK(memcmp(got[i].data(), msg, kMsgLen) == 0, "connection %d echoed \"%.*s\"", i, (int)kMsgLen,
                  got[i].data());
            verified++;
        }
        CHECK(verified == kConns, "%d of %d echoes verified", verified, kConns);
        for (int i = 0; i < kConns; i++)
            CHECK_DEMI(demi_close(qds[i]));
        return kExitOk;
    };
    PairResult r = run_pair(server, client, 100);
    EXPECT_PAIR_OK(r, "");
}

/* ---- failures ---------------------------------------------------------------- */

TEST(CatnapSystem, ConnectRefused)
{
    uint16_t port = free_port(); /* nothing listens there */
    ASSERT_NE(port, 0);
    auto role = [&]() {
        child_init();
        int qd;
        CHECK_DEMI(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
        struct sockaddr_in a = loopback(port);
        demi_qtoken_t qt;
        CHECK_DEMI(demi_connect(&qt, qd, (const struct sockaddr *)&a, sizeof(a)));
        demi_qresult_t qr;
        WAIT_FOR(qr, qt, DEMI_OPC_FAILED);
        CHECK(qr.qr_ret == ECONNREFUSED, "qr_ret %lld (%s), expected ECONNREFUSED", (long long)qr.qr_ret,
              strerror((int)qr.qr_ret));
        CHECK(qr.qr_qd == qd && qr.qr_qt == qt, "result names qd %d", qr.qr_qd);
        CHECK_DEMI(demi_close(qd));
        return kExitOk;
    };
    ChildResult r = run_one(role, 30);
    EXPECT_ONE_OK(r);
}

/*
 * A server that closes with SO_LINGER {1, 0} sends a RST. On a plain Linux
 * socket a blocked recv then fails with ECONNRESET, and a later send with
 * EPIPE (the error is reported once); catnap must turn that into a FAILED pop
 * with ECONNRESET, a failed push, and no clean end of stream afterwards.
 */
TEST(CatnapSystem, PeerResetFailsPendingPop)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal ready, pop_posted, reset_sent;
    ASSERT_TRUE(ready.ok() && pop_posted.ok() && reset_sent.ok());

    auto server = [&]() {
        child_init();
        int lqd = tcp_listener(port);
        ready.raise();
        int qd = tcp_accept(lqd);
        pop_posted.await();
        struct linger l = {1, 0};
        CHECK_DEMI(demi_setsockopt(qd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)));
        CHECK_DEMI(demi_close(qd));
        reset_sent.raise();
        CHECK_DEMI(demi_close(lqd));
        return kExitOk;
    };
    auto client = [&]() {
        child_init();
        ready.await();
        int qd = tcp_connect(port);
        demi_qtoken_t qt;
        CHECK_DEMI(demi_pop(&qt, qd));
        demi_qresult_t qr;
        struct timespec zero = {0, 0};
        int rc = demi_wait(&qr, qt, &zero);
        CHECK(rc == ETIMEDOUT, "pop finished before the peer did anything: wait returned %d, opcode %s", rc,
              opname(qr.qr_opcode));
        pop_posted.raise();
        reset_sent.await();
        WAIT_FOR(qr, qt, DEMI_OPC_FAILED);
        CHECK(qr.qr_ret == ECONNRESET, "pending pop failed with %lld (%s), expected ECONNRESET",
              (long long)qr.qr_ret, strerror((int)qr.qr_ret));

        /* The connection is dead: a push fails (the kernel says EPIPE after reporting the reset once). */
        char byte = 'x';
        demi_sgarray_t sga = demi_sgaalloc(1);
        CHECK(sga.sga_numsegs == 1, "demi_sgaalloc(1) failed");
        memcpy(sga.sga_segs[0].sgaseg_buf, &byte, 1);
        CHECK_DEMI(demi_push(&qt, qd, &sga));
        WAIT_FOR(qr, qt, DEMI_OPC_FAILED);
        CHECK(qr.qr_ret == EPIPE || qr.qr_ret == ECONNRESET, "push after reset failed with %lld (%s)",
              (long long)qr.qr_ret, strerror((int)qr.qr_ret));
        CHECK_DEMI(demi_sgafree(&sga));

        /* And a later pop does not pass the reset off as a clean end of stream. */
        CHECK_DEMI(demi_pop(&qt, qd));
        WAIT_FOR(qr, qt, DEMI_OPC_FAILED);
        CHECK(qr.qr_ret == ECONNRESET, "pop after reset failed with %lld (%s), expected ECONNRESET",
              (long long)qr.qr_ret, strerror((int)qr.qr_ret));
        CHECK_DEMI(demi_close(qd));
        return kExitOk;
    };
    PairResult r = run_pair(server, client, 60);
    EXPECT_PAIR_OK(r, "");
}

TEST(CatnapSystem, CloseCancelsPendingOperations)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal ready;
    ASSERT_TRUE(ready.ok());

    auto server = [&]() {
        child_init();
        int lqd = tcp_listener(port);
        ready.raise();
        int qd = tcp_accept(lqd);
        /* The client closes with its own pop pending: here that is a clean end of stream. */
        demi_qtoken_t qt;
        CHECK_DEMI(demi_pop(&qt, qd));
        demi_qresult_t qr;
        WAIT_FOR(qr, qt, DEMI_OPC_POP);
        CHECK(qr.qr_value.sga.sga_segs[0].sgaseg_len == 0, "popped %u bytes, expected end of stream",
              qr.qr_value.sga.sga_segs[0].sgaseg_len);
        CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
        CHECK_DEMI(demi_close(qd));

        /* An accept still pending when its listener closes is cancelled too. */
        CHECK_DEMI(demi_accept(&qt, lqd));
        CHECK_DEMI(demi_close(lqd));
        WAIT_FOR(qr, qt, DEMI_OPC_FAILED);
        CHECK(qr.qr_ret == ECANCELED, "pending accept failed with %lld (%s), expected ECANCELED",
              (long long)qr.qr_ret, strerror((int)qr.qr_ret));
        return kExitOk;
    };
    auto client = [&]() {
        child_init();
        ready.await();
        int qd = tcp_connect(port);
        demi_qtoken_t qt;
        CHECK_DEMI(demi_pop(&qt, qd));
        demi_qresult_t qr;
        struct timespec zero = {0, 0};
        int rc = demi_wait(&qr, qt, &zero);
        CHECK(rc == ETIMEDOUT, "pop finished with nothing sent: wait returned %d", rc);
        CHECK_DEMI(demi_close(qd));
        WAIT_FOR(qr, qt, DEMI_OPC_FAILED);
        CHECK(qr.qr_ret == ECANCELED, "pending pop failed with %lld (%s), expected ECANCELED",
              (long long)qr.qr_ret, strerror((int)qr.qr_ret));
        CHECK(qr.qr_qt == qt, "result names another token");
        /* The token was consumed by that wait. */
        rc = demi_wait(&qr, qt, &zero);
        CHECK(rc == EINVAL, "second wait on a consumed token returned %d, expected EINVAL", rc);
        return kExitOk;
    };
    PairResult r = run_pair(server, client, 60);
    EXPECT_PAIR_OK(r, "");
}

TEST(CatnapSystem, EndOfStream)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal ready;
    ASSERT_TRUE(ready.ok());
    static const char kHello[] = "hello, end of stream";

    auto server = [&]() {
        child_init();
        int lqd = tcp_listener(port);
        ready.raise();
        int qd = tcp_accept(lqd);
        push_bytes(qd, kHello, sizeof(kHello));
        CHECK_DEMI(demi_close(qd));
        CHECK_DEMI(demi_close(lqd));
        return kExitOk;
    };
    auto client = [&]() {
        child_init();
        ready.await();
        int qd = tcp_connect(port);
        char buf[sizeof(kHello)];
        pop_exact(qd, buf, sizeof(buf));
        CHECK(memcmp(buf, kHello, sizeof(buf)) == 0, "received \"%.*s\"", (int)sizeof(buf), buf);
        for (int k = 0; k < 3; k++) {
            demi_qtoken_t qt;
            CHECK_DEMI(demi_pop(&qt, qd));
            demi_qresult_t qr;
            WAIT_FOR(qr, qt, DEMI_OPC_POP);
            CHECK(qr.qr_value.sga.sga_numsegs == 1, "pop #%d after the data: %u segments", k,
                  qr.qr_value.sga.sga_numsegs);
            CHECK(qr.qr_value.sga.sga_segs[0].sgaseg_len == 0, "pop #%d after the data: %u bytes, expected 0", k,
                  qr.qr_value.sga.sga_segs[0].sgaseg_len);
            CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
        }
        CHECK_DEMI(demi_close(qd));
        return kExitOk;
    };
    PairResult r = run_pair(server, client, 60);
    EXPECT_PAIR_OK(r, "");
}

/* ---- UDP ------------------------------------------------------------------------ */

constexpr int kUdpRounds = 1000;
constexpr size_t kUdpLen = 64;

void udp_payload(int round, bool reply, uint8_t out[kUdpLen])
{
    Prng p((uint64_t)round * 2 + (reply ? 1 : 0));
    for (size_t i = 0; i < kUdpLen; i++)
        out[i] = (uint8_t)p.next();
    memcpy(out, &round, sizeof(round));
}

bool same_addr(const struct sockaddr_in &a, const struct sockaddr_in &b)
{
    return a.sin_family == b.sin_family && a.sin_port == b.sin_port && a.sin_addr.s_addr == b.sin_addr.s_addr;
}

int udp_bound(uint16_t port)
{
    int qd;
    CHECK_DEMI(demi_socket(&qd, AF_INET, SOCK_DGRAM, 0));
    struct sockaddr_in a = loopback(port);
    CHECK_DEMI(demi_bind(qd, (const struct sockaddr *)&a, sizeof(a)));
    return qd;
}

/* Pop one datagram of round `round`, checking its size, sender and contents; returns its sga. */
demi_sgarray_t udp_pop_checked(int qd, int round, bool reply, const struct sockaddr_in &from)
{
    demi_qtoken_t qt;
    CHECK_DEMI(demi_pop(&qt, qd));
    demi_qresult_t qr;
    WAIT_FOR(qr, qt, DEMI_OPC_POP);
    demi_sgarray_t sga = qr.qr_value.sga;
    CHECK(sga.sga_segs[0].sgaseg_len == kUdpLen, "round %d: datagram of %u bytes", round, sga.sga_segs[0].sgaseg_len);
    CHECK(same_addr(sga.sga_addr, from), "round %d: sga_addr %s, expected %s", round, addr_str(sga.sga_addr).c_str(),
          addr_str(from).c_str());
    uint8_t want[kUdpLen];
    udp_payload(round, reply, want);
    CHECK(memcmp(sga.sga_segs[0].sgaseg_buf, want, kUdpLen) == 0, "round %d: wrong payload", round);
    return sga;
}

void udp_push_to(int qd, const uint8_t *data, const struct sockaddr_in &to)
{
    demi_sgarray_t sga = demi_sgaalloc(kUdpLen);
    CHECK(sga.sga_numsegs == 1, "demi_sgaalloc failed");
    memcpy(sga.sga_segs[0].sgaseg_buf, data, kUdpLen);
    sga.sga_segs[0].sgaseg_len = kUdpLen;
    demi_qtoken_t qt;
    CHECK_DEMI(demi_pushto(&qt, qd, &sga, (const struct sockaddr *)&to, sizeof(to)));
    demi_qresult_t qr;
    WAIT_FOR(qr, qt, DEMI_OPC_PUSH);
    CHECK_DEMI(demi_sgafree(&sga));
}

TEST(CatnapSystem, UdpPingPong)
{
    uint16_t sport = free_port(), cport = 0;
    for (int i = 0; i < 10 && (cport == 0 || cport == sport); i++)
        cport = free_port();
    ASSERT_NE(sport, 0);
    ASSERT_NE(cport, 0);
    ASSERT_NE(sport, cport);
    Signal ready;
    ASSERT_TRUE(ready.ok());
    const struct sockaddr_in saddr = loopback(sport), caddr = loopback(cport);

    auto server = [&]() {
        child_init();
        int qd = udp_bound(sport);
        ready.raise();
        for (int r = 0; r < kUdpRounds; r++) {
            demi_sgarray_t sga = udp_pop_checked(qd, r, false, caddr);
            struct sockaddr_in from = sga.sga_addr;
            CHECK_DEMI(demi_sgafree(&sga));
            uint8_t reply[kUdpLen];
            udp_payload(r, true, reply);
            udp_push_to(qd, reply, from);
        }
        CHECK_DEMI(demi_close(qd));
        return kExitOk;
    };
    auto client = [&]() {
        child_init();
        int qd = udp_bound(cport);
        ready.await();
        for (int r = 0; r < kUdpRounds; r++) {
            uint8_t msg[kUdpLen];
            udp_payload(r, false, msg);
            udp_push_to(qd, msg, saddr);
            demi_sgarray_t sga = udp_pop_checked(qd, r, true, saddr);
            CHECK_DEMI(demi_sgafree(&sga));
        }
        CHECK_DEMI(demi_close(qd));
        return kExitOk;
    };
    PairResult r = run_pair(server, client, 60);
    EXPECT_PAIR_OK(r, "");
}

/* ---- connect timeout ---------------------------------------------------------------- */

/*
 * A kernel listener with backlog 0 that never accepts holds one connection in
 * its accept queue; Linux drops every further SYN while that queue is full, so
 * a connect to it stays in SYN_SENT (retrying after 1 s, 3 s, ...). With
 * DEMI_CONNECT_TIMEOUT_MS=500 the demi_connect must fail with ETIMEDOUT soon
 * after 0.5 s.
 */
TEST(CatnapSystem, ConnectTimeout)
{
    auto role = [&]() {
        setenv("DEMI_CONNECT_TIMEOUT_MS", "500", 1);
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(lfd >= 0, "socket: %s", strerror(errno));
        struct sockaddr_in la = loopback(0);
        socklen_t llen = sizeof(la);
        CHECK(bind(lfd, (struct sockaddr *)&la, sizeof(la)) == 0, "bind: %s", strerror(errno));
        CHECK(getsockname(lfd, (struct sockaddr *)&la, &llen) == 0, "getsockname: %s", strerror(errno));
        CHECK(listen(lfd, 0) == 0, "listen: %s", strerror(errno));

        /* Fill the accept queue with kernel connections until one stays in SYN_SENT. */
        std::vector<int> fillers;
        bool full = false;
        for (int i = 0; i < 64 && !full; i++) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            CHECK(fd >= 0, "socket: %s", strerror(errno));
            fillers.push_back(fd);
            if (connect(fd, (struct sockaddr *)&la, sizeof(la)) == 0)
                continue;
            CHECK(errno == EINPROGRESS, "filler connect: %s", strerror(errno));
            struct pollfd p = {fd, POLLOUT, 0};
            int r = poll(&p, 1, 300);
            if (r == 1) {
                int err = 0;
                socklen_t el = sizeof(err);
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
                CHECK(err == 0, "filler connect failed: %s", strerror(err));
                continue;
            }
            struct tcp_info ti;
            socklen_t tl = sizeof(ti);
            memset(&ti, 0, sizeof(ti));
            CHECK(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0, "TCP_INFO: %s", strerror(errno));
            full = ti.tcpi_state == TCP_SYN_SENT;
        }
        if (!full)
            child_skip("the kernel accepted %zu connections on a backlog-0 listener without dropping a SYN",
                       fillers.size());

        child_init();
        int qd;
        CHECK_DEMI(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
        demi_qtoken_t qt;
        uint64_t t0 = now_ns();
        CHECK_DEMI(demi_connect(&qt, qd, (const struct sockaddr *)&la, sizeof(la)));
        demi_qresult_t qr;
        WAIT_FOR(qr, qt, DEMI_OPC_FAILED);
        double ms = (double)(now_ns() - t0) / 1e6;
        CHECK(qr.qr_ret == ETIMEDOUT, "connect failed with %lld (%s) after %.0f ms, expected ETIMEDOUT",
              (long long)qr.qr_ret, strerror((int)qr.qr_ret), ms);
        CHECK(ms >= 450.0, "ETIMEDOUT after %.0f ms, before the 500 ms timeout", ms);
        CHECK(ms <= 3000.0, "ETIMEDOUT only after %.0f ms for a 500 ms timeout", ms);
        CHECK_DEMI(demi_close(qd));
        for (int fd : fillers)
            close(fd);
        close(lfd);
        return kExitOk;
    };
    ChildResult r = run_one(role, 60);
    EXPECT_ONE_OK(r);
}

} // namespace
