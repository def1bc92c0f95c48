// The netstack binding (libos/nsglue) on catpowder, in one process talking to its own address
// (run by in_netns.sh on a fresh veth): zero-copy pops lent from the stack and given back by
// demi_sgafree (from any thread, double frees refused), the copy fallback past the loan limit,
// the counters, UDP disconnect, and a forked child refused with ENOTSUP.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include <arpa/inet.h>
#include <demi/ext.h>
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>
#include <netinet/tcp.h>
#include <sys/wait.h>
#include <unistd.h>
}

namespace {

const timespec kWait = {5, 0};

class Env : public ::testing::Environment {
public:
    void SetUp() override
    {
        if (getenv("CONTRACT_ADDR") == nullptr)
            GTEST_SKIP() << "run through tests/catpowder/in_netns.sh";
        // Short, so the connect-timeout test is quick; nothing else here connects anywhere slow.
        setenv("DEMI_CONNECT_TIMEOUT_MS", "300", 1);
        static char arg0[] = "binding";
        static char *argv[] = {arg0, nullptr};
        demi_args args{};
        args.argc = 1;
        args.argv = argv;
        ASSERT_EQ(demi_init(&args), 0);
        ASSERT_STREQ(demi_libos_name(), "catpowder");
    }
};
::testing::Environment *const env = ::testing::AddGlobalTestEnvironment(new Env);

sockaddr_in self(uint16_t port)
{
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, getenv("CONTRACT_ADDR"), &a.sin_addr);
    return a;
}

uint64_t counter(const char *name)
{
    const char *n;
    uint64_t v;
    for (unsigned i = 0; demi_netstack_stats(i, &n, nullptr, &v) == 0; i++)
        if (strcmp(n, name) == 0)
            return v;
    ADD_FAILURE() << "no counter " << name;
    return 0;
}

int udp_bound(uint16_t port)
{
    int qd;
    EXPECT_EQ(demi_socket(&qd, AF_INET, SOCK_DGRAM, 0), 0);
    sockaddr_in a = self(port);
    EXPECT_EQ(demi_bind(qd, (sockaddr *)&a, sizeof(a)), 0);
    return qd;
}

void send_to(int qd, uint16_t port, const std::string &msg)
{
    demi_sgarray_t sga = demi_sgaalloc(msg.size());
    ASSERT_EQ(sga.sga_numsegs, 1u);
    memcpy(sga.sga_segs[0].sgaseg_buf, msg.data(), msg.size());
    sockaddr_in to = self(port);
    demi_qtoken_t qt;
    ASSERT_EQ(demi_pushto(&qt, qd, &sga, (sockaddr *)&to, sizeof(to)), 0);
    demi_qresult_t qr;
    ASSERT_EQ(demi_wait(&qr, qt, &kWait), 0);
    ASSERT_EQ(qr.qr_opcode, DEMI_OPC_PUSH);
    ASSERT_EQ(demi_sgafree(&sga), 0);
}

demi_sgarray_t pop(int qd)
{
    demi_qtoken_t qt;
    demi_qresult_t qr{};
    EXPECT_EQ(demi_pop(&qt, qd), 0);
    EXPECT_EQ(demi_wait(&qr, qt, &kWait), 0);
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_POP);
    return qr.qr_value.sga;
}

TEST(Binding, PopLendsTheStacksBufferAndSgafreeGivesItBack)
{
    int a = udp_bound(41000), b = udp_bound(41001);
    uint64_t zc = counter("glue_pop_zero_copy");
    send_to(a, 41001, "zero-copy please");
    demi_sgarray_t sga = pop(b);
    ASSERT_EQ(sga.sga_numsegs, 1u);
    EXPECT_EQ(std::string((char *)sga.sga_segs[0].sgaseg_buf, sga.sga_segs[0].sgaseg_len), "zero-copy please");
    EXPECT_EQ(ntohs(sga.sga_addr.sin_port), 41000);
    EXPECT_EQ(counter("glue_pop_zero_copy"), zc + 1);
    EXPECT_EQ(counter("glue_loans_out"), 1u);
    demi_sgarray_t copy = sga;
    EXPECT_EQ(demi_sgafree(&sga), 0);
    EXPECT_EQ(demi_sgafree(&copy), EINVAL) << "double free of a lent buffer";
    // The buffer goes back to the stack on the next poll.
    demi_qtoken_t qt;
    ASSERT_EQ(demi_pop(&qt, b), 0);
    demi_qresult_t qr;
    const timespec brief = {0, 1000000};
    EXPECT_EQ(demi_wait(&qr, qt, &brief), ETIMEDOUT);
    EXPECT_EQ(counter("glue_loans_out"), 0u);
    EXPECT_EQ(demi_close(a), 0);
    EXPECT_EQ(demi_close(b), 0);
    EXPECT_EQ(demi_wait(&qr, qt, &kWait), 0);
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_FAILED);
    EXPECT_EQ(qr.qr_ret, ECANCELED);
}

TEST(Binding, SgafreeFromOtherThreadsAndCopiesPastTheLoanLimit)
{
    int a = udp_bound(41002), b = udp_bound(41003);
    // Hold more buffers than the binding lends (half the device pool): the rest arrive as copies.
    const int n = 5000;
    std::vector<demi_sgarray_t> held;
    uint64_t copied = counter("glue_pop_copied");
    for (int i = 0; i < n; i++) {
        send_to(a, 41003, "m" + std::to_string(i));
        demi_sgarray_t s = pop(b);
        ASSERT_EQ(std::string((char *)s.sga_segs[0].sgaseg_buf, s.sga_segs[0].sgaseg_len), "m" + std::to_string(i));
        held.push_back(s);
    }
    EXPECT_GT(counter("glue_pop_copied"), copied) << "no pop fell back to copying";
    EXPECT_LE(counter("glue_loans_out"), (uint64_t)n);
    // Free from two threads at once, as an application's workers might.
    std::thread t1([&] {
        for (int i = 0; i < n; i += 2)
            EXPECT_EQ(demi_sgafree(&held[i]), 0);
    });
    std::thread t2([&] {
        for (int i = 1; i < n; i += 2)
            EXPECT_EQ(demi_sgafree(&held[i]), 0);
    });
    t1.join();
    t2.join();
    send_to(a, 41003, "after");
    demi_sgarray_t s = pop(b);
    EXPECT_EQ(demi_sgafree(&s), 0);
    EXPECT_LE(counter("glue_loans_out"), 1u);
    EXPECT_EQ(demi_close(a), 0);
    EXPECT_EQ(demi_close(b), 0);
}

TEST(Binding, UdpConnectAndDisconnectKeepThePort)
{
    int a = udp_bound(41004), b = udp_bound(41005), c = udp_bound(41006);
    sockaddr_in to = self(41005);
    demi_qtoken_t qt;
    demi_qresult_t qr;
    ASSERT_EQ(demi_connect(&qt, a, (sockaddr *)&to, sizeof(to)), 0);
    ASSERT_EQ(demi_wait(&qr, qt, &kWait), 0);
    ASSERT_EQ(qr.qr_opcode, DEMI_OPC_CONNECT);
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    ASSERT_EQ(demi_getpeername(a, (sockaddr *)&peer, &len), 0);
    EXPECT_EQ(ntohs(peer.sin_port), 41005);
    sockaddr unspec{};
    unspec.sa_family = AF_UNSPEC;
    ASSERT_EQ(demi_connect(&qt, a, &unspec, sizeof(unspec)), 0);
    ASSERT_EQ(demi_wait(&qr, qt, &kWait), 0);
    EXPECT_EQ(demi_getpeername(a, (sockaddr *)&peer, &len), ENOTCONN);
    sockaddr_in me{};
    len = sizeof(me);
    ASSERT_EQ(demi_getsockname(a, (sockaddr *)&me, &len), 0);
    EXPECT_EQ(ntohs(me.sin_port), 41004) << "disconnect lost the port";
    // Unconnected again: datagrams from anyone arrive.
    send_to(c, 41004, "from-c");
    demi_sgarray_t s = pop(a);
    EXPECT_EQ(ntohs(s.sga_addr.sin_port), 41006);
    EXPECT_EQ(demi_sgafree(&s), 0);
    EXPECT_EQ(demi_close(a), 0);
    EXPECT_EQ(demi_close(b), 0);
    EXPECT_EQ(demi_close(c), 0);
}

TEST(Binding, ForkedChildIsRefused)
{
    int a = udp_bound(41007);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int qd = -1;
        int rc1 = demi_socket(&qd, AF_INET, SOCK_DGRAM, 0);
        int rc2 = demi_close(a) == 0 ? 0 : 1; // closing an inherited queue frees only the child's view
        uint64_t v;
        int rc3 = demi_netstack_stats(0, nullptr, nullptr, &v);
        _exit(rc1 == ENOTSUP && rc2 == 0 && rc3 == ENOTSUP ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    // The parent's socket still works.
    send_to(a, 41007, "still-mine");
    demi_sgarray_t s = pop(a);
    EXPECT_EQ(std::string((char *)s.sga_segs[0].sgaseg_buf, s.sga_segs[0].sgaseg_len), "still-mine");
    EXPECT_EQ(demi_sgafree(&s), 0);
    EXPECT_EQ(demi_close(a), 0);
}

TEST(Binding, ConnectTimeoutFromConfigThenTheQueueConnectsAgain)
{
    // Nobody answers ARP for .99 on the test link: the connect can only time out.
    sockaddr_in nobody = self(80);
    nobody.sin_addr.s_addr = (nobody.sin_addr.s_addr & htonl(0xffffff00)) | htonl(99);
    int qd;
    ASSERT_EQ(demi_socket(&qd, AF_INET, SOCK_STREAM, 0), 0);
    demi_qtoken_t qt;
    demi_qresult_t qr;
    ASSERT_EQ(demi_connect(&qt, qd, (sockaddr *)&nobody, sizeof(nobody)), 0);
    ASSERT_EQ(demi_wait(&qr, qt, &kWait), 0);
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_FAILED);
    EXPECT_EQ(qr.qr_ret, ETIMEDOUT);

    int l;
    ASSERT_EQ(demi_socket(&l, AF_INET, SOCK_STREAM, 0), 0);
    sockaddr_in la = self(41010);
    ASSERT_EQ(demi_bind(l, (sockaddr *)&la, sizeof(la)), 0);
    ASSERT_EQ(demi_listen(l, 4), 0);
    demi_qtoken_t aqt;
    ASSERT_EQ(demi_accept(&aqt, l), 0);
    ASSERT_EQ(demi_connect(&qt, qd, (sockaddr *)&la, sizeof(la)), 0);
    ASSERT_EQ(demi_wait(&qr, qt, &kWait), 0);
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_CONNECT) << "the queue could not connect after a timeout: " << qr.qr_ret;
    ASSERT_EQ(demi_wait(&qr, aqt, &kWait), 0);
    ASSERT_EQ(qr.qr_opcode, DEMI_OPC_ACCEPT);
    EXPECT_EQ(demi_close(qr.qr_value.ares.qd), 0);
    EXPECT_EQ(demi_close(qd), 0);
    EXPECT_EQ(demi_close(l), 0);
}

TEST(Binding, TcpZeroCopyPopsAndSockopts)
{
    int l, c;
    ASSERT_EQ(demi_socket(&l, AF_INET, SOCK_STREAM, 0), 0);
    ASSERT_EQ(demi_socket(&c, AF_INET, SOCK_STREAM, 0), 0);
    sockaddr_in la = self(41011);
    ASSERT_EQ(demi_bind(l, (sockaddr *)&la, sizeof(la)), 0);
    ASSERT_EQ(demi_listen(l, 4), 0);
    demi_qtoken_t aqt, cqt, qt;
    demi_qresult_t qr;
    ASSERT_EQ(demi_accept(&aqt, l), 0);
    ASSERT_EQ(demi_connect(&cqt, c, (sockaddr *)&la, sizeof(la)), 0);
    ASSERT_EQ(demi_wait(&qr, cqt, &kWait), 0);
    ASSERT_EQ(qr.qr_opcode, DEMI_OPC_CONNECT);
    ASSERT_EQ(demi_wait(&qr, aqt, &kWait), 0);
    ASSERT_EQ(qr.qr_opcode, DEMI_OPC_ACCEPT);
    int s = qr.qr_value.ares.qd;

    char cc[16] = "reno";
    ASSERT_EQ(demi_setsockopt(c, IPPROTO_TCP, TCP_CONGESTION, cc, 5), 0);
    char got[16] = "";
    socklen_t len = sizeof(got);
    ASSERT_EQ(demi_getsockopt(c, IPPROTO_TCP, TCP_CONGESTION, got, &len), 0);
    EXPECT_STREQ(got, "reno");
    EXPECT_EQ(demi_setsockopt(c, IPPROTO_TCP, TCP_CONGESTION, "bbr", 4), ENOENT);
    tcp_info ti{};
    len = sizeof(ti);
    ASSERT_EQ(demi_getsockopt(c, IPPROTO_TCP, TCP_INFO, &ti, &len), 0);
    EXPECT_EQ(ti.tcpi_state, TCP_ESTABLISHED);
    EXPECT_GT(ti.tcpi_snd_mss, 0u);
    int v = 0;
    len = sizeof(v);
    ASSERT_EQ(demi_getsockopt(c, SOL_SOCKET, SO_TYPE, &v, &len), 0);
    EXPECT_EQ(v, SOCK_STREAM);

    // 256 KiB across: pops come back as the stack's segments, byte-exact.
    const size_t total = 256 * 1024;
    std::string sent(total, '\0');
    for (size_t i = 0; i < total; i++)
        sent[i] = (char)(i * 7 + i / 251);
    demi_sgarray_t sga = demi_sgaalloc(total);
    memcpy(sga.sga_segs[0].sgaseg_buf, sent.data(), total);
    ASSERT_EQ(demi_push(&qt, c, &sga), 0);
    uint64_t zc = counter("glue_pop_zero_copy");
    std::string recv;
    demi_qtoken_t pushqt = qt;
    bool pushed = false;
    while (recv.size() < total) {
        ASSERT_EQ(demi_pop(&qt, s), 0);
        demi_qtoken_t both[2] = {qt, pushqt};
        int off = -1;
        for (;;) {
            ASSERT_EQ(demi_wait_any(&qr, &off, both, pushed ? 1 : 2, &kWait), 0);
            if (qr.qr_opcode == DEMI_OPC_PUSH) {
                pushed = true;
                continue;
            }
            break;
        }
        ASSERT_EQ(qr.qr_opcode, DEMI_OPC_POP);
        ASSERT_GT(qr.qr_value.sga.sga_segs[0].sgaseg_len, 0u);
        recv.append((char *)qr.qr_value.sga.sga_segs[0].sgaseg_buf, qr.qr_value.sga.sga_segs[0].sgaseg_len);
        ASSERT_EQ(demi_sgafree(&qr.qr_value.sga), 0);
    }
    if (!pushed) {
        ASSERT_EQ(demi_wait(&qr, pushqt, &kWait), 0);
        ASSERT_EQ(qr.qr_opcode, DEMI_OPC_PUSH);
    }
    EXPECT_EQ(recv, sent);
    EXPECT_GT(counter("glue_pop_zero_copy"), zc);
    ASSERT_EQ(demi_sgafree(&sga), 0);
    EXPECT_EQ(demi_close(c), 0);
    // The peer's close reads as end of stream.
    ASSERT_EQ(demi_pop(&qt, s), 0);
    ASSERT_EQ(demi_wait(&qr, qt, &kWait), 0);
    ASSERT_EQ(qr.qr_opcode, DEMI_OPC_POP);
    EXPECT_EQ(qr.qr_value.sga.sga_segs[0].sgaseg_len, 0u);
    EXPECT_EQ(demi_sgafree(&qr.qr_value.sga), 0);
    EXPECT_EQ(demi_close(s), 0);
    EXPECT_EQ(demi_close(l), 0);
}

} // namespace
