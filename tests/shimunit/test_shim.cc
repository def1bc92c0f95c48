// The shim called directly (no preload), on catnap: byte streams, blocking and non-blocking
// calls, epoll/poll/select mixed with kernel fds, descriptors, UDP, close flushing, fork, idle sleep.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim.h"
}

namespace {

class Shim : public ::testing::Test {
protected:
    static void SetUpTestSuite()
    {
        setenv("DEMI_LIBOS", "catnap", 1);
        ASSERT_EQ(shim_init(), 0);
        signal(SIGPIPE, SIG_IGN);
    }

    sockaddr_in addr{};
    int lst = -1;

    void SetUp() override
    {
        lst = shim_socket(AF_INET, SOCK_STREAM, 0);
        ASSERT_GE(lst, 0);
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(shim_bind(lst, (sockaddr *)&addr, sizeof(addr)), 0);
        ASSERT_EQ(shim_listen(lst, 64), 0);
        socklen_t len = sizeof(addr);
        ASSERT_EQ(shim_getsockname(lst, (sockaddr *)&addr, &len), 0);
    }
    void TearDown() override { shim_close(lst); }

    // A connected pair (client, accepted server side), both blocking.
    std::pair<int, int> pair()
    {
        int c = shim_socket(AF_INET, SOCK_STREAM, 0);
        EXPECT_GE(c, 0);
        EXPECT_EQ(shim_connect(c, (sockaddr *)&addr, sizeof(addr)), 0);
        int s = shim_accept4(lst, nullptr, nullptr, 0);
        EXPECT_GE(s, 0);
        return {c, s};
    }
};

std::string read_n(int fd, size_t n)
{
    std::string out(n, '\0');
    size_t got = 0;
    while (got < n) {
        ssize_t r = shim_read(fd, &out[got], n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    out.resize(got);
    return out;
}

TEST_F(Shim, OwnsOnlyWhatItCreates)
{
    EXPECT_TRUE(shim_wants_socket(AF_INET, SOCK_STREAM, 0));
    EXPECT_TRUE(shim_wants_socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, IPPROTO_UDP));
    EXPECT_FALSE(shim_wants_socket(AF_UNIX, SOCK_STREAM, 0));
    EXPECT_FALSE(shim_wants_socket(AF_INET6, SOCK_STREAM, 0));
    EXPECT_FALSE(shim_wants_socket(AF_INET, SOCK_RAW, 0));
    EXPECT_TRUE(shim_owns_socket(lst));
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    EXPECT_FALSE(shim_owns(p[0]));
    close(p[0]);
    close(p[1]);
    // Our descriptor numbers are real kernel fds: the kernel never hands them out twice.
    int fd = shim_socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(fcntl(fd, F_GETFD) >= 0, true);
    EXPECT_EQ(shim_close(fd), 0);
    EXPECT_FALSE(shim_owns(fd));
}

TEST_F(Shim, BlockingStreamIsByteExactBothWays)
{
    auto [c, s] = pair();
    std::vector<char> data(3 << 20);
    for (size_t i = 0; i < data.size(); i++)
        data[i] = (char)(i * 131 + 7);
    std::thread echo([s = s, n = data.size()] {
        std::vector<char> buf(100000);
        size_t total = 0;
        while (total < n) {
            ssize_t r = shim_read(s, buf.data(), buf.size());
            if (r <= 0)
                break;
            ASSERT_EQ(shim_write(s, buf.data(), (size_t)r), r);
            total += (size_t)r;
        }
    });
    std::string back;
    std::thread reader([&, c = c] { back = read_n(c, data.size()); });
    ASSERT_EQ(shim_write(c, data.data(), data.size()), (ssize_t)data.size()) << "a blocking write completes fully";
    reader.join();
    echo.join();
    ASSERT_EQ(back.size(), data.size());
    EXPECT_EQ(memcmp(back.data(), data.data(), data.size()), 0);
    shim_close(c);
    shim_close(s);
}

TEST_F(Shim, PartialReadsPeekWaitallAndEof)
{
    auto [c, s] = pair();
    std::string msg(100, 'a');
    for (int i = 0; i < 100; i++)
        msg[i] = (char)('a' + i % 26);
    ASSERT_EQ(shim_write(c, msg.data(), 100), 100);
    char buf[128];
    struct iovec iov = {buf, 10};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    // MSG_WAITALL gathers exactly what was asked; MSG_PEEK leaves it in place.
    ASSERT_EQ(shim_recvmsg(s, &m, MSG_PEEK | MSG_WAITALL), 10);
    ASSERT_EQ(shim_read(s, buf, 30), 30);
    EXPECT_EQ(std::string(buf, 30), msg.substr(0, 30));
    ASSERT_EQ(shim_recvfrom(s, buf, 70, MSG_WAITALL, nullptr, nullptr), 70);
    EXPECT_EQ(std::string(buf, 70), msg.substr(30));
    // Half-close: the server sees EOF (again and again) and can still answer.
    ASSERT_EQ(shim_shutdown(c, SHUT_WR), 0);
    EXPECT_EQ(shim_read(s, buf, sizeof(buf)), 0);
    EXPECT_EQ(shim_read(s, buf, sizeof(buf)), 0);
    ASSERT_EQ(shim_write(s, "reply", 5), 5);
    EXPECT_EQ(read_n(c, 5), "reply");
    EXPECT_EQ(shim_write(c, "x", 1), -1);
    EXPECT_EQ(errno, EPIPE);
    shim_close(c);
    shim_close(s);
}

TEST_F(Shim, NonBlockingCallsSayEagain)
{
    int fl = shim_fcntl(lst, F_GETFL, 0);
    ASSERT_EQ(shim_fcntl(lst, F_SETFL, fl | O_NONBLOCK), 0);
    EXPECT_EQ(shim_accept4(lst, nullptr, nullptr, 0), -1);
    EXPECT_EQ(errno, EAGAIN);
    ASSERT_EQ(shim_fcntl(lst, F_SETFL, fl), 0);

    int c = shim_socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int rc = shim_connect(c, (sockaddr *)&addr, sizeof(addr));
    ASSERT_TRUE(rc == 0 || errno == EINPROGRESS);
    pollfd p = {c, POLLOUT, 0};
    ASSERT_EQ(shim_ppoll(&p, 1, nullptr, nullptr), 1);
    EXPECT_TRUE(p.revents & POLLOUT);
    int err = -1;
    socklen_t len = sizeof(err);
    ASSERT_EQ(shim_getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len), 0);
    EXPECT_EQ(err, 0);
    int s = shim_accept4(lst, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    ASSERT_GE(s, 0);
    EXPECT_EQ(shim_fcntl(s, F_GETFD, 0), FD_CLOEXEC);
    EXPECT_TRUE(shim_fcntl(s, F_GETFL, 0) & O_NONBLOCK);
    char b;
    EXPECT_EQ(shim_read(s, &b, 1), -1);
    EXPECT_EQ(errno, EAGAIN);
    int one = 1;
    ASSERT_EQ(shim_ioctl(s, FIONBIO, &(one = 0)), 0);
    EXPECT_FALSE(shim_fcntl(s, F_GETFL, 0) & O_NONBLOCK);
    EXPECT_EQ(shim_accept4(lst, nullptr, nullptr, 0x4000000), -1);
    EXPECT_EQ(errno, EINVAL);
    shim_close(c);
    shim_close(s);
}

TEST_F(Shim, RefusedNonBlockingConnectReportsThroughSoError)
{
    int dead = shim_socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = addr;
    ASSERT_EQ(shim_bind(dead, (sockaddr *)&(a.sin_port = 0, a), sizeof(a)), 0);
    socklen_t l = sizeof(a);
    ASSERT_EQ(shim_getsockname(dead, (sockaddr *)&a, &l), 0);
    shim_close(dead); // nobody listens on a.sin_port now
    int c = shim_socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int rc = shim_connect(c, (sockaddr *)&a, sizeof(a));
    ASSERT_EQ(rc, -1);
    ASSERT_TRUE(errno == EINPROGRESS || errno == ECONNREFUSED);
    pollfd p = {c, POLLOUT, 0};
    ASSERT_EQ(shim_ppoll(&p, 1, nullptr, nullptr), 1);
    EXPECT_TRUE(p.revents & (POLLERR | POLLHUP));
    int err = 0;
    socklen_t len = sizeof(err);
    ASSERT_EQ(shim_getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len), 0);
    EXPECT_EQ(err, ECONNREFUSED);
    shim_close(c);
    int b = shim_socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(shim_connect(b, (sockaddr *)&a, sizeof(a)), -1);
    EXPECT_EQ(errno, ECONNREFUSED);
    shim_close(b);
}

TEST_F(Shim, ResetAndBrokenPipe)
{
    auto [c, s] = pair();
    linger lg = {1, 0};
    ASSERT_EQ(shim_setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    ASSERT_EQ(shim_close(s), 0);
    char b;
    EXPECT_EQ(shim_read(c, &b, 1), -1);
    EXPECT_EQ(errno, ECONNRESET);
    EXPECT_EQ(shim_read(c, &b, 1), 0) << "as Linux: the reset is reported once";
    std::atomic<int> sigs{0};
    static std::atomic<int> *counter;
    counter = &sigs;
    struct sigaction sa{}, old{};
    sa.sa_handler = [](int) { (*counter)++; };
    sigaction(SIGPIPE, &sa, &old);
    EXPECT_EQ(shim_sendto(c, "x", 1, MSG_NOSIGNAL, nullptr, 0), -1);
    EXPECT_EQ(errno, EPIPE);
    EXPECT_EQ(sigs.load(), 0);
    EXPECT_EQ(shim_write(c, "x", 1), -1);
    EXPECT_EQ(errno, EPIPE);
    EXPECT_EQ(sigs.load(), 1) << "SIGPIPE without MSG_NOSIGNAL";
    sigaction(SIGPIPE, &old, nullptr);
    shim_close(c);
}

TEST_F(Shim, EpollLevelEdgeOneshotAndKernelFds)
{
    auto [c, s] = pair();
    int ep = shim_epoll_create1(EPOLL_CLOEXEC);
    ASSERT_GE(ep, 0);
    int efd = eventfd(0, EFD_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 1;
    ASSERT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev), 0);
    EXPECT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev), -1);
    EXPECT_EQ(errno, EEXIST);
    ev.data.u64 = 2;
    ASSERT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev), 0);
    EXPECT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_MOD, c, &ev), -1);
    EXPECT_EQ(errno, ENOENT);
    EXPECT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_ADD, ep, &ev), -1);
    EXPECT_EQ(errno, EINVAL);
    epoll_event out[8];
    EXPECT_EQ(shim_epoll_pwait(ep, out, 8, 0, nullptr), 0);

    // Level-triggered: reported until read.
    ASSERT_EQ(shim_write(c, "ab", 2), 2);
    ASSERT_EQ(shim_epoll_pwait(ep, out, 8, 2000, nullptr), 1);
    EXPECT_EQ(out[0].data.u64, 1u);
    ASSERT_EQ(shim_epoll_pwait(ep, out, 8, 0, nullptr), 1);
    // A kernel fd in the same set is reported next to ours.
    uint64_t one = 1;
    ASSERT_EQ(write(efd, &one, 8), 8);
    int n = shim_epoll_pwait(ep, out, 8, 0, nullptr);
    ASSERT_EQ(n, 2);
    EXPECT_NE(out[0].data.u64, out[1].data.u64);
    uint64_t v;
    ASSERT_EQ(read(efd, &v, 8), 8);
    char buf[8];
    ASSERT_EQ(shim_read(s, buf, 8), 2);
    EXPECT_EQ(shim_epoll_pwait(ep, out, 8, 0, nullptr), 0);

    // Edge-triggered: once per arrival, even with data left unread.
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = 1;
    ASSERT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev), 0);
    ASSERT_EQ(shim_write(c, "c", 1), 1);
    ASSERT_EQ(shim_epoll_pwait(ep, out, 8, 2000, nullptr), 1);
    EXPECT_EQ(shim_epoll_pwait(ep, out, 8, 50, nullptr), 0) << "EPOLLET reported twice";
    ASSERT_EQ(shim_write(c, "d", 1), 1);
    ASSERT_EQ(shim_epoll_pwait(ep, out, 8, 2000, nullptr), 1) << "a new arrival is a new edge";
    ASSERT_EQ(shim_read(s, buf, 8), 2);

    // One-shot: once, until re-armed with MOD.
    ev.events = EPOLLIN | EPOLLONESHOT;
    ASSERT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev), 0);
    ASSERT_EQ(shim_write(c, "e", 1), 1);
    ASSERT_EQ(shim_epoll_pwait(ep, out, 8, 2000, nullptr), 1);
    ASSERT_EQ(shim_write(c, "f", 1), 1);
    EXPECT_EQ(shim_epoll_pwait(ep, out, 8, 50, nullptr), 0);
    ASSERT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev), 0);
    EXPECT_EQ(shim_epoll_pwait(ep, out, 8, 2000, nullptr), 1);
    ASSERT_EQ(shim_read(s, buf, 8), 2);

    // RDHUP after the peer's SHUT_WR.
    ev.events = EPOLLIN | EPOLLRDHUP;
    ASSERT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_MOD, s, &ev), 0);
    ASSERT_EQ(shim_shutdown(c, SHUT_WR), 0);
    ASSERT_EQ(shim_epoll_pwait(ep, out, 8, 2000, nullptr), 1);
    EXPECT_TRUE(out[0].events & EPOLLRDHUP);
    ASSERT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_DEL, s, nullptr), 0);
    EXPECT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_DEL, s, nullptr), -1);
    EXPECT_EQ(errno, ENOENT);
    close(efd);
    shim_close(ep);
    shim_close(c);
    shim_close(s);
}

TEST_F(Shim, EpollSetInsidePollAndInsideAnotherEpoll)
{
    auto [c, s] = pair();
    int inner = shim_epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 5;
    ASSERT_EQ(shim_epoll_ctl(inner, EPOLL_CTL_ADD, s, &ev), 0);
    int outer = shim_epoll_create1(0);
    ev.data.u64 = 6;
    ASSERT_EQ(shim_epoll_ctl(outer, EPOLL_CTL_ADD, inner, &ev), 0);
    pollfd p = {inner, POLLIN, 0};
    EXPECT_EQ(shim_ppoll(&p, 1, &(const timespec &)timespec{0, 0}, nullptr), 0);
    ASSERT_EQ(shim_write(c, "z", 1), 1);
    timespec two = {2, 0};
    ASSERT_EQ(shim_ppoll(&p, 1, &two, nullptr), 1);
    EXPECT_TRUE(p.revents & POLLIN);
    epoll_event out[2];
    ASSERT_EQ(shim_epoll_pwait(outer, out, 2, 2000, nullptr), 1);
    EXPECT_EQ(out[0].data.u64, 6u);
    ASSERT_EQ(shim_epoll_pwait(inner, out, 2, 0, nullptr), 1);
    EXPECT_EQ(out[0].data.u64, 5u);
    shim_close(outer);
    shim_close(inner);
    shim_close(c);
    shim_close(s);
}

TEST_F(Shim, PollAndSelectMixOursWithPipes)
{
    auto [c, s] = pair();
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    ASSERT_EQ(write(p[1], "k", 1), 1);
    pollfd fds[2] = {{s, POLLIN, 0}, {p[0], POLLIN, 0}};
    ASSERT_EQ(shim_ppoll(fds, 2, nullptr, nullptr), 1);
    EXPECT_EQ(fds[0].revents, 0);
    EXPECT_EQ(fds[1].revents, POLLIN);
    ASSERT_EQ(shim_write(c, "o", 1), 1);
    timespec two = {2, 0};
    // Wait until ours shows up too: both reported, neither starved.
    for (int i = 0; i < 100 && fds[0].revents == 0; i++)
        shim_ppoll(fds, 2, &two, nullptr);
    EXPECT_TRUE(fds[0].revents & POLLIN);
    EXPECT_TRUE(fds[1].revents & POLLIN);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(s, &r);
    FD_SET(p[0], &r);
    int maxfd = std::max(s, p[0]) + 1;
    ASSERT_EQ(shim_pselect(maxfd, &r, nullptr, nullptr, &two, nullptr), 2);
    EXPECT_TRUE(FD_ISSET(s, &r));
    EXPECT_TRUE(FD_ISSET(p[0], &r));
    close(p[0]);
    close(p[1]);
    shim_close(c);
    shim_close(s);
}

TEST_F(Shim, DupSharesTheSocketAndCloseOrderDoesNotMatter)
{
    auto [c, s] = pair();
    int d = shim_dup(s);
    ASSERT_GE(d, 0);
    ASSERT_NE(d, s);
    ASSERT_EQ(shim_close(s), 0);
    ASSERT_EQ(shim_write(c, "dup", 3), 3);
    EXPECT_EQ(read_n(d, 3), "dup");
    int d2 = shim_fcntl(d, F_DUPFD_CLOEXEC, 100);
    ASSERT_GE(d2, 100);
    EXPECT_EQ(shim_fcntl(d2, F_GETFD, 0), FD_CLOEXEC);
    int target = open("/dev/null", O_RDONLY);
    ASSERT_EQ(shim_dup3(d2, target, -1), target) << "dup2 onto a kernel fd replaces it";
    EXPECT_TRUE(shim_owns_socket(target));
    ASSERT_EQ(shim_close(d), 0);
    ASSERT_EQ(shim_close(d2), 0);
    ASSERT_EQ(shim_write(target, "x", 1), 1);
    EXPECT_EQ(read_n(c, 1), "x");
    ASSERT_EQ(shim_close(target), 0);
    char b;
    EXPECT_EQ(shim_read(c, &b, 1), 0) << "the last close ends the connection";
    EXPECT_EQ(shim_dup3(c, c, 0), -1);
    EXPECT_EQ(errno, EINVAL);
    shim_close(c);
}

TEST_F(Shim, CloseFlushesWhatWasWritten)
{
    auto [c, s] = pair();
    std::string big(4 << 20, 'q');
    for (size_t i = 0; i < big.size(); i++)
        big[i] = (char)(i % 251);
    std::string got;
    std::thread reader([&, s = s] {
        char buf[65536];
        ssize_t r;
        while ((r = shim_read(s, buf, sizeof(buf))) > 0)
            got.append(buf, (size_t)r);
    });
    int fl = shim_fcntl(c, F_GETFL, 0);
    ASSERT_EQ(shim_fcntl(c, F_SETFL, fl | O_NONBLOCK), 0);
    size_t off = 0;
    while (off < big.size()) {
        ssize_t w = shim_write(c, big.data() + off, big.size() - off);
        if (w > 0)
            off += (size_t)w;
        else
            ASSERT_EQ(errno, EAGAIN);
        if (w < 0)
            std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    ASSERT_EQ(shim_close(c), 0); // data still in flight must arrive, then EOF
    reader.join();
    EXPECT_EQ(got.size(), big.size());
    EXPECT_TRUE(got == big);
    shim_close(s);
}

TEST_F(Shim, UdpKeepsBoundariesAndAddresses)
{
    int a = shim_socket(AF_INET, SOCK_DGRAM, 0), b = shim_socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in la = addr, lb = addr;
    la.sin_port = lb.sin_port = 0;
    ASSERT_EQ(shim_bind(a, (sockaddr *)&la, sizeof(la)), 0);
    ASSERT_EQ(shim_bind(b, (sockaddr *)&lb, sizeof(lb)), 0);
    socklen_t l = sizeof(la);
    ASSERT_EQ(shim_getsockname(a, (sockaddr *)&la, &l), 0);
    ASSERT_EQ(shim_getsockname(b, (sockaddr *)&lb, &l), 0);
    ASSERT_EQ(shim_sendto(a, "first", 5, 0, (sockaddr *)&lb, sizeof(lb)), 5);
    ASSERT_EQ(shim_sendto(a, "second!", 7, 0, (sockaddr *)&lb, sizeof(lb)), 7);
    char buf[16];
    sockaddr_in from{};
    socklen_t fl = sizeof(from);
    ASSERT_EQ(shim_recvfrom(b, buf, sizeof(buf), 0, (sockaddr *)&from, &fl), 5);
    EXPECT_EQ(std::string(buf, 5), "first");
    EXPECT_EQ(from.sin_port, la.sin_port);
    iovec iov = {buf, 3};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    ASSERT_EQ(shim_recvmsg(b, &m, 0), 3);
    EXPECT_TRUE(m.msg_flags & MSG_TRUNC);
    EXPECT_EQ(std::string(buf, 3), "sec");
    int fln = shim_fcntl(b, F_GETFL, 0);
    shim_fcntl(b, F_SETFL, fln | O_NONBLOCK);
    EXPECT_EQ(shim_recvfrom(b, buf, sizeof(buf), 0, nullptr, nullptr), -1) << "the rest of a datagram is gone";
    EXPECT_EQ(errno, EAGAIN);
    ASSERT_EQ(shim_connect(a, (sockaddr *)&lb, sizeof(lb)), 0);
    ASSERT_EQ(shim_write(a, "conn", 4), 4);
    pollfd p = {b, POLLIN, 0};
    timespec two = {2, 0};
    ASSERT_EQ(shim_ppoll(&p, 1, &two, nullptr), 1);
    ASSERT_EQ(shim_read(b, buf, sizeof(buf)), 4);
    EXPECT_EQ(shim_write(b, "x", 1), -1);
    EXPECT_EQ(errno, EDESTADDRREQ);
    shim_close(a);
    shim_close(b);
}

TEST_F(Shim, SignalInterruptsABlockingRead)
{
    auto [c, s] = pair();
    struct sigaction sa{}, old{};
    sa.sa_handler = [](int) {};
    sa.sa_flags = 0; // no SA_RESTART
    sigaction(SIGALRM, &sa, &old);
    pthread_t self = pthread_self();
    std::thread kicker([self] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        pthread_kill(self, SIGALRM);
    });
    char b;
    EXPECT_EQ(shim_read(s, &b, 1), -1);
    EXPECT_EQ(errno, EINTR);
    kicker.join();
    sigaction(SIGALRM, &old, nullptr);
    shim_close(c);
    shim_close(s);
}

TEST_F(Shim, ReceiveTimeoutEndsABlockingRead)
{
    auto [c, s] = pair();
    timeval tv = {0, 150000};
    ASSERT_EQ(shim_setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    timeval got{};
    socklen_t len = sizeof(got);
    ASSERT_EQ(shim_getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &got, &len), 0);
    EXPECT_EQ(got.tv_sec, 0);
    EXPECT_EQ(got.tv_usec, 150000);
    auto t0 = std::chrono::steady_clock::now();
    char b;
    EXPECT_EQ(shim_read(s, &b, 1), -1);
    EXPECT_EQ(errno, EAGAIN);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(140));
    timeval bad = {0, 2000000};
    EXPECT_EQ(shim_setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &bad, sizeof(bad)), -1);
    EXPECT_EQ(errno, EDOM);
    shim_close(c);
    shim_close(s);
}

TEST_F(Shim, IdleEpollWaitSleeps)
{
    auto [c, s] = pair();
    int ep = shim_epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ASSERT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev), 0);
    timespec t0, t1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    epoll_event out[4];
    EXPECT_EQ(shim_epoll_pwait(ep, out, 4, 700, nullptr), 0);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    double cpu = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    EXPECT_LT(cpu, 0.07) << "an idle epoll_wait of 0.7 s used " << cpu << " s of CPU";
    shim_close(ep);
    shim_close(c);
    shim_close(s);
}

TEST_F(Shim, ThreadsWithTheirOwnEpollSets)
{
    // An echo server thread on one epoll set, client threads each on their own set:
    // completions one thread collects must wake the thread that waits for them.
    const int kThreads = 3, kConns = 6, kRounds = 50;
    std::atomic<bool> stop{false};
    std::thread server([&] {
        int ep = shim_epoll_create1(0);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = lst;
        shim_epoll_ctl(ep, EPOLL_CTL_ADD, lst, &ev);
        epoll_event out[16];
        while (!stop) {
            int n = shim_epoll_pwait(ep, out, 16, 100, nullptr);
            for (int i = 0; i < n; i++) {
                int fd = out[i].data.fd;
                if (fd == lst) {
                    int a = shim_accept4(lst, nullptr, nullptr, SOCK_NONBLOCK);
                    if (a >= 0) {
                        ev.data.fd = a;
                        shim_epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev);
                    }
                    continue;
                }
                char buf[256];
                ssize_t r = shim_read(fd, buf, sizeof(buf));
                if (r > 0)
                    shim_write(fd, buf, (size_t)r);
                else if (r == 0)
                    shim_close(fd);
            }
        }
        shim_close(ep);
    });
    std::atomic<int> ok{0};
    std::vector<std::thread> clients;
    for (int t = 0; t < kThreads; t++)
        clients.emplace_back([&, t] {
            int ep = shim_epoll_create1(0);
            std::vector<int> cs;
            for (int i = 0; i < kConns; i++) {
                int c = shim_socket(AF_INET, SOCK_STREAM, 0);
                if (shim_connect(c, (sockaddr *)&addr, sizeof(addr)) != 0)
                    return;
                epoll_event ev{};
                ev.events = EPOLLIN;
                ev.data.fd = c;
                shim_epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                cs.push_back(c);
            }
            int good = 0;
            for (int r = 0; r < kRounds; r++) {
                for (int c : cs) {
                    char msg[16];
                    int len = snprintf(msg, sizeof(msg), "t%dr%d", t, r);
                    shim_write(c, msg, (size_t)len);
                }
                int answered = 0;
                while (answered < kConns) {
                    epoll_event out[8];
                    int n = shim_epoll_pwait(ep, out, 8, 5000, nullptr);
                    if (n <= 0)
                        break;
                    for (int i = 0; i < n; i++) {
                        char buf[64];
                        ssize_t got = shim_read(out[i].data.fd, buf, sizeof(buf));
                        char want[16];
                        int len = snprintf(want, sizeof(want), "t%dr%d", t, r);
                        if (got == len && memcmp(buf, want, (size_t)len) == 0)
                            good++;
                        answered++;
                    }
                }
            }
            ok += good;
            for (int c : cs)
                shim_close(c);
            shim_close(ep);
        });
    for (auto &c : clients)
        c.join();
    stop = true;
    server.join();
    EXPECT_EQ(ok.load(), kThreads * kConns * kRounds);
}

TEST_F(Shim, ConnectionsGoToTheProcessThatAccepts)
{
    // As on Linux: a listener shared across fork hands a connection to whichever process
    // accepts, not to one that merely holds the socket and makes other calls.
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        alarm(10);
        int a = shim_accept4(lst, nullptr, nullptr, 0);
        if (a < 0)
            _exit(2);
        _exit(shim_write(a, "child", 5) == 5 ? 0 : 3);
    }
    int c = shim_socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(shim_connect(c, (sockaddr *)&addr, sizeof(addr)), 0);
    EXPECT_EQ(read_n(c, 5), "child");
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    shim_close(c);
}

TEST_F(Shim, ForkedChildKeepsUsingInheritedSockets)
{
    auto [c, s] = pair();
    int ep = shim_epoll_create1(0);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 9;
    ASSERT_EQ(shim_epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        epoll_event out[2];
        if (shim_epoll_pwait(ep, out, 2, 5000, nullptr) != 1 || out[0].data.u64 != 9)
            _exit(2);
        char buf[8];
        if (shim_read(s, buf, 8) != 4 || memcmp(buf, "ping", 4) != 0)
            _exit(3);
        if (shim_write(s, "pong", 4) != 4)
            _exit(4);
        _exit(0);
    }
    // As a server's parent does after handing a connection to a child: close it here, so
    // only the child reads it (two processes reading one socket would race for the bytes).
    ASSERT_EQ(shim_close(s), 0);
    ASSERT_EQ(shim_write(c, "ping", 4), 4);
    EXPECT_EQ(read_n(c, 4), "pong");
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    shim_close(ep);
    shim_close(c);
}

} // namespace
