/* Leveled logging to stderr: one write(2) per line, no allocation, errno preserved, level from DEMI_LOG. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int core_log_level = CORE_LOG_WARN;

/* Below PIPE_BUF (4096), so a line written to a pipe is never split by the kernel. */
#define LOG_LINE_MAX 2048

static const char *const level_names[] = {
    [CORE_LOG_OFF] = "off",     [CORE_LOG_ERROR] = "error", [CORE_LOG_WARN] = "warn",
    [CORE_LOG_INFO] = "info",   [CORE_LOG_DEBUG] = "debug", [CORE_LOG_TRACE] = "trace",
};

static const char *const level_tags[] = {
    [CORE_LOG_OFF] = "OFF",     [CORE_LOG_ERROR] = "ERROR", [CORE_LOG_WARN] = "WARN",
    [CORE_LOG_INFO] = "INFO",   [CORE_LOG_DEBUG] = "DEBUG", [CORE_LOG_TRACE] = "TRACE",
};

int core_log_parse(const char *name)
{
    if (name == NULL)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(name, level_names[i]) == 0)
            return (int)i;
    }
    return -EINVAL;
}

/* Writes all of buf to stderr; a line fits one write unless stderr is a slow file or a tty. */
static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a failed log write */
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Appends s to buf at *pos, never past cap (which excludes room kept for the newline). */
static void append(char *buf, size_t *pos, size_t cap, const char *s)
{
    while (*s != '\0' && *pos < cap)
        buf[(*pos)++] = *s++;
}

int core_log_init(void)
{
    const char *v = getenv("DEMI_LOG");
    if (v == NULL || v[0] == '\0')
        return 0;
    int lvl = core_log_parse(v);
    if (lvl < 0) {
        int saved = errno;
        char line[512];
        size_t pos = 0, cap = sizeof(line) - 1;
        append(line, &pos, cap, "demikernel: DEMI_LOG=");
        append(line, &pos, cap - 64, v); /* keep room for the rest of the sentence */
        append(line, &pos, cap, " is not one of off, error, warn, info, debug, trace");
        line[pos++] = '\n';
        write_all(line, pos);
        errno = saved;
        return -EINVAL;
    }
    core_log_level = lvl;
    return 0;
}

void core_log_write(enum core_log_level lvl, const char *file, int line, const char *fmt, ...)
{
    int saved = errno;
    char buf[LOG_LINE_MAX];
    /* Keep one byte for the newline; vsnprintf needs one more for its NUL. */
    const size_t cap = sizeof(buf) - 1;

    const char *tag = ((unsigned)lvl < sizeof(level_tags) / sizeof(level_tags[0])) ? level_tags[lvl] : "?";
    if (file == NULL)
        file = "?";
    const char *slash = strrchr(file, '/');
    if (slash != NULL)
        file = slash + 1;

    int n = snprintf(buf, cap, "demikernel [%s] %s:%d: ", tag, file, line);
    size_t pos = (n < 0) ? 0 : ((size_t)n >= cap ? cap - 1 : (size_t)n);

    if (fmt != NULL && pos < cap - 1) {
        va_list ap;
        va_start(ap, fmt);
        n = vsnprintf(buf + pos, cap - pos, fmt, ap);
        va_end(ap);
        if (n > 0) {
            if ((size_t)n >= cap - pos) {
                pos = cap - 1; /* truncated: vsnprintf stopped at the buffer's end */
                memcpy(buf + pos - 3, "...", 3);
            } else {
                pos += (size_t)n;
            }
        }
    }
    /* A caller's own trailing newlines would make empty lines. */
    while (pos > 0 && buf[pos - 1] == '\n')
        pos--;
    buf[pos++] = '\n';
    write_all(buf, pos);
    errno = saved;
}
