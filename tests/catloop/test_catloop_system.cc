// catloop across processes: a byte-exact transfer, 64 connections at once, close and SIGKILL, fallback to kernel TCP, fork, SO_REUSEPORT, corruption, a second user, litter.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <net/if.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
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
    // The port's file carries the inodes of our network and PID namespaces (catloop.c: listen_name).
    struct stat net{}, pid{};
    stat("/proc/self/ns/net", &net);
    stat("/proc/self/ns/pid", &pid);
    char ns[64];
    snprintf(ns, sizeof(ns), "%x-%x", (unsigned)net.st_ino, (unsigned)pid.st_ino);
    return std::string("/dev/shm/demi-catloop.") + ns + ".127.0.0.1." + std::to_string(port);
}

char ask(int c, char q);
void answer(int c, char mark);

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

#ifndef CATLOOP_TEST_BYTES
#define CATLOOP_TEST_BYTES (1ull << 30)
#endif

/* 1 GiB (CATLOOP_TEST_BYTES, see CMakeLists.txt) in random message sizes. */
TEST(CatloopSystem, LargeTransferRandomSizesIsByteExactThenEof)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    const uint64_t total = CATLOOP_TEST_BYTES;
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
    if (res[1].skipped())
        GTEST_SKIP() << skip_reason();
    EXPECT_TRUE(res[1].ok()) << "survivor: " << res[1].describe();
    /* The killed listener's file is litter: the next client that looks for a listener there removes it. */
    ChildResult after = run_one([&] {
        child_init("catloop");
        int qd;
        CHECK_DEMI(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
        struct sockaddr_in a = loopback(port);
        demi_qtoken_t qt;
        CHECK_DEMI(demi_connect(&qt, qd, (const struct sockaddr *)&a, sizeof(a)));
        demi_qresult_t qr;
        struct timespec to = secs(kOpTimeoutS);
        CHECK_DEMI(demi_wait(&qr, qt, &to));
        CHECK(qr.qr_opcode == DEMI_OPC_FAILED && qr.qr_ret == ECONNREFUSED, "connect to the dead port: %s %lld",
              opname(qr.qr_opcode), (long long)qr.qr_ret);
        struct stat st;
        CHECK(stat(listener_file(port).c_str(), &st) < 0, "the dead listener's file is still there");
        CHECK_DEMI(demi_close(qd));
        return kExitOk;
    });
    EXPECT_TRUE(after.ok()) << after.describe();
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
            double cpu0 = process_cpu_seconds();
            demi_qresult_t qr;
            struct timespec t = {1, 0};
            CHECK(demi_wait(&qr, qt, &t) == ETIMEDOUT, "pop completed with no data");
            double cpu = process_cpu_seconds() - cpu0;
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

/* An accept waiting 1 s on a quiet listener sleeps (no tick), and a connection request still wakes it. */
TEST(CatloopSystem, IdleAcceptSleepsAndWakesOnConnect)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal listening, waited;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port);
            demi_qtoken_t qt;
            CHECK_DEMI(demi_accept(&qt, l));
            listening.raise();
            double cpu0 = process_cpu_seconds();
            demi_qresult_t qr;
            struct timespec t = {1, 0};
            CHECK(demi_wait(&qr, qt, &t) == ETIMEDOUT, "accept completed with no client");
            double cpu = process_cpu_seconds() - cpu0;
            fprintf(stderr, "idle accept: %.3f s CPU in 1 s\n", cpu);
            CHECK(cpu < 0.1, "idle accept used %.3f s of CPU in 1 s", cpu);
            waited.raise();
            WAIT_FOR(qr, qt, DEMI_OPC_ACCEPT);
            answer(qr.qr_value.ares.qd, 'a');
            CHECK_DEMI(demi_close(qr.qr_value.ares.qd));
            CHECK_DEMI(demi_close(l));
            return kExitOk;
        },
        [&] {
            child_init("catloop");
            listening.await();
            waited.await();
            int c = tcp_connect(port);
            CHECK(ask(c, '?') == 'a', "wrong answer");
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

/*
 * A catloop client in another network namespace (sharing /dev/shm, as containers sharing
 * an IPC namespace do) must not reach a catloop listener of ours: in its namespace nothing
 * listens on 127.0.0.1:port, so the kernel refuses it, and the same port is free to bind.
 */
TEST(CatloopSystem, AnotherNetworkNamespaceNeitherConnectsNorConflicts)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal listening, done;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port);
            listening.raise();
            done.await();
            CHECK_DEMI(demi_close(l));
            return kExitOk;
        },
        [&] {
            listening.await();
            if (unshare(CLONE_NEWNET) != 0) {
                done.raise();
                child_skip("unshare(CLONE_NEWNET): %s (needs CAP_SYS_ADMIN)", strerror(errno));
            }
            /* Bring up the new namespace's loopback (ioctl, no tools needed). */
            int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            struct ifreq ifr{};
            snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
            bool up = s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0 &&
                      (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
            if (s >= 0)
                close(s);
            if (!up) {
                done.raise();
                child_skip("cannot bring up lo in a new network namespace: %s", strerror(errno));
            }
            child_init("catloop");
            int qd;
            CHECK_DEMI(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
            struct sockaddr_in a = loopback(port);
            demi_qtoken_t qt;
            CHECK_DEMI(demi_connect(&qt, qd, (const struct sockaddr *)&a, sizeof(a)));
            demi_qresult_t qr;
            struct timespec to = secs(kOpTimeoutS);
            CHECK_DEMI(demi_wait(&qr, qt, &to));
            CHECK(qr.qr_opcode == DEMI_OPC_FAILED && qr.qr_ret == ECONNREFUSED,
                  "connect from another network namespace: %s %lld (the listener is not in ours)",
                  opname(qr.qr_opcode), (long long)qr.qr_ret);
            CHECK_DEMI(demi_close(qd));
            /* And the port is ours to listen on here. */
            int l = tcp_listener(port);
            CHECK_DEMI(demi_close(l));
            done.raise();
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

/* The connection file of a process (both sides keep it named while the connection lives). */
std::vector<std::string> conn_files_of(pid_t pid)
{
    std::vector<std::string> out;
    std::string prefix = "demi-catloop-c." + std::to_string(pid) + ".";
    DIR *d = opendir("/dev/shm");
    if (d == nullptr)
        return out;
    while (struct dirent *e = readdir(d))
        if (strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0)
            out.push_back(std::string("/dev/shm/") + e->d_name);
    closedir(d);
    return out;
}

/* Garbage over a connection's shared header (indices included): every operation fails with EIO, nothing crashes. */
TEST(CatloopSystem, CorruptedRingIndexGivesEioAndNoCrash)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal listening, corrupted, client_done;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port);
            listening.raise();
            int c = tcp_accept(l);
            corrupted.await();
            demi_qresult_t qr = pop_any(c);
            CHECK(qr.qr_opcode == DEMI_OPC_FAILED && qr.qr_ret == EIO, "server pop on a corrupt region: %s %lld",
                  opname(qr.qr_opcode), (long long)qr.qr_ret);
            client_done.await();
            CHECK_DEMI(demi_close(c));
            CHECK_DEMI(demi_close(l));
            return kExitOk;
        },
        [&] {
            child_init("catloop");
            listening.await();
            int c = tcp_connect(port);
            push_bytes(c, "before", 6);
            std::vector<std::string> files = conn_files_of(getpid());
            CHECK(files.size() == 1, "%zu connection files of ours in /dev/shm", files.size());
            int fd = open(files[0].c_str(), O_RDWR | O_CLOEXEC);
            CHECK(fd >= 0, "open %s: %s", files[0].c_str(), strerror(errno));
            void *m = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
            close(fd);
            /* Everything after the magic: flags, addresses, wake-ups and the ring indices (distinct bytes, so no two indices agree). */
            uint8_t *b = (uint8_t *)m;
            for (size_t i = 8; i < 4096; i++)
                b[i] = (uint8_t)(i * 37 + 11);
            corrupted.raise();
            demi_qresult_t qr = pop_any(c);
            CHECK(qr.qr_opcode == DEMI_OPC_FAILED && qr.qr_ret == EIO, "client pop on a corrupt region: %s %lld",
                  opname(qr.qr_opcode), (long long)qr.qr_ret);
            demi_sgarray_t sga = demi_sgaalloc(5);
            CHECK(sga.sga_numsegs == 1, "sgaalloc");
            memcpy(sga.sga_segs[0].sgaseg_buf, "after", 5);
            demi_qtoken_t qt;
            CHECK_DEMI(demi_push(&qt, c, &sga));
            struct timespec to = secs(kOpTimeoutS);
            CHECK_DEMI(demi_wait(&qr, qt, &to));
            CHECK(qr.qr_opcode == DEMI_OPC_FAILED && qr.qr_ret == EIO, "client push on a corrupt region: %s %lld",
                  opname(qr.qr_opcode), (long long)qr.qr_ret);
            CHECK_DEMI(demi_sgafree(&sga));
            munmap(m, 4096);
            client_done.raise();
            CHECK_DEMI(demi_close(c));
            return kExitOk;
        });
    expect_pair_ok(r);
}

/* A process of another user can neither open a listener's region nor get a shared-memory connection: it uses the kernel. */
TEST(CatloopSystem, SecondUserGetsNoAccessAndFallsBackToKernel)
{
    uid_t uid;
    gid_t gid;
    REQUIRE_SECOND_USER(uid, gid);
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal listening;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port);
            listening.raise();
            int c = tcp_accept(l);
            char buf[5];
            pop_exact(c, buf, 5);
            CHECK(memcmp(buf, "hello", 5) == 0, "wrong bytes");
            push_bytes(c, "world", 5);
            demi_qresult_t qr = pop_any(c);
            CHECK(qr.qr_opcode == DEMI_OPC_POP && qr.qr_value.sga.sga_segs[0].sgaseg_len == 0, "no EOF");
            CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
            CHECK_DEMI(demi_close(c));
            CHECK_DEMI(demi_close(l));
            return kExitOk;
        },
        [&] {
            listening.await();
            BECOME_USER(uid, gid);
            std::string name = listener_file(port).substr(strlen("/dev/shm"));
            int fd = shm_open(name.c_str(), O_RDWR, 0);
            CHECK(fd < 0 && errno == EACCES, "the listener's region opened as nobody (fd %d, %s)", fd, strerror(errno));
            fd = shm_open(name.c_str(), O_RDONLY, 0);
            CHECK(fd < 0 && errno == EACCES, "the listener's region opened read-only as nobody");
            child_init("catloop");
            int c = tcp_connect(port);
            push_bytes(c, "hello", 5);
            char buf[5];
            pop_exact(c, buf, 5);
            CHECK(memcmp(buf, "world", 5) == 0, "wrong reply");
            CHECK(conn_files_of(getpid()).empty(), "a shared-memory connection file was made for nobody");
            CHECK_DEMI(demi_close(c));
            return kExitOk;
        });
    expect_pair_ok(r);
}

/* A listener inherited by a child that then drops to another user (nginx's workers): its clients get kernel TCP. */
TEST(CatloopSystem, AcceptorOfAnotherUserSendsClientsToTheKernel)
{
    uid_t uid;
    gid_t gid;
    REQUIRE_SECOND_USER(uid, gid);
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal accepting, client_done;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port);
            pid_t kid = fork();
            CHECK(kid >= 0, "fork: %s", strerror(errno));
            if (kid == 0) {
                BECOME_USER(uid, gid);
                demi_qtoken_t qt;
                CHECK_DEMI(demi_accept(&qt, l));
                accepting.raise();
                demi_qresult_t qr;
                WAIT_FOR(qr, qt, DEMI_OPC_ACCEPT);
                answer(qr.qr_value.ares.qd, 'n');
                CHECK_DEMI(demi_close(qr.qr_value.ares.qd));
                _exit(kExitOk);
            }
            int st = 0;
            CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == kExitOk, "acceptor as nobody failed (%d)", st);
            client_done.await();
            CHECK_DEMI(demi_close(l));
            return kExitOk;
        },
        [&] {
            child_init("catloop");
            accepting.await();
            /* Watch /dev/shm: not even an attempt at a shared-memory connection is expected. */
            int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
            CHECK(in >= 0 && inotify_add_watch(in, "/dev/shm", IN_CREATE) >= 0, "inotify: %s", strerror(errno));
            int c = tcp_connect(port);
            alignas(struct inotify_event) char ev[4096];
            ssize_t n = read(in, ev, sizeof(ev));
            std::string prefix = "demi-catloop-c." + std::to_string(getpid()) + ".";
            for (ssize_t off = 0; n > 0 && off < n;) {
                const struct inotify_event *e = (const struct inotify_event *)(ev + off);
                CHECK(e->len == 0 || strncmp(e->name, prefix.c_str(), prefix.size()) != 0,
                      "a connection file %s was made for another user's acceptor", e->name);
                off += (ssize_t)(sizeof(*e) + e->len);
            }
            close(in);
            CHECK(ask(c, '?') == 'n', "wrong answer");
            CHECK_DEMI(demi_close(c));
            client_done.raise();
            return kExitOk;
        });
    expect_pair_ok(r);
}

/* One byte in, one byte (the answering process's mark) out. */
char ask(int c, char q)
{
    push_bytes(c, &q, 1);
    char a = 0;
    pop_exact(c, &a, 1);
    return a;
}

void answer(int c, char mark)
{
    char q;
    pop_exact(c, &q, 1);
    push_bytes(c, &mark, 1);
}

/* A listener inherited across fork accepts in whichever process asks, and lives until its last holder closes it. */
TEST(CatloopSystem, ListenerSharedAcrossForkAcceptsInEitherProcess)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal listening, child_done, third;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port);
            pid_t kid = fork();
            CHECK(kid >= 0, "fork: %s", strerror(errno));
            if (kid == 0) {
                /* The child's own LibOS state, the listener shared. */
                int c = tcp_accept(l);
                answer(c, 'c');
                CHECK_DEMI(demi_close(c));
                CHECK_DEMI(demi_close(l));
                _exit(kExitOk);
            }
            listening.raise();
            int c = tcp_accept(l);
            answer(c, 'p');
            CHECK_DEMI(demi_close(c));
            int st = 0;
            CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == kExitOk, "forked acceptor failed (%d)", st);
            /* The child closed its copy: we still listen. */
            struct stat sb;
            CHECK(stat(listener_file(port).c_str(), &sb) == 0, "the listener's file went with the child's close");
            child_done.raise();
            c = tcp_accept(l);
            answer(c, 'p');
            CHECK_DEMI(demi_close(c));
            third.await();
            CHECK_DEMI(demi_close(l));
            CHECK(stat(listener_file(port).c_str(), &sb) < 0, "listener file left after the last close");
            return kExitOk;
        },
        [&] {
            child_init("catloop");
            listening.await();
            int a = tcp_connect(port);
            int b = tcp_connect(port);
            char x = ask(a, '?'), y = ask(b, '?');
            CHECK((x == 'p' && y == 'c') || (x == 'c' && y == 'p'), "answers '%c' and '%c': one process took both", x, y);
            CHECK_DEMI(demi_close(a));
            CHECK_DEMI(demi_close(b));
            child_done.await();
            int c = tcp_connect(port);
            CHECK(ask(c, '?') == 'p', "third connection");
            CHECK_DEMI(demi_close(c));
            third.raise();
            return kExitOk;
        });
    expect_pair_ok(r);
}

/* An acceptor that dies between taking a request and answering it: the client posts it again, a sibling accepts. */
TEST(CatloopSystem, RequestTakenByACrashingAcceptorIsPostedAgain)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal child_waits, child_gone;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port);
            setenv("DEMI_CATLOOP_TEST_DIE_ON_TAKE", "1", 1); /* read by the fork child only */
            pid_t kid = fork();
            CHECK(kid >= 0, "fork: %s", strerror(errno));
            if (kid == 0) {
                demi_qtoken_t qt;
                CHECK_DEMI(demi_accept(&qt, l));
                child_waits.raise();
                demi_qresult_t qr;
                struct timespec to = secs(kOpTimeoutS);
                demi_wait(&qr, qt, &to);
                _exit(kExitFail); /* the hook should have ended us */
            }
            unsetenv("DEMI_CATLOOP_TEST_DIE_ON_TAKE");
            int st = 0;
            CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 99,
                  "the acceptor did not die on its take (status %d)", st);
            child_gone.raise();
            int c = tcp_accept(l);
            answer(c, 'p');
            CHECK_DEMI(demi_close(c));
            CHECK_DEMI(demi_close(l));
            return kExitOk;
        },
        [&] {
            child_init("catloop");
            child_waits.await();
            int c = tcp_connect(port);
            CHECK(ask(c, '?') == 'p', "wrong answer");
            CHECK_DEMI(demi_close(c));
            return kExitOk;
        });
    (void)child_gone;
    expect_pair_ok(r);
}

/* A connection inherited across fork keeps working in the child after the parent closes its copy; EOF comes with the last close. */
TEST(CatloopSystem, ConnectionInheritedAcrossForkOutlivesTheParentsClose)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal listening;
    auto r = run_pair(
        [&] {
            child_init("catloop");
            int l = tcp_listener(port);
            listening.raise();
            int c = tcp_accept(l);
            pid_t kid = fork();
            CHECK(kid >= 0, "fork: %s", strerror(errno));
            if (kid == 0) {
                char buf[4];
                pop_exact(c, buf, 4);
                CHECK(memcmp(buf, "ping", 4) == 0, "child got other bytes");
                push_bytes(c, "pong", 4);
                CHECK_DEMI(demi_close(c));
                _exit(kExitOk);
            }
            CHECK_DEMI(demi_close(c)); /* at once: the child still holds it */
            int st = 0;
            CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == kExitOk, "forked server failed (%d)", st);
            CHECK_DEMI(demi_close(l));
            return kExitOk;
        },
        [&] {
            child_init("catloop");
            listening.await();
            int c = tcp_connect(port);
            usleep(50000); /* let the parent's close land first */
            push_bytes(c, "ping", 4);
            char buf[4];
            pop_exact(c, buf, 4);
            CHECK(memcmp(buf, "pong", 4) == 0, "wrong reply");
            demi_qresult_t qr = pop_any(c);
            CHECK(qr.qr_opcode == DEMI_OPC_POP && qr.qr_value.sga.sga_segs[0].sgaseg_len == 0,
                  "after the last close: %s %lld", opname(qr.qr_opcode), (long long)qr.qr_ret);
            CHECK_DEMI(demi_sgafree(&qr.qr_value.sga));
            CHECK_DEMI(demi_close(c));
            return kExitOk;
        });
    expect_pair_ok(r);
}

int reuseport_listener(uint16_t port, bool reuseport, int *err)
{
    int qd = -1;
    CHECK_DEMI(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
    int one = 1;
    if (reuseport)
        CHECK_DEMI(demi_setsockopt(qd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)));
    struct sockaddr_in a = loopback(port);
    *err = demi_bind(qd, (const struct sockaddr *)&a, sizeof(a));
    if (*err == 0)
        *err = demi_listen(qd, 16);
    return qd;
}

/* Serve one-byte questions with mark until no connection comes for 2 s (the first may take longer to come). */
void serve_marks(int l, char mark)
{
    for (bool first = true;; first = false) {
        demi_qtoken_t qt;
        CHECK_DEMI(demi_accept(&qt, l));
        demi_qresult_t qr;
        struct timespec to = first ? secs(kOpTimeoutS) : secs(2);
        int rc = demi_wait(&qr, qt, &to);
        if (rc == ETIMEDOUT)
            return;
        CHECK(rc == 0 && qr.qr_opcode == DEMI_OPC_ACCEPT, "accept: %d %s", rc, opname(qr.qr_opcode));
        answer(qr.qr_value.ares.qd, mark);
        CHECK_DEMI(demi_close(qr.qr_value.ares.qd));
    }
}

/* Two live listeners with SO_REUSEPORT share a port and its connections; a third without it gets EADDRINUSE. */
TEST(CatloopSystem, ReusePortListenersShareConnections)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal a_up, b_up;
    ChildResult res[3];
    clear_skip_note();
    res[0].pid = spawn([&] {
        child_init("catloop");
        int err;
        int l = reuseport_listener(port, true, &err);
        CHECK(err == 0, "first SO_REUSEPORT listener: %s", strerror(err));
        a_up.raise();
        serve_marks(l, 'A');
        CHECK_DEMI(demi_close(l));
        return kExitOk;
    });
    res[1].pid = spawn([&] {
        child_init("catloop");
        a_up.await();
        int err;
        int l2 = reuseport_listener(port, false, &err);
        CHECK(err == EADDRINUSE, "a listener without SO_REUSEPORT on a taken port: %s", strerror(err));
        CHECK_DEMI(demi_close(l2));
        int l = reuseport_listener(port, true, &err);
        CHECK(err == 0, "second SO_REUSEPORT listener: %s", strerror(err));
        b_up.raise();
        serve_marks(l, 'B');
        CHECK_DEMI(demi_close(l));
        return kExitOk;
    });
    res[2].pid = spawn([&] {
        child_init("catloop");
        b_up.await();
        int seen[2] = {0, 0};
        for (int i = 0; i < 16; i++) {
            int c = tcp_connect(port);
            char m = ask(c, '?');
            CHECK(m == 'A' || m == 'B', "answer '%c'", m);
            seen[m - 'A']++;
            CHECK_DEMI(demi_close(c));
        }
        CHECK(seen[0] > 0 && seen[1] > 0, "connections went %d to A and %d to B", seen[0], seen[1]);
        return kExitOk;
    });
    reap(res, 3, 60);
    for (auto &c : res)
        if (c.skipped())
            GTEST_SKIP() << skip_reason();
    EXPECT_TRUE(res[0].ok()) << "A: " << res[0].describe();
    EXPECT_TRUE(res[1].ok()) << "B: " << res[1].describe();
    EXPECT_TRUE(res[2].ok()) << "client: " << res[2].describe();
    struct stat st;
    EXPECT_NE(stat(listener_file(port).c_str(), &st), 0) << "listener file left after both closed";
}

/* A client SIGKILLed while its connection request waits leaves nothing in /dev/shm once the listener has looked. */
TEST(CatloopSystem, ClientKilledBeforeAcceptLeavesNoFiles)
{
    uint16_t port = free_port();
    ASSERT_NE(port, 0);
    Signal listening, posted, killed;
    ChildResult res[2];
    clear_skip_note();
    int pfd[2];
    ASSERT_EQ(pipe(pfd), 0);
    res[0].pid = spawn([&] {
        child_init("catloop");
        int l = tcp_listener(port);
        listening.raise();
        killed.await();
        pid_t dead = 0;
        CHECK(read(pfd[0], &dead, sizeof(dead)) == (ssize_t)sizeof(dead), "no pid");
        CHECK(!conn_files_of(dead).empty(), "the killed client %d had no connection file (nothing to test)", (int)dead);
        /* Now accept: the dead request is found, discarded, and its file removed. */
        demi_qtoken_t qt;
        CHECK_DEMI(demi_accept(&qt, l));
        demi_qresult_t qr;
        struct timespec to = {0, 300000000};
        int rc = demi_wait(&qr, qt, &to);
        CHECK(rc == ETIMEDOUT, "accept of a dead client's request completed (%d)", rc);
        std::vector<std::string> left = conn_files_of(dead);
        CHECK(left.empty(), "%zu files of the dead client left, e.g. %s", left.size(), left.empty() ? "" : left[0].c_str());
        CHECK_DEMI(demi_close(l));
        return kExitOk;
    });
    res[1].pid = spawn([&] {
        child_init("catloop");
        listening.await();
        int qd;
        CHECK_DEMI(demi_socket(&qd, AF_INET, SOCK_STREAM, 0));
        struct sockaddr_in a = loopback(port);
        demi_qtoken_t qt;
        CHECK_DEMI(demi_connect(&qt, qd, (const struct sockaddr *)&a, sizeof(a)));
        posted.raise();
        for (;;)
            pause();
        return kExitOk;
    });
    {
        struct pollfd pf = {posted.fd[0], POLLIN, 0};
        poll(&pf, 1, kOpTimeoutS * 1000);
    }
    pid_t dead = res[1].pid;
    kill(dead, SIGKILL);
    reap(&res[1], 1, 10);
    ASSERT_EQ(write(pfd[1], &dead, sizeof(dead)), (ssize_t)sizeof(dead));
    {
        char c = 1;
        ASSERT_EQ(write(killed.fd[1], &c, 1), 1);
    }
    reap(&res[0], 1, 30);
    close(pfd[0]);
    close(pfd[1]);
    if (res[0].skipped())
        GTEST_SKIP() << skip_reason();
    EXPECT_TRUE(res[0].ok()) << "listener: " << res[0].describe();
    EXPECT_TRUE(conn_files_of(dead).empty());
}

} // namespace
