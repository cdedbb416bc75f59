// Lease detection latency: the time from libvirt's lease helper replacing
// dnsmasq's status file to the coroutine waiting in start_domain resuming,
// beside the reference's loop (read the file, sleep a second, read again),
// in one run.
//
//   lease_latency [--trials N] [--reference-trials M]
//
// The domains are test:///default ones and the status file is a scratch
// one: this measures the library's wake-up path (inotify, reading and
// parsing the file, resuming), not dnsmasq. Target: p99 <= 20 ms.
#include <anweddol/container_instance.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/writable_pipe.hpp>
#include <boost/asio/write.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

struct scratch {
    fs::path root;
    scratch() {
        char pattern[] = "/tmp/anweddol-lease-latency-XXXXXX";
        root = ::mkdtemp(pattern);
        fs::create_directory(root / "leases");
        std::ofstream(root / "live.iso") << "stand-in";
    }
    ~scratch() { fs::remove_all(root); }
    fs::path status_file() const { return root / "leases" / "virbr0.status"; }
    // As libvirt's lease helper does: a new file renamed over the old one.
    void publish_lease(const std::string& mac) const {
        const fs::path temporary = root / "leases" / "virbr0.status.new";
        std::ofstream(temporary) << "[{\"ip-address\": \"192.168.122.50\", \"mac-address\": \""
                                 << mac << "\", \"expiry-time\": " << std::time(nullptr) + 3600
                                 << "}]";
        fs::rename(temporary, status_file());
    }
};

double percentile(std::vector<double> values, double p) {
    std::sort(values.begin(), values.end());
    const auto index = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
    return values[std::min(index, values.size() - 1)];
}

// The io thread runs the containers' coroutines without interruption; a
// thread of its own plays libvirt's lease helper, as another process would.
std::vector<double> library_trials(asio::io_context& context, const scratch& s, int trials) {
    std::atomic<const char*> mac_to_publish{nullptr};
    std::atomic<bool> finished{false};
    std::atomic<clock_type::rep> published{0};
    std::thread lease_helper([&] {
        while (!finished) {
            const char* mac = mac_to_publish.exchange(nullptr);
            if (!mac) {
                std::this_thread::sleep_for(std::chrono::microseconds(200));
                continue;
            }
            // Taken before the new file is even written: a helper descheduled
            // after its rename must not make the wake-up look faster than it
            // was, so the figures are an upper bound.
            const auto renaming = clock_type::now();
            s.publish_lease(mac);
            published = renaming.time_since_epoch().count();
        }
    });

    std::vector<double> latencies_ms;
    std::exception_ptr failure;
    asio::co_spawn(
        context,
        [&]() -> asio::awaitable<void> {
            // Held for the whole run, as a server would: otherwise the last
            // container to stop closes it and the next one opens it anew.
            auto connection = co_await anweddol::hypervisor_connection::open("test:///default");
            auto executor = co_await asio::this_coro::executor;
            asio::steady_timer pause(executor);
            for (int trial = 0; trial < trials; ++trial) {
                auto container = std::make_shared<anweddol::container_instance>(
                    executor, (s.root / "live.iso").string(), "", 512, 1);
                auto options = container->get_options();
                options.lease_directory = s.root / "leases";
                options.address_poll_interval = std::chrono::milliseconds(0); // the file alone
                options.bypass_admission = true;
                container->set_options(options);

                bool started = false;
                std::exception_ptr start_failure;
                clock_type::time_point resumed;
                asio::co_spawn(executor, container->start_domain(true, 20, "test:///default"),
                               [&](std::exception_ptr e) {
                                   resumed = clock_type::now();
                                   start_failure = e;
                                   started = true;
                               });
                // Once the domain runs and its wait is armed, the lease arrives.
                while (!container->is_domain_running() && !started) {
                    pause.expires_after(std::chrono::microseconds(100));
                    co_await pause.async_wait(asio::use_awaitable);
                }
                pause.expires_after(std::chrono::milliseconds(2));
                co_await pause.async_wait(asio::use_awaitable);
                const std::string mac = container->get_mac().value_or("");
                published = 0;
                mac_to_publish = mac.c_str();
                // Both ends recorded: the resumption, and (on the helper's
                // thread, right after its rename) the publication.
                while (!started || published.load() == 0) {
                    pause.expires_after(std::chrono::microseconds(500));
                    co_await pause.async_wait(asio::use_awaitable);
                }
                if (start_failure)
                    std::rethrow_exception(start_failure);
                const clock_type::time_point at{clock_type::duration{published.load()}};
                latencies_ms.push_back(
                    std::chrono::duration<double, std::milli>(resumed - at).count());
                co_await container->stop_domain();
            }
        },
        [&](std::exception_ptr e) { failure = e; });
    context.run();
    finished = true;
    lease_helper.join();
    if (failure)
        std::rethrow_exception(failure);
    return latencies_ms;
}

std::vector<double> reference_trials(asio::io_context& context, const scratch& s, int trials) {
    namespace bp = boost::process::v2;
    asio::writable_pipe to_peer(context);
    asio::readable_pipe from_peer(context);
    bp::process peer(context, "/usr/bin/python3",
                     {ANWEDDOL_BENCH_REFERENCE_POLL, s.status_file().string()},
                     bp::process_stdio{to_peer, from_peer, {}});
    std::mt19937 random(12345);
    std::uniform_int_distribution<int> phase_ms(0, 999);
    std::vector<double> latencies_ms;
    std::string buffer;
    for (int trial = 0; trial < trials; ++trial) {
        char mac[18];
        std::snprintf(mac, sizeof mac, "52:54:00:77:%02x:%02x", (trial >> 8) & 0xff, trial & 0xff);
        asio::write(to_peer, asio::buffer(std::string(mac) + "\n"));
        // Leases arrive at any moment of the reference's one-second sleep.
        std::this_thread::sleep_for(std::chrono::milliseconds(phase_ms(random)));
        s.publish_lease(mac);
        const double published =
            std::chrono::duration<double>(clock_type::now().time_since_epoch()).count();
        const std::size_t end = asio::read_until(from_peer, asio::dynamic_buffer(buffer), '\n');
        const double found = std::stod(buffer.substr(0, end));
        buffer.erase(0, end);
        latencies_ms.push_back((found - published) * 1000.0);
    }
    to_peer.close();
    peer.wait();
    return latencies_ms;
}

} // namespace

int main(int argc, char** argv) try {
    int trials = 1000;
    int reference_trials_count = 30;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string arg = argv[i];
        if (arg == "--trials")
            trials = std::stoi(argv[i + 1]);
        else if (arg == "--reference-trials")
            reference_trials_count = std::stoi(argv[i + 1]);
        else
            throw std::invalid_argument("unknown option " + arg);
    }
    if (trials < 1 || reference_trials_count < 1)
        throw std::invalid_argument("trial counts must be at least 1");

    asio::io_context context(1);
    scratch s;
    const auto library = library_trials(context, s, trials);
    const auto reference = reference_trials(context, s, reference_trials_count);

    std::printf("lease detection latency: status file replaced -> waiting coroutine resumed\n\n");
    std::printf("%-40s %8s %10s %10s %10s\n", "", "trials", "p50", "p99", "max");
    std::printf("%-40s %8d %7.2f ms %7.2f ms %7.2f ms\n", "anweddol (inotify)", trials,
                percentile(library, 0.5), percentile(library, 0.99), percentile(library, 1.0));
    std::printf("%-40s %8d %7.1f ms %7.1f ms %7.1f ms\n", "reference loop (read, sleep 1 s)",
                reference_trials_count, percentile(reference, 0.5), percentile(reference, 0.99),
                percentile(reference, 1.0));
    std::printf("\np50 ratio reference/anweddol: %.0fx; target p99 <= 20 ms: %s\n",
                percentile(reference, 0.5) / percentile(library, 0.5),
                percentile(library, 0.99) <= 20.0 ? "met" : "NOT met");
    return 0;
} catch (const std::exception& e) {
    std::cerr << "lease_latency: " << e.what() << "\n";
    return 1;
}
