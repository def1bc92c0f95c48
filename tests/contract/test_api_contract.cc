// The API contract: every demi_* call against every kind of bad input, asserting the
// exact errno, that output arguments are untouched, and that the queue still works after.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

extern "C" {
#include <arpa/inet.h>
#include <demi/ext.h>
#include <demi/libos.h>
#include <demi/sga.h>
#include <demi/wait.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/wait.h>
#include <unistd.h>
}

namespace {

const timespec kPoll = {0, 0};
const timespec kSecond = {5, 0};
constexpr int kSentinel = 0x5a5a5a5a;
constexpr demi_qtoken_t kTokSentinel = 0x1234567887654321ull;
constexpr int kBadQds[] = {-1, -1000, 1 << 20, 0x7fffffff};

// The pointer the compiler cannot see through: NULL passed deliberately.
void *volatile null_storage = nullptr;
template <typename T> T *null_of() { return static_cast<T *>(null_storage); }

// The address the battery talks to itself on: 127.0.0.1, or CONTRACT_ADDR for a LibOS with its
// own stack (catpowder owns an address on a test link, not the kernel's loopback).
in_addr_t self_addr()
{
    const char *env = getenv("CONTRACT_ADDR");
    in_addr a{};
    if (env != nullptr && inet_pton(AF_INET, env, &a) == 1)
        return a.s_addr;
    return htonl(INADDR_LOOPBACK);
}

sockaddr_in loopback(uint16_t port)
{
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = self_addr();
    return a;
}

class Env : public ::testing::Environment {
public:
    void SetUp() override
    {
        if (getenv("CONTRACT_INIT_CHILD")) {
            // Re-executed by init_in_child(): one demi_init in a fresh process, its result as exit code.
            static char c0[] = "child";
            const char *flag = getenv("CONTRACT_FLAG");
            char *cargv[] = {c0, const_cast<char *>(flag), nullptr};
            demi_args cargs{};
            cargs.argc = flag ? 2 : 1;
            cargs.argv = cargv;
            _exit(demi_init(&cargs));
        }
        setenv("DEMI_LIBOS", CONTRACT_LIBOS, 1);
        static char arg0[] = "contract";
        static char *argv[] = {arg0, nullptr};
        demi_args args{};
        args.argc = 1;
        args.argv = argv;
        ASSERT_EQ(demi_init(&args), 0);
    }
};
::testing::Environment *const env = ::testing::AddGlobalTestEnvironment(new Env);

int tcp()
{
    int qd = kSentinel;
    EXPECT_EQ(demi_socket(&qd, AF_INET, SOCK_STREAM, 0), 0);
    return qd;
}

int udp()
{
    int qd = kSentinel;
    EXPECT_EQ(demi_socket(&qd, AF_INET, SOCK_DGRAM, 0), 0);
    return qd;
}

uint16_t local_port(int qd)
{
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    EXPECT_EQ(demi_getsockname(qd, (sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

int listener(uint16_t *port)
{
    int qd = tcp();
    sockaddr_in a = loopback(0);
    EXPECT_EQ(demi_bind(qd, (sockaddr *)&a, sizeof(a)), 0);
    EXPECT_EQ(demi_listen(qd, 16), 0);
    *port = local_port(qd);
    return qd;
}

demi_qresult_t wait_ok(demi_qtoken_t qt)
{
    demi_qresult_t qr{};
    EXPECT_EQ(demi_wait(&qr, qt, &kSecond), 0);
    return qr;
}

struct Pair {
    int lst, cli, srv;
    uint16_t port;
};

Pair connected_pair()
{
    Pair p{};
    p.lst = listener(&p.port);
    p.cli = tcp();
    demi_qtoken_t aqt, cqt;
    EXPECT_EQ(demi_accept(&aqt, p.lst), 0);
    sockaddr_in a = loopback(p.port);
    EXPECT_EQ(demi_connect(&cqt, p.cli, (sockaddr *)&a, sizeof(a)), 0);
    demi_qresult_t qr = wait_ok(cqt);
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_CONNECT);
    qr = wait_ok(aqt);
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_ACCEPT);
    p.srv = qr.qr_value.ares.qd;
    return p;
}

// Push `msg` on `from`, pop it on `to`: proves the pair still works.
void roundtrip(int from, int to, const char *msg = "still-alive")
{
    size_t n = strlen(msg);
    demi_sgarray_t sga = demi_sgaalloc(n);
    ASSERT_EQ(sga.sga_numsegs, 1u);
    memcpy(sga.sga_segs[0].sgaseg_buf, msg, n);
    demi_qtoken_t qt;
    ASSERT_EQ(demi_push(&qt, from, &sga), 0);
    demi_qresult_t qr = wait_ok(qt);
    ASSERT_EQ(qr.qr_opcode, DEMI_OPC_PUSH);
    ASSERT_EQ(demi_sgafree(&sga), 0);
    std::string got;
    while (got.size() < n) {
        ASSERT_EQ(demi_pop(&qt, to), 0);
        qr = wait_ok(qt);
        ASSERT_EQ(qr.qr_opcode, DEMI_OPC_POP);
        ASSERT_GT(qr.qr_value.sga.sga_segs[0].sgaseg_len, 0u);
        got.append((char *)qr.qr_value.sga.sga_segs[0].sgaseg_buf, qr.qr_value.sga.sga_segs[0].sgaseg_len);
        ASSERT_EQ(demi_sgafree(&qr.qr_value.sga), 0);
    }
    EXPECT_EQ(got, msg);
}

void close_pair(const Pair &p)
{
    EXPECT_EQ(demi_close(p.cli), 0);
    EXPECT_EQ(demi_close(p.srv), 0);
    EXPECT_EQ(demi_close(p.lst), 0);
}

int closed_qd()
{
    int qd = tcp();
    EXPECT_EQ(demi_close(qd), 0);
    return qd;
}

// ---- demi_init ---------------------------------------------------------------

TEST(Init, RejectsBadArgumentsAndSecondCall)
{
    EXPECT_EQ(demi_init(null_of<const demi_args>()), EINVAL);
    static char a0[] = "x";
    static char *argv[] = {a0, nullptr};
    demi_args args{};
    args.argc = 0;
    args.argv = argv;
    EXPECT_EQ(demi_init(&args), EINVAL);
    args.argc = -1;
    EXPECT_EQ(demi_init(&args), EINVAL);
    args.argc = 1;
    args.argv = nullptr;
    EXPECT_EQ(demi_init(&args), EINVAL);
    args.argv = argv;
    EXPECT_EQ(demi_init(&args), EEXIST);
    EXPECT_STREQ(demi_libos_name(), CONTRACT_LIBOS);
}

// Run demi_init in a freshly exec'd copy of this program (this one is initialised already)
// with the given environment and argv flag; returns its result and its stderr.
std::pair<int, std::string> init_in_child(const char *env_libos, const char *flag)
{
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        if (env_libos)
            setenv("DEMI_LIBOS", env_libos, 1);
        else
            unsetenv("DEMI_LIBOS");
        unsetenv("LIBOS");
        setenv("CONTRACT_INIT_CHILD", "1", 1);
        if (flag)
            setenv("CONTRACT_FLAG", flag, 1);
        else
            unsetenv("CONTRACT_FLAG");
        execl("/proc/self/exe", "contract", "--gtest_filter=InitChild.Placeholder", (char *)nullptr);
        _exit(127);
    }
    close(fds[1]);
    std::string err;
    char buf[512];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof(buf))) > 0)
        err.append(buf, n);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, err};
}

// The environment runs only when some test is selected; the re-exec'd child selects this one.
TEST(InitChild, Placeholder) {}

TEST(Init, UnknownLibosIsRejectedWithTheBuiltInList)
{
    auto [rc, err] = init_in_child("nosuchlibos", nullptr);
    EXPECT_EQ(rc, EINVAL);
    EXPECT_NE(err.find("nosuchlibos"), std::string::npos) << err;
    EXPECT_NE(err.find("catnap"), std::string::npos) << "message must list the built-in LibOSes: " << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "one line: " << err;
    auto [rc2, err2] = init_in_child(nullptr, "--catfoo");
    EXPECT_EQ(rc2, EINVAL);
    EXPECT_NE(err2.find("catfoo"), std::string::npos) << err2;
    auto [rc3, err3] = init_in_child("nosuchlibos", "--" CONTRACT_LIBOS);
    EXPECT_EQ(rc3, 0) << "an argv flag wins over the environment: " << err3;
    auto [rc4, err4] = init_in_child(nullptr, "--server");
    EXPECT_EQ(rc4, 0) << "unrelated flags are the program's own: " << err4;
}

// ---- demi_socket ----------------------------------------------------------------

TEST(Socket, RejectsBadArguments)
{
    EXPECT_EQ(demi_socket(null_of<int>(), AF_INET, SOCK_STREAM, 0), EINVAL);
    struct {
        int domain, type, proto, err;
    } bad[] = {
        {AF_INET6, SOCK_STREAM, 0, ENOTSUP}, {AF_UNIX, SOCK_STREAM, 0, ENOTSUP},
        {AF_PACKET, SOCK_RAW, 0, ENOTSUP},   {AF_INET, SOCK_RAW, 0, ENOTSUP},
        {AF_INET, SOCK_SEQPACKET, 0, ENOTSUP}, {AF_INET, SOCK_STREAM, IPPROTO_UDP, ENOTSUP},
        {AF_INET, SOCK_DGRAM, IPPROTO_TCP, ENOTSUP}, {-1, SOCK_STREAM, 0, ENOTSUP},
    };
    for (auto &b : bad) {
        int qd = kSentinel;
        EXPECT_EQ(demi_socket(&qd, b.domain, b.type, b.proto), b.err) << b.domain << "/" << b.type << "/" << b.proto;
        EXPECT_EQ(qd, kSentinel);
    }
    int qd = kSentinel;
    EXPECT_EQ(demi_socket(&qd, AF_INET, SOCK_STREAM, IPPROTO_TCP), 0);
    EXPECT_NE(qd, kSentinel);
    EXPECT_EQ(demi_close(qd), 0);
}

// ---- demi_bind --------------------------------------------------------------------

TEST(Bind, RejectsBadQdAddressSizeAndState)
{
    sockaddr_in a = loopback(0);
    for (int bad : kBadQds)
        EXPECT_EQ(demi_bind(bad, (sockaddr *)&a, sizeof(a)), EBADF);
    EXPECT_EQ(demi_bind(closed_qd(), (sockaddr *)&a, sizeof(a)), EBADF);

    int qd = tcp();
    EXPECT_EQ(demi_bind(qd, null_of<const sockaddr>(), sizeof(a)), EINVAL);
    EXPECT_EQ(demi_bind(qd, (sockaddr *)&a, 0), EINVAL);
    EXPECT_EQ(demi_bind(qd, (sockaddr *)&a, sizeof(a) - 1), EINVAL);
    sockaddr_in6 six{};
    six.sin6_family = AF_INET6;
    EXPECT_EQ(demi_bind(qd, (sockaddr *)&six, sizeof(six)), EINVAL);
    sockaddr_in unspec = a;
    unspec.sin_family = AF_UNSPEC;
    EXPECT_EQ(demi_bind(qd, (sockaddr *)&unspec, sizeof(unspec)), EINVAL);
    // Nothing changed: the socket can still be bound, once.
    ASSERT_EQ(demi_bind(qd, (sockaddr *)&a, sizeof(a)), 0);
    EXPECT_EQ(demi_bind(qd, (sockaddr *)&a, sizeof(a)), EINVAL) << "second bind";
    uint16_t port = local_port(qd);
    EXPECT_NE(port, 0);

    int other = tcp();
    sockaddr_in same = loopback(port);
    EXPECT_EQ(demi_bind(other, (sockaddr *)&same, sizeof(same)), EADDRINUSE);
    sockaddr_in foreign = loopback(0);
    inet_pton(AF_INET, "192.0.2.1", &foreign.sin_addr); // TEST-NET-1: never local
    EXPECT_EQ(demi_bind(other, (sockaddr *)&foreign, sizeof(foreign)), EADDRNOTAVAIL);
    EXPECT_EQ(demi_bind(other, (sockaddr *)&a, sizeof(a)), 0) << "failed binds changed the socket";

    ASSERT_EQ(demi_listen(qd, 4), 0);
    EXPECT_EQ(demi_bind(qd, (sockaddr *)&a, sizeof(a)), EINVAL) << "bind on a listening socket";
    EXPECT_EQ(demi_close(qd), 0);
    EXPECT_EQ(demi_close(other), 0);
}

TEST(Bind, UdpPortConflict)
{
    int a = udp(), b = udp();
    sockaddr_in any = loopback(0);
    ASSERT_EQ(demi_bind(a, (sockaddr *)&any, sizeof(any)), 0);
    sockaddr_in same = loopback(local_port(a));
    EXPECT_EQ(demi_bind(b, (sockaddr *)&same, sizeof(same)), EADDRINUSE);
    EXPECT_EQ(demi_close(a), 0);
    EXPECT_EQ(demi_close(b), 0);
}

// ---- demi_listen -------------------------------------------------------------------

TEST(Listen, RejectsBadQdKindAndState)
{
    for (int bad : kBadQds)
        EXPECT_EQ(demi_listen(bad, 8), EBADF);
    EXPECT_EQ(demi_listen(closed_qd(), 8), EBADF);
    int u = udp();
    EXPECT_EQ(demi_listen(u, 8), EINVAL) << "listen on a datagram socket";
    EXPECT_EQ(demi_close(u), 0);

    Pair p = connected_pair();
    EXPECT_EQ(demi_listen(p.cli, 8), EINVAL) << "listen on a connected socket";
    EXPECT_EQ(demi_listen(p.srv, 8), EINVAL) << "listen on an accepted socket";
    roundtrip(p.cli, p.srv);
    roundtrip(p.srv, p.cli);
    close_pair(p);
}

TEST(Listen, NegativeBacklogIsClampedAsLinuxDoes)
{
    uint16_t port;
    int l = listener(&port);
    EXPECT_EQ(demi_close(l), 0);
    int qd = tcp();
    sockaddr_in a = loopback(0);
    ASSERT_EQ(demi_bind(qd, (sockaddr *)&a, sizeof(a)), 0);
    EXPECT_EQ(demi_listen(qd, -5), 0);
    EXPECT_EQ(demi_close(qd), 0);
}

// ---- demi_accept --------------------------------------------------------------------

TEST(Accept, RejectsBadArgumentsAndState)
{
    demi_qtoken_t qt = kTokSentinel;
    uint16_t port;
    int l = listener(&port);
    EXPECT_EQ(demi_accept(null_of<demi_qtoken_t>(), l), EINVAL);
    for (int bad : kBadQds) {
        EXPECT_EQ(demi_accept(&qt, bad), EBADF);
        EXPECT_EQ(qt, kTokSentinel);
    }
    EXPECT_EQ(demi_accept(&qt, closed_qd()), EBADF);
    int unbound = tcp();
    EXPECT_EQ(demi_accept(&qt, unbound), EINVAL) << "accept on an unbound socket";
    sockaddr_in a = loopback(0);
    ASSERT_EQ(demi_bind(unbound, (sockaddr *)&a, sizeof(a)), 0);
    EXPECT_EQ(demi_accept(&qt, unbound), EINVAL) << "accept on a bound, not listening socket";
    int u = udp();
    EXPECT_EQ(demi_accept(&qt, u), EINVAL) << "accept on a datagram socket";
    EXPECT_EQ(qt, kTokSentinel);
    Pair p = connected_pair();
    EXPECT_EQ(demi_accept(&qt, p.cli), EINVAL) << "accept on a connected socket";
    EXPECT_EQ(qt, kTokSentinel);
    roundtrip(p.cli, p.srv);
    close_pair(p);
    EXPECT_EQ(demi_close(unbound), 0);
    EXPECT_EQ(demi_close(u), 0);
    EXPECT_EQ(demi_close(l), 0);
}

// ---- demi_connect --------------------------------------------------------------------

TEST(Connect, RejectsBadArguments)
{
    uint16_t port;
    int l = listener(&port);
    sockaddr_in a = loopback(port);
    demi_qtoken_t qt = kTokSentinel;
    int qd = tcp();
    EXPECT_EQ(demi_connect(null_of<demi_qtoken_t>(), qd, (sockaddr *)&a, sizeof(a)), EINVAL);
    EXPECT_EQ(demi_connect(&qt, qd, null_of<const sockaddr>(), sizeof(a)), EINVAL);
    EXPECT_EQ(demi_connect(&qt, qd, (sockaddr *)&a, 0), EINVAL);
    EXPECT_EQ(demi_connect(&qt, qd, (sockaddr *)&a, sizeof(a) - 2), EINVAL);
    sockaddr_in6 six{};
    six.sin6_family = AF_INET6;
    EXPECT_EQ(demi_connect(&qt, qd, (sockaddr *)&six, sizeof(six)), EINVAL);
    for (int bad : kBadQds)
        EXPECT_EQ(demi_connect(&qt, bad, (sockaddr *)&a, sizeof(a)), EBADF);
    EXPECT_EQ(demi_connect(&qt, closed_qd(), (sockaddr *)&a, sizeof(a)), EBADF);
    EXPECT_EQ(qt, kTokSentinel);
    EXPECT_EQ(demi_connect(&qt, l, (sockaddr *)&a, sizeof(a)), EISCONN) << "connect on a listening socket";
    EXPECT_EQ(qt, kTokSentinel);
    // Nothing changed: the socket still connects.
    demi_qtoken_t aqt;
    ASSERT_EQ(demi_accept(&aqt, l), 0);
    ASSERT_EQ(demi_connect(&qt, qd, (sockaddr *)&a, sizeof(a)), 0);
    // Linux answers a second connect with EALREADY while the first is pending, EISCONN after.
    demi_qtoken_t qt2 = kTokSentinel;
    int again = demi_connect(&qt2, qd, (sockaddr *)&a, sizeof(a));
    EXPECT_TRUE(again == EALREADY || again == EISCONN) << again;
    EXPECT_EQ(qt2, kTokSentinel);
    EXPECT_EQ(wait_ok(qt).qr_opcode, DEMI_OPC_CONNECT);
    demi_qresult_t qr = wait_ok(aqt);
    ASSERT_EQ(qr.qr_opcode, DEMI_OPC_ACCEPT);
    EXPECT_EQ(demi_connect(&qt2, qd, (sockaddr *)&a, sizeof(a)), EISCONN);
    EXPECT_EQ(qt2, kTokSentinel);
    roundtrip(qd, qr.qr_value.ares.qd);
    EXPECT_EQ(demi_close(qr.qr_value.ares.qd), 0);
    EXPECT_EQ(demi_close(qd), 0);
    EXPECT_EQ(demi_close(l), 0);
}

TEST(Connect, RefusedCompletesAsFailed)
{
    uint16_t port;
    int l = listener(&port);
    EXPECT_EQ(demi_close(l), 0); // nobody listens on port now
    int qd = tcp();
    sockaddr_in a = loopback(port);
    demi_qtoken_t qt;
    ASSERT_EQ(demi_connect(&qt, qd, (sockaddr *)&a, sizeof(a)), 0);
    demi_qresult_t qr = wait_ok(qt);
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_FAILED);
    EXPECT_EQ(qr.qr_ret, ECONNREFUSED);
    EXPECT_EQ(qr.qr_qd, qd);
    EXPECT_EQ(demi_close(qd), 0);
}

// ---- demi_push / demi_pushto ---------------------------------------------------------

TEST(Push, RejectsBadSgasQdsAndStates)
{
    Pair p = connected_pair();
    demi_qtoken_t qt = kTokSentinel;
    char byte = 'x';
    demi_sgarray_t good{};
    good.sga_numsegs = 1;
    good.sga_segs[0].sgaseg_buf = &byte;
    good.sga_segs[0].sgaseg_len = 1;

    EXPECT_EQ(demi_push(null_of<demi_qtoken_t>(), p.cli, &good), EINVAL);
    EXPECT_EQ(demi_push(&qt, p.cli, null_of<const demi_sgarray_t>()), EINVAL);
    demi_sgarray_t bad = good;
    bad.sga_numsegs = 0;
    EXPECT_EQ(demi_push(&qt, p.cli, &bad), EINVAL) << "empty sga";
    bad = good;
    bad.sga_numsegs = 2;
    EXPECT_EQ(demi_push(&qt, p.cli, &bad), EINVAL) << "more segments than DEMI_SGARRAY_MAXSIZE";
    bad = good;
    bad.sga_segs[0].sgaseg_len = 0;
    EXPECT_EQ(demi_push(&qt, p.cli, &bad), EINVAL) << "zero-length segment";
    bad = good;
    bad.sga_segs[0].sgaseg_buf = nullptr;
    EXPECT_EQ(demi_push(&qt, p.cli, &bad), EINVAL) << "NULL segment buffer";
    for (int b : kBadQds)
        EXPECT_EQ(demi_push(&qt, b, &good), EBADF);
    EXPECT_EQ(demi_push(&qt, closed_qd(), &good), EBADF);
    int fresh = tcp();
    EXPECT_EQ(demi_push(&qt, fresh, &good), ENOTCONN);
    EXPECT_EQ(demi_push(&qt, p.lst, &good), ENOTCONN) << "push on a listening socket";
    int u = udp();
    EXPECT_EQ(demi_push(&qt, u, &good), EDESTADDRREQ) << "push on an unconnected datagram socket";
    EXPECT_EQ(qt, kTokSentinel);

    sockaddr_in dst = loopback(p.port);
    EXPECT_EQ(demi_pushto(&qt, u, &good, null_of<const sockaddr>(), sizeof(dst)), EINVAL);
    EXPECT_EQ(demi_pushto(&qt, u, &good, (sockaddr *)&dst, 3), EINVAL);
    sockaddr_in6 six{};
    six.sin6_family = AF_INET6;
    EXPECT_EQ(demi_pushto(&qt, u, &good, (sockaddr *)&six, sizeof(six)), EINVAL);
    EXPECT_EQ(demi_pushto(&qt, u, &bad, (sockaddr *)&dst, sizeof(dst)), EINVAL);
    EXPECT_EQ(demi_pushto(null_of<demi_qtoken_t>(), u, &good, (sockaddr *)&dst, sizeof(dst)), EINVAL);
    EXPECT_EQ(demi_pushto(&qt, kBadQds[0], &good, (sockaddr *)&dst, sizeof(dst)), EBADF);
    EXPECT_EQ(demi_pushto(&qt, fresh, &good, (sockaddr *)&dst, sizeof(dst)), ENOTCONN);
    EXPECT_EQ(qt, kTokSentinel);

    // Nothing changed: the pair still carries data both ways.
    roundtrip(p.cli, p.srv);
    roundtrip(p.srv, p.cli);
    // After shutdown(SHUT_WR), pushes fail with EPIPE as write(2) would.
    ASSERT_EQ(demi_shutdown(p.cli, SHUT_WR), 0);
    EXPECT_EQ(demi_push(&qt, p.cli, &good), EPIPE);
    EXPECT_EQ(qt, kTokSentinel);
    roundtrip(p.srv, p.cli, "reverse-direction-still-open");
    EXPECT_EQ(demi_close(fresh), 0);
    EXPECT_EQ(demi_close(u), 0);
    close_pair(p);
}

// ---- demi_pop -------------------------------------------------------------------------

TEST(Pop, RejectsBadQdsAndStates)
{
    demi_qtoken_t qt = kTokSentinel;
    uint16_t port;
    int l = listener(&port);
    EXPECT_EQ(demi_pop(null_of<demi_qtoken_t>(), l), EINVAL);
    for (int b : kBadQds)
        EXPECT_EQ(demi_pop(&qt, b), EBADF);
    EXPECT_EQ(demi_pop(&qt, closed_qd()), EBADF);
    EXPECT_EQ(demi_pop(&qt, l), EINVAL) << "pop on a listening socket";
    int fresh = tcp();
    EXPECT_EQ(demi_pop(&qt, fresh), ENOTCONN);
    EXPECT_EQ(qt, kTokSentinel);
    EXPECT_EQ(demi_close(fresh), 0);
    EXPECT_EQ(demi_close(l), 0);
}

TEST(Pop, EndOfStreamIsAZeroLengthSga)
{
    Pair p = connected_pair();
    ASSERT_EQ(demi_close(p.cli), 0);
    for (int i = 0; i < 2; i++) {
        demi_qtoken_t qt;
        ASSERT_EQ(demi_pop(&qt, p.srv), 0);
        demi_qresult_t qr = wait_ok(qt);
        ASSERT_EQ(qr.qr_opcode, DEMI_OPC_POP);
        EXPECT_EQ(qr.qr_value.sga.sga_segs[0].sgaseg_len, 0u);
        EXPECT_EQ(demi_sgafree(&qr.qr_value.sga), 0);
    }
    EXPECT_EQ(demi_close(p.srv), 0);
    EXPECT_EQ(demi_close(p.lst), 0);
}

TEST(Close, CancelsPendingOperationsAndRejectsDoubleClose)
{
    Pair p = connected_pair();
    demi_qtoken_t pop1, pop2, acc;
    ASSERT_EQ(demi_pop(&pop1, p.srv), 0);
    ASSERT_EQ(demi_pop(&pop2, p.srv), 0);
    ASSERT_EQ(demi_accept(&acc, p.lst), 0);
    ASSERT_EQ(demi_close(p.srv), 0);
    ASSERT_EQ(demi_close(p.lst), 0);
    for (demi_qtoken_t qt : {pop1, pop2, acc}) {
        demi_qresult_t qr = wait_ok(qt);
        EXPECT_EQ(qr.qr_opcode, DEMI_OPC_FAILED);
        EXPECT_EQ(qr.qr_ret, ECANCELED);
    }
    EXPECT_EQ(demi_close(p.srv), EBADF);
    EXPECT_EQ(demi_close(p.lst), EBADF);
    for (int b : kBadQds)
        EXPECT_EQ(demi_close(b), EBADF);
    EXPECT_EQ(demi_close(p.cli), 0);
}

// ---- socket options and names ------------------------------------------------------------

TEST(Sockopt, RejectsBadArgumentsAndRoundTrips)
{
    int qd = tcp();
    int one = 1, val = kSentinel;
    socklen_t len = sizeof(val);
    for (int b : kBadQds) {
        EXPECT_EQ(demi_setsockopt(b, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), EBADF);
        EXPECT_EQ(demi_getsockopt(b, SOL_SOCKET, SO_REUSEADDR, &val, &len), EBADF);
    }
    EXPECT_EQ(demi_setsockopt(qd, SOL_SOCKET, SO_REUSEADDR, null_of<const void>(), sizeof(one)), EINVAL);
    EXPECT_EQ(demi_setsockopt(qd, SOL_SOCKET, SO_REUSEADDR, &one, 0), EINVAL);
    EXPECT_EQ(demi_setsockopt(qd, SOL_SOCKET, SO_REUSEADDR, &one, 1), EINVAL) << "optlen shorter than int";
    EXPECT_EQ(demi_setsockopt(qd, SOL_SOCKET, 12345, &one, sizeof(one)), ENOPROTOOPT);
    EXPECT_EQ(demi_setsockopt(qd, 9999, SO_REUSEADDR, &one, sizeof(one)), ENOPROTOOPT);
    EXPECT_EQ(demi_getsockopt(qd, SOL_SOCKET, SO_REUSEADDR, null_of<void>(), &len), EINVAL);
    EXPECT_EQ(demi_getsockopt(qd, SOL_SOCKET, SO_REUSEADDR, &val, null_of<socklen_t>()), EINVAL);
    socklen_t zero = 0;
    EXPECT_EQ(demi_getsockopt(qd, SOL_SOCKET, SO_REUSEADDR, &val, &zero), EINVAL);
    EXPECT_EQ(demi_getsockopt(qd, SOL_SOCKET, 12345, &val, &len), ENOPROTOOPT);
    EXPECT_EQ(val, kSentinel);

    struct {
        int level, name;
    } opts[] = {{SOL_SOCKET, SO_REUSEADDR}, {SOL_SOCKET, SO_REUSEPORT}, {SOL_SOCKET, SO_KEEPALIVE},
                {IPPROTO_TCP, TCP_NODELAY}};
    for (auto &o : opts) {
        ASSERT_EQ(demi_setsockopt(qd, o.level, o.name, &one, sizeof(one)), 0) << o.name;
        val = 0;
        len = sizeof(val);
        ASSERT_EQ(demi_getsockopt(qd, o.level, o.name, &val, &len), 0) << o.name;
        EXPECT_NE(val, 0) << o.name;
        EXPECT_EQ(len, sizeof(int));
    }
    linger lg{1, 0};
    ASSERT_EQ(demi_setsockopt(qd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    linger got{};
    len = sizeof(got);
    ASSERT_EQ(demi_getsockopt(qd, SOL_SOCKET, SO_LINGER, &got, &len), 0);
    EXPECT_EQ(got.l_onoff, 1);
    EXPECT_EQ(got.l_linger, 0);
    int buf = 256 * 1024;
    ASSERT_EQ(demi_setsockopt(qd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf)), 0);
    ASSERT_EQ(demi_setsockopt(qd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf)), 0);
    len = sizeof(val);
    ASSERT_EQ(demi_getsockopt(qd, SOL_SOCKET, SO_RCVBUF, &val, &len), 0);
    EXPECT_GE(val, buf) << "Linux doubles the value it is given";
    len = sizeof(val);
    ASSERT_EQ(demi_getsockopt(qd, SOL_SOCKET, SO_ERROR, &val, &len), 0);
    EXPECT_EQ(val, 0);
    EXPECT_EQ(demi_close(qd), 0);
}

TEST(Names, GetpeernameRejectsBadArgumentsAndReportsThePeer)
{
    sockaddr_in a{};
    socklen_t len = sizeof(a);
    for (int b : kBadQds)
        EXPECT_EQ(demi_getpeername(b, (sockaddr *)&a, &len), EBADF);
    int fresh = tcp();
    EXPECT_EQ(demi_getpeername(fresh, (sockaddr *)&a, &len), ENOTCONN);
    int u = udp();
    EXPECT_EQ(demi_getpeername(u, (sockaddr *)&a, &len), ENOTCONN);
    Pair p = connected_pair();
    EXPECT_EQ(demi_getpeername(p.cli, null_of<sockaddr>(), &len), EINVAL);
    EXPECT_EQ(demi_getpeername(p.cli, (sockaddr *)&a, null_of<socklen_t>()), EINVAL);
    EXPECT_EQ(demi_getpeername(p.lst, (sockaddr *)&a, &len), ENOTCONN);
    EXPECT_EQ(len, sizeof(a));
    ASSERT_EQ(demi_getpeername(p.cli, (sockaddr *)&a, &len), 0);
    EXPECT_EQ(len, sizeof(a));
    EXPECT_EQ(a.sin_family, AF_INET);
    EXPECT_EQ(ntohs(a.sin_port), p.port);
    EXPECT_EQ(a.sin_addr.s_addr, self_addr());
    // The server side's peer is the client's local address.
    sockaddr_in peer{};
    len = sizeof(peer);
    ASSERT_EQ(demi_getpeername(p.srv, (sockaddr *)&peer, &len), 0);
    EXPECT_EQ(ntohs(peer.sin_port), local_port(p.cli));
    // A short buffer is truncated and the full size reported, as getpeername(2) does.
    sockaddr_in small{};
    small.sin_port = 0xffff;
    socklen_t slen = 2;
    ASSERT_EQ(demi_getpeername(p.cli, (sockaddr *)&small, &slen), 0);
    EXPECT_EQ(slen, sizeof(sockaddr_in));
    EXPECT_EQ(small.sin_family, AF_INET);
    EXPECT_EQ(small.sin_port, 0xffff) << "wrote past the caller's length";
    EXPECT_EQ(demi_close(fresh), 0);
    EXPECT_EQ(demi_close(u), 0);
    close_pair(p);
}

// ---- waits and buffers ----------------------------------------------------------------------

TEST(Wait, ConsumedTokenAndBadArguments)
{
    Pair p = connected_pair();
    demi_sgarray_t sga = demi_sgaalloc(8);
    memcpy(sga.sga_segs[0].sgaseg_buf, "12345678", 8);
    demi_qtoken_t qt;
    ASSERT_EQ(demi_push(&qt, p.cli, &sga), 0);
    demi_qresult_t qr;
    EXPECT_EQ(demi_wait(null_of<demi_qresult_t>(), qt, &kPoll), EINVAL);
    qr = wait_ok(qt);
    EXPECT_EQ(qr.qr_opcode, DEMI_OPC_PUSH);
    memset(&qr, 0x77, sizeof(qr));
    demi_qresult_t before = qr;
    EXPECT_EQ(demi_wait(&qr, qt, &kPoll), EINVAL) << "consumed token";
    EXPECT_EQ(demi_wait(&qr, qt, nullptr), EINVAL) << "consumed token, infinite wait";
    EXPECT_EQ(memcmp(&qr, &before, sizeof(qr)), 0);
    int off = kSentinel, n = kSentinel;
    EXPECT_EQ(demi_wait_any(&qr, &off, &qt, 1, &kPoll), EINVAL);
    EXPECT_EQ(off, kSentinel);
    demi_qresult_t many[4];
    EXPECT_EQ(demi_wait_next_n(many, -1, &n, &kPoll), EINVAL);
    EXPECT_EQ(n, kSentinel);
    EXPECT_EQ(demi_sgafree(&sga), 0);
    roundtrip(p.srv, p.cli);
    // Drain the 8 bytes pushed above so the pair is clean.
    ASSERT_EQ(demi_pop(&qt, p.srv), 0);
    qr = wait_ok(qt);
    EXPECT_EQ(demi_sgafree(&qr.qr_value.sga), 0);
    close_pair(p);
}

TEST(Sga, AllocAndFreeEdgeCases)
{
    demi_sgarray_t z = demi_sgaalloc(0);
    EXPECT_EQ(z.sga_numsegs, 0u);
    EXPECT_EQ(z.sga_buf, nullptr);
    EXPECT_EQ(demi_sgafree(null_of<demi_sgarray_t>()), EINVAL);
    demi_sgarray_t empty{};
    EXPECT_EQ(demi_sgafree(&empty), EINVAL);
    demi_sgarray_t s = demi_sgaalloc(1000);
    ASSERT_EQ(s.sga_numsegs, 1u);
    EXPECT_GE(s.sga_segs[0].sgaseg_len, 1000u);
    demi_sgarray_t copy = s;
    EXPECT_EQ(demi_sgafree(&s), 0);
    EXPECT_EQ(demi_sgafree(&copy), EINVAL) << "double free";
}

TEST(Ext, PushtoEmptySendsAZeroLengthDatagram)
{
    int a = udp(), b = udp();
    sockaddr_in any = loopback(0);
    ASSERT_EQ(demi_bind(a, (sockaddr *)&any, sizeof(any)), 0);
    ASSERT_EQ(demi_bind(b, (sockaddr *)&any, sizeof(any)), 0);
    sockaddr_in to = loopback(local_port(b));
    demi_qtoken_t qt = kTokSentinel;
    EXPECT_EQ(demi_pushto_empty(null_of<demi_qtoken_t>(), a, (sockaddr *)&to, sizeof(to)), EINVAL);
    EXPECT_EQ(demi_pushto_empty(&qt, kBadQds[0], (sockaddr *)&to, sizeof(to)), EBADF);
    EXPECT_EQ(demi_pushto_empty(&qt, a, nullptr, 0), EDESTADDRREQ);
    EXPECT_EQ(demi_pushto_empty(&qt, a, (sockaddr *)&to, 3), EINVAL);
    int t = tcp();
    EXPECT_EQ(demi_pushto_empty(&qt, t, (sockaddr *)&to, sizeof(to)), EINVAL) << "TCP has no empty segments";
    EXPECT_EQ(qt, kTokSentinel);
    ASSERT_EQ(demi_pushto_empty(&qt, a, (sockaddr *)&to, sizeof(to)), 0);
    EXPECT_EQ(wait_ok(qt).qr_opcode, DEMI_OPC_PUSH);
    ASSERT_EQ(demi_pop(&qt, b), 0);
    demi_qresult_t qr = wait_ok(qt);
    ASSERT_EQ(qr.qr_opcode, DEMI_OPC_POP);
    EXPECT_EQ(qr.qr_value.sga.sga_segs[0].sgaseg_len, 0u);
    EXPECT_EQ(ntohs(qr.qr_value.sga.sga_addr.sin_port), local_port(a));
    demi_sgafree(&qr.qr_value.sga);
    EXPECT_EQ(demi_close(t), 0);
    EXPECT_EQ(demi_close(a), 0);
    EXPECT_EQ(demi_close(b), 0);
}

TEST(Ext, NetstackStats)
{
    const char *name = "untouched";
    const char *help = "untouched";
    uint64_t v = 77;
    EXPECT_EQ(demi_netstack_stats(0, &name, &help, null_of<uint64_t>()), EINVAL);
    bool has_stack = std::string(CONTRACT_LIBOS) == "catpowder";
    if (!has_stack) {
        EXPECT_EQ(demi_netstack_stats(0, &name, &help, &v), ENOTSUP);
        EXPECT_STREQ(name, "untouched");
        EXPECT_EQ(v, 77u);
        return;
    }
    unsigned i = 0;
    bool seen_eth_rx = false;
    for (; demi_netstack_stats(i, &name, &help, &v) == 0; i++) {
        ASSERT_NE(name, nullptr);
        ASSERT_NE(help, nullptr);
        EXPECT_GT(strlen(help), 0u) << name;
        seen_eth_rx |= std::string(name) == "eth_rx";
    }
    EXPECT_TRUE(seen_eth_rx);
    EXPECT_EQ(demi_netstack_stats(i, nullptr, nullptr, &v), ENOENT);
    EXPECT_EQ(demi_netstack_stats(0, nullptr, nullptr, &v), 0) << "name and help are optional";
}

TEST(Pipe, ArgumentsAndSupport)
{
    int qd = kSentinel;
    EXPECT_EQ(demi_create_pipe(null_of<int>(), "x"), EINVAL);
    EXPECT_EQ(demi_create_pipe(&qd, null_of<const char>()), EINVAL);
    EXPECT_EQ(demi_open_pipe(null_of<int>(), "x"), EINVAL);
    EXPECT_EQ(demi_open_pipe(&qd, null_of<const char>()), EINVAL);
    EXPECT_EQ(qd, kSentinel);
    if (std::string(CONTRACT_LIBOS) == "catnap") {
        EXPECT_EQ(demi_create_pipe(&qd, "contract-pipe"), ENOTSUP);
        EXPECT_EQ(demi_open_pipe(&qd, "contract-pipe"), ENOTSUP);
        EXPECT_EQ(qd, kSentinel);
    }
}

} // namespace
