// What the fuzz harnesses share: a check that fails loudly, splitting the
// input into fields, and running a real POSIX shell as an oracle.
#ifndef ANWEDDOL_TESTS_FUZZ_FUZZ_SUPPORT_HPP
#define ANWEDDOL_TESTS_FUZZ_FUZZ_SUPPORT_HPP

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace anweddol::fuzz {

// A failed property aborts: libFuzzer saves the input as a crash, and the
// corpus replay under CTest fails.
[[noreturn]] inline void fail(const char* what, const std::string& detail = {}) {
    std::fprintf(stderr, "fuzz property violated: %s\n%s\n", what, detail.c_str());
    std::abort();
}

#define ANWEDDOL_FUZZ_CHECK(condition, ...)                                                        \
    do {                                                                                           \
        if (!(condition))                                                                          \
            ::anweddol::fuzz::fail(#condition __VA_OPT__(, ) __VA_ARGS__);                         \
    } while (false)

// The input as `count` fields separated by 0xFF bytes (a byte that no valid
// UTF-8 contains, and that the fuzzer still mutates into fields); missing
// fields are empty, the last field takes the rest.
inline std::vector<std::string> split_fields(const std::uint8_t* data, std::size_t size,
                                             std::size_t count) {
    std::vector<std::string> fields(count);
    std::size_t field = 0;
    for (std::size_t i = 0; i < size; ++i) {
        if (data[i] == 0xFF && field + 1 < count)
            ++field;
        else
            fields[field] += static_cast<char>(data[i]);
    }
    return fields;
}

// A printable rendering of bytes, for failure messages.
inline std::string escaped(std::string_view bytes) {
    std::string out;
    for (unsigned char c : bytes) {
        if (c >= 0x20 && c < 0x7F && c != '\\') {
            out += static_cast<char>(c);
        } else {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        }
    }
    return out;
}

// Runs `shell -c script` in the C locale with an empty environment (but PATH)
// and returns what it wrote to stdout, and its exit status (-1 if killed).
struct shell_result {
    std::string out;
    int status = -1;
};

inline shell_result run_shell(const std::vector<std::string>& shell, const std::string& script) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
        fail("pipe2", std::to_string(errno));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    std::vector<char*> argv;
    for (const auto& a : shell)
        argv.push_back(const_cast<char*>(a.c_str()));
    std::string dash_c = "-c";
    argv.push_back(dash_c.data());
    argv.push_back(const_cast<char*>(script.c_str()));
    argv.push_back(nullptr);
    char path[] = "PATH=/usr/bin:/bin";
    char locale[] = "LC_ALL=C";
    char* env[] = {path, locale, nullptr};
    pid_t pid;
    const int spawned = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), env);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipe_fds[1]);
    if (spawned != 0)
        fail("posix_spawn", shell[0] + ": " + std::to_string(spawned));
    shell_result result;
    char buffer[65536];
    for (;;) {
        const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        result.out.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(pipe_fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

// The shells that read anweddol's commands: the guest's (busybox ash, which
// the test ISO ships, as do many small images) and the host's /bin/sh.
inline const std::vector<std::vector<std::string>>& posix_shells() {
    static const std::vector<std::vector<std::string>> shells = {{"/bin/busybox", "sh"},
                                                                 {"/bin/sh"}};
    return shells;
}

} // namespace anweddol::fuzz

#endif
