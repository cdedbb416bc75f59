// The parallel-provisioning harness: time to "administered" (booted, address
// known, handed over to a client whose login was checked) for N containers,
// (a) with the default boot admission, (b) with no boot limit, (c) one after
// another, in one run. Runs in the sandbox (scripts/sandbox.sh exec).
//
//   provision_benchmark --iso PATH [--counts 1,2,4,8] [--memory 512]
//                       [--domain-type qemu] [--csv FILE] [--summary-csv FILE]
//
// Prints p50/p95 of each phase and the makespans to "address known" and to
// "administered", writes every container's timings to --csv and the
// makespans to --summary-csv (for benchmarks/provision/plot.gp).
#include <anweddol/provisioning.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/utsname.h>

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace {

struct settings {
    std::string iso;
    std::vector<unsigned> counts{1, 2, 4, 8};
    unsigned memory = 512;
    std::string domain_type = "qemu";
    std::string csv = "provision.csv";
    std::string summary_csv = "provision-summary.csv";
};

enum class mode { admission, unbounded, sequential };

const char* name_of(mode m) {
    switch (m) {
    case mode::admission:
        return "admission";
    case mode::unbounded:
        return "unbounded";
    case mode::sequential:
        return "sequential";
    }
    return "?";
}

double seconds(clock_type::duration d) {
    return std::chrono::duration<double>(d).count();
}

double percentile(std::vector<double> values, double p) {
    if (values.empty())
        return 0;
    std::sort(values.begin(), values.end());
    const double rank = p * static_cast<double>(values.size() - 1);
    const auto low = static_cast<std::size_t>(rank);
    const auto high = std::min(low + 1, values.size() - 1);
    return values[low] + (values[high] - values[low]) * (rank - static_cast<double>(low));
}

struct run_result {
    std::vector<anweddol::provisioning_timings> timings;
    double makespan_to_ip = 0; ///< until the last container had its address
    double makespan = 0;       ///< until the last one was administered
};

asio::awaitable<anweddol::provisioned_container>
provision_one(const settings& s, clock_type::time_point began, double& last_ip) {
    auto container = std::make_shared<anweddol::container_instance>(
        co_await asio::this_coro::executor, s.iso, "", s.memory, 1);
    anweddol::provisioning_options provisioning;
    provisioning.domain_type = s.domain_type;
    provisioning.on_progress = [&](const anweddol::provisioning_event& e) {
        if (e.phase == anweddol::provisioning_phase::waiting_for_ssh)
            last_ip = std::max(last_ip, seconds(clock_type::now() - began));
    };
    auto result = co_await anweddol::provision(container, std::move(provisioning));
    co_await container->stop_domain(true);
    co_return result;
}

run_result run(asio::io_context& context, const settings& s, unsigned count, mode m) {
    auto& admission = anweddol::runtime::of(context.get_executor()).admission();
    if (m == mode::unbounded)
        admission.set_unbounded();
    else
        admission.set_automatic();

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
                    last = co_await provision_one(s, began, result.makespan_to_ip);
                    if (i + 1 < count)
                        result.timings.push_back(last.timings);
                }
                co_return last;
            },
            collect);
    } else {
        for (unsigned i = 0; i < count; ++i)
            asio::co_spawn(context, provision_one(s, began, result.makespan_to_ip), collect);
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

std::vector<unsigned> parse_counts(const std::string& text) {
    std::vector<unsigned> counts;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ','))
        counts.push_back(static_cast<unsigned>(std::stoul(item)));
    return counts;
}

} // namespace

int main(int argc, char** argv) try {
    settings s;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string arg = argv[i];
        const std::string value = argv[i + 1];
        if (arg == "--iso")
            s.iso = value;
        else if (arg == "--counts")
            s.counts = parse_counts(value);
        else if (arg == "--memory")
            s.memory = static_cast<unsigned>(std::stoul(value));
        else if (arg == "--domain-type")
            s.domain_type = value;
        else if (arg == "--csv")
            s.csv = value;
        else if (arg == "--summary-csv")
            s.summary_csv = value;
        else
            throw std::invalid_argument("unknown option " + arg);
    }
    if (s.iso.empty())
        throw std::invalid_argument("--iso is required");

    utsname host{};
    uname(&host);
    std::printf("parallel provisioning on %s (%s), %u cores, domain type %s, %u MiB each\n\n",
                host.nodename, host.release, std::thread::hardware_concurrency(),
                s.domain_type.c_str(), s.memory);

    std::ofstream csv(s.csv);
    csv << "n,mode,define,boot_to_ip,ip_to_ssh,administration,verification,total\n";
    std::ofstream summary(s.summary_csv);
    summary << "n,admission,unbounded,sequential\n";

    asio::io_context context(1);
    for (const unsigned n : s.counts) {
        std::printf("N = %u\n%-11s %10s %10s   %-15s %-15s %-15s %-15s\n", n, "mode", "to IP",
                    "makespan", "boot->ip p50/95", "ip->ssh p50/95", "admin p50/95",
                    "total p50/95");
        double makespans[3] = {};
        for (const mode m : {mode::admission, mode::unbounded, mode::sequential}) {
            const run_result r = run(context, s, n, m);
            makespans[static_cast<int>(m)] = r.makespan;
            std::vector<double> boot, ssh, admin, total;
            for (const auto& t : r.timings) {
                boot.push_back(seconds(t.boot_to_ip));
                ssh.push_back(seconds(t.ip_to_ssh));
                admin.push_back(seconds(t.administration));
                total.push_back(seconds(t.total));
                csv << n << ',' << name_of(m) << ',' << seconds(t.define) << ','
                    << seconds(t.boot_to_ip) << ',' << seconds(t.ip_to_ssh) << ','
                    << seconds(t.administration) << ',' << seconds(t.verification) << ','
                    << seconds(t.total) << '\n';
            }
            std::printf("%-11s %8.1f s %8.1f s   %5.1f / %5.1f s %5.1f / %5.1f s %5.1f / %5.1f s "
                        "%5.1f / %5.1f s\n",
                        name_of(m), r.makespan_to_ip, r.makespan, percentile(boot, 0.5),
                        percentile(boot, 0.95), percentile(ssh, 0.5), percentile(ssh, 0.95),
                        percentile(admin, 0.5), percentile(admin, 0.95), percentile(total, 0.5),
                        percentile(total, 0.95));
            std::fflush(stdout);
        }
        summary << n << ',' << makespans[0] << ',' << makespans[1] << ',' << makespans[2] << '\n';
        std::printf("admission / sequential makespan: %.2f; unbounded / sequential: %.2f\n\n",
                    makespans[0] / makespans[2], makespans[1] / makespans[2]);
    }
    return 0;
} catch (const std::exception& e) {
    std::cerr << "provision_benchmark: " << e.what() << "\n";
    return 1;
}
