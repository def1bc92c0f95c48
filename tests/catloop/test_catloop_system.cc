// catloop across processes: a byte-exact transfer, 64 connections at once, close and SIGKILL, and fallback to kernel TCP.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "system/syshelp.h"

using namespace syshelp;

namespace {

void expect_pair_ok(const PairResult &r)
{
    if (r.any_skip())
        GTEST_SKIP() << skip_reason();
    EXPECT_TRUE(r.both_ok()) << r.describe();
}

std::string listener_file(uint16_t port)
{
    return "/dev/shm/demi-catloop.127.0.0.1." + std::to_string(port);
}

/* One pop of any length; returns the completion (the caller frees the sga). */
demi_qresult_t pop_any(int qd, int timeout_s = kOpTimeoutS)
{
    demi_qtoken_t qt;
    CHECK_DEMI(demi_pop(&qt, qd));
    demi_qresult_t qr;
    struct timespec to = secs(timeout_s);
    int rc = demi_wait(&qr, qt, &to);
    CHECK(rc == 0, "demi_wait(pop) returned %d (%s)", rc, strerror(rc));
    return qr;
}

TEST(CatloopSystem, LargeTransferRandomSizesIsByteExactThenEof)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    const uint64_t total = 64ull << 20;
    const uint64_t seed = test_seed();
    Signal listening;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port);
            struct stat st;
            CHECK(stat(listener_file(port).c_str(), &st) == 0, "no listener file: %s", strerror(errno));
            CHECK((st.st_mode & 0777) == 0600, "listener file mode %o", st.st_mode & 0777);
            listening.raise();
            int c = tcp_accept(l);
            ByteStream want(seed);
            std::vector<uint8_t> exp(1 << 20);
            uint64_t got = 0;
            for (;;) {
                demi_qresult_t qr = pop_any(c);
                CHECK(qr.qr_opcode == DEMI_OPC_POP, "pop: %s %s", opname(qr.qr_opcode), strerror((int)qr.qr_ret));
                uint32_t n = qr.qr_value.sga.sga_segs[0].sgaseg_len;
                if (n == 0) {
                    CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
                    break;
                }
                CHECK(got + n <= total, "more bytes than sent");
                if (exp.size() < n)
                    exp.resize(n);
                want.fill(exp.data(), n);
                CHECK(memcmp(exp.data(), qr.qr_value.sga.sga_segs[0].sgaseg_buf, n) == 0,
                      "bytes differ in [%llu, %llu)", (unsigned long long)got, (unsigned long long)(got + n));
                got += n;
                CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
            }
            CHECK(got == total, "end of stream after %llu of %llu bytes", (unsigned long long)got,
                  (unsigned long long)total);
            CHECK_DEMI(demi_close(c));
            CHECK_DEMI(demi_close(l));
            struct stat st2;
            CHECK(stat(listener_file(port).c_str(), &st2) < 0, "listener file left after close");
            return kExitOk;
        },
        [&] {
            child_init("catloop");
            listening.await();
            int c = tcp_connect(port);
            struct sockaddr_in me, peer;
            socklen_t len = sizeof(me);
            CHECK_DEMI(demi_getsockname(c, (struct sockaddr *)&me, &len));
            len = sizeof(peer);
            CHECK_DEMI(demi_getpeername(c, (struct sockaddr *)&peer, &len));
            CHECK(ntohl(me.sin_addr.s_addr) == INADDR_LOOPBACK && me.sin_port != 0, "local %s", addr_str(me).c_str());
            CHECK(ntohs(peer.sin_port) == port, "peer %s", addr_str(peer).c_str());
            ByteStream bs(seed);
            Prng rng(seed);
            std::vector<uint8_t> buf(1 << 20);
            uint64_t off = 0;
            while (off < total) {
                uint32_t n = rng.next() % 4 == 0 ? rng.range(65536, 1 << 20) : rng.range(1, 4096);
                if (n > total - off)
                    n = (uint32_t)(total - off);
                bs.fill(buf.data(), n);
                push_bytes(c, buf.data(), n);
                off += n;
            }
            CHECK_DEMI(demi_close(c));
            return kExitOk;
        },
        120);
    expect_pair_ok(r);
}

TEST(CatloopSystem, SixtyFourConnectionsAtOnce)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    constexpr int kConns = 64;
    Signal listening;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port, 128);
            listening.raise();
            std::vector<int> qds;
            for (int i = 0; i < kConns; i++)
                qds.push_back(tcp_accept(l));
            /* Each client says its index; echo it back with a mark so crossed wires show. */
            for (int q : qds) {
                uint32_t v;
                pop_exact(q, &v, sizeof(v));
                v |= 0x80000000u;
                push_bytes(q, &v, sizeof(v));
            }
            for (int q : qds) {
                demi_qresult_t qr = pop_any(q);
                CHECK(qr.qr_opcode == DEMI_OPC_POP && qr.qr_value.sga.sga_segs[0].sgaseg_len == 0, "no EOF");
                CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
                CHECK_DEMI(demi_close(q));
            }
            CHECK_DEMI(demi_close(l));
            return kExitOk;
        },
        [&] {
            child_init("catloop");
            listening.await();
            std::vector<int> qds(kConns);
            std::vector<demi_qtoken_t> qts(kConns);
            for (int i = 0; i < kConns; i++) {
                CHECK_DEMI(demi_socket(&qds[i], AF_INET, SOCK_STREAM, 0));
                struct sockaddr_in a = loopback(port);
                CHECK_DEMI(demi_connect(&qts[i], qds[i], (const struct sockaddr *)&a, sizeof(a)));
            }
            for (int i = 0; i < kConns; i++) {
                demi_qresult_t qr;
                WAIT_FOR(qr, qts[i], DEMI_OPC_CONNECT);
            }
            for (int i = 0; i < kConns; i++) {
                uint32_t v = (uint32_t)i;
                push_bytes(qds[i], &v, sizeof(v));
            }
            for (int i = 0; i < kConns; i++) {
                uint32_t v;
                pop_exact(qds[i], &v, sizeof(v));
                CHECK(v == (0x80000000u | (uint32_t)i), "connection %d got %#x", i, v);
                CHECK_DEMI(demi_close(qds[i]));
            }
            return kExitOk;
        },
        60);
    expect_pair_ok(r);
}

TEST(CatloopSystem, PendingPopSeesEofOnPeerClose)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal listening, popping;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port);
            listening.raise();
            int c = tcp_accept(l);
            popping.await();
            CHECK_DEMI(demi_close(c));
            CHECK_DEMI(demi_close(l));
            return kExitOk;
        },
        [&] {
            child_init("catloop");
            listening.await();
            int c = tcp_connect(port);
            demi_qtoken_t qt;
            CHECK_DEMI(demi_pop(&qt, c));
            demi_qresult_t qr;
            struct timespec t = {0, 100000000};
            CHECK(demi_wait(&qr, qt, &t) == ETIMEDOUT, "pop completed with no data");
            popping.raise();
            WAIT_FOR(qr, qt, DEMI_OPC_POP);
            CHECK(qr.qr_value.sga.sga_segs[0].sgaseg_len == 0, "not a zero-length pop");
            CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
            CHECK_DEMI(demi_close(c));
            return kExitOk;
        });
    expect_pair_ok(r);
}

TEST(CatloopSystem, SigkilledPeerGivesEconnreset)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal listening, connected, popping;
    ChildResult res[2];
    clear_skip_note();
    res[0].pid = spawn([&] {
        child_init("catloop");
        int l = tcp_listener(port);
        listening.raise();
        int c = tcp_accept(l);
        (void)c;
        connected.raise();
        for (;;)
            pause();
        return kExitOk;
    });
    res[1].pid = spawn([&] {
        child_init("catloop");
        listening.await();
        int c = tcp_connect(port);
        connected.await();
        demi_qtoken_t qt;
        CHECK_DEMI(demi_pop(&qt, c));
        popping.raise();
        demi_qresult_t qr;
        struct timespec to = secs(kOpTimeoutS);
        CHECK_DEMI(demi_wait(&qr, qt, &to));
        CHECK(qr.qr_opcode == DEMI_OPC_FAILED && qr.qr_ret == ECONNRESET, "pop after the peer died: %s %lld",
              opname(qr.qr_opcode), (long long)qr.qr_ret);
        CHECK_DEMI(demi_close(c));
        return kExitOk;
    });
    /* The parent waits for the survivor's pop, then kills the server. */
    struct pollfd pf = {popping.fd[0], POLLIN, 0};
    poll(&pf, 1, kOpTimeoutS * 1000);
    usleep(100000);
    if (res[0].pid > 0)
        kill(res[0].pid, SIGKILL);
    reap(res, 2, 30);
    unlink(listener_file(port).c_str()); /* the killed listener's file; a later listener would take it over */
    if (res[1].skipped())
        GTEST_SKIP() << skip_reason();
    EXPECT_TRUE(res[1].ok()) << "survivor: " << res[1].describe();
}

/* A pop waiting 1 s on a quiet connection sleeps between ring ticks instead of spinning, and still gets its data. */
TEST(CatloopSystem, IdlePopSleepsAndWakesOnData)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal listening, waited;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port);
            listening.raise();
            int c = tcp_accept(l);
            waited.await();
            push_bytes(c, "late", 4);
            demi_qresult_t qr = pop_any(c);
            CHECK(qr.qr_opcode == DEMI_OPC_POP, "pop");
            CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
            CHECK_DEMI(demi_close(c));
            CHECK_DEMI(demi_close(l));
            return kExitOk;
        },
        [&] {
            child_init("catloop");
            listening.await();
            int c = tcp_connect(port);
            demi_qtoken_t qt;
            CHECK_DEMI(demi_pop(&qt, c));
            struct rusage r0, r1;
            getrusage(RUSAGE_SELF, &r0);
            demi_qresult_t qr;
            struct timespec t = {1, 0};
            CHECK(demi_wait(&qr, qt, &t) == ETIMEDOUT, "pop completed with no data");
            getrusage(RUSAGE_SELF, &r1);
            double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec + r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
                         (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec + r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
            fprintf(stderr, "idle pop: %.3f s CPU in 1 s\n", cpu);
            CHECK(cpu < 0.1, "idle wait used %.3f s of CPU in 1 s", cpu);
            waited.raise();
            WAIT_FOR(qr, qt, DEMI_OPC_POP);
            CHECK(qr.qr_value.sga.sga_segs[0].sgaseg_len == 4, "got %u bytes", qr.qr_value.sga.sga_segs[0].sgaseg_len);
            CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
            CHECK_DEMI(demi_close(c));
            return kExitOk;
        });
    expect_pair_ok(r);
}

/* A plain kernel server (no LibOS) in the child; the catloop client reaches it over kernel TCP. */
TEST(CatloopSystem, ConnectWithoutCatloopListenerFallsBackToKernelTcp)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal listening;
    auto r = run_pair(
        [&] {
            int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            int one = 1;
            setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            struct sockaddr_in a = loopback(port);
            CHECK(bind(l, (struct sockaddr *)&a, sizeof(a)) == 0, "bind: %s", strerror(errno));
            CHECK(listen(l, 4) == 0, "listen: %s", strerror(errno));
            listening.raise();
            int c = accept(l, nullptr, nullptr);
            CHECK(c >= 0, "accept: %s", strerror(errno));
            char buf[5];
            size_t got = 0;
            while (got < sizeof(buf)) {
                ssize_t n = read(c, buf + got, sizeof(buf) - got);
                CHECK(n > 0, "read: %zd %s", n, strerror(errno));
                got += (size_t)n;
            }
            CHECK(memcmp(buf, "hello", 5) == 0, "wrong bytes");
            CHECK(write(c, "world", 5) == 5, "write: %s", strerror(errno));
            close(c);
            close(l);
            return kExitOk;
        },
        [&] {
            child_init("catloop");
            listening.await();
            int c = tcp_connect(port);
            push_bytes(c, "hello", 5);
            char buf[5];
            pop_exact(c, buf, 5);
            CHECK(memcmp(buf, "world", 5) == 0, "wrong reply");
            CHECK_DEMI(demi_close(c));
            return kExitOk;
        });
    expect_pair_ok(r);
}

/* A plain kernel client (no LibOS) reaches a catloop listener, which accepts it over kernel TCP, next to a catloop client. */
TEST(CatloopSystem, ListenerAcceptsPlainKernelClients)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal listening, kernel_done;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port);
            listening.raise();
            for (int i = 0; i < 2; i++) {
                int c = tcp_accept(l);
                char buf[5];
                pop_exact(c, buf, 5);
                CHECK(memcmp(buf, "hello", 5) == 0, "wrong bytes");
                push_bytes(c, "world", 5);
                demi_qresult_t qr = pop_any(c);
                CHECK(qr.qr_opcode == DEMI_OPC_POP && qr.qr_value.sga.sga_segs[0].sgaseg_len == 0, "no EOF");
                CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
                CHECK_DEMI(demi_close(c));
            }
            CHECK_DEMI(demi_close(l));
            return kExitOk;
        },
        [&] {
            listening.await();
            /* First an ordinary program's socket, no LibOS at all... */
            pid_t k = fork();
            if (k == 0) {
                int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct sockaddr_in a = loopback(port);
                if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0 || write(c, "hello", 5) != 5)
                    _exit(kExitFail);
                char buf[5];
                size_t got = 0;
                while (got < 5) {
                    ssize_t n = read(c, buf + got, 5 - got);
                    if (n <= 0)
                        _exit(kExitFail);
                    got += (size_t)n;
                }
                close(c);
                _exit(memcmp(buf, "world", 5) == 0 ? kExitOk : kExitFail);
            }
            int st = 0;
            CHECK(k > 0 && waitpid(k, &st, 0) == k, "kernel client: fork/wait failed");
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == kExitOk, "kernel client failed (status %d)", st);
            /* ...then a catloop client on the same listener. */
            child_init("catloop");
            int c = tcp_connect(port);
            push_bytes(c, "hello", 5);
            char buf[5];
            pop_exact(c, buf, 5);
            CHECK(memcmp(buf, "world", 5) == 0, "wrong reply");
            CHECK_DEMI(demi_close(c));
            return kExitOk;
        });
    expect_pair_ok(r);
}

TEST(CatloopSystem, FallbackOffRefusesKernelPeers)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(port);
    ASSERT_EQ(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    ASSERT_EQ(listen(l, 4), 0);
    ChildResult res = run_one([&] {
        setenv("DEMI_CATLOOP_FALLBACK", "0", 1);
        child_init("catloop");
        int qd;
        CHECK_DEMI(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
        demi_qtoken_t qt;
        CHECK_DEMI(demi_connect(&qt, qd, (const struct sockaddr *)&a, sizeof(a)));
        demi_qresult_t qr;
        struct timespec to = secs(kOpTimeoutS);
        CHECK_DEMI(demi_wait(&qr, qt, &to));
        CHECK(qr.qr_opcode == DEMI_OPC_FAILED && qr.qr_ret == ECONNREFUSED, "connect: %s %lld",
              opname(qr.qr_opcode), (long long)qr.qr_ret);
        CHECK_DEMI(demi_close(qd));
        return kExitOk;
    });
    close(l);
    if (res.skipped())
        GTEST_SKIP() << skip_reason();
    EXPECT_TRUE(res.ok()) << res.describe();
}

TEST(CatloopSystem, StaleListenerFileOfADeadProcessIsTakenOver)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    /* A listener that dies by SIGKILL leaves its file behind. */
    Signal listening;
    ChildResult dead;
    clear_skip_note();
    dead.pid = spawn([&] {
        child_init("catloop");
        tcp_listener(port);
        listening.raise();
        for (;;)
            pause();
        return kExitOk;
    });
    listening.await();
    kill(dead.pid, SIGKILL);
    reap(&dead, 1, 10);
    struct stat st;
    if (stat(listener_file(port).c_str(), &st) != 0)
        GTEST_SKIP() << "listener never came up: " << skip_reason();
    ChildResult res = run_one([&] {
        child_init("catloop");
        int l = tcp_listener(port);
        CHECK_DEMI(demi_close(l));
        return kExitOk;
    });
    EXPECT_TRUE(res.ok()) << res.describe();
}

} // namespace
