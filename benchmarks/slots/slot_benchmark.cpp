// Restore against boot: the time from a container's start to a logged-in
// endpoint, and the CPU its QEMU used until then, for containers restored
// from a snapshot slot and for containers booted cold, side by side in one
// run (alternating, so that the machine's noise spreads over both). Runs
// in the sandbox (scripts/sandbox.sh exec).
//
//   slot_benchmark --iso PATH [--rounds 5] [--memory 512] [--domain-type qemu]
//
// The slot's first start (its one cold boot to the barrier, and the save)
// is reported apart: every later start restores. Prints p50/p95 of each and
// the ratios restore / boot; also the bridge's STP setting, which a restore
// pays for (see snapshot_slot::get_network_note()).
#include "../common/statistics.hpp"

#include <anweddol/detail/libvirt/domain_ops.hpp>
#include <anweddol/detail/libvirt/snapshot_image.hpp>
#include <anweddol/provisioning.hpp>
#include <anweddol/snapshot_slot.hpp>

#include <libvirt/libvirt.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asio = boost::asio;
using clock_type = std::chrono::steady_clock;
using anweddol::bench::percentile;
using anweddol::bench::seconds;

namespace {

struct settings {
    std::string iso;
    int rounds = 5;
    unsigned memory = 512;
    std::string domain_type = "qemu";
};

struct sample {
    double to_login = 0; // seconds from the start to a logged-in endpoint
    double qemu_cpu = 0; // seconds of CPU its QEMU used until then
    double define = 0;   // checks, and the domain's creation or restore
    double to_ip = 0;    // from there to its address
    double to_ssh = 0;   // from there to the endpoint logged in
};

settings parse(int argc, char** argv) {
    settings s;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                throw std::invalid_argument(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--iso")
            s.iso = value();
        else if (arg == "--rounds")
            s.rounds = std::stoi(value());
        else if (arg == "--memory")
            s.memory = static_cast<unsigned>(std::stoul(value()));
        else if (arg == "--domain-type")
            s.domain_type = value();
        else
            throw std::invalid_argument("unknown option " + arg);
    }
    if (s.iso.empty() || s.rounds < 1)
        throw std::invalid_argument("usage: slot_benchmark --iso PATH [--rounds N >= 1] "
                                    "[--memory MIB] [--domain-type TYPE]");
    return s;
}

double qemu_cpu_seconds(const std::string& uuid) {
    virConnectPtr c = virConnectOpen("qemu:///system");
    if (!c)
        return -1;
    const auto used = anweddol::detail::domain_cpu_time(c, uuid);
    virConnectClose(c);
    return used ? std::chrono::duration<double>(*used).count() : -1;
}

// One start to a logged-in endpoint, then a stop.
asio::awaitable<sample> run_one(const settings& s,
                                const std::shared_ptr<anweddol::snapshot_slot>& slot) {
    auto executor = co_await asio::this_coro::executor;
    auto container = std::make_shared<anweddol::container_instance>(
        executor, s.iso, slot ? slot->get_uuid() : std::string(), s.memory, 1);
    auto options = container->get_options();
    options.domain_type = s.domain_type;
    options.slot = slot;
    container->set_options(options);
    anweddol::provisioning_options provisioning;
    provisioning.domain_type = s.domain_type;

    sample result;
    const auto began = clock_type::now();
    auto booting = anweddol::detail::boot_and_log_in(container, provisioning);
    auto booted = co_await std::move(booting);
    result.to_login = seconds(clock_type::now() - began);
    result.qemu_cpu = qemu_cpu_seconds(container->get_uuid());
    result.define = seconds(booted.partial.timings.define);
    result.to_ip = seconds(booted.partial.timings.boot_to_ip);
    result.to_ssh = seconds(booted.partial.timings.ip_to_ssh);
    auto closing = booted.endpoint->close_shell();
    co_await std::move(closing);
    auto stopping = container->stop_domain(anweddol::stop_options{anweddol::stop_mode::destroy});
    co_await std::move(stopping);
    co_return result;
}

void report(const char* what, const std::vector<sample>& samples) {
    std::vector<double> login, cpu;
    for (const auto& s : samples) {
        login.push_back(s.to_login);
        cpu.push_back(s.qemu_cpu);
    }
    std::printf("%-26s n=%zu  to login p50 %6.2f s  p95 %6.2f s   QEMU CPU p50 %5.2f s\n", what,
                samples.size(), percentile(login, 0.5), percentile(login, 0.95),
                percentile(cpu, 0.5));
}

asio::awaitable<void> run_benchmark(const settings& s) {
    auto slot = std::make_shared<anweddol::snapshot_slot>(co_await asio::this_coro::executor);
    const auto stp = anweddol::detail::read_local_bridge_stp("virbr0");
    const std::string stp_text =
        !stp      ? "STP unknown (not a local bridge)"
        : stp->on ? "STP on, forward delay " + std::to_string(stp->forward_delay.count()) + " ms"
                  : "STP off";
    std::printf("bridge virbr0: %s\n", stp_text.c_str());

    auto first_start = run_one(s, slot);
    const auto first = co_await std::move(first_start);
    std::printf("slot's first start (boot to the barrier, save, restore): %.2f s\n",
                first.to_login);
    std::vector<sample> restored, booted;
    for (int round = 0; round < s.rounds; ++round) {
        auto booting = run_one(s, nullptr);
        booted.push_back(co_await std::move(booting));
        auto restoring = run_one(s, slot);
        restored.push_back(co_await std::move(restoring));
        for (const auto* kind : {"boot", "restore"}) {
            const auto& x = kind[0] == 'b' ? booted.back() : restored.back();
            std::printf("round %d %-7s: to login %5.2f s (create %.2f, to address %.2f, to SSH "
                        "%.2f), QEMU CPU %.2f s\n",
                        round + 1, kind, x.to_login, x.define, x.to_ip, x.to_ssh, x.qemu_cpu);
        }
        std::fflush(stdout);
    }
    report("cold boot", booted);
    report("restore from a slot", restored);
    std::vector<double> b, r, bc, rc;
    for (const auto& x : booted) {
        b.push_back(x.to_login);
        bc.push_back(x.qemu_cpu);
    }
    for (const auto& x : restored) {
        r.push_back(x.to_login);
        rc.push_back(x.qemu_cpu);
    }
    std::printf("ratio restore / boot: to login p50 %.3f, QEMU CPU p50 %.3f\n",
                percentile(r, 0.5) / percentile(b, 0.5), percentile(rc, 0.5) / percentile(bc, 0.5));
    if (const auto note = slot->get_network_note(); !note.empty())
        std::printf("note: %s\n", note.c_str());
}

} // namespace

int main(int argc, char** argv) try {
    const settings s = parse(argc, argv);
    asio::io_context io;
    std::exception_ptr failure;
    asio::co_spawn(io, run_benchmark(s), [&](std::exception_ptr e) {
        failure = e;
        io.stop();
    });
    io.run();
    if (failure)
        std::rethrow_exception(failure);
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "slot_benchmark: %s\n", e.what());
    return 1;
}
