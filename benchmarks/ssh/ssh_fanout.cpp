// SSH fan-out against a local OpenSSH sshd (the unit tests' fixture: its own
// config, SHA-512 password, 127.0.0.1), in one run:
//
// 1. Sessions: CONCURRENCY at once, each connect + password auth +
//    exec("true") + close, until SESSIONS are done; through anweddol (one
//    io_context thread), asyncssh (one asyncio loop) and paramiko (a thread
//    per connection, as the reference uses it).
// 2. Commands: one established session, COMMANDS runs of "true" with
//    CHANNELS at once; anweddol beside asyncssh over one connection.
//
//   ssh_fanout [--sessions N] [--concurrency C] [--commands M] [--channels K]
//
// For each it prints the rate, the client's CPU per session (its own
// getrusage, start-up excluded) and sshd's (the listener's own CPU plus its
// reaped children's, read from /proc before and after, once every session's
// processes are gone). sshd bounds the rate, so the ceiling a client can reach
// is cores / (client + server CPU per session); the ratio is the measured rate
// over that ceiling. Targets: anweddol's client CPU per session <= 1/4 of
// asyncssh's, and its rate >= 90% of its ceiling. Needs root (the fixture
// creates a user and runs sshd). The machine may be shared: numbers are noisy.
#include "local_sshd.hpp"

#include <anweddol/endpoint_shell_instance.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/writable_pipe.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace bp = boost::process::v2;
using anweddol::test::local_sshd;

namespace {

struct settings {
    long sessions = 600;
    int concurrency = 64;
    long commands = 2000;
    int channels = 32;
};

settings parse(int argc, char** argv) {
    settings s;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view arg = argv[i];
        const long value = std::stol(argv[i + 1]);
        if (arg == "--sessions")
            s.sessions = value;
        else if (arg == "--concurrency")
            s.concurrency = static_cast<int>(value);
        else if (arg == "--commands")
            s.commands = value;
        else if (arg == "--channels")
            s.channels = static_cast<int>(value);
        else
            throw std::invalid_argument("unknown option " + std::string(arg));
    }
    return s;
}

double process_cpu_seconds(int who = RUSAGE_SELF) {
    rusage usage{};
    getrusage(who, &usage);
    return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

/// sshd's CPU. Some of its processes outlive their parent and are reaped by
/// init, so the listener's cutime misses them (the commands a session ran,
/// for one): where cgroup v1's cpuacct is writable, the listener is moved to
/// a cgroup of its own, which counts every process it forks from then on.
class sshd_cpu_meter {
public:
    explicit sshd_cpu_meter(int pid)
        : pid_(pid) {
        const std::string root = "/sys/fs/cgroup/cpuacct";
        group_ = root + "/anweddol-ssh-bench-" + std::to_string(::getpid());
        std::error_code ec;
        if (!std::filesystem::create_directory(group_, ec)) {
            group_.clear();
            return;
        }
        if (!(std::ofstream(group_ + "/cgroup.procs") << pid << std::endl)) {
            std::filesystem::remove(group_, ec);
            group_.clear();
        }
    }
    ~sshd_cpu_meter() {
        if (group_.empty())
            return;
        std::ifstream procs(group_ + "/cgroup.procs");
        for (std::string pid; std::getline(procs, pid);)
            std::ofstream("/sys/fs/cgroup/cpuacct/cgroup.procs") << pid << std::endl;
        std::error_code ec;
        std::filesystem::remove(group_, ec);
    }
    sshd_cpu_meter(const sshd_cpu_meter&) = delete;
    sshd_cpu_meter& operator=(const sshd_cpu_meter&) = delete;

    const char* method() const {
        return group_.empty() ? "the listener's own and reaped children's CPU (misses orphans)"
                              : "a cpuacct cgroup holding sshd and everything it forks";
    }

    double seconds() const;

private:
    int pid_;
    std::string group_;
};

/// The sshd listener's CPU plus its reaped children's, in seconds.
double sshd_cpu_seconds(int pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), {});
    std::istringstream fields(text.substr(text.rfind(')') + 2)); // after "(comm) "
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 17 && fields >> field; ++i)
        if (i >= 14) // utime, stime, cutime, cstime
            ticks += std::stod(field);
    return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double sshd_cpu_meter::seconds() const {
    if (group_.empty())
        return sshd_cpu_seconds(pid_);
    std::ifstream usage(group_ + "/cpuacct.usage");
    double nanoseconds = 0;
    usage >> nanoseconds;
    return nanoseconds / 1e9;
}

/// Waits until the listener has no children left (every session's processes
/// exited and were reaped), so that their CPU is in its cutime/cstime.
void wait_for_sessions_to_end(int pid) {
    const std::string children =
        "/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children";
    for (int i = 0; i < 500; ++i) {
        std::ifstream in(children);
        std::string content;
        if (!std::getline(in, content) || content.find_first_not_of(' ') == std::string::npos)
            return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

/// CPU seconds every process of the machine spent (the "cpu" line of
/// /proc/stat: all but idle and iowait).
double machine_busy_seconds() {
    std::ifstream stat("/proc/stat");
    std::string cpu;
    double user, nice, system, idle, iowait, irq, softirq, steal;
    stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    return (user + nice + system + irq + softirq + steal) /
           static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct measurement {
    std::string client;
    long count = 0;
    double seconds = 0;
    double client_cpu = 0; // seconds, whole run
    double server_cpu = 0; // seconds, whole run
    double others_cpu = 0; // seconds the rest of the machine used meanwhile
};

/// Runs `workload` (which returns its measurement without others_cpu) and
/// notes what the rest of the machine (the machine is shared) used meanwhile.
template <class Workload>
measurement with_machine_load(Workload workload) {
    // Ours: this process and the peers it ran (start-up included), not sshd.
    const auto ours = [] {
        return process_cpu_seconds(RUSAGE_SELF) + process_cpu_seconds(RUSAGE_CHILDREN);
    };
    const double busy = machine_busy_seconds();
    const double before = ours();
    measurement m = workload();
    m.others_cpu = std::max(0.0, machine_busy_seconds() - busy - (ours() - before) - m.server_cpu);
    return m;
}

sshd_cpu_meter& meter() {
    static sshd_cpu_meter instance(local_sshd::get()->pid());
    return instance;
}

asio::awaitable<void> one_session(const local_sshd& sshd) {
    anweddol::endpoint_shell_instance shell(co_await asio::this_coro::executor, "127.0.0.1",
                                            sshd.user(), sshd.password(), sshd.port());
    co_await shell.open_shell();
    const anweddol::command_result result = co_await shell.execute("true");
    if (result.exit_status != 0)
        throw std::runtime_error("true exited with " + std::to_string(result.exit_status));
    co_await shell.close_shell();
}

/// Runs `worker` `concurrency` times at once on one io_context thread.
template <class Worker>
void run_workers(int concurrency, Worker worker) {
    asio::io_context context;
    std::exception_ptr failure;
    for (int i = 0; i < concurrency; ++i)
        asio::co_spawn(context, worker(), [&](std::exception_ptr e) {
            if (e && !failure)
                failure = e;
        });
    context.run();
    if (failure)
        std::rethrow_exception(failure);
}

measurement anweddol_fanout(const local_sshd& sshd, long sessions, int concurrency) {
    long started = 0;
    auto worker = [&]() -> asio::awaitable<void> {
        while (started < sessions) {
            ++started;
            co_await one_session(sshd);
        }
    };
    const double server = meter().seconds();
    const double cpu = process_cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    run_workers(concurrency, worker);
    measurement m{"anweddol", sessions,
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                  process_cpu_seconds() - cpu, 0};
    wait_for_sessions_to_end(sshd.pid());
    m.server_cpu = meter().seconds() - server;
    return m;
}

measurement anweddol_channels(const local_sshd& sshd, long commands, int channels) {
    asio::io_context context;
    anweddol::endpoint_shell_instance shell(context.get_executor(), "127.0.0.1", sshd.user(),
                                            sshd.password(), sshd.port());
    measurement m{"anweddol", commands, 0, 0, 0};
    const double server = meter().seconds();
    std::exception_ptr failure;
    asio::co_spawn(
        context,
        [&]() -> asio::awaitable<void> {
            co_await shell.open_shell();
            long started = 0;
            int running = channels;
            asio::steady_timer all_done(context, std::chrono::steady_clock::time_point::max());
            const double cpu = process_cpu_seconds();
            const auto start = std::chrono::steady_clock::now();
            for (int i = 0; i < channels; ++i)
                asio::co_spawn(
                    context,
                    [&]() -> asio::awaitable<void> {
                        while (started < commands) {
                            ++started;
                            if ((co_await shell.execute("true")).exit_status != 0)
                                throw std::runtime_error("true failed");
                        }
                    },
                    [&](std::exception_ptr e) {
                        if (e && !failure)
                            failure = e;
                        if (--running == 0)
                            all_done.cancel();
                    });
            co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
            m.seconds =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            m.client_cpu = process_cpu_seconds() - cpu;
            co_await shell.close_shell();
        },
        [&](std::exception_ptr e) {
            if (e && !failure)
                failure = e;
        });
    context.run();
    if (failure)
        std::rethrow_exception(failure);
    wait_for_sessions_to_end(sshd.pid());
    m.server_cpu = meter().seconds() - server;
    return m;
}

/// Runs a Python peer and reads its JSON line.
measurement python_peer(const local_sshd& sshd, const std::string& client,
                        const std::string& script, const std::string& mode, long count,
                        int concurrency) {
    asio::io_context context;
    asio::writable_pipe in(context);
    asio::readable_pipe out(context);
    const double server = meter().seconds();
    bp::process peer(context, "/usr/bin/python3",
                     std::vector<std::string>{"-W", "ignore", script, mode, "127.0.0.1",
                                              std::to_string(sshd.port()), sshd.user(),
                                              std::to_string(count), std::to_string(concurrency)},
                     bp::process_stdio{in, out, {}});
    asio::write(in, asio::buffer(sshd.password() + "\n"));
    in.close();
    std::string text;
    boost::system::error_code ec;
    asio::read(out, asio::dynamic_buffer(text), ec);
    const int status = peer.wait();
    if (status != 0)
        throw std::runtime_error(script + " exited with status " + std::to_string(status));
    const auto result = boost::json::parse(text).as_object();
    wait_for_sessions_to_end(sshd.pid());
    return {client, result.at("count").to_number<long>(), result.at("seconds").to_number<double>(),
            result.at("cpu").to_number<double>(), meter().seconds() - server};
}

/// The rate the CPU allows: the cores over the CPU per session; `free` counts
/// only the cores the rest of the machine left over meanwhile.
double ceiling(const measurement& m, unsigned cores, bool free) {
    const double available = free ? cores - m.others_cpu / m.seconds : cores;
    return available / ((m.client_cpu + m.server_cpu) / static_cast<double>(m.count));
}

void print(const measurement& m, unsigned cores, const char* unit) {
    const double client_ms = m.client_cpu / static_cast<double>(m.count) * 1e3;
    const double server_ms = m.server_cpu / static_cast<double>(m.count) * 1e3;
    const double rate = static_cast<double>(m.count) / m.seconds;
    std::printf("  %-9s %8.1f %s/s  client %6.2f ms  sshd %6.2f ms  ceiling %7.1f/s (%5.1f%%)  "
                "with others' load %7.1f/s (%5.1f%%)\n",
                m.client.c_str(), rate, unit, client_ms, server_ms, ceiling(m, cores, false),
                100.0 * rate / ceiling(m, cores, false), ceiling(m, cores, true),
                100.0 * rate / ceiling(m, cores, true));
}

} // namespace

int main(int argc, char** argv) try {
    const settings s = parse(argc, argv);
    if (::geteuid() != 0) {
        std::cerr << "ssh_fanout: needs root (it creates a user and runs sshd)\n";
        return 77;
    }
    const local_sshd& sshd = *local_sshd::get();
    const unsigned cores = std::thread::hardware_concurrency();
    std::printf("sshd CPU is measured from %s\n", meter().method());
    const std::string here = ANWEDDOL_BENCH_SSH_DIR;

    // Warm-up: page cache, sshd's binary, Python's imports.
    anweddol_fanout(sshd, 8, 4);
    python_peer(sshd, "asyncssh", here + "/asyncssh_peer.py", "fanout", 8, 4);
    python_peer(sshd, "paramiko", here + "/paramiko_peer.py", "fanout", 8, 4);

    std::printf("SSH fan-out: %ld sessions (connect + password auth + exec \"true\" + close), "
                "%d at once, sshd on 127.0.0.1, %u cores\n",
                s.sessions, s.concurrency, cores);
    const measurement ours =
        with_machine_load([&] { return anweddol_fanout(sshd, s.sessions, s.concurrency); });
    const measurement asyncssh = with_machine_load([&] {
        return python_peer(sshd, "asyncssh", here + "/asyncssh_peer.py", "fanout", s.sessions,
                           s.concurrency);
    });
    const measurement paramiko = with_machine_load([&] {
        return python_peer(sshd, "paramiko", here + "/paramiko_peer.py", "fanout", s.sessions,
                           s.concurrency);
    });
    for (const auto* m : {&ours, &asyncssh, &paramiko})
        print(*m, cores, "sessions");

    const double our_client = ours.client_cpu / static_cast<double>(ours.count);
    const double their_client = asyncssh.client_cpu / static_cast<double>(asyncssh.count);
    const double ratio =
        static_cast<double>(ours.count) / ours.seconds / ceiling(ours, cores, false);
    const double free_ratio =
        static_cast<double>(ours.count) / ours.seconds / ceiling(ours, cores, true);
    std::printf("  target: anweddol client CPU/session <= 1/4 of asyncssh's: %.2f ms vs %.2f ms "
                "(%.2fx): %s\n",
                our_client * 1e3, their_client * 1e3 / 4, their_client / our_client,
                our_client * 4 <= their_client ? "met" : "MISSED");
    std::printf("  target: anweddol >= 90%% of its ceiling: %.1f%% (%.1f%% of what the rest of "
                "the machine left): %s\n",
                ratio * 100, free_ratio * 100, ratio >= 0.9 ? "met" : "MISSED");

    std::printf("\nCommands over one established session: %ld runs of \"true\", %d channels at "
                "once\n",
                s.commands, s.channels);
    const measurement our_commands =
        with_machine_load([&] { return anweddol_channels(sshd, s.commands, s.channels); });
    const measurement their_commands = with_machine_load([&] {
        return python_peer(sshd, "asyncssh", here + "/asyncssh_peer.py", "channels", s.commands,
                           s.channels);
    });
    print(our_commands, cores, "commands");
    print(their_commands, cores, "commands");
    return 0;
} catch (const std::exception& e) {
    std::cerr << "ssh_fanout: " << e.what() << "\n";
    return 1;
}
