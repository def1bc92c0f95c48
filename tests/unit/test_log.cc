// Unit tests for libos/core/log.c: level names, DEMI_LOG, the line format, truncation, errno and threads.
#include <gtest/gtest.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "log.h"
}

namespace {

// Redirects stderr (fd 2) into a temporary file for the lifetime of the object.
class StderrCapture {
  public:
    StderrCapture()
    {
        char path[] = "/tmp/demi-log-test-XXXXXX";
        fd_ = mkstemp(path);
        EXPECT_GE(fd_, 0);
        unlink(path);
        // O_APPEND so that concurrent writers never overwrite each other.
        fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_APPEND);
        fflush(stderr);
        saved_ = dup(STDERR_FILENO);
        dup2(fd_, STDERR_FILENO);
    }
    ~StderrCapture()
    {
        Restore();
        close(fd_);
    }
    void Restore()
    {
        if (saved_ >= 0) {
            fflush(stderr);
            dup2(saved_, STDERR_FILENO);
            close(saved_);
            saved_ = -1;
        }
    }
    std::string Text()
    {
        std::string out;
        char buf[4096];
        ssize_t n;
        off_t off = 0;
        while ((n = pread(fd_, buf, sizeof(buf), off)) > 0) {
            out.append(buf, (size_t)n);
            off += n;
        }
        return out;
    }

  private:
    int fd_ = -1;
    int saved_ = -1;
};

class LogTest : public ::testing::Test {
  protected:
    void SetUp() override
    {
        saved_level_ = core_log_level;
        const char *v = getenv("DEMI_LOG");
        had_env_ = v != nullptr;
        if (had_env_)
            saved_env_ = v;
        unsetenv("DEMI_LOG");
        core_log_level = CORE_LOG_WARN;
    }
    void TearDown() override
    {
        core_log_level = saved_level_;
        if (had_env_)
            setenv("DEMI_LOG", saved_env_.c_str(), 1);
        else
            unsetenv("DEMI_LOG");
    }
    int saved_level_ = CORE_LOG_WARN;
    bool had_env_ = false;
    std::string saved_env_;
};

// Read during static initialisation, before any test (or core_log_init) can change it.
const int kInitialLevel = core_log_level;

TEST_F(LogTest, DefaultLevelIsWarn)
{
    EXPECT_EQ(kInitialLevel, CORE_LOG_WARN);
}

TEST_F(LogTest, ParseKnowsEveryLevelInAnyCase)
{
    EXPECT_EQ(core_log_parse("off"), CORE_LOG_OFF);
    EXPECT_EQ(core_log_parse("error"), CORE_LOG_ERROR);
    EXPECT_EQ(core_log_parse("warn"), CORE_LOG_WARN);
    EXPECT_EQ(core_log_parse("info"), CORE_LOG_INFO);
    EXPECT_EQ(core_log_parse("debug"), CORE_LOG_DEBUG);
    EXPECT_EQ(core_log_parse("trace"), CORE_LOG_TRACE);
    EXPECT_EQ(core_log_parse("TRACE"), CORE_LOG_TRACE);
    EXPECT_EQ(core_log_parse("Debug"), CORE_LOG_DEBUG);
    EXPECT_EQ(core_log_parse("OFF"), CORE_LOG_OFF);
}

TEST_F(LogTest, ParseRejectsEverythingElse)
{
    EXPECT_EQ(core_log_parse(""), -EINVAL);
    EXPECT_EQ(core_log_parse("warning"), -EINVAL);
    EXPECT_EQ(core_log_parse("warn "), -EINVAL);
    EXPECT_EQ(core_log_parse("3"), -EINVAL);
    EXPECT_EQ(core_log_parse("verbose"), -EINVAL);
    EXPECT_EQ(core_log_parse(nullptr), -EINVAL);
}

TEST_F(LogTest, InitReadsDemiLog)
{
    setenv("DEMI_LOG", "debug", 1);
    EXPECT_EQ(core_log_init(), 0);
    EXPECT_EQ(core_log_level, CORE_LOG_DEBUG);
    setenv("DEMI_LOG", "Off", 1);
    EXPECT_EQ(core_log_init(), 0);
    EXPECT_EQ(core_log_level, CORE_LOG_OFF);
}

TEST_F(LogTest, InitWithoutDemiLogKeepsTheLevel)
{
    EXPECT_EQ(core_log_init(), 0);
    EXPECT_EQ(core_log_level, CORE_LOG_WARN);
    setenv("DEMI_LOG", "", 1);
    EXPECT_EQ(core_log_init(), 0);
    EXPECT_EQ(core_log_level, CORE_LOG_WARN);
}

TEST_F(LogTest, InitWithBadDemiLogKeepsTheDefaultAndSaysWhy)
{
    setenv("DEMI_LOG", "loud", 1);
    StderrCapture cap;
    EXPECT_EQ(core_log_init(), -EINVAL);
    cap.Restore();
    EXPECT_EQ(core_log_level, CORE_LOG_WARN);
    EXPECT_EQ(cap.Text(), "demikernel: DEMI_LOG=loud is not one of off, error, warn, info, debug, trace\n");
}

TEST_F(LogTest, InitWithHugeBadDemiLogStaysOneLine)
{
    setenv("DEMI_LOG", std::string(10000, 'x').c_str(), 1);
    StderrCapture cap;
    EXPECT_EQ(core_log_init(), -EINVAL);
    cap.Restore();
    std::string t = cap.Text();
    ASSERT_FALSE(t.empty());
    EXPECT_EQ(t.find('\n'), t.size() - 1);
    EXPECT_NE(t.find("is not one of off, error, warn, info, debug, trace\n"), std::string::npos) << t;
}

TEST_F(LogTest, WriteFormatsOneLine)
{
    StderrCapture cap;
    int line = __LINE__ + 1;
    core_log_write(CORE_LOG_WARN, "some/dir/file.c", 42, "hello %d %s", 7, "world");
    core_log_write(CORE_LOG_ERROR, "x.c", line, "trailing newline is not doubled\n");
    cap.Restore();
    EXPECT_EQ(cap.Text(), "demikernel [WARN] file.c:42: hello 7 world\n"
                          "demikernel [ERROR] x.c:" +
                              std::to_string(line) + ": trailing newline is not doubled\n");
}

TEST_F(LogTest, MacrosFilterByLevel)
{
    StderrCapture cap;
    core_log_level = CORE_LOG_ERROR;
    LOG_INFO("hidden %d", 1);
    LOG_WARN("hidden too");
    LOG_ERROR("shown %d", 2);
    core_log_level = CORE_LOG_TRACE;
    LOG_TRACE("traced");
    core_log_level = CORE_LOG_OFF;
    LOG_ERROR("never");
    cap.Restore();
    std::string t = cap.Text();
    EXPECT_EQ(t.find("hidden"), std::string::npos) << t;
    EXPECT_EQ(t.find("never"), std::string::npos) << t;
    EXPECT_NE(t.find("demikernel [ERROR] test_log.cc:"), std::string::npos) << t;
    EXPECT_NE(t.find(": shown 2\n"), std::string::npos) << t;
    EXPECT_NE(t.find("demikernel [TRACE] test_log.cc:"), std::string::npos) << t;
}

TEST_F(LogTest, LongMessageIsTruncatedToOneLine)
{
    std::string big(100000, 'a');
    StderrCapture cap;
    core_log_write(CORE_LOG_INFO, "f.c", 1, "%s", big.c_str());
    cap.Restore();
    std::string t = cap.Text();
    ASSERT_GT(t.size(), 100u);
    EXPECT_LE(t.size(), 4096u) << "a line must fit one atomic pipe write";
    EXPECT_EQ(t.find('\n'), t.size() - 1);
    EXPECT_EQ(t.compare(t.size() - 4, 4, "...\n"), 0);
    EXPECT_EQ(t.rfind("demikernel [INFO] f.c:1: aaa", 0), 0u);
}

TEST_F(LogTest, ErrnoIsPreserved)
{
    StderrCapture cap;
    errno = EAGAIN;
    core_log_write(CORE_LOG_WARN, "f.c", 1, "x");
    EXPECT_EQ(errno, EAGAIN);
    setenv("DEMI_LOG", "bogus", 1);
    errno = ENOTCONN;
    EXPECT_EQ(core_log_init(), -EINVAL);
    EXPECT_EQ(errno, ENOTCONN);
}

TEST_F(LogTest, LinesFromManyThreadsNeverInterleave)
{
    const int kThreads = 8, kLines = 500;
    StderrCapture cap;
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; t++) {
        ts.emplace_back([t] {
            std::string pad(100 + 20 * t, (char)('a' + t));
            for (int i = 0; i < kLines; i++)
                core_log_write(CORE_LOG_WARN, "t.c", t, "%d %s end", i, pad.c_str());
        });
    }
    for (auto &th : ts)
        th.join();
    cap.Restore();
    std::string text = cap.Text();
    int lines = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        ASSERT_NE(nl, std::string::npos);
        std::string l = text.substr(pos, nl - pos);
        pos = nl + 1;
        lines++;
        int t = -1, i = -1;
        ASSERT_EQ(sscanf(l.c_str(), "demikernel [WARN] t.c:%d: %d ", &t, &i), 2) << l;
        ASSERT_TRUE(t >= 0 && t < kThreads) << l;
        std::string expect = "demikernel [WARN] t.c:" + std::to_string(t) + ": " + std::to_string(i) + " " +
                             std::string(100 + 20 * t, (char)('a' + t)) + " end";
        ASSERT_EQ(l, expect);
    }
    EXPECT_EQ(lines, kThreads * kLines);
}

} // namespace
