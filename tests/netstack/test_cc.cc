// Congestion control (netstack/tcp_cc.c) against the RFC formulas: RFC 6928 initial window,
// RFC 5681 slow start / congestion avoidance / loss and RTO, RFC 6582 recovery exit, and
// RFC 9438 CUBIC (K, W_cubic around and past K, fast convergence, Reno-friendly region, the
// 1.5x cap, RTO epoch reset). ACKs are fed by a small ACK-clock model: one RTT delivers one
// cwnd of per-segment ACKs, evenly spaced in virtual time.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

extern "C" {
#include "tcp_cc.h"
}

namespace {

constexpr uint64_t kMsNs = 1000000ull;
constexpr uint64_t kSec = 1000000000ull;

// One RTT of a sender that keeps cwnd full: cwnd/mss ACKs of one MSS each (flight = cwnd).
// Returns the time after the round.
uint64_t one_rtt(ns_cc &cc, uint64_t now, uint64_t rtt_ns, uint32_t acked_per_ack = 0)
{
    uint32_t per = acked_per_ack ? acked_per_ack : cc.mss;
    uint32_t n = cc.cwnd / per;
    if (n == 0)
        n = 1;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t t = now + rtt_ns * (i + 1) / n;
        ns_cc_on_ack(&cc, per, cc.cwnd, uint32_t(rtt_ns / 1000), t);
    }
    return now + rtt_ns;
}

double cubic_segments(double t, double k, double wmax) { return 0.4 * std::pow(t - k, 3) + wmax; }

}  // namespace

TEST(CcInit, InitialWindowRfc6928)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_NEWRENO, 1460, 0);
    EXPECT_EQ(cc.cwnd, 14600u);
    EXPECT_EQ(cc.ssthresh, UINT32_MAX);
    EXPECT_EQ(cc.mss, 1460u);
    ns_cc_init(&cc, NS_CC_CUBIC, 536, 0);
    EXPECT_EQ(cc.cwnd, 5360u);      // 10 * MSS
    ns_cc_init(&cc, NS_CC_NEWRENO, 8960, 0);
    EXPECT_EQ(cc.cwnd, 17920u);     // max(2 * MSS, 14600) wins over 10 * MSS
    ns_cc_init(&cc, NS_CC_NEWRENO, 1000, 0);
    EXPECT_EQ(cc.cwnd, 10000u);
}

TEST(CcSlowStart, DoublesPerRttWithPerSegmentAcks)
{
    for (auto algo : {NS_CC_NEWRENO, NS_CC_CUBIC}) {
        ns_cc cc;
        ns_cc_init(&cc, algo, 1000, 0);
        uint64_t now = kSec;
        for (int r = 0; r < 6; r++) {
            uint32_t before = cc.cwnd;
            now = one_rtt(cc, now, 10 * kMsNs);
            EXPECT_EQ(cc.cwnd, 2 * before) << "algo " << algo << " round " << r;
        }
        EXPECT_EQ(cc.cwnd, 640000u);
    }
}

TEST(CcSlowStart, AtMostOneMssPerAck)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_NEWRENO, 1000, 0);
    // A delayed ACK covering two segments still adds one SMSS (RFC 5681 3.1).
    ns_cc_on_ack(&cc, 2000, cc.cwnd, 0, kSec);
    EXPECT_EQ(cc.cwnd, 11000u);
    // A tiny ACK adds only what it acknowledged.
    ns_cc_on_ack(&cc, 100, cc.cwnd, 0, kSec);
    EXPECT_EQ(cc.cwnd, 11100u);
}

TEST(CcSlowStart, NoGrowthWhenNotCwndLimited)
{
    for (auto algo : {NS_CC_NEWRENO, NS_CC_CUBIC}) {
        ns_cc cc;
        ns_cc_init(&cc, algo, 1000, 0);
        for (int i = 0; i < 100; i++)
            ns_cc_on_ack(&cc, 1000, 2000, 0, kSec + uint64_t(i) * kMsNs);  // app sends 2 segments at a time
        EXPECT_EQ(cc.cwnd, 10000u);
        ns_cc_on_ack(&cc, 0, cc.cwnd, 0, 2 * kSec);  // nothing acknowledged: nothing changes
        EXPECT_EQ(cc.cwnd, 10000u);
    }
}

TEST(CcNewReno, LossHalvesFlightWithTwoMssFloor)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_NEWRENO, 1000, 0);
    cc.cwnd = 100000;
    ns_cc_on_congestion(&cc, 100000, kSec);
    EXPECT_EQ(cc.ssthresh, 50000u);
    EXPECT_EQ(cc.cwnd, 50000u);
    // ssthresh = max(FlightSize / 2, 2 * SMSS) uses the flight, not cwnd (RFC 5681 eq. 4).
    cc.cwnd = 100000;
    ns_cc_on_congestion(&cc, 30000, kSec);
    EXPECT_EQ(cc.ssthresh, 15000u);
    ns_cc_on_congestion(&cc, 3000, kSec);
    EXPECT_EQ(cc.ssthresh, 2000u);
    EXPECT_EQ(cc.cwnd, 2000u);
}

TEST(CcNewReno, CongestionAvoidanceAddsOneMssPerRtt)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_NEWRENO, 1000, 0);
    cc.cwnd = 40000;
    ns_cc_on_congestion(&cc, 40000, kSec);  // ssthresh = cwnd = 20000: congestion avoidance
    ASSERT_EQ(cc.cwnd, 20000u);
    uint64_t now = 2 * kSec;
    for (int r = 0; r < 50; r++) {
        uint32_t before = cc.cwnd;
        now = one_rtt(cc, now, 10 * kMsNs);
        EXPECT_EQ(cc.cwnd, before + 1000) << "round " << r;
    }
    // Byte counting: delayed ACKs (two segments each) grow it just as fast.
    uint32_t before = cc.cwnd;
    now = one_rtt(cc, now, 10 * kMsNs, 2000);
    EXPECT_EQ(cc.cwnd, before + 1000);
}

TEST(CcNewReno, SlowStartHandsOverAtSsthresh)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_NEWRENO, 1000, 0);
    cc.ssthresh = 16000;
    uint64_t now = one_rtt(cc, kSec, 10 * kMsNs);  // 10 ACKs: 10000 -> 16000 then CA
    EXPECT_GE(cc.cwnd, 16000u);
    EXPECT_LE(cc.cwnd, 17000u);
    uint32_t before = cc.cwnd;
    one_rtt(cc, now, 10 * kMsNs);
    EXPECT_EQ(cc.cwnd, before + 1000);
}

TEST(CcNewReno, RtoGoesToOneMss)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_NEWRENO, 1460, 0);
    cc.cwnd = 146000;
    ns_cc_on_rto(&cc, 146000, kSec);
    EXPECT_EQ(cc.cwnd, 1460u);
    EXPECT_EQ(cc.ssthresh, 73000u);
    // Then slow start again up to ssthresh.
    uint64_t now = 2 * kSec;
    for (int r = 0; r < 3; r++)
        now = one_rtt(cc, now, 10 * kMsNs);
    EXPECT_EQ(cc.cwnd, 8u * 1460u);
}

TEST(CcNewReno, RecoveryExitRfc6582)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_NEWRENO, 1000, 0);
    cc.cwnd = 100000;
    ns_cc_on_congestion(&cc, 100000, kSec);
    ns_cc_on_recovery_exit(&cc, 70000, kSec);
    EXPECT_EQ(cc.cwnd, 50000u);      // min(ssthresh, flight + SMSS) = ssthresh
    ns_cc_on_recovery_exit(&cc, 10000, kSec);
    EXPECT_EQ(cc.cwnd, 11000u);      // flight + SMSS: no burst after recovery
    ns_cc_on_recovery_exit(&cc, 0, kSec);
    EXPECT_EQ(cc.cwnd, 1000u);
}

TEST(CcCubic, LossBeta07AndWmax)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_CUBIC, 1000, 0);
    cc.cwnd = 100000;
    ns_cc_on_congestion(&cc, 100000, kSec);
    EXPECT_EQ(cc.ssthresh, 70000u);  // flight * beta_cubic
    EXPECT_EQ(cc.cwnd, 70000u);
    EXPECT_EQ(cc.w_max, 100000u);
    EXPECT_EQ(cc.cwnd_prior, 100000u);
    EXPECT_EQ(cc.epoch_start, 0u);
    ns_cc_on_congestion(&cc, 2000, kSec);
    EXPECT_EQ(cc.ssthresh, 2000u);   // floor 2 * SMSS
}

TEST(CcCubic, FastConvergence)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_CUBIC, 1000, 0);
    cc.cwnd = 100000;
    ns_cc_on_congestion(&cc, 100000, kSec);
    ASSERT_EQ(cc.w_max, 100000u);
    // The next loss comes before cwnd regained W_max: W_max = cwnd * (1 + beta) / 2.
    cc.cwnd = 80000;
    ns_cc_on_congestion(&cc, 80000, 2 * kSec);
    EXPECT_EQ(cc.w_max, 68000u);
    EXPECT_EQ(cc.ssthresh, 56000u);
    // A loss above W_max records cwnd itself.
    cc.cwnd = 90000;
    ns_cc_on_congestion(&cc, 90000, 3 * kSec);
    EXPECT_EQ(cc.w_max, 90000u);
}

TEST(CcCubic, KAndWindowAtKAndBeyond)
{
    // W_max = 1000 segments, cwnd_epoch = 700: K = cbrt((1000 - 700) / 0.4) = cbrt(750) s.
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_CUBIC, 1000, 0);
    cc.cwnd = 1000000;
    uint64_t t0 = 10 * kSec;
    ns_cc_on_congestion(&cc, 1000000, t0);
    ASSERT_EQ(cc.cwnd, 700000u);
    const uint64_t rtt = 100 * kMsNs;  // long RTT: the cubic curve, not the Reno estimate, leads
    uint64_t now = one_rtt(cc, t0, rtt);
    const double k = std::cbrt(750.0);
    EXPECT_NEAR(double(cc.k_ns) / 1e9, k, 1e-6);
    EXPECT_NEAR(k, 9.0856, 1e-4);
    uint64_t epoch = cc.epoch_start;

    // Concave region: below W_max, tracking W_cubic(t).
    while (now - epoch < uint64_t(k * 0.5 * 1e9))
        now = one_rtt(cc, now, rtt);
    double t = double(now - epoch) / 1e9;
    EXPECT_NEAR(cc.cwnd / 1000.0, cubic_segments(t, k, 1000), 10.0);
    EXPECT_LT(cc.cwnd, 1000000u);

    // At t = K the window has reached the plateau W_max.
    while (now - epoch < uint64_t(k * 1e9))
        now = one_rtt(cc, now, rtt);
    EXPECT_NEAR(cc.cwnd / 1000.0, 1000.0, 5.0);

    // Convex region: K + 3 s gives W_max + 0.4 * 27 = 1010.8 segments; K + 6 s 1086.4.
    while (now - epoch < uint64_t((k + 3) * 1e9))
        now = one_rtt(cc, now, rtt);
    t = double(now - epoch) / 1e9;
    EXPECT_NEAR(cc.cwnd / 1000.0, cubic_segments(t, k, 1000), 5.0);
    EXPECT_GT(cc.cwnd, 1005000u);
    while (now - epoch < uint64_t((k + 6) * 1e9))
        now = one_rtt(cc, now, rtt);
    t = double(now - epoch) / 1e9;
    EXPECT_NEAR(cc.cwnd / 1000.0, cubic_segments(t, k, 1000), 0.02 * cubic_segments(t, k, 1000));
    // The Reno estimate stayed below: growth came from the cubic curve.
    EXPECT_LT(cc.w_est, cc.cwnd);
}

TEST(CcCubic, RenoFriendlyRegionOnShortRtt)
{
    // RTT 1 ms: K = cbrt(75) = 4.2 s is thousands of RTTs away, and Reno would grow by
    // alpha = 3 * (1 - 0.7) / (1 + 0.7) = 0.529 segments per RTT: CUBIC must follow W_est.
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_CUBIC, 1000, 0);
    cc.cwnd = 100000;
    ns_cc_on_congestion(&cc, 100000, kSec);
    const uint64_t rtt = kMsNs;
    uint64_t now = kSec;
    for (int r = 0; r < 50; r++)
        now = one_rtt(cc, now, rtt);
    double expect = 70.0 + 50 * 0.9 / 1.7;  // 96.5 segments
    EXPECT_NEAR(cc.cwnd / 1000.0, expect, 1.5);
    EXPECT_EQ(cc.cwnd, cc.w_est);
    double t = double(now - cc.epoch_start) / 1e9;
    EXPECT_LT(cubic_segments(t, double(cc.k_ns) / 1e9, 100), 72.0);  // cubic alone would be ~71
    // Once W_est passes cwnd_prior (100 segments) alpha becomes 1: +1 segment per RTT.
    for (int r = 0; r < 20; r++)
        now = one_rtt(cc, now, rtt);
    uint32_t before = cc.cwnd;
    ASSERT_GE(before, 100000u);
    for (int r = 0; r < 10; r++)
        now = one_rtt(cc, now, rtt);
    EXPECT_NEAR(double(cc.cwnd - before) / 1000.0, 10.0, 1.01);
}

TEST(CcCubic, GrowthCappedAtOneAndAHalfPerRtt)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_CUBIC, 1000, 0);
    cc.ssthresh = cc.cwnd;           // congestion avoidance from the start, W_max 0 -> K = 0
    ns_cc_on_ack(&cc, 1000, cc.cwnd, 10000, kSec);
    ASSERT_NE(cc.epoch_start, 0u);
    EXPECT_EQ(cc.k_ns, 0);
    // 100 s later W_cubic is 400000 segments above W_max: one RTT may still only add 50%.
    uint64_t now = 101 * kSec;
    uint32_t before = cc.cwnd;
    one_rtt(cc, now, 10 * kMsNs);
    EXPECT_LE(cc.cwnd, before * 3 / 2 + 1000);
    EXPECT_GE(cc.cwnd, before * 5 / 4);
}

TEST(CcCubic, RtoResetsEpochThenKIsZero)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_CUBIC, 1000, 0);
    cc.cwnd = 100000;
    ns_cc_on_congestion(&cc, 100000, kSec);
    uint64_t now = one_rtt(cc, kSec, 10 * kMsNs);
    ASSERT_NE(cc.epoch_start, 0u);
    ns_cc_on_rto(&cc, 80000, now);
    EXPECT_EQ(cc.cwnd, 1000u);
    EXPECT_EQ(cc.ssthresh, 56000u);  // 0.7 * flight
    EXPECT_EQ(cc.epoch_start, 0u);
    // Slow start back to ssthresh, then the first CA epoch: K = 0, W_max = cwnd at its start.
    while (cc.cwnd < cc.ssthresh)
        now = one_rtt(cc, now, 10 * kMsNs);
    uint32_t epoch_cwnd = cc.cwnd;
    now = one_rtt(cc, now, 10 * kMsNs);
    EXPECT_EQ(cc.k_ns, 0);
    EXPECT_EQ(cc.w_max, epoch_cwnd);
    EXPECT_GE(cc.cwnd, epoch_cwnd);
}

TEST(CcCubic, SlowStartBelowSsthresh)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_CUBIC, 1000, 0);
    cc.cwnd = 100000;
    ns_cc_on_congestion(&cc, 100000, kSec);
    ns_cc_on_recovery_exit(&cc, 20000, kSec);
    ASSERT_EQ(cc.cwnd, 21000u);      // below ssthresh 70000
    uint64_t now = one_rtt(cc, kSec, 10 * kMsNs);
    EXPECT_EQ(cc.cwnd, 42000u);
    EXPECT_EQ(cc.epoch_start, 0u);
}

TEST(CcMss, RescalesSegmentCounts)
{
    ns_cc cc;
    ns_cc_init(&cc, NS_CC_NEWRENO, 1000, 0);
    cc.cwnd = 20000;
    cc.ssthresh = 40000;
    ns_cc_set_mss(&cc, 500);
    EXPECT_EQ(cc.mss, 500u);
    EXPECT_EQ(cc.cwnd, 10000u);
    EXPECT_EQ(cc.ssthresh, 20000u);
    ns_cc_set_mss(&cc, 0);           // ignored
    EXPECT_EQ(cc.mss, 500u);
    ns_cc_init(&cc, NS_CC_NEWRENO, 1000, 0);
    ns_cc_set_mss(&cc, 1460);
    EXPECT_EQ(cc.ssthresh, UINT32_MAX);
}
