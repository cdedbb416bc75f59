// io_context stalls under many container lifecycles: how late a 1 ms ticker
// on the same io_context wakes while N containers start and stop at once on
// libvirt's built-in test:///default driver, beside the ticker alone.
//
//   event_stall [--lifecycles N]... [--concurrency C] [--runs R]
//               [--baseline-ms MS] [--json]
//
// One io_context, one thread. Each run spawns N container_instance
// lifecycles (start_domain without waiting for an address, then
// stop_domain), all at once unless --concurrency limits how many run
// together (default: N, no limit; boot admission is off), and a ticker that
// waits 1 ms on a steady_timer over and over and records how late each wake
// is (wake time - the timer's expiry). The baseline runs the ticker alone,
// as long as the longest lifecycle run (or --baseline-ms). Default: N = 300
// and N = 1000, once each, then the baseline.
//
// Prints, per run: lifecycles, failures, wall time, ticks, and the ticks'
// p50, p99 and worst lateness; --json adds one JSON object per run. The
// lateness is how long the library's work on the thread (calls resuming,
// lifecycle events delivered to every subscription) keeps an embedding
// server's own handlers waiting; it does not say which part is to blame.
// A stalled run has few ticks: with fewer than 100, p99 is the worst wake.
// After each run it checks that libvirt has no domain of the run left, and
// exits 1 if one is.
// Target at N = 1000: worst lateness < 10 ms, p99 < 2 ms.
//
// The domains are test:///default ones (test:/// never reads the stand-in
// ISO); nothing leaves the process.
#include <anweddol/container_instance.hpp>
#include <anweddol/hypervisor_connection.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <libvirt/libvirt.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
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
using milliseconds_d = std::chrono::duration<double, std::milli>;
using namespace std::chrono_literals;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

const std::string uri = "test:///default";

struct settings {
    std::vector<long> lifecycles;
    long concurrency = 0; // 0: all of a run's lifecycles at once
    int runs = 1;
    long baseline_ms = 0; // 0: as long as the longest lifecycle run
    bool json = false;
};

settings parse(int argc, char** argv) {
    settings s;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help") {
            std::cout << "usage: event_stall [--lifecycles N]... [--concurrency C] [--runs R] "
                         "[--baseline-ms MS] [--json]\n";
            std::exit(0);
        }
        if (arg == "--json") {
            s.json = true;
            continue;
        }
        if (i + 1 == argc)
            throw std::invalid_argument(std::string(arg) + " needs a value");
        const std::string value = argv[++i];
        if (arg == "--lifecycles")
            s.lifecycles.push_back(std::stol(value));
        else if (arg == "--concurrency")
            s.concurrency = std::stol(value);
        else if (arg == "--runs")
            s.runs = std::stoi(value);
        else if (arg == "--baseline-ms")
            s.baseline_ms = std::stol(value);
        else
            throw std::invalid_argument("unknown option " + std::string(arg));
    }
    if (s.lifecycles.empty())
        s.lifecycles = {300, 1000};
    for (const long n : s.lifecycles)
        if (n < 0)
            throw std::invalid_argument("--lifecycles must be at least 0 (0: the ticker alone)");
    if (s.concurrency < 0 || s.runs < 1 || s.baseline_ms < 0)
        throw std::invalid_argument("--concurrency and --baseline-ms must be at least 0, "
                                    "--runs at least 1");
    return s;
}

// A stand-in ISO and a lease directory, removed afterwards.
struct scratch {
    fs::path root;
    fs::path iso;
    fs::path leases;
    scratch() {
        char pattern[] = "/tmp/anweddol-event-stall-XXXXXX";
        if (!::mkdtemp(pattern))
            throw std::runtime_error("cannot create a scratch directory in /tmp");
        root = pattern;
        iso = root / "live.iso";
        leases = root / "leases";
        fs::create_directory(leases);
        std::ofstream(iso) << "stand-in";
    }
    ~scratch() {
        std::error_code ignored;
        fs::remove_all(root, ignored);
    }
};

struct run_result {
    std::string label;
    long lifecycles = 0;
    long failures = 0;
    std::string first_error;
    double wall_ms = 0;
    std::vector<double> lateness_ms; // one per tick
    long domains_left = 0;
};

// Nearest rank on sorted values.
double percentile(const std::vector<double>& sorted, double p) {
    if (sorted.empty())
        return 0;
    const auto rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size()));
    return sorted[std::min(rank, sorted.size() - 1)];
}

// Wakes every millisecond until cancelled, recording how late each wake is.
asio::awaitable<void> tick(std::vector<double>& lateness_ms) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
        timer.expires_after(1ms);
        const auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        if (ec)
            co_return; // cancelled: the run is over
        lateness_ms.push_back(milliseconds_d(clock_type::now() - timer.expiry()).count());
    }
}

asio::awaitable<void> sleep_for(clock_type::duration how_long) {
    asio::steady_timer timer(co_await asio::this_coro::executor, how_long);
    co_await timer.async_wait(asio::use_awaitable);
}

// Runs the lifecycles at `next` onwards, one after another, until none is
// left. Failures are counted, not thrown: this runs inside a || race.
asio::awaitable<void>
lifecycles_from(const std::vector<std::shared_ptr<anweddol::container_instance>>& containers,
                std::size_t& next, run_result& result) {
    while (next < containers.size()) {
        const auto& container = containers[next++];
        try {
            co_await container->start_domain(false, 20, uri);
            co_await container->stop_domain();
        } catch (const std::exception& e) {
            if (result.failures++ == 0)
                result.first_error = e.what();
        }
    }
}

// All lifecycles, `workers` of them at a time; returns when each is done.
asio::awaitable<void>
all_lifecycles(const std::vector<std::shared_ptr<anweddol::container_instance>>& containers,
               std::size_t workers, run_result& result) {
    auto executor = co_await asio::this_coro::executor;
    std::size_t next = 0;
    std::size_t running = workers;
    asio::steady_timer all_done(executor, clock_type::time_point::max());
    for (std::size_t w = 0; w < workers; ++w)
        asio::co_spawn(executor, lifecycles_from(containers, next, result),
                       [&](std::exception_ptr e) {
                           if (e && result.failures++ == 0)
                               result.first_error = "a lifecycle coroutine threw";
                           if (--running == 0)
                               all_done.cancel();
                       });
    if (running > 0)
        co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
}

// The names of the domains libvirt's test driver has now, running or not.
asio::awaitable<std::set<std::string>>
domain_names(const std::shared_ptr<anweddol::hypervisor_connection>& connection) {
    co_return co_await connection->call([](virConnectPtr c) {
        virDomainPtr* domains = nullptr;
        const int count = virConnectListAllDomains(c, &domains, 0);
        if (count < 0)
            throw std::runtime_error("virConnectListAllDomains failed");
        std::set<std::string> names;
        for (int i = 0; i < count; ++i) {
            names.insert(virDomainGetName(domains[i]));
            virDomainFree(domains[i]);
        }
        std::free(domains);
        return names;
    });
}

asio::awaitable<run_result>
lifecycle_run(const std::shared_ptr<anweddol::hypervisor_connection>& connection,
              const scratch& files, long n, long concurrency) {
    auto executor = co_await asio::this_coro::executor;
    run_result result;
    result.label = std::to_string(n) + " lifecycles";
    result.lifecycles = n;
    std::vector<std::shared_ptr<anweddol::container_instance>> containers;
    containers.reserve(static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) {
        auto container = std::make_shared<anweddol::container_instance>(
            executor, files.iso.string(), "", 512, 1);
        auto options = container->get_options();
        options.lease_directory = files.leases;
        options.bypass_admission = true; // all at once: no boot slots
        container->set_options(options);
        containers.push_back(std::move(container));
    }
    const std::size_t workers =
        static_cast<std::size_t>(concurrency == 0 ? n : std::min(concurrency, n));
    result.lateness_ms.reserve(8192);

    const auto start = clock_type::now();
    co_await (tick(result.lateness_ms) || all_lifecycles(containers, workers, result));
    result.wall_ms = milliseconds_d(clock_type::now() - start).count();

    // Each stop destroys its domain (test:/// domains are transient): none of
    // this run's UUIDs may be left, running or defined.
    const auto names = co_await domain_names(connection);
    for (const auto& container : containers) {
        if (names.contains(container->get_uuid()) || container->is_domain_running())
            ++result.domains_left;
    }
    co_return result;
}

asio::awaitable<run_result> baseline_run(clock_type::duration how_long) {
    run_result result;
    result.label = "baseline (ticker alone)";
    result.lateness_ms.reserve(8192);
    const auto start = clock_type::now();
    co_await (tick(result.lateness_ms) || sleep_for(how_long));
    result.wall_ms = milliseconds_d(clock_type::now() - start).count();
    co_return result;
}

asio::awaitable<std::vector<run_result>> all_runs(const settings& s) {
    scratch files;
    // Held for the whole program: the containers share it (one connection
    // per URI in the process), and test:///default keeps its state only
    // while a connection to it is open. Events on: the default the
    // containers use.
    auto connection = co_await anweddol::hypervisor_connection::open(uri);
    const auto before = co_await domain_names(connection);

    std::vector<run_result> results;
    double longest_ms = 0;
    for (int round = 0; round < s.runs; ++round)
        for (const long n : s.lifecycles) {
            results.push_back(co_await lifecycle_run(connection, files, n, s.concurrency));
            longest_ms = std::max(longest_ms, results.back().wall_ms);
            std::printf("  %s: %.0f ms\n", results.back().label.c_str(), results.back().wall_ms);
            std::fflush(stdout);
        }
    const auto baseline =
        s.baseline_ms > 0
            ? std::chrono::milliseconds(s.baseline_ms)
            : std::chrono::milliseconds(static_cast<long>(std::max(longest_ms, 1000.0)));
    for (int round = 0; round < s.runs; ++round)
        results.push_back(co_await baseline_run(baseline));

    if (const auto after = co_await domain_names(connection); after != before)
        throw std::runtime_error("libvirt's test driver has " + std::to_string(after.size()) +
                                 " domains after the runs, " + std::to_string(before.size()) +
                                 " before");
    co_return results;
}

} // namespace

int main(int argc, char** argv) try {
    const settings s = parse(argc, argv);
    std::cout << "io_context stalls: a 1 ms ticker beside container lifecycles (start_domain "
                 "without address, stop_domain) on "
              << uri << ", one thread, "
              << (s.concurrency == 0 ? std::string("all at once")
                                     : "at most " + std::to_string(s.concurrency) + " at once")
              << "\n"
              << std::flush;

    asio::io_context context(1);
    std::vector<run_result> results;
    std::exception_ptr failure;
    asio::co_spawn(context, all_runs(s), [&](std::exception_ptr e, std::vector<run_result> r) {
        failure = e;
        results = std::move(r);
    });
    // Returns by itself: once the runs are done and the connection is
    // released, libvirt's event loop leaves no work on the io_context.
    context.run();
    if (failure)
        std::rethrow_exception(failure);

    std::printf("\n%-26s %10s %8s %10s %7s %9s %9s %10s %12s\n", "run", "lifecycles", "failed",
                "wall", "ticks", "p50", "p99", "worst", "domains left");
    for (auto& r : results) {
        std::sort(r.lateness_ms.begin(), r.lateness_ms.end());
        const double worst = r.lateness_ms.empty() ? 0 : r.lateness_ms.back();
        std::printf("%-26s %10ld %8ld %7.0f ms %7zu %6.2f ms %6.2f ms %7.1f ms %12ld\n",
                    r.label.c_str(), r.lifecycles, r.failures, r.wall_ms, r.lateness_ms.size(),
                    percentile(r.lateness_ms, 50), percentile(r.lateness_ms, 99), worst,
                    r.domains_left);
        if (!r.first_error.empty())
            std::printf("  first failure: %s\n", r.first_error.c_str());
    }
    if (s.json) {
        std::printf("\n");
        for (const auto& r : results)
            std::printf("{\"run\": \"%s\", \"lifecycles\": %ld, \"failures\": %ld, \"wall_ms\": "
                        "%.1f, \"ticks\": %zu, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"worst_ms\": "
                        "%.3f, \"domains_left\": %ld}\n",
                        r.label.c_str(), r.lifecycles, r.failures, r.wall_ms, r.lateness_ms.size(),
                        percentile(r.lateness_ms, 50), percentile(r.lateness_ms, 99),
                        r.lateness_ms.empty() ? 0 : r.lateness_ms.back(), r.domains_left);
    }

    bool met = true, measured = false;
    long left = 0;
    for (const auto& r : results) {
        left += r.domains_left;
        if (r.lifecycles == 1000) {
            measured = true;
            met = met && !r.lateness_ms.empty() && r.lateness_ms.back() < 10.0 &&
                  percentile(r.lateness_ms, 99) < 2.0;
        }
    }
    if (measured)
        std::printf("\ntarget at 1000 lifecycles: worst < 10 ms and p99 < 2 ms (%s)\n",
                    met ? "met" : "NOT met");
    if (left > 0) {
        std::cerr << "event_stall: " << left << " domains of the runs are still in libvirt\n";
        return 1;
    }
    return 0;
} catch (const std::exception& e) {
    std::cerr << "event_stall: " << e.what() << "\n";
    return 1;
}
