// fork(2) with catnap: a child keeps using inherited sockets, gets its own event set (no
// stolen events, no foreign pointers), and never inherits a core lock held by another thread.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

extern "C" {
#include <arpa/inet.h>
#include <demi/ext.h>
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
}

namespace {

const timespec kFive = {5, 0};

// Child-side check: on failure print why and exit 1.
#define CHILD_CHECK(cond, what)                                                          \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "child: %s failed (%s:%d)\n", what, __FILE__, __LINE__);      \
            _exit(1);                                                                    \
        }                                                                                \
    } while (0)

int wait_child(pid_t pid, int seconds)
{
    for (int i = 0; i < seconds * 100; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return -1; // hung
}

bool push_str(int qd, const std::string &s)
{
    demi_sgarray_t sga = demi_sgaalloc(s.size());
    if (sga.sga_numsegs != 1)
        return false;
    memcpy(sga.sga_segs[0].sgaseg_buf, s.data(), s.size());
    demi_qtoken_t qt;
    demi_qresult_t qr;
    bool ok = demi_push(&qt, qd, &sga) == 0 && demi_wait(&qr, qt, &kFive) == 0 && qr.qr_opcode == DEMI_OPC_PUSH;
    demi_sgafree(&sga);
    return ok;
}

std::string pop_str(int qd, size_t n)
{
    std::string got;
    while (got.size() < n) {
        demi_qtoken_t qt;
        demi_qresult_t qr;
        if (demi_pop(&qt, qd) != 0 || demi_wait(&qr, qt, &kFive) != 0 || qr.qr_opcode != DEMI_OPC_POP)
            return got + "<error>";
        uint32_t len = qr.qr_value.sga.sga_segs[0].sgaseg_len;
        got.append((char *)qr.qr_value.sga.sga_segs[0].sgaseg_buf, len);
        demi_sgafree(&qr.qr_value.sga);
        if (len == 0)
            return got + "<eof>";
    }
    return got;
}

class Fork : public ::testing::Test {
protected:
    static void SetUpTestSuite()
    {
        setenv("DEMI_LIBOS", "catnap", 1);
        static char a0[] = "fork";
        static char *argv[] = {a0, nullptr};
        demi_args args{};
        args.argc = 1;
        args.argv = argv;
        ASSERT_EQ(demi_init(&args), 0);
    }
    void SetUp() override
    {
        ASSERT_EQ(demi_socket(&lst, AF_INET, SOCK_STREAM, 0), 0);
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(demi_bind(lst, (sockaddr *)&addr, sizeof(addr)), 0);
        ASSERT_EQ(demi_listen(lst, 16), 0);
        socklen_t len = sizeof(addr);
        ASSERT_EQ(demi_getsockname(lst, (sockaddr *)&addr, &len), 0);
        ASSERT_EQ(demi_socket(&cli, AF_INET, SOCK_STREAM, 0), 0);
        demi_qtoken_t cqt, aqt;
        demi_qresult_t qr;
        ASSERT_EQ(demi_accept(&aqt, lst), 0);
        ASSERT_EQ(demi_connect(&cqt, cli, (sockaddr *)&addr, sizeof(addr)), 0);
        ASSERT_EQ(demi_wait(&qr, cqt, &kFive), 0);
        ASSERT_EQ(demi_wait(&qr, aqt, &kFive), 0);
        srv = qr.qr_value.ares.qd;
    }
    void TearDown() override
    {
        demi_close(cli);
        demi_close(srv);
        demi_close(lst);
    }
    sockaddr_in addr{};
    int lst = -1, cli = -1, srv = -1;
};

TEST_F(Fork, ChildUsesInheritedSockets)
{
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        CHILD_CHECK(pop_str(srv, 11) == "from-parent", "pop on inherited socket");
        CHILD_CHECK(push_str(srv, "from-child"), "push on inherited socket");
        _exit(0);
    }
    ASSERT_TRUE(push_str(cli, "from-parent"));
    EXPECT_EQ(pop_str(cli, 10), "from-child");
    EXPECT_EQ(wait_child(pid, 20), 0);
}

TEST_F(Fork, PopPendingAcrossForkCompletesInTheChild)
{
    // A pop started before fork is pending in both processes' tables; the child's own
    // event set must still deliver it there.
    demi_qtoken_t qt;
    ASSERT_EQ(demi_pop(&qt, srv), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        demi_qresult_t qr;
        CHILD_CHECK(demi_wait(&qr, qt, &kFive) == 0, "wait on a pop started before fork");
        CHILD_CHECK(qr.qr_opcode == DEMI_OPC_POP && qr.qr_value.sga.sga_segs[0].sgaseg_len == 4, "pop result");
        CHILD_CHECK(memcmp(qr.qr_value.sga.sga_segs[0].sgaseg_buf, "ping", 4) == 0, "pop data");
        _exit(0);
    }
    // The parent's copy of the pop must not steal the bytes: cancel it before sending.
    ASSERT_EQ(demi_close(srv), 0);
    srv = -1;
    demi_qresult_t qr;
    ASSERT_EQ(demi_wait(&qr, qt, &kFive), 0);
    EXPECT_EQ(qr.qr_ret, ECANCELED);
    ASSERT_TRUE(push_str(cli, "ping"));
    EXPECT_EQ(wait_child(pid, 20), 0);
}

TEST_F(Fork, ChildSocketsDoNotDisturbTheParent)
{
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int qd;
        demi_qtoken_t qt;
        demi_qresult_t qr;
        CHILD_CHECK(demi_socket(&qd, AF_INET, SOCK_STREAM, 0) == 0, "socket in child");
        CHILD_CHECK(demi_connect(&qt, qd, (sockaddr *)&addr, sizeof(addr)) == 0, "connect");
        CHILD_CHECK(demi_wait(&qr, qt, &kFive) == 0 && qr.qr_opcode == DEMI_OPC_CONNECT, "connect result");
        CHILD_CHECK(push_str(qd, "hello-from-new-socket"), "push");
        CHILD_CHECK(demi_close(qd) == 0, "close");
        _exit(0);
    }
    demi_qtoken_t aqt;
    demi_qresult_t qr;
    ASSERT_EQ(demi_accept(&aqt, lst), 0);
    ASSERT_EQ(demi_wait(&qr, aqt, &kFive), 0);
    ASSERT_EQ(qr.qr_opcode, DEMI_OPC_ACCEPT);
    int conn = qr.qr_value.ares.qd;
    EXPECT_EQ(pop_str(conn, 21), "hello-from-new-socket");
    EXPECT_EQ(demi_close(conn), 0);
    EXPECT_EQ(wait_child(pid, 20), 0);
    // The parent still works on its own sockets after the child's activity.
    ASSERT_TRUE(push_str(cli, "after"));
    EXPECT_EQ(pop_str(srv, 5), "after");
}

TEST_F(Fork, ForkWhileAnotherThreadIsInsideTheLibrary)
{
    std::atomic<bool> stop{false};
    std::thread busy([&] {
        demi_qtoken_t qt;
        if (demi_pop(&qt, cli) != 0)
            return;
        timespec tiny = {0, 100000};
        demi_qresult_t qr;
        while (!stop)
            demi_wait(&qr, qt, &tiny); // times out over and over, taking the core lock each time
    });
    for (int i = 0; i < 20; i++) {
        pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            int qd;
            CHILD_CHECK(demi_socket(&qd, AF_INET, SOCK_DGRAM, 0) == 0, "socket");
            CHILD_CHECK(demi_close(qd) == 0, "close");
            demi_sgarray_t s = demi_sgaalloc(100);
            CHILD_CHECK(s.sga_numsegs == 1 && demi_sgafree(&s) == 0, "sga");
            _exit(0);
        }
        ASSERT_EQ(wait_child(pid, 10), 0) << "child " << i << " hung or failed (inherited a held lock?)";
    }
    stop = true;
    busy.join();
}

} // namespace
