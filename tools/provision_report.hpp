// anweddol-provision's report: each container's state, and what is printed
// of it at the end, as a table or as JSON.
#pragma once

#include "provision_settings.hpp"

#include <anweddol/container_instance.hpp>
#include <anweddol/container_pool.hpp>
#include <anweddol/hypervisor_pool.hpp>
#include <anweddol/provisioning.hpp>

#include <boost/asio/cancellation_signal.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace provision_tool {

// A duration in seconds, as the report prints them.
inline double seconds(std::chrono::steady_clock::duration d) {
    return std::chrono::duration<double>(d).count();
}

// One container's state, for the live display and the final report.
struct slot {
    std::shared_ptr<anweddol::container_instance> container;
    anweddol::provisioning_phase phase = anweddol::provisioning_phase::waiting_for_boot_slot;
    std::chrono::steady_clock::duration elapsed{};
    std::optional<anweddol::provisioned_container> result;
    std::string error;
    anweddol::diagnostics diagnostics; ///< libvirt's or libssh's own words on a failure
    bool done = false;
    bool waiting = false; ///< a take not started yet: the pool is warming up
    std::string host;     ///< with --host: where it was placed, once known
    boost::asio::cancellation_signal cancel;

    // Its UUID; a take from a pool has none until a container is handed to it.
    std::string name(std::size_t index) const {
        return container ? container->get_uuid() : "take " + std::to_string(index + 1);
    }
};

// What a failed container's guest wrote on its console: the last lines.
void print_console(const slot& failed, std::size_t index, std::ostream& out);

// Each host's state when provisioning began or ends.
std::string host_line(const anweddol::hypervisor_host_status& h);

// What the report says besides each container's own line.
struct run_outcome {
    double makespan = 0; ///< seconds, from the first take with a pool
    bool kept = false;   ///< left running: --keep, and not interrupted
    const anweddol::container_pool* pool = nullptr;
    double warm_up = 0; ///< seconds the pool took to fill
    const anweddol::hypervisor_pool* hypervisors = nullptr;
};

// The report as text: the table, then a few lines on the whole run.
void print_text_report(const std::vector<std::unique_ptr<slot>>& slots, const settings& s,
                       const run_outcome& outcome);

// The report as JSON, on standard output (the live display was on standard
// error): the passwords in it are wiped once printed.
void print_json(const std::vector<std::unique_ptr<slot>>& slots, const settings& s, double makespan,
                const anweddol::hypervisor_pool* hypervisors);

} // namespace provision_tool
