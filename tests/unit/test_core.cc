// Core unit tests on a fake LibOS the test drives by hand: qd and qtoken tables,
// token reuse, timeouts, wait_any/next_n, cancellation on close, the sga pool, threads.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

extern "C" {
#include <demi/ext.h>
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <sys/wait.h>

#include "config.h"
#include "internal.h"
}

namespace {

// The fake LibOS: pushes complete at once; pops stay pending until deliver() is called.
struct FakeQueue {
    core_oplist pops{};
    int pushes = 0;
};

int fake_efd = -1;

int fake_socket(core_queue *q, int, int, int)
{
    q->priv = new FakeQueue();
    return 0;
}
int fake_bind(core_queue *, const sockaddr_in *) { return 0; }
int fake_listen(core_queue *, int) { return 0; }
int fake_accept(core_queue *, core_op *) { return -EOPNOTSUPP; }
int fake_connect(core_queue *, core_op *op)
{
    core_op_complete_connect(op);
    return 0;
}
int fake_push(core_queue *q, core_op *op)
{
    static_cast<FakeQueue *>(q->priv)->pushes++;
    core_op_complete_push(op);
    return 0;
}
int fake_pop(core_queue *q, core_op *op)
{
    core_oplist_push(&static_cast<FakeQueue *>(q->priv)->pops, op);
    return 0;
}
int fake_close(core_queue *q)
{
    auto *fq = static_cast<FakeQueue *>(q->priv);
    core_oplist_fail_all(&fq->pops, ECANCELED);
    delete fq;
    return 0;
}
int fake_poll(void) { return 0; }
int fake_wait_fd(void) { return fake_efd; }

const libos_ops fake_ops = [] {
    libos_ops o{};
    o.name = "fake";
    o.socket = fake_socket;
    o.bind = fake_bind;
    o.listen = fake_listen;
    o.accept = fake_accept;
    o.connect = fake_connect;
    o.push = fake_push;
    o.pop = fake_pop;
    o.close = fake_close;
    o.poll = fake_poll;
    o.wait_fd = fake_wait_fd;
    return o;
}();

// Complete the oldest pending pop on qd with `len` bytes of 'x', as a LibOS would from poll().
void deliver(int qd, uint32_t len)
{
    core_lock();
    core_queue *q = core_qd_get(qd);
    ASSERT_NE(q, nullptr);
    auto *fq = static_cast<FakeQueue *>(q->priv);
    core_op *op = fq->pops.head;
    ASSERT_NE(op, nullptr);
    core_oplist_remove(&fq->pops, op);
    demi_sgarray_t sga = core_sga_alloc(len);
    memset(sga.sga_segs[0].sgaseg_buf, 'x', len);
    core_op_complete_pop(op, &sga);
    core_unlock();
}

class Core : public ::testing::Test {
protected:
    core_config cfg{};
    void SetUp() override
    {
        core_config_defaults(&cfg);
        cfg.wait_spin_us = 20;
        cfg.sga_pool_max_bytes = 64ull << 20;
        if (fake_efd < 0)
            fake_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        ASSERT_EQ(core_test_init(&fake_ops, &cfg), 0);
    }
    void TearDown() override
    {
        EXPECT_EQ(core_sga_pool_in_use(), 0u) << "buffers leaked by the test";
        core_test_reset();
    }
    int tcp_connected()
    {
        int qd = -1;
        EXPECT_EQ(demi_socket(&qd, AF_INET, SOCK_STREAM, 0), 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(1);
        demi_qtoken_t qt;
        EXPECT_EQ(demi_connect(&qt, qd, (sockaddr *)&a, sizeof(a)), 0);
        demi_qresult_t qr;
        EXPECT_EQ(demi_wait(&qr, qt, nullptr), 0);
        EXPECT_EQ(qr.qr_opcode, DEMI_OPC_CONNECT);
        return qd;
    }
    demi_qtoken_t push(int qd)
    {
        demi_sgarray_t sga = demi_sgaalloc(16);
        EXPECT_EQ(sga.sga_numsegs, 1u);
        demi_qtoken_t qt = 0;
        EXPECT_EQ(demi_push(&qt, qd, &sga), 0);
        pushed.push_back(sga);
        return qt;
    }
    void free_pushed()
    {
        for (auto &s : pushed)
            EXPECT_EQ(demi_sgafree(&s), 0);
        pushed.clear();
    }
    std::vector<demi_sgarray_t> pushed;
};

const timespec kPoll = {0, 0};

TEST_F(Core, QdTableRejectsBadAndClosedQds)
{
    int qd = tcp_connected();
    EXPECT_EQ(demi_close(qd), 0);
    EXPECT_EQ(demi_close(qd), EBADF);
    EXPECT_EQ(demi_listen(qd, 1), EBADF);
    EXPECT_EQ(demi_close(-1), EBADF);
    EXPECT_EQ(demi_close(1 << 30), EBADF);
    // A freshly closed qd is not handed out again at once.
    int next = -1;
    ASSERT_EQ(demi_socket(&next, AF_INET, SOCK_STREAM, 0), 0);
    EXPECT_NE(next, qd);
    EXPECT_EQ(demi_close(next), 0);
}

TEST_F(Core, QdsAreReusedOnlyAfterManyOthers)
{
    std::vector<int> seen;
    for (int i = 0; i < 3000; i++) {
        int qd;
        ASSERT_EQ(demi_socket(&qd, AF_INET, SOCK_DGRAM, 0), 0);
        seen.push_back(qd);
        ASSERT_EQ(demi_close(qd), 0);
    }
    // The table stays bounded (reuse happens) but no qd comes back within 1000 closes.
    for (size_t i = 0; i < seen.size(); i++)
        for (size_t j = i + 1; j < seen.size() && j < i + 1000; j++)
            ASSERT_NE(seen[i], seen[j]) << "qd reused after only " << (j - i) << " closes";
    int maxqd = *std::max_element(seen.begin(), seen.end());
    EXPECT_LT(maxqd, 2100);
}

TEST_F(Core, ConsumedTokenIsRejected)
{
    int qd = tcp_connected();
    demi_qtoken_t qt = push(qd);
    demi_qresult_t qr;
    ASSERT_EQ(demi_wait(&qr, qt, &kPoll), 0);
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_PUSH);
    EXPECT_EQ(qr.qr_qt, qt);
    EXPECT_EQ(qr.qr_qd, qd);
    EXPECT_EQ(qr.qr_ret, 0);
    memset(&qr, 0x5a, sizeof(qr));
    demi_qresult_t before = qr;
    EXPECT_EQ(demi_wait(&qr, qt, &kPoll), EINVAL);
    EXPECT_EQ(memcmp(&qr, &before, sizeof(qr)), 0) << "output touched on failure";
    free_pushed();
    demi_close(qd);
}

TEST_F(Core, NeverIssuedTokensAreRejected)
{
    demi_qresult_t qr;
    for (demi_qtoken_t qt : {demi_qtoken_t(0), demi_qtoken_t(-1), demi_qtoken_t(1), demi_qtoken_t(1) << 32,
                             (demi_qtoken_t(7) << 32) | 5, demi_qtoken_t(0xdeadbeefcafe)})
        EXPECT_EQ(demi_wait(&qr, qt, &kPoll), EINVAL) << std::hex << qt;
}

TEST_F(Core, StaleTokenNeverNamesANewerOperation)
{
    int qd = tcp_connected();
    demi_qtoken_t first = push(qd);
    demi_qresult_t qr;
    ASSERT_EQ(demi_wait(&qr, first, &kPoll), 0);
    // The slot is reused at once (LIFO free list), with a new generation.
    demi_qtoken_t second = push(qd);
    EXPECT_EQ(second & 0xffffffffu, first & 0xffffffffu) << "expected slot reuse for this test";
    EXPECT_NE(second, first);
    EXPECT_EQ(demi_wait(&qr, first, &kPoll), EINVAL);
    ASSERT_EQ(demi_wait(&qr, second, &kPoll), 0);
    EXPECT_EQ(qr.qr_qt, second);
    free_pushed();
    demi_close(qd);
}

TEST_F(Core, PollOnceTimesOutAndLeavesTheOperationPending)
{
    int qd = tcp_connected();
    demi_qtoken_t qt;
    ASSERT_EQ(demi_pop(&qt, qd), 0);
    demi_qresult_t qr;
    EXPECT_EQ(demi_wait(&qr, qt, &kPoll), ETIMEDOUT);
    timespec short_wait = {0, 30 * 1000 * 1000};
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(demi_wait(&qr, qt, &short_wait), ETIMEDOUT);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(29));
    deliver(qd, 5);
    ASSERT_EQ(demi_wait(&qr, qt, &kPoll), 0) << "a completed operation never times out";
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_POP);
    EXPECT_EQ(qr.qr_value.sga.sga_segs[0].sgaseg_len, 5u);
    EXPECT_EQ(demi_sgafree(&qr.qr_value.sga), 0);
    demi_close(qd);
}

TEST_F(Core, BadTimeoutsAreRejected)
{
    int qd = tcp_connected();
    demi_qtoken_t qt = push(qd);
    demi_qresult_t qr;
    timespec bad1 = {0, 1000000000L}, bad2 = {-1, 0}, bad3 = {0, -1};
    EXPECT_EQ(demi_wait(&qr, qt, &bad1), EINVAL);
    EXPECT_EQ(demi_wait(&qr, qt, &bad2), EINVAL);
    EXPECT_EQ(demi_wait(&qr, qt, &bad3), EINVAL);
    EXPECT_EQ(demi_wait(nullptr, qt, &kPoll), EINVAL);
    EXPECT_EQ(demi_wait(&qr, qt, &kPoll), 0) << "rejected waits must not consume the token";
    free_pushed();
    demi_close(qd);
}

TEST_F(Core, WaitAnyReturnsTheCompletedOne)
{
    int qd = tcp_connected();
    demi_qtoken_t qts[3];
    ASSERT_EQ(demi_pop(&qts[0], qd), 0);
    qts[1] = push(qd);
    ASSERT_EQ(demi_pop(&qts[2], qd), 0);
    demi_qresult_t qr;
    int off = -1;
    ASSERT_EQ(demi_wait_any(&qr, &off, qts, 3, &kPoll), 0);
    EXPECT_EQ(off, 1);
    EXPECT_EQ(qr.qr_qt, qts[1]);
    // Now qts[1] is consumed: a set that holds it is rejected.
    EXPECT_EQ(demi_wait_any(&qr, &off, qts, 3, &kPoll), EINVAL);
    EXPECT_EQ(demi_wait_any(&qr, &off, qts, 1, &kPoll), ETIMEDOUT);
    EXPECT_EQ(demi_wait_any(&qr, &off, qts, 0, &kPoll), EINVAL);
    EXPECT_EQ(demi_wait_any(&qr, nullptr, qts, 1, &kPoll), EINVAL);
    EXPECT_EQ(demi_wait_any(&qr, &off, nullptr, 1, &kPoll), EINVAL);
    deliver(qd, 3);
    ASSERT_EQ(demi_wait_any(&qr, &off, qts, 1, nullptr), 0);
    EXPECT_EQ(off, 0);
    EXPECT_EQ(demi_sgafree(&qr.qr_value.sga), 0);
    EXPECT_EQ(demi_close(qd), 0);
    ASSERT_EQ(demi_wait(&qr, qts[2], &kPoll), 0);
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_FAILED);
    EXPECT_EQ(qr.qr_ret, ECANCELED);
    free_pushed();
}

TEST_F(Core, WaitNextNReturnsCompletionsInOrder)
{
    int qd = tcp_connected();
    demi_qresult_t qrs[8];
    int n = -1;
    EXPECT_EQ(demi_wait_next_n(qrs, 8, &n, &kPoll), ETIMEDOUT);
    EXPECT_EQ(n, -1);
    std::vector<demi_qtoken_t> qts;
    for (int i = 0; i < 5; i++)
        qts.push_back(push(qd));
    ASSERT_EQ(demi_wait_next_n(qrs, 3, &n, &kPoll), 0);
    ASSERT_EQ(n, 3);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(qrs[i].qr_qt, qts[i]);
    ASSERT_EQ(demi_wait_next_n(qrs, 8, &n, &kPoll), 0);
    ASSERT_EQ(n, 2);
    EXPECT_EQ(qrs[0].qr_qt, qts[3]);
    EXPECT_EQ(qrs[1].qr_qt, qts[4]);
    EXPECT_EQ(demi_wait_next_n(qrs, 0, &n, &kPoll), EINVAL);
    EXPECT_EQ(demi_wait_next_n(nullptr, 1, &n, &kPoll), EINVAL);
    EXPECT_EQ(demi_wait_next_n(qrs, 1, nullptr, &kPoll), EINVAL);
    free_pushed();
    demi_close(qd);
}

TEST_F(Core, CloseCancelsPendingOperations)
{
    int qd = tcp_connected();
    demi_qtoken_t a, b;
    ASSERT_EQ(demi_pop(&a, qd), 0);
    ASSERT_EQ(demi_pop(&b, qd), 0);
    ASSERT_EQ(demi_close(qd), 0);
    demi_qresult_t qr;
    for (demi_qtoken_t qt : {a, b}) {
        ASSERT_EQ(demi_wait(&qr, qt, &kPoll), 0);
        EXPECT_EQ(qr.qr_opcode, DEMI_OPC_FAILED);
        EXPECT_EQ(qr.qr_ret, ECANCELED);
        EXPECT_EQ(qr.qr_qd, qd);
    }
    EXPECT_EQ(core_ops_live(), 0u);
}

TEST_F(Core, OperationSlotsAreRecycled)
{
    int qd = tcp_connected();
    for (int i = 0; i < 100000; i++) {
        demi_sgarray_t sga = demi_sgaalloc(64);
        ASSERT_EQ(sga.sga_numsegs, 1u);
        demi_qtoken_t qt;
        ASSERT_EQ(demi_push(&qt, qd, &sga), 0);
        demi_qresult_t qr;
        ASSERT_EQ(demi_wait(&qr, qt, &kPoll), 0);
        ASSERT_EQ(demi_sgafree(&sga), 0);
    }
    EXPECT_EQ(core_ops_live(), 0u);
    demi_close(qd);
}

TEST_F(Core, PoolRejectsZeroAndServesLargeSizes)
{
    demi_sgarray_t z = demi_sgaalloc(0);
    EXPECT_EQ(z.sga_numsegs, 0u);
    EXPECT_EQ(z.sga_buf, nullptr);
    for (size_t size : {size_t(1), size_t(63), size_t(64), size_t(65), size_t(4096), size_t(65536),
                        size_t(1) << 20, (size_t(1) << 20) + 1, size_t(8) << 20}) {
        demi_sgarray_t s = demi_sgaalloc(size);
        ASSERT_EQ(s.sga_numsegs, 1u) << size;
        EXPECT_EQ(s.sga_segs[0].sgaseg_len, size);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(s.sga_segs[0].sgaseg_buf) % 64, 0u);
        memset(s.sga_segs[0].sgaseg_buf, 0xab, size); // ASan checks the bounds
        EXPECT_EQ(demi_sgafree(&s), 0);
    }
}

TEST_F(Core, PoolRejectsBadAndDoubleFrees)
{
    EXPECT_EQ(demi_sgafree(nullptr), EINVAL);
    demi_sgarray_t empty{};
    EXPECT_EQ(demi_sgafree(&empty), EINVAL);
    alignas(64) static char junk[256] = {};
    demi_sgarray_t fake{};
    fake.sga_buf = junk;
    fake.sga_numsegs = 1;
    EXPECT_EQ(demi_sgafree(&fake), EINVAL);
    demi_sgarray_t s = demi_sgaalloc(100);
    demi_sgarray_t copy = s;
    ASSERT_EQ(demi_sgafree(&s), 0);
    EXPECT_EQ(demi_sgafree(&copy), EINVAL);
}

TEST(CorePool, ExhaustionAndReuse)
{
    core_config cfg;
    core_config_defaults(&cfg);
    cfg.sga_pool_max_bytes = 1 << 20;
    if (fake_efd < 0)
        fake_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ASSERT_EQ(core_test_init(&fake_ops, &cfg), 0);
    std::vector<demi_sgarray_t> held;
    for (;;) {
        demi_sgarray_t s = demi_sgaalloc(4096);
        if (s.sga_numsegs == 0) {
            EXPECT_EQ(s.sga_buf, nullptr);
            break;
        }
        held.push_back(s);
        ASSERT_LT(held.size(), 1000u) << "pool cap not enforced";
    }
    EXPECT_GE(held.size(), 200u) << "cap reached far too early";
    // A buffer larger than the cap is refused; freeing one makes room again.
    EXPECT_EQ(demi_sgaalloc(2 << 20).sga_numsegs, 0u);
    ASSERT_EQ(demi_sgafree(&held.back()), 0);
    held.pop_back();
    demi_sgarray_t again = demi_sgaalloc(4096);
    EXPECT_EQ(again.sga_numsegs, 1u);
    held.push_back(again);
    for (auto &s : held)
        ASSERT_EQ(demi_sgafree(&s), 0);
    EXPECT_EQ(core_sga_pool_in_use(), 0u);
    core_test_reset();
}

TEST_F(Core, PoolDoubleFreeFromTwoThreadsHasOneWinner)
{
    // Frees of small buffers go to a per-thread cache without the pool lock: the state's
    // compare-and-swap must still let exactly one of two frees of a buffer succeed.
    constexpr int kBufs = 2000;
    std::vector<demi_sgarray_t> a(kBufs), b;
    for (auto &s : a) {
        s = demi_sgaalloc(64);
        ASSERT_EQ(s.sga_numsegs, 1u);
    }
    b = a;
    std::atomic<int> ok{0}, einval{0}, other{0};
    std::atomic<bool> go{false};
    auto freer = [&](std::vector<demi_sgarray_t> *v) {
        while (!go.load())
            std::this_thread::yield();
        for (auto &s : *v) {
            int rc = demi_sgafree(&s);
            (rc == 0 ? ok : rc == EINVAL ? einval : other)++;
        }
    };
    std::thread t1(freer, &a), t2(freer, &b);
    go = true;
    t1.join();
    t2.join();
    EXPECT_EQ(ok.load(), kBufs);
    EXPECT_EQ(einval.load(), kBufs);
    EXPECT_EQ(other.load(), 0);
}

TEST(CorePool, AThreadsCachedBuffersGoBackWhenItExits)
{
    // A cap that holds few 2 KiB buffers, all of which fit one thread's cache.
    core_config cfg;
    core_config_defaults(&cfg);
    cfg.sga_pool_max_bytes = 32 << 10;
    if (fake_efd < 0)
        fake_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ASSERT_EQ(core_test_init(&fake_ops, &cfg), 0);
    size_t n = 0;
    std::thread t([&] {
        std::vector<demi_sgarray_t> held;
        for (;;) {
            demi_sgarray_t s = demi_sgaalloc(2048);
            if (s.sga_numsegs == 0)
                break;
            held.push_back(s);
            if (held.size() > 1000)
                break;
        }
        n = held.size();
        for (auto &s : held)
            demi_sgafree(&s); // into this thread's cache
    });
    t.join();
    ASSERT_GT(n, 1u);
    ASSERT_LE(n, 32u) << "the test wants every buffer in the exiting thread's cache";
    // The exited thread's buffers are back in the pool: the cap allows no new ones.
    std::vector<demi_sgarray_t> again;
    for (size_t i = 0; i < n; i++) {
        demi_sgarray_t s = demi_sgaalloc(2048);
        EXPECT_EQ(s.sga_numsegs, 1u) << "buffer " << i << " of " << n << " lost in a dead thread's cache";
        if (s.sga_numsegs == 1)
            again.push_back(s);
    }
    for (auto &s : again)
        ASSERT_EQ(demi_sgafree(&s), 0);
    EXPECT_EQ(core_sga_pool_in_use(), 0u);
    core_test_reset();
}

TEST(CorePool, APoolResetVoidsOtherThreadsCaches)
{
    // A thread fills its cache, the pool is torn down and made again (demi teardown and
    // init), and the thread allocates: it must get a buffer of the new pool, not one of
    // the freed slabs (ASan builds see any use of those).
    core_config cfg;
    core_config_defaults(&cfg);
    if (fake_efd < 0)
        fake_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ASSERT_EQ(core_test_init(&fake_ops, &cfg), 0);
    std::atomic<int> step{0};
    bool fresh_ok = false;
    std::thread t([&] {
        for (int i = 0; i < 8; i++) {
            demi_sgarray_t s = demi_sgaalloc(100);
            demi_sgafree(&s);
        }
        step = 1;
        while (step.load() != 2)
            std::this_thread::yield();
        demi_sgarray_t s = demi_sgaalloc(100);
        fresh_ok = s.sga_numsegs == 1 && core_sga_pool_in_use() == 128;
        if (s.sga_numsegs == 1) {
            memset(s.sga_segs[0].sgaseg_buf, 0x5a, 100);
            demi_sgafree(&s);
        }
        step = 3;
    });
    while (step.load() != 1)
        std::this_thread::yield();
    core_test_reset();
    ASSERT_EQ(core_test_init(&fake_ops, &cfg), 0);
    step = 2;
    while (step.load() != 3)
        std::this_thread::yield();
    t.join();
    EXPECT_TRUE(fresh_ok);
    EXPECT_EQ(core_sga_pool_in_use(), 0u);
    core_test_reset();
}

TEST_F(Core, ALibosWithoutForkSupportRefusesInheritedQueues)
{
    // The fake LibOS has no fork_child op: a child must not half-use inherited queues.
    int qd = tcp_connected();
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        demi_sgarray_t sga = demi_sgaalloc(8);
        demi_qtoken_t qt;
        int inherited = demi_push(&qt, qd, &sga);
        int fresh = -1;
        bool fresh_ok = demi_socket(&fresh, AF_INET, SOCK_DGRAM, 0) == 0 && demi_close(fresh) == 0;
        demi_sgafree(&sga);
        _exit(inherited == ENOTSUP && fresh_ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
    // The parent is unaffected.
    demi_qtoken_t qt = push(qd);
    demi_qresult_t qr;
    EXPECT_EQ(demi_wait(&qr, qt, &kPoll), 0);
    free_pushed();
    demi_close(qd);
}

TEST_F(Core, SleepingWaiterIsWokenByAnotherThread)
{
    int qd = tcp_connected();
    demi_qtoken_t qt;
    ASSERT_EQ(demi_pop(&qt, qd), 0);
    std::atomic<int> rc{-1};
    demi_qresult_t qr{};
    std::thread waiter([&] { rc = demi_wait(&qr, qt, nullptr); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50)); // well past the spin phase
    deliver(qd, 7);
    waiter.join();
    EXPECT_EQ(rc.load(), 0);
    EXPECT_EQ(qr.qr_value.sga.sga_segs[0].sgaseg_len, 7u);
    EXPECT_EQ(demi_sgafree(&qr.qr_value.sga), 0);
    demi_close(qd);
}

TEST(CoreWait, ASpinningWaiterLetsOtherThreadsCallIn)
{
    // The spin keeps the core lock across rounds: another thread's calls must still get
    // in, again and again (a spinner that never let go would hang this test).
    core_config cfg;
    core_config_defaults(&cfg);
    cfg.wait_spin_us = 30000000; // the waiter spins throughout, never sleeps
    if (fake_efd < 0)
        fake_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ASSERT_EQ(core_test_init(&fake_ops, &cfg), 0);
    int qd = -1;
    ASSERT_EQ(demi_socket(&qd, AF_INET, SOCK_STREAM, 0), 0);
    struct sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(9);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    demi_qtoken_t qt;
    demi_qresult_t qr{};
    ASSERT_EQ(demi_connect(&qt, qd, (const struct sockaddr *)&a, sizeof(a)), 0);
    ASSERT_EQ(demi_wait(&qr, qt, nullptr), 0);
    ASSERT_EQ(demi_pop(&qt, qd), 0);
    std::atomic<int> rc{-1};
    std::thread waiter([&] { rc = demi_wait(&qr, qt, nullptr); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20)); // the waiter is spinning now
    int calls = 0;
    for (int i = 0; i < 2000; i++) {
        int u;
        if (demi_socket(&u, AF_INET, SOCK_DGRAM, 0) == 0 && demi_close(u) == 0)
            calls++;
    }
    EXPECT_EQ(calls, 2000);
    EXPECT_EQ(rc.load(), -1) << "the waiter returned with nothing delivered";
    deliver(qd, 3);
    waiter.join();
    EXPECT_EQ(rc.load(), 0);
    EXPECT_EQ(qr.qr_value.sga.sga_segs[0].sgaseg_len, 3u);
    EXPECT_EQ(demi_sgafree(&qr.qr_value.sga), 0);
    demi_close(qd);
    core_test_reset();
}

TEST_F(Core, ManyThreadsWaitingOnTheirOwnTokens)
{
    int qd = tcp_connected();
    const int kThreads = 6;
    std::vector<demi_qtoken_t> qts(kThreads);
    for (auto &qt : qts)
        ASSERT_EQ(demi_pop(&qt, qd), 0);
    std::atomic<int> ok{0};
    std::vector<std::thread> ts;
    for (int i = 0; i < kThreads; i++)
        ts.emplace_back([&, i] {
            demi_qresult_t qr;
            if (demi_wait(&qr, qts[i], nullptr) == 0 && qr.qr_opcode == DEMI_OPC_POP) {
                demi_sgafree(&qr.qr_value.sga);
                ok++;
            }
        });
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    for (int i = 0; i < kThreads; i++) {
        deliver(qd, 1);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    for (auto &t : ts)
        t.join();
    EXPECT_EQ(ok.load(), kThreads);
    demi_close(qd);
}

TEST_F(Core, ConcurrentCallersKeepTablesConsistent)
{
    const int kThreads = 4, kIters = 5000;
    std::atomic<int> failures{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; t++)
        ts.emplace_back([&] {
            for (int i = 0; i < kIters; i++) {
                int qd;
                if (demi_socket(&qd, AF_INET, SOCK_DGRAM, 0) != 0) {
                    failures++;
                    continue;
                }
                demi_qtoken_t qt;
                demi_qresult_t qr;
                if (demi_pop(&qt, qd) != 0 || demi_close(qd) != 0 || demi_wait(&qr, qt, nullptr) != 0 ||
                    qr.qr_ret != ECANCELED)
                    failures++;
            }
        });
    for (auto &t : ts)
        t.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(core_ops_live(), 0u);
}

} // namespace
