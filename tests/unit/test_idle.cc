// Waiting with nothing to do must sleep in the kernel after a short spin, not hold a core:
// measured as the waiting thread's CPU time over a long wait on catnap.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

extern "C" {
#include <arpa/inet.h>
#include <demi/ext.h>
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>
#include <time.h>
}

namespace {

double thread_cpu_seconds()
{
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

class Idle : public ::testing::Test {
protected:
    static void SetUpTestSuite()
    {
        setenv("DEMI_LIBOS", "catnap", 1);
        static char a0[] = "idle";
        static char *argv[] = {a0, nullptr};
        demi_args args{};
        args.argc = 1;
        args.argv = argv;
        ASSERT_EQ(demi_init(&args), 0);
    }
    void SetUp() override
    {
        ASSERT_EQ(demi_socket(&lst, AF_INET, SOCK_STREAM, 0), 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(demi_bind(lst, (sockaddr *)&a, sizeof(a)), 0);
        ASSERT_EQ(demi_listen(lst, 4), 0);
        socklen_t len = sizeof(a);
        ASSERT_EQ(demi_getsockname(lst, (sockaddr *)&a, &len), 0);
        ASSERT_EQ(demi_socket(&cli, AF_INET, SOCK_STREAM, 0), 0);
        demi_qtoken_t cqt, aqt;
        ASSERT_EQ(demi_accept(&aqt, lst), 0);
        ASSERT_EQ(demi_connect(&cqt, cli, (sockaddr *)&a, sizeof(a)), 0);
        demi_qresult_t qr;
        ASSERT_EQ(demi_wait(&qr, cqt, nullptr), 0);
        ASSERT_EQ(demi_wait(&qr, aqt, nullptr), 0);
        srv = qr.qr_value.ares.qd;
    }
    void TearDown() override
    {
        demi_close(cli);
        demi_close(srv);
        demi_close(lst);
    }
    int lst = -1, cli = -1, srv = -1;
};

TEST_F(Idle, TimedWaitSleeps)
{
    demi_qtoken_t qt;
    ASSERT_EQ(demi_pop(&qt, srv), 0);
    timespec second = {1, 0};
    demi_qresult_t qr;
    double cpu0 = thread_cpu_seconds();
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(demi_wait(&qr, qt, &second), ETIMEDOUT);
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double cpu = thread_cpu_seconds() - cpu0;
    EXPECT_GE(wall, 0.99);
    EXPECT_LT(cpu, 0.1 * wall) << "a 1 s idle wait used " << cpu << " s of CPU";
}

TEST_F(Idle, ForeverWaitSleepsUntilDataArrives)
{
    demi_qtoken_t qt;
    ASSERT_EQ(demi_pop(&qt, srv), 0);
    std::thread sender([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(600));
        demi_sgarray_t sga = demi_sgaalloc(5);
        memcpy(sga.sga_segs[0].sgaseg_buf, "hello", 5);
        demi_qtoken_t pqt;
        demi_qresult_t pqr;
        ASSERT_EQ(demi_push(&pqt, cli, &sga), 0);
        ASSERT_EQ(demi_wait(&pqr, pqt, nullptr), 0);
        demi_sgafree(&sga);
    });
    double cpu0 = thread_cpu_seconds();
    demi_qresult_t qr;
    ASSERT_EQ(demi_wait(&qr, qt, nullptr), 0);
    double cpu = thread_cpu_seconds() - cpu0;
    sender.join();
    ASSERT_EQ(qr.qr_opcode, DEMI_OPC_POP);
    EXPECT_EQ(qr.qr_value.sga.sga_segs[0].sgaseg_len, 5u);
    EXPECT_EQ(memcmp(qr.qr_value.sga.sga_segs[0].sgaseg_buf, "hello", 5), 0);
    demi_sgafree(&qr.qr_value.sga);
    EXPECT_LT(cpu, 0.06) << "waiting 0.6 s for data used " << cpu << " s of CPU";
}

TEST_F(Idle, UnreadDataWithoutAPopDoesNotWakeTheWaiterForever)
{
    // Data sits unread on srv (no pop pending) while we wait on something else:
    // the edge-triggered registration must not turn that into a busy loop.
    demi_sgarray_t sga = demi_sgaalloc(3);
    memcpy(sga.sga_segs[0].sgaseg_buf, "abc", 3);
    demi_qtoken_t pqt;
    demi_qresult_t qr;
    ASSERT_EQ(demi_push(&pqt, cli, &sga), 0);
    ASSERT_EQ(demi_wait(&qr, pqt, nullptr), 0);
    demi_sgafree(&sga);
    demi_qtoken_t qt;
    ASSERT_EQ(demi_pop(&qt, cli), 0); // nothing will ever come back to cli
    timespec wait = {0, 800 * 1000 * 1000};
    double cpu0 = thread_cpu_seconds();
    EXPECT_EQ(demi_wait(&qr, qt, &wait), ETIMEDOUT);
    double cpu = thread_cpu_seconds() - cpu0;
    EXPECT_LT(cpu, 0.08) << "busy wake-ups: " << cpu << " s of CPU in 0.8 s";
    // The unread data is still there for a later pop.
    demi_qtoken_t sqt;
    ASSERT_EQ(demi_pop(&sqt, srv), 0);
    ASSERT_EQ(demi_wait(&qr, sqt, nullptr), 0);
    EXPECT_EQ(qr.qr_value.sga.sga_segs[0].sgaseg_len, 3u);
    demi_sgafree(&qr.qr_value.sga);
}

} // namespace
