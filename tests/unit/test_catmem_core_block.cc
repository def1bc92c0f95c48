// The core's optional block_prepare/block ops (added for catmem's futex sleeping), on a fake LibOS: the wait loop sleeps in block after spinning, skips it when prepare finds work, and a completion from another thread wakes the sleeper through the core's wake word.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

extern "C" {
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "internal.h"
}

namespace {

core_oplist pops{};
std::atomic<int> prepares{0}, blocks{0};
bool prepare_delivers = false;

void complete_head(void)
{
    core_op *op = pops.head;
    core_oplist_remove(&pops, op);
    demi_sgarray_t sga = core_sga_alloc(8);
    core_op_complete_pop(op, &sga);
}

int fake_create_pipe(core_queue *q, const char *) { q->priv = &pops; return 0; }
int fake_open_pipe(core_queue *q, const char *) { q->priv = &pops; return 0; }
int fake_push(core_queue *, core_op *op) { core_op_complete_push(op); return 0; }
int fake_pop(core_queue *, core_op *op) { core_oplist_push(&pops, op); return 0; }
int fake_close(core_queue *) { core_oplist_fail_all(&pops, ECANCELED); return 0; }
int fake_poll(void) { return 0; }
int fake_block_prepare(void)
{
    prepares++;
    if (prepare_delivers && pops.head) {
        complete_head(); /* as a LibOS's poll would when work arrived meanwhile */
        return 1;
    }
    return 0;
}
void fake_block(const uint32_t *wake, uint32_t seen, uint64_t deadline_ns)
{
    blocks++;
    uint64_t now = core_now_ns();
    uint64_t rel = deadline_ns > now ? deadline_ns - now : 0;
    if (rel > 5000000000ull)
        rel = 5000000000ull;
    struct timespec ts = {(time_t)(rel / 1000000000ull), (long)(rel % 1000000000ull)};
    syscall(SYS_futex, wake, FUTEX_WAIT_PRIVATE, seen, &ts, nullptr, 0);
}

const libos_ops block_ops = [] {
    libos_ops o{};
    o.name = "fakeblock";
    o.create_pipe = fake_create_pipe;
    o.open_pipe = fake_open_pipe;
    o.push = fake_push;
    o.pop = fake_pop;
    o.close = fake_close;
    o.poll = fake_poll;
    o.block_prepare = fake_block_prepare;
    o.block = fake_block;
    return o;
}();

double thread_cpu_ms()
{
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

class CoreBlock : public ::testing::Test {
protected:
    core_config cfg{};
    int qd = -1;
    void SetUp() override
    {
        core_config_defaults(&cfg);
        cfg.wait_spin_us = 20;
        cfg.sga_pool_max_bytes = 16ull << 20;
        prepares = 0;
        blocks = 0;
        prepare_delivers = false;
        ASSERT_EQ(core_test_init(&block_ops, &cfg), 0);
        ASSERT_EQ(demi_create_pipe(&qd, "p"), 0);
    }
    void TearDown() override
    {
        demi_close(qd);
        EXPECT_EQ(core_sga_pool_in_use(), 0u);
        core_test_reset();
    }
};

TEST_F(CoreBlock, IdleWaitSleepsInBlock)
{
    demi_qtoken_t qt;
    ASSERT_EQ(demi_pop(&qt, qd), 0);
    double c0 = thread_cpu_ms();
    demi_qresult_t qr;
    timespec to = {0, 300000000};
    EXPECT_EQ(demi_wait(&qr, qt, &to), ETIMEDOUT);
    EXPECT_GE(blocks.load(), 1);
    EXPECT_LT(thread_cpu_ms() - c0, 60.0) << "the wait spun instead of sleeping in block";
}

TEST_F(CoreBlock, PrepareFindingWorkSkipsTheSleep)
{
    prepare_delivers = true;
    demi_qtoken_t qt;
    ASSERT_EQ(demi_pop(&qt, qd), 0);
    demi_qresult_t qr;
    timespec to = {5, 0};
    ASSERT_EQ(demi_wait(&qr, qt, &to), 0);
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_POP);
    EXPECT_EQ(blocks.load(), 0);
    EXPECT_GE(prepares.load(), 1);
    demi_sgafree(&qr.qr_value.sga);
}

TEST_F(CoreBlock, CompletionFromAnotherThreadWakesTheSleeper)
{
    demi_qtoken_t qt;
    ASSERT_EQ(demi_pop(&qt, qd), 0);
    std::atomic<uint64_t> delivered_at{0};
    std::thread t([&] {
        while (blocks.load() == 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        core_lock();
        complete_head();
        delivered_at = core_now_ns();
        core_unlock(); /* bumps the wake word and FUTEX_WAKEs the sleeper */
    });
    demi_qresult_t qr;
    timespec to = {10, 0};
    ASSERT_EQ(demi_wait(&qr, qt, &to), 0);
    uint64_t woke = core_now_ns();
    t.join();
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_POP);
    EXPECT_LT((woke - delivered_at.load()) / 1000000, 500u) << "the sleeper was not woken by the completion";
    EXPECT_EQ(blocks.load(), 1) << "woken only by its own timeout?";
    demi_sgafree(&qr.qr_value.sga);
}

} // namespace
