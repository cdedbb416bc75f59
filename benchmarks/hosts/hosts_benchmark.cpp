// Many hosts against one: N containers provisioned at once (booted, address
// known, handed over to a client whose login was checked, all through the
// hosts' SSH jumps) by a hypervisor_pool of the sandbox's two hosts, and by
// a pool of its first host alone. Runs in the two-host sandbox
// (scripts/sandbox.sh up --hosts 2, then exec), which describes the hosts in
// its environment; see run.sh.
//
//   hosts_benchmark --iso PATH [--count 8] [--runs 2] [--memory 512]
//                   [--domain-type qemu] [--csv FILE]
//
// Each run provisions with both configurations, in alternating order, so
// that the machine's noise spreads over them. Prints, per configuration,
// the makespan (median and range over the runs), p50/p95 of each
// container's time to administered and of its boot (domain created ->
// address known), where the containers were placed, and how busy the
// machine's CPUs were; then the ratios. Writes every container's timings
// to --csv.
#include "../../tests/hosts/two_hosts.hpp"
#include "../common/statistics.hpp"

#include <anweddol/hypervisor_pool.hpp>
#include <anweddol/provisioning.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;
using anweddol::bench::percentile;
using anweddol::bench::seconds;
using namespace std::chrono_literals;

namespace {

struct settings {
    std::string iso;
    unsigned count = 8;
    unsigned runs = 2;
    unsigned memory = 512;
    std::string domain_type = "qemu";
    std::string csv;
};

[[noreturn]] void usage(const std::string& why) {
    std::cerr << "hosts_benchmark: " << why
              << "\nusage: hosts_benchmark --iso PATH [--count N] [--runs R] [--memory MIB] "
                 "[--domain-type TYPE] [--csv FILE]\n";
    std::exit(2);
}

settings parse(int argc, char** argv) {
    settings s;
    for (int i = 1; i < argc; i += 2) {
        const std::string arg = argv[i];
        if (i + 1 >= argc)
            usage(arg + " needs a value");
        const std::string value = argv[i + 1];
        try {
            if (arg == "--iso")
                s.iso = value;
            else if (arg == "--count")
                s.count = static_cast<unsigned>(std::stoul(value));
            else if (arg == "--runs")
                s.runs = static_cast<unsigned>(std::stoul(value));
            else if (arg == "--memory")
                s.memory = static_cast<unsigned>(std::stoul(value));
            else if (arg == "--domain-type")
                s.domain_type = value;
            else if (arg == "--csv")
                s.csv = value;
            else
                usage("unknown option " + arg);
        } catch (const std::logic_error&) {
            usage(arg + " needs a number, not '" + value + "'");
        }
    }
    if (s.iso.empty())
        usage("--iso is required");
    if (s.count == 0 || s.runs == 0)
        usage("--count and --runs must be at least 1");
    return s;
}

// The machine's CPU time, busy and total, in clock ticks (/proc/stat).
struct cpu_ticks {
    unsigned long long busy = 0, total = 0;
};
cpu_ticks read_cpu() {
    std::ifstream stat("/proc/stat");
    std::string cpu;
    stat >> cpu;
    cpu_ticks t;
    unsigned long long value = 0;
    for (int field = 0; field < 8 && stat >> value; ++field) {
        t.total += value;
        if (field != 3 && field != 4) // idle, iowait
            t.busy += value;
    }
    return t;
}

struct container_row {
    std::string config;
    unsigned run = 0;
    std::string host;
    double total = 0, boot_to_ip = 0, ip_to_ssh = 0, queued = 0;
    std::string error;
};

struct run_result {
    double makespan = 0;
    double cpu_busy = 0; // of all the machine's cores, 0..1
    std::vector<container_row> rows;
};

// N containers at once through a pool of `hosts`; destroys them afterwards.
asio::awaitable<run_result> provision_once(const settings& s,
                                           std::vector<anweddol::hypervisor_host_options> hosts,
                                           std::string config, unsigned run) {
    auto executor = co_await asio::this_coro::executor;
    anweddol::hypervisor_pool_options options;
    options.hosts = std::move(hosts);
    anweddol::hypervisor_pool pool(executor, options);
    asio::steady_timer pause(executor);
    for (int i = 0; i < 300; ++i) { // the hosts connect in the background
        bool connecting = false;
        for (const auto& h : pool.get_hosts())
            connecting = connecting || h.state == anweddol::hypervisor_host_state::connecting;
        if (!connecting)
            break;
        pause.expires_after(100ms);
        co_await pause.async_wait(asio::use_awaitable);
    }

    run_result result;
    const cpu_ticks cpu_before = read_cpu();
    const auto began = clock_type::now();
    std::vector<std::shared_ptr<anweddol::container_instance>> containers;
    std::size_t done = 0;
    result.rows.resize(s.count);
    for (unsigned i = 0; i < s.count; ++i) {
        auto c = std::make_shared<anweddol::container_instance>(executor, s.iso, "", s.memory, 1);
        containers.push_back(c);
        anweddol::provisioning_options p;
        p.hypervisors = &pool;
        p.domain_type = s.domain_type;
        auto& row = result.rows[i];
        row.config = config;
        row.run = run;
        anweddol::provision(
            c, p, [&row, &done](boost::system::error_code ec, anweddol::provisioned_container r) {
                ++done;
                if (ec) {
                    row.error = ec.message();
                    return;
                }
                row.host = r.host;
                row.total = seconds(r.timings.total);
                row.boot_to_ip = seconds(r.timings.boot_to_ip);
                row.ip_to_ssh = seconds(r.timings.ip_to_ssh);
                row.queued = seconds(r.timings.queued);
                anweddol::detail::cleanse(r.password);
            });
    }
    while (done < s.count) {
        pause.expires_after(50ms);
        co_await pause.async_wait(asio::use_awaitable);
    }
    result.makespan = seconds(clock_type::now() - began);
    const cpu_ticks cpu_after = read_cpu();
    result.cpu_busy = static_cast<double>(cpu_after.busy - cpu_before.busy) /
                      static_cast<double>(std::max(1ULL, cpu_after.total - cpu_before.total));
    for (auto& c : containers)
        if (c->is_domain_running())
            co_await c->stop_domain();
    co_await pool.shutdown();
    co_return result;
}

void report(const std::string& config, const std::vector<run_result>& runs) {
    std::vector<double> makespans, totals, boots, busy;
    std::map<std::string, std::size_t> placed;
    std::size_t failed = 0;
    for (const auto& r : runs) {
        makespans.push_back(r.makespan);
        busy.push_back(r.cpu_busy);
        for (const auto& row : r.rows) {
            if (!row.error.empty()) {
                ++failed;
                continue;
            }
            totals.push_back(row.total);
            boots.push_back(row.boot_to_ip);
            ++placed[row.host];
        }
    }
    std::cout << std::fixed << std::setprecision(1) << config << ": makespan "
              << percentile(makespans, 0.5) << " s ("
              << *std::min_element(makespans.begin(), makespans.end()) << "-"
              << *std::max_element(makespans.begin(), makespans.end()) << "), per container p50 "
              << percentile(totals, 0.5) << " s p95 " << percentile(totals, 0.95) << " s, boot p50 "
              << percentile(boots, 0.5) << " s, CPUs busy " << std::setprecision(0)
              << 100 * percentile(busy, 0.5) << " %, placed:";
    for (const auto& [host, n] : placed)
        std::cout << " " << host << "=" << n;
    if (failed)
        std::cout << ", " << failed << " FAILED";
    std::cout << "\n";
}

} // namespace

int main(int argc, char** argv) {
    const settings s = parse(argc, argv);
    std::vector<anweddol::hypervisor_host_options> all;
    try {
        all = anweddol::test::sandbox_hosts();
    } catch (const std::exception& e) {
        std::cerr << "hosts_benchmark: " << e.what() << " (see benchmarks/hosts/run.sh)\n";
        return 2;
    }
    if (all.size() < 2) {
        std::cerr << "hosts_benchmark: the sandbox describes fewer than two hosts\n";
        return 2;
    }
    const std::vector<anweddol::hypervisor_host_options> one(all.begin(), all.begin() + 1);
    std::map<std::string, std::vector<run_result>> results;
    std::vector<container_row> rows;
    asio::io_context io;
    for (unsigned run = 0; run < s.runs; ++run) {
        std::vector<std::pair<std::string, std::vector<anweddol::hypervisor_host_options>>> order{
            {"one host", one}, {"two hosts", all}};
        if (run % 2 == 1)
            std::swap(order[0], order[1]);
        for (const auto& [config, hosts] : order) {
            std::cerr << "run " << run + 1 << "/" << s.runs << ": " << config << ", N=" << s.count
                      << "\n";
            asio::co_spawn(io, provision_once(s, hosts, config, run),
                           [&, config = config](std::exception_ptr e, run_result r) {
                               if (e)
                                   std::rethrow_exception(e);
                               for (const auto& row : r.rows)
                                   rows.push_back(row);
                               results[config].push_back(std::move(r));
                           });
            io.restart();
            io.run();
        }
    }
    std::cout << "N=" << s.count << " containers of " << s.memory << " MiB, " << s.domain_type
              << ", " << s.runs << " run(s) each:\n";
    report("one host ", results["one host"]);
    report("two hosts", results["two hosts"]);
    auto median_makespan = [&](const std::string& c) {
        std::vector<double> m;
        for (const auto& r : results[c])
            m.push_back(r.makespan);
        return percentile(m, 0.5);
    };
    std::cout << std::setprecision(2) << "two hosts / one host, makespan: "
              << median_makespan("two hosts") / median_makespan("one host") << "\n";
    if (!s.csv.empty()) {
        std::ofstream csv(s.csv);
        csv << "config,run,host,total_s,queued_s,boot_to_ip_s,ip_to_ssh_s,error\n";
        for (const auto& r : rows)
            csv << r.config << "," << r.run << "," << r.host << "," << r.total << "," << r.queued
                << "," << r.boot_to_ip << "," << r.ip_to_ssh << "," << r.error << "\n";
    }
    return 0;
}
