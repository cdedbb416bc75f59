// The parallel-provisioning harness: time to "administered" (booted, address
// known, handed over to a client whose login was checked) for N containers
// provisioned at once under each candidate boot-admission policy, and one
// after another. Runs in the sandbox (scripts/sandbox.sh exec).
//
//   provision_benchmark --iso PATH [--counts 1,2,4,8] [--memory 512]
//                       [--domain-type qemu] [--runs 1] [--modes LIST]
//                       [--csv FILE | --continue FILE] [--summary-csv FILE]
//
// Modes (--modes, comma-separated; default all but "default"):
//   cpu-limit   at most (CPU count) boots at once, each holding its place
//               until its address is known: set_limit(cores)
//   cpu-heavy   at most (CPU count) boots at once that are still CPU-heavy:
//               set_cpu_heavy_limit(cores)
//   memory      at most MemAvailable / (memory + 256 MiB) boots at once,
//               each until its address is known: set_limit(that)
//   unbounded   no limit
//   default     the library's automatic policy: set_automatic()
//   sequential  one container after another
// Each run goes through every N and every mode, so that the machine's noise
// spreads over them; with --runs R each makespan is the median of R.
// --continue FILE reads the runs already in FILE (a --csv of this program)
// and adds the new ones to it, so that runs can be split over several
// sessions of the shared sandbox; the report covers them all (--runs 0
// only reports them, and needs no sandbox).
//
// Prints p50/p95 of each phase, the makespans to "address known" and to
// "administered" (median and range over the runs), the CPU QEMU used per
// boot until its lease (libvirt's cpuTime), and each N's floor: N x the CPU
// a boot costs alone (from the sequential runs) / cores. Writes every
// container's timings to --csv and the makespans to --summary-csv (for
// benchmarks/provision/plot.gp).
#include "../common/statistics.hpp"

#include <anweddol/provisioning.hpp>

#include <libvirt/libvirt.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <sys/utsname.h>

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;
using anweddol::bench::percentile;
using anweddol::bench::seconds;

namespace {

enum class mode { cpu_limit, cpu_heavy, memory, unbounded, automatic, sequential };

const char* name_of(mode m) {
    switch (m) {
    case mode::cpu_limit:
        return "cpu-limit";
    case mode::cpu_heavy:
        return "cpu-heavy";
    case mode::memory:
        return "memory";
    case mode::unbounded:
        return "unbounded";
    case mode::automatic:
        return "default";
    case mode::sequential:
        return "sequential";
    }
    return "?";
}

mode parse_mode(const std::string& text) {
    for (const mode m : {mode::cpu_limit, mode::cpu_heavy, mode::memory, mode::unbounded,
                         mode::automatic, mode::sequential})
        if (text == name_of(m))
            return m;
    throw std::invalid_argument("unknown mode " + text);
}

struct settings {
    std::string iso;
    std::vector<unsigned> counts{1, 2, 4, 8};
    std::vector<mode> modes{mode::cpu_limit, mode::cpu_heavy, mode::memory, mode::unbounded,
                            mode::sequential};
    unsigned runs = 1;
    unsigned memory = 512;
    std::string domain_type = "qemu";
    std::string csv = "provision.csv";
    std::string summary_csv = "provision-summary.csv";
    bool resume = false; ///< --continue: add to the runs already in csv
};

unsigned cores() {
    return std::max(1u, std::thread::hardware_concurrency());
}

// How many guests of `memory_mib` the host's available memory holds, with
// 256 MiB for QEMU's own use beside each guest's RAM.
std::size_t memory_limit(unsigned memory_mib) {
    std::ifstream meminfo("/proc/meminfo");
    std::string key, unit;
    unsigned long long value = 0, kib = 0;
    while (meminfo >> key >> value) {
        if (key == "MemAvailable:")
            kib = value;
        if (meminfo.peek() == ' ')
            meminfo >> unit; // "kB"
    }
    return std::max<std::size_t>(1, kib / 1024 / (memory_mib + 256));
}

struct run_result {
    std::vector<anweddol::provisioning_timings> timings;
    std::vector<double> cpu_per_boot; ///< QEMU's CPU until the lease, per container
    double makespan_to_ip = 0;        ///< until the last container had its address
    double makespan = 0;              ///< until the last one was administered
};

// The CPU the domain has used so far (a benchmark may block its io thread on
// this one RPC).
double cpu_seconds(const anweddol::container_instance& container) {
    virDomainInfo info{};
    if (virDomainGetInfo(container.get_domain_descriptor(), &info) < 0)
        return 0;
    return static_cast<double>(info.cpuTime) / 1e9;
}

asio::awaitable<anweddol::provisioned_container>
provision_one(const settings& s, clock_type::time_point began, run_result& result) {
    auto container = std::make_shared<anweddol::container_instance>(
        co_await asio::this_coro::executor, s.iso, "", s.memory, 1);
    anweddol::provisioning_options provisioning;
    provisioning.domain_type = s.domain_type;
    provisioning.on_progress = [&, c = container.get()](const anweddol::provisioning_event& e) {
        if (e.phase == anweddol::provisioning_phase::waiting_for_ssh) {
            result.makespan_to_ip =
                std::max(result.makespan_to_ip, seconds(clock_type::now() - began));
            result.cpu_per_boot.push_back(cpu_seconds(*c));
        }
    };
    auto provisioned = co_await anweddol::provision(container, std::move(provisioning));
    co_await container->stop_domain(true);
    co_return provisioned;
}

run_result run(asio::io_context& context, const settings& s, unsigned count, mode m) {
    auto& admission = anweddol::runtime::of(context.get_executor()).admission();
    switch (m) {
    case mode::cpu_limit:
        admission.set_limit(cores());
        break;
    case mode::cpu_heavy:
        admission.set_cpu_heavy_limit(cores());
        break;
    case mode::memory:
        admission.set_limit(memory_limit(s.memory));
        break;
    case mode::unbounded:
        admission.set_unbounded();
        break;
    case mode::automatic:
    case mode::sequential:
        admission.set_automatic();
        break;
    }

    run_result result;
    const auto began = clock_type::now();
    std::exception_ptr failure;
    const auto collect = [&](std::exception_ptr e, anweddol::provisioned_container c) {
        if (e && !failure)
            failure = e;
        if (!e)
            result.timings.push_back(c.timings);
    };
    if (m == mode::sequential) {
        asio::co_spawn(
            context,
            [&]() -> asio::awaitable<anweddol::provisioned_container> {
                anweddol::provisioned_container last;
                for (unsigned i = 0; i < count; ++i) {
                    last = co_await provision_one(s, began, result);
                    if (i + 1 < count)
                        result.timings.push_back(last.timings);
                }
                co_return last;
            },
            collect);
    } else {
        for (unsigned i = 0; i < count; ++i)
            asio::co_spawn(context, provision_one(s, began, result), collect);
    }
    context.restart();
    context.run(); // returns once every container is destroyed: nothing holds libvirt then
    if (failure)
        std::rethrow_exception(failure);
    // The administered moment of the last one, not counting its destruction.
    double last_done = 0;
    double offset = 0;
    for (const auto& t : result.timings) {
        if (m == mode::sequential) {
            offset += seconds(t.total);
            last_done = offset;
        } else {
            last_done = std::max(last_done, seconds(t.total));
        }
    }
    result.makespan = last_done;
    return result;
}

std::vector<std::string> split(const std::string& text) {
    std::vector<std::string> items;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ','))
        items.push_back(item);
    return items;
}

double median(std::vector<double> values) {
    return percentile(std::move(values), 0.5);
}

// Every run's numbers of one N and mode.
struct cell {
    std::vector<double> makespan, makespan_to_ip, cpu_per_boot;
    std::vector<double> boot, ssh, admin, total; // per container, over all runs
};

std::string range_of(const std::vector<double>& v) {
    char text[64];
    if (v.size() < 2)
        std::snprintf(text, sizeof text, "%5.1f s", median(v));
    else
        std::snprintf(text, sizeof text, "%5.1f s (%.1f-%.1f)", median(v),
                      *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
    return text;
}

} // namespace

int main(int argc, char** argv) try {
    settings s;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string arg = argv[i];
        const std::string value = argv[i + 1];
        if (arg == "--iso")
            s.iso = value;
        else if (arg == "--counts") {
            s.counts.clear();
            for (const auto& item : split(value))
                s.counts.push_back(static_cast<unsigned>(std::stoul(item)));
        } else if (arg == "--modes") {
            s.modes.clear();
            for (const auto& item : split(value))
                s.modes.push_back(parse_mode(item));
        } else if (arg == "--runs")
            s.runs = static_cast<unsigned>(std::stoul(value)); // 0: report --continue's runs
        else if (arg == "--memory")
            s.memory = static_cast<unsigned>(std::stoul(value));
        else if (arg == "--domain-type")
            s.domain_type = value;
        else if (arg == "--csv")
            s.csv = value;
        else if (arg == "--summary-csv")
            s.summary_csv = value;
        else if (arg == "--continue") {
            s.csv = value;
            s.resume = true;
        } else
            throw std::invalid_argument("unknown option " + arg);
    }
    if (s.iso.empty())
        throw std::invalid_argument("--iso is required");

    utsname host{};
    uname(&host);
    std::printf("parallel provisioning on %s (%s), %u cores, domain type %s, %u MiB each, "
                "%u run(s)\n",
                host.nodename, host.release, cores(), s.domain_type.c_str(), s.memory, s.runs);
    std::printf("cpu-limit: %u at once until the address; cpu-heavy: %u at once while "
                "CPU-heavy; memory: %zu at once until the address\n\n",
                cores(), cores(), memory_limit(s.memory));

    // Every container's row, with its run's makespans and CPU per boot; with
    // --continue, the rows of earlier runs are read back first, so that runs
    // can be split over several sessions of the shared sandbox.
    std::map<std::pair<unsigned, mode>, cell> cells;
    std::set<std::tuple<unsigned, unsigned, mode>> runs_seen;
    unsigned first_run = 1;
    const auto add = [&](unsigned run_number, unsigned n, mode m, double boot, double ssh,
                         double admin, double total, double cpu, double makespan,
                         double makespan_to_ip) {
        auto& c = cells[{n, m}];
        if (runs_seen.insert({run_number, n, m}).second) {
            c.makespan.push_back(makespan);
            c.makespan_to_ip.push_back(makespan_to_ip);
            c.cpu_per_boot.push_back(cpu);
        }
        c.boot.push_back(boot);
        c.ssh.push_back(ssh);
        c.admin.push_back(admin);
        c.total.push_back(total);
        first_run = std::max(first_run, run_number + 1);
    };
    if (s.resume) {
        std::ifstream previous(s.csv);
        std::string line;
        std::getline(previous, line); // the header
        while (std::getline(previous, line)) {
            const auto f = split(line);
            if (f.size() != 12)
                throw std::runtime_error("--continue: not a row of this program: " + line);
            add(std::stoul(f[0]), std::stoul(f[1]), parse_mode(f[2]), std::stod(f[4]),
                std::stod(f[5]), std::stod(f[6]), std::stod(f[8]), std::stod(f[9]),
                std::stod(f[10]), std::stod(f[11]));
        }
        std::printf("read %zu earlier run(s) of an N and a mode from %s\n\n", runs_seen.size(),
                    s.csv.c_str());
    }
    std::ofstream csv(s.csv, s.resume ? std::ios::app : std::ios::trunc);
    if (!s.resume)
        csv << "run,n,mode,define,boot_to_ip,ip_to_ssh,administration,verification,total,"
               "cpu_per_boot,makespan,makespan_to_ip\n";

    asio::io_context context(1);
    const unsigned end_run = first_run + s.runs; // add() moves first_run on
    for (unsigned run_number = first_run; run_number < end_run; ++run_number) {
        for (const unsigned n : s.counts) {
            for (const mode m : s.modes) {
                const run_result r = run(context, s, n, m);
                double cpu = 0;
                for (const double x : r.cpu_per_boot)
                    cpu += x;
                cpu = r.cpu_per_boot.empty() ? 0 : cpu / static_cast<double>(r.cpu_per_boot.size());
                for (const auto& t : r.timings) {
                    add(run_number, n, m, seconds(t.boot_to_ip), seconds(t.ip_to_ssh),
                        seconds(t.administration), seconds(t.total), cpu, r.makespan,
                        r.makespan_to_ip);
                    csv << run_number << ',' << n << ',' << name_of(m) << ',' << seconds(t.define)
                        << ',' << seconds(t.boot_to_ip) << ',' << seconds(t.ip_to_ssh) << ','
                        << seconds(t.administration) << ',' << seconds(t.verification) << ','
                        << seconds(t.total) << ',' << cpu << ',' << r.makespan << ','
                        << r.makespan_to_ip << '\n';
                }
                std::printf("run %u, N = %u, %-10s makespan %5.1f s, to IP %5.1f s, CPU per "
                            "boot %.2f s\n",
                            run_number, n, name_of(m), r.makespan, r.makespan_to_ip, cpu);
                std::fflush(stdout);
                csv.flush();
            }
        }
    }

    // The CPU a boot costs alone: the sequential runs' median, or else the
    // N = 1 runs of any mode.
    std::vector<double> alone;
    for (const auto& [key, c] : cells)
        if (key.second == mode::sequential || key.first == 1)
            alone.insert(alone.end(), c.cpu_per_boot.begin(), c.cpu_per_boot.end());
    const double cpu_alone = median(alone);
    std::printf("\nCPU per boot until its lease, alone (sequential and N = 1, median of %zu): "
                "%.2f s\n",
                alone.size(), cpu_alone);

    std::ofstream summary(s.summary_csv);
    summary << "n,floor";
    for (const mode m : s.modes)
        summary << ',' << name_of(m) << ',' << name_of(m) << "_min," << name_of(m) << "_max";
    summary << '\n';
    for (const unsigned n : s.counts) {
        const double floor = n * cpu_alone / cores();
        std::printf("\nN = %u: floor (N x %.2f s / %u cores) %.1f s; makespans: median (range) "
                    "over the runs\n",
                    n, cpu_alone, cores(), floor);
        std::printf("%-11s %-20s %-20s %8s %9s  %-15s %-15s %-15s %-15s runs\n", "mode",
                    "to administered", "to IP", "/ floor", "/ seq.", "boot->ip p50/95",
                    "ip->ssh p50/95", "admin p50/95", "CPU/boot");
        const auto seq = cells.find({n, mode::sequential});
        const double sequential = seq != cells.end() ? median(seq->second.makespan)
                                                     : std::numeric_limits<double>::quiet_NaN();
        summary << n << ',' << floor;
        for (const mode m : s.modes) {
            const auto& c = cells[{n, m}];
            if (c.makespan.empty()) {
                summary << ",,,";
                continue;
            }
            const double makespan = median(c.makespan);
            std::printf("%-11s %-20s %-20s %8.2f %9.2f  %5.1f / %5.1f s %5.1f / %5.1f s %5.1f / "
                        "%5.1f s %5.2f s  %zu\n",
                        name_of(m), range_of(c.makespan).c_str(),
                        range_of(c.makespan_to_ip).c_str(), makespan / floor, makespan / sequential,
                        percentile(c.boot, 0.5), percentile(c.boot, 0.95), percentile(c.ssh, 0.5),
                        percentile(c.ssh, 0.95), percentile(c.admin, 0.5),
                        percentile(c.admin, 0.95), median(c.cpu_per_boot), c.makespan.size());
            summary << ',' << makespan << ','
                    << *std::min_element(c.makespan.begin(), c.makespan.end()) << ','
                    << *std::max_element(c.makespan.begin(), c.makespan.end());
        }
        summary << '\n';
    }
    return 0;
} catch (const std::exception& e) {
    std::cerr << "provision_benchmark: " << e.what() << "\n";
    return 1;
}
