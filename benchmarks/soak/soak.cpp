// Soak: whether one process's open descriptors, threads and memory stay flat
// over many container lifecycles, the way a long-running container server
// uses the library.
//
//   soak [--lifecycles 1000] [--concurrency 8] [--checkpoints 4]
//        [--rss-tolerance-kib 1] [--reopen] [--json]
//   soak --provision --iso PATH [--lifecycles 20] [--concurrency 2]
//        [--domain-type qemu] [--memory 512] [--rss-tolerance-kib 16] [--json]
//
// Without --provision, on libvirt's test:///default driver: each lifecycle
// creates a container_instance, starts its domain and waits for its address,
// which a scratch dnsmasq status file gives it (the inotify watch and the
// lease file, as on a real host; libvirt is not asked), then stops it:
// destroyed, or every other one stopped gracefully (stop_mode::graceful).
// With --provision (in the sandbox: benchmarks/soak/run.sh), on
// qemu:///system with the test ISO: provision() (boot, address, endpoint
// SSH login, administration, the client's login), then a destroy.
//
// One io_context, one thread, holding one connection for the whole run as a
// server would (with --reopen, none: each connection closes when its last
// container stops, so at --concurrency 1 every lifecycle opens one).
// `--concurrency` lifecycles run at once (the default boot admission
// applies), in segments: after each segment every lifecycle has finished,
// and the program reads /proc/self/fd (open descriptors, by kind),
// /proc/self/task (threads), VmRSS in /proc/self/status and the heap in use
// (glibc's mallinfo2) at that quiet moment (once the descriptors closed in
// the background are closed: see settle()).
//
// Warm-up: libvirt, libssh, OpenSSL, the runtime's worker threads and the
// allocator set themselves up on first use and keep it. So a first round of
// `--concurrency` lifecycles (as many as run at once) runs before the
// "start" reading; the reading taken before it, "before warm-up", shows
// what that round took. The lifecycles counted are those after it.
//
// "Heap in use" counts what glibc's per-thread caches and glib's slice
// allocator hold as in use; they fill up over the first lifecycles that run
// on each thread. G_SLICE=always-malloc
// GLIBC_TUNABLES=glibc.malloc.tcache_count=0 turn both off, and then it
// counts live allocations only.
//
// Flags growth from start to end: any descriptor or thread more, or RSS or
// heap in use growing by more than --rss-tolerance-kib per lifecycle. Exits
// 1 when a lifecycle failed or a domain of the run is left in libvirt, 2
// when something grew, 0 otherwise. Nothing leaves the machine: test:///
// is in the process, and the sandbox's guests live in its network namespace.
#include <anweddol/hypervisor_connection.hpp>
#include <anweddol/provisioning.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libvirt/libvirt.h>
#include <openssl/crypto.h>

#include <dirent.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

struct settings {
    bool provision = false;
    std::string uri = "test:///default";
    std::string iso;
    std::string domain_type = "qemu";
    unsigned memory = 512;
    long lifecycles = 1000;
    long concurrency = 8;
    long checkpoints = 4;
    double rss_tolerance_kib = 1; // per lifecycle, after the warm-up
    bool reopen = false;          // hold no connection between lifecycles
    bool json = false;
};

settings parse(int argc, char** argv) {
    settings s;
    bool lifecycles_given = false, concurrency_given = false, tolerance_given = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help") {
            std::cout << "usage: soak [--lifecycles N] [--concurrency C] [--checkpoints K] "
                         "[--rss-tolerance-kib T] [--reopen] [--json]\n"
                         "       soak --provision --iso PATH [--uri URI] [--domain-type T] "
                         "[--memory MIB] [same options]\n";
            std::exit(0);
        }
        if (arg == "--provision") {
            s.provision = true;
            continue;
        }
        if (arg == "--json") {
            s.json = true;
            continue;
        }
        if (arg == "--reopen") {
            s.reopen = true;
            continue;
        }
        if (i + 1 == argc)
            throw std::invalid_argument(std::string(arg) + " needs a value");
        const std::string value = argv[++i];
        if (arg == "--iso")
            s.iso = value;
        else if (arg == "--uri")
            s.uri = value;
        else if (arg == "--domain-type")
            s.domain_type = value;
        else if (arg == "--memory")
            s.memory = static_cast<unsigned>(std::stoul(value));
        else if (arg == "--lifecycles")
            s.lifecycles = std::stol(value), lifecycles_given = true;
        else if (arg == "--concurrency")
            s.concurrency = std::stol(value), concurrency_given = true;
        else if (arg == "--checkpoints")
            s.checkpoints = std::stol(value);
        else if (arg == "--rss-tolerance-kib")
            s.rss_tolerance_kib = std::stod(value), tolerance_given = true;
        else
            throw std::invalid_argument("unknown option " + std::string(arg));
    }
    if (s.provision) {
        if (s.iso.empty())
            throw std::invalid_argument("--provision needs --iso PATH");
        if (s.uri == "test:///default")
            s.uri = "qemu:///system";
        // A real lifecycle allocates far more (libssh sessions, OpenSSL
        // contexts, several KiB of command output) and there are few of
        // them: the same noise weighs more per lifecycle.
        if (!lifecycles_given)
            s.lifecycles = 20;
        if (!concurrency_given)
            s.concurrency = 2;
        if (!tolerance_given)
            s.rss_tolerance_kib = 16;
    }
    if (s.lifecycles < 1 || s.concurrency < 1 || s.checkpoints < 1 ||
        s.checkpoints > s.lifecycles || s.rss_tolerance_kib < 0)
        throw std::invalid_argument("--lifecycles, --concurrency and --checkpoints must be at "
                                    "least 1, --checkpoints at most --lifecycles, the tolerance "
                                    "at least 0");
    return s;
}

// What the process holds at one moment.
// Nothing in it allocates (the label is short enough for std::string's
// own buffer): the readings kept during the run must not add to the heap
// that the next one measures.
struct reading {
    // Open descriptors of one kind: "socket", "anon_inode:inotify", "/dev/null"...
    struct fd_kind {
        std::array<char, 64> name{};
        long count = 0;
    };

    std::string label;
    long lifecycles = 0; // done since the warm-up
    double seconds = 0;  // since the program's start
    long fds = 0;
    long threads = 0;
    long rss_kib = 0;
    long heap_kib = 0;
    std::array<fd_kind, 32> fd_kinds{};
    std::size_t fd_kind_count = 0;

    long count_of(std::string_view kind) const {
        for (std::size_t i = 0; i < fd_kind_count; ++i)
            if (fd_kinds[i].name.data() == kind)
                return fd_kinds[i].count;
        return 0;
    }
    void add(std::string_view kind) {
        kind = kind.substr(0, fd_kind{}.name.size() - 1);
        for (std::size_t i = 0; i < fd_kind_count; ++i)
            if (fd_kinds[i].name.data() == kind) {
                ++fd_kinds[i].count;
                return;
            }
        if (fd_kind_count == fd_kinds.size())
            kind = "(other)"; // the last slot takes every further kind
        else
            ++fd_kind_count;
        auto& slot = fd_kinds[fd_kind_count - 1];
        kind.copy(slot.name.data(), kind.size());
        slot.name[kind.size()] = '\0';
        ++slot.count;
    }
};

// A descriptor's kind: what it links to, less the inode numbers that make
// every socket and pipe distinct; a regular file's own path.
std::string_view kind_of(std::string_view target) {
    for (const std::string_view numbered : {"socket:[", "pipe:["})
        if (target.starts_with(numbered))
            return numbered.substr(0, numbered.size() - 2);
    return target; // anon_inode:inotify, anon_inode:[eventfd], /dev/null, a file
}

// Entries of a /proc directory, less "." and ".."; `fd_kinds` gets the link
// targets when given (then the directory's own descriptor is left out).
long count_entries(const char* path, reading* fd_kinds = nullptr) {
    DIR* dir = ::opendir(path);
    if (!dir)
        throw std::runtime_error(std::string("cannot read ") + path);
    long count = 0;
    while (const dirent* entry = ::readdir(dir)) {
        const std::string_view name = entry->d_name;
        if (name == "." || name == "..")
            continue;
        if (fd_kinds) {
            if (std::atoi(entry->d_name) == ::dirfd(dir))
                continue;
            char target[4096];
            const ssize_t length = ::readlinkat(::dirfd(dir), entry->d_name, target, sizeof target);
            fd_kinds->add(length < 0 ? "?" : kind_of(std::string_view(target, length)));
        }
        ++count;
    }
    ::closedir(dir);
    return count;
}

long rss_kib() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.starts_with("VmRSS:"))
            return std::stol(line.substr(6)); // "VmRSS:     12345 kB"
    throw std::runtime_error("no VmRSS in /proc/self/status");
}

reading read_now(std::string label, long lifecycles, clock_type::time_point start) {
    reading r;
    r.label = std::move(label);
    r.lifecycles = lifecycles;
    r.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    r.fds = count_entries("/proc/self/fd", &r);
    r.threads = count_entries("/proc/self/task");
    r.rss_kib = rss_kib();
    r.heap_kib = static_cast<long>(::mallinfo2().uordblks / 1024); // every arena's
    return r;
}

// The stand-in ISO (test:/// never reads it) and a dnsmasq status file that
// holds a lease for every domain waiting for one, replaced as libvirt's
// lease helper does (a new file renamed over the old).
struct scratch {
    fs::path root;
    std::set<std::string> macs;

    scratch() {
        char pattern[] = "/tmp/anweddol-soak-XXXXXX";
        if (!::mkdtemp(pattern))
            throw std::runtime_error("cannot create a scratch directory in /tmp");
        root = pattern;
        fs::create_directory(root / "leases");
        std::ofstream(root / "live.iso") << "stand-in";
    }
    scratch(const scratch&) = delete;
    scratch& operator=(const scratch&) = delete;
    ~scratch() {
        std::error_code ignored;
        fs::remove_all(root, ignored);
    }

    void lease(const std::string& mac) {
        macs.insert(mac);
        publish();
    }
    void release(const std::string& mac) { macs.erase(mac); } // gone with the next publish()

    void publish() const {
        const fs::path temporary = root / "leases" / "virbr0.status.new";
        {
            std::ofstream out(temporary);
            out << "[";
            int host = 0;
            for (const auto& mac : macs)
                out << (host > 0 ? ",\n" : "\n") << "  {\"ip-address\": \"192.168.122."
                    << host++ % 250 + 2 << "\", \"mac-address\": \"" << mac
                    << "\", \"expiry-time\": " << std::time(nullptr) + 3600 << "}";
            out << "\n]\n";
        }
        fs::rename(temporary, root / "leases" / "virbr0.status");
    }
};

struct tally {
    long done = 0;
    long failures = 0;
    std::string first_error;
    // Of every lifecycle, to look for leftovers; reserved before the run, so
    // that it does not grow the heap the readings measure.
    std::vector<std::array<char, VIR_UUID_STRING_BUFLEN>> uuids;

    void remember(const std::string& uuid) {
        if (uuids.size() == uuids.capacity())
            return; // not reserved: left out of the leftover check
        auto& slot = uuids.emplace_back();
        uuid.copy(slot.data(), slot.size() - 1);
    }
    bool contains(const std::string& uuid) const {
        return std::ranges::any_of(uuids, [&](const auto& slot) { return slot.data() == uuid; });
    }
};

// One test:/// lifecycle: start, wait for the address the status file
// gives, stop (every other one gracefully).
asio::awaitable<void> test_lifecycle(const settings& s, scratch& files, tally& t, long index) {
    auto container = std::make_shared<anweddol::container_instance>(
        co_await asio::this_coro::executor, (files.root / "live.iso").string(), "", 512, 1);
    t.remember(container->get_uuid());
    auto options = container->get_options();
    options.lease_directory = files.root / "leases";
    options.address_poll_interval = std::chrono::milliseconds(0); // the status file alone
    container->set_options(options);

    anweddol::start_options start;
    start.driver_uri = s.uri;
    start.address_timeout = std::chrono::seconds(20);
    std::string mac;
    start.on_progress = [&](const anweddol::container_progress& p) {
        if (p.phase != anweddol::container_phase::waiting_for_address)
            return;
        try {
            mac = container->get_mac().value_or("");
            files.lease(mac);
        } catch (...) {
            // No lease then: the wait times out and the lifecycle counts as failed.
        }
    };
    try {
        co_await container->start_domain(std::move(start));
    } catch (...) {
        files.release(mac);
        throw;
    }
    files.release(mac);
    anweddol::stop_options stop;
    if (index % 2 == 1)
        stop.mode = anweddol::stop_mode::graceful;
    co_await container->stop_domain(stop);
}

// One real lifecycle: provision() as a server does for a client, then destroy.
asio::awaitable<void> provision_lifecycle(const settings& s, tally& t) {
    auto container = std::make_shared<anweddol::container_instance>(
        co_await asio::this_coro::executor, s.iso, "", s.memory, 1);
    t.remember(container->get_uuid());
    anweddol::provisioning_options options;
    options.driver_uri = s.uri;
    options.domain_type = s.domain_type;
    auto provisioned = co_await anweddol::provision(container, std::move(options));
    OPENSSL_cleanse(provisioned.password.data(), provisioned.password.size());
    co_await container->stop_domain();
}

// Runs lifecycles [from, to), `concurrency` at a time; returns once all
// have finished. Failures are counted, not thrown.
asio::awaitable<void> run_segment(const settings& s, scratch& files, tally& t, long from, long to) {
    auto executor = co_await asio::this_coro::executor;
    long next = from;
    long running = std::min(s.concurrency, to - from);
    asio::steady_timer all_done(executor, clock_type::time_point::max());
    const auto worker = [&]() -> asio::awaitable<void> {
        while (next < to) {
            const long index = next++;
            try {
                if (s.provision)
                    co_await provision_lifecycle(s, t);
                else
                    co_await test_lifecycle(s, files, t, index);
            } catch (const std::exception& e) {
                if (t.failures++ == 0)
                    t.first_error = e.what();
            }
            ++t.done;
        }
    };
    const long workers = running;
    for (long w = 0; w < workers; ++w)
        asio::co_spawn(executor, worker(), [&](std::exception_ptr e) {
            if (e && t.failures++ == 0)
                t.first_error = "a lifecycle coroutine threw";
            if (--running == 0)
                all_done.cancel();
        });
    if (running > 0)
        co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
}

// The UUIDs of the domains libvirt has now, running or not.
asio::awaitable<std::set<std::string>>
domain_uuids(const std::shared_ptr<anweddol::hypervisor_connection>& connection) {
    co_return co_await connection->call([](virConnectPtr c) {
        virDomainPtr* domains = nullptr;
        const int count = virConnectListAllDomains(c, &domains, 0);
        if (count < 0)
            throw std::runtime_error("virConnectListAllDomains failed");
        std::set<std::string> uuids;
        for (int i = 0; i < count; ++i) {
            char uuid[VIR_UUID_STRING_BUFLEN];
            if (virDomainGetUUIDString(domains[i], uuid) == 0)
                uuids.insert(uuid);
            virDomainFree(domains[i]);
        }
        std::free(domains);
        return uuids;
    });
}

// Lets the background work of finished lifecycles end before a reading: a
// status-file watch is closed on a worker after its wait has completed
// (closing an inotify descriptor can block), so a reading taken at once may
// count a few still open. Waits until the descriptor count is the same
// twice 20 ms apart, for at most a second.
asio::awaitable<void> settle() {
    asio::steady_timer pause(co_await asio::this_coro::executor);
    long last = -1;
    for (int i = 0; i < 50; ++i) {
        const long now = count_entries("/proc/self/fd");
        if (now == last)
            co_return;
        last = now;
        pause.expires_after(std::chrono::milliseconds(20));
        co_await pause.async_wait(asio::use_awaitable);
    }
}

struct outcome {
    std::vector<reading> readings;
    tally counts;
    long domains_left = 0;
};

// Readings' times are from the program's start.
asio::awaitable<void> soak(const settings& s, scratch& files, outcome& out,
                           clock_type::time_point began) {
    tally warm_up;
    warm_up.uuids.reserve(static_cast<std::size_t>(s.concurrency));
    out.readings.push_back(read_now("before warm-up", 0, began));

    // Held for the whole run, as a server would, unless --reopen: then the
    // last container to stop closes it, and the next one to start opens it
    // anew (and test:///default forgets its state).
    std::shared_ptr<anweddol::hypervisor_connection> connection;
    if (!s.reopen)
        connection = co_await anweddol::hypervisor_connection::open(s.uri);

    co_await run_segment(s, files, warm_up, 0, s.concurrency);
    if (warm_up.failures > 0)
        throw std::runtime_error("the warm-up failed: " + warm_up.first_error);
    co_await settle();
    out.readings.push_back(read_now("start", 0, began));
    std::printf("  %-14s after %ld warm-up lifecycles, %.1f s\n", "start", s.concurrency,
                out.readings.back().seconds);
    std::fflush(stdout);

    for (long k = 1; k <= s.checkpoints; ++k) {
        const long from = s.lifecycles * (k - 1) / s.checkpoints;
        const long to = s.lifecycles * k / s.checkpoints;
        // Offset past the warm-up's indices, so that every other one still
        // stops gracefully.
        co_await run_segment(s, files, out.counts, s.concurrency + from, s.concurrency + to);
        co_await settle();
        out.readings.push_back(
            read_now(k == s.checkpoints ? "end" : "checkpoint " + std::to_string(k), to, began));
        std::printf("  %-14s %ld lifecycles, %.1f s\n", out.readings.back().label.c_str(), to,
                    out.readings.back().seconds);
        const reading& now = out.readings.back();
        for (std::size_t i = 0; i < now.fd_kind_count; ++i)
            if (now.fd_kinds[i].count != out.readings[1].count_of(now.fd_kinds[i].name.data()))
                std::printf("    %s: %ld\n", now.fd_kinds[i].name.data(), now.fd_kinds[i].count);
        std::fflush(stdout);
    }

    // This run's domains only: another program may share the hypervisor.
    if (!connection)
        connection = co_await anweddol::hypervisor_connection::open(s.uri);
    for (const auto& uuid : co_await domain_uuids(connection))
        if (warm_up.contains(uuid) || out.counts.contains(uuid))
            ++out.domains_left;
}

void print_kinds(const reading& a, const reading& b) {
    std::set<std::string> kinds;
    for (const reading* r : {&a, &b})
        for (std::size_t i = 0; i < r->fd_kind_count; ++i)
            kinds.insert(r->fd_kinds[i].name.data());
    std::printf("\n%-40s %8s %8s\n", "descriptors by kind", a.label.c_str(), b.label.c_str());
    for (const auto& kind : kinds) {
        const auto count = [&](const reading& r) {
            return r.count_of(kind);
        };
        std::printf("%-40s %8ld %8ld%s\n", kind.c_str(), count(a), count(b),
                    count(a) != count(b) ? "  <-" : "");
    }
}

} // namespace

int main(int argc, char** argv) try {
    const settings s = parse(argc, argv);
    std::cout << "soak: " << s.lifecycles << " lifecycles on " << s.uri << ", " << s.concurrency
              << " at once, one io_context thread; "
              << (s.provision ? "provision() (boot, address, SSH, administration, client "
                                "login), then destroy"
                              : "start_domain (address from a status file), then stop "
                                "(destroy, or graceful every other one)")
              << (s.reopen ? "; no connection held between lifecycles" : "") << "\n"
              << std::flush;

    const auto program_start = clock_type::now();
    scratch files;
    outcome out;
    out.readings.reserve(static_cast<std::size_t>(s.checkpoints) + 3);
    out.counts.uuids.reserve(static_cast<std::size_t>(s.lifecycles));
    std::exception_ptr failure;
    {
        asio::io_context context(1);
        asio::co_spawn(context, soak(s, files, out, program_start),
                       [&](std::exception_ptr e) { failure = e; });
        context.run(); // returns once the connection is let go
    }
    if (failure)
        std::rethrow_exception(failure);
    // The runtime went with its io_context: its worker threads and libvirt's
    // descriptors should be gone too.
    out.readings.push_back(read_now("io_context gone", out.counts.done, program_start));

    std::printf("\n%-16s %10s %8s %5s %8s %10s %10s\n", "reading", "lifecycles", "time", "fds",
                "threads", "VmRSS", "heap used");
    for (const auto& r : out.readings)
        std::printf("%-16s %10ld %6.1f s %5ld %8ld %6ld KiB %6ld KiB\n", r.label.c_str(),
                    r.lifecycles, r.seconds, r.fds, r.threads, r.rss_kib, r.heap_kib);

    const reading& start = out.readings[1];
    const reading& end = out.readings[out.readings.size() - 2];
    const double n = static_cast<double>(end.lifecycles);
    const double rss_per = static_cast<double>(end.rss_kib - start.rss_kib) / n;
    const double heap_per = static_cast<double>(end.heap_kib - start.heap_kib) / n;
    std::printf("\nstart -> end over %ld lifecycles: fds %+ld, threads %+ld, VmRSS %+ld KiB "
                "(%+.2f KiB per lifecycle), heap used %+ld KiB (%+.2f KiB per lifecycle)\n",
                end.lifecycles, end.fds - start.fds, end.threads - start.threads,
                end.rss_kib - start.rss_kib, rss_per, end.heap_kib - start.heap_kib, heap_per);
    if (out.readings.size() >= 5) {
        // The second half alone: a one-off allocation early on (a map's
        // buckets, a pool's growth) weighs on the whole run but not here.
        const reading& mid = out.readings[1 + (out.readings.size() - 3) / 2];
        const double m = static_cast<double>(end.lifecycles - mid.lifecycles);
        std::printf("%s -> end over %ld lifecycles: VmRSS %+.2f KiB, heap used %+.2f KiB per "
                    "lifecycle\n",
                    mid.label.c_str(), end.lifecycles - mid.lifecycles,
                    static_cast<double>(end.rss_kib - mid.rss_kib) / m,
                    static_cast<double>(end.heap_kib - mid.heap_kib) / m);
    }

    std::vector<std::string> grew;
    if (end.fds > start.fds)
        grew.push_back("descriptors");
    if (end.threads > start.threads)
        grew.push_back("threads");
    if (rss_per > s.rss_tolerance_kib)
        grew.push_back("VmRSS");
    if (heap_per > s.rss_tolerance_kib)
        grew.push_back("heap used");
    bool kinds_differ = start.fd_kind_count != end.fd_kind_count;
    for (std::size_t i = 0; i < end.fd_kind_count; ++i)
        kinds_differ =
            kinds_differ || end.fd_kinds[i].count != start.count_of(end.fd_kinds[i].name.data());
    if (kinds_differ)
        print_kinds(start, end);
    std::printf("\nflat (no descriptor or thread more, memory within %.0f KiB per lifecycle): ",
                s.rss_tolerance_kib);
    if (grew.empty()) {
        std::printf("yes\n");
    } else {
        std::printf("NO, growth in");
        for (const auto& what : grew)
            std::printf(" %s", what.c_str());
        std::printf("\n");
    }
    std::printf("lifecycles failed: %ld; domains of the run left in libvirt: %ld\n",
                out.counts.failures, out.domains_left);
    if (!out.counts.first_error.empty())
        std::printf("  first failure: %s\n", out.counts.first_error.c_str());

    if (s.json) {
        std::printf("\n");
        for (const auto& r : out.readings)
            std::printf("{\"mode\": \"%s\", \"reading\": \"%s\", \"lifecycles\": %ld, "
                        "\"seconds\": %.1f, \"fds\": %ld, \"threads\": %ld, \"rss_kib\": %ld, "
                        "\"heap_kib\": %ld}\n",
                        s.provision ? "provision" : "test", r.label.c_str(), r.lifecycles,
                        r.seconds, r.fds, r.threads, r.rss_kib, r.heap_kib);
    }
    if (out.counts.failures > 0 || out.domains_left > 0)
        return 1;
    return grew.empty() ? 0 : 2;
} catch (const std::exception& e) {
    std::cerr << "soak: " << e.what() << "\n";
    return 1;
}
