// anweddol-provision's report: what is printed of each container at the
// end, as a table or as JSON.
#include "provision_report.hpp"

#include <anweddol/secret.hpp>
#include <anweddol/ssh_jump.hpp>

#include <boost/json/array.hpp>
#include <boost/json/memory_resource.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/storage_ptr.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <new>
#include <span>
#include <string_view>

namespace provision_tool {
namespace {

// How the guest's SSH host key was checked, in a few words.
std::string host_key_check(const anweddol::provisioned_container& r) {
    switch (r.host_keys) {
    case anweddol::host_key_policy::pinned_fingerprints:
        return "pinned from the console (" + std::to_string(r.host_key_fingerprints.size()) +
               " keys)";
    case anweddol::host_key_policy::accept_new:
        return "accepted on first use (the console printed none)";
    default:
        return "checked as the shell options say";
    }
}

// The ssh -J argument that reaches a container through its host's jump.
std::string jump_argument(const anweddol::ssh_jump& jump) {
    const auto& o = jump.get_options();
    if (o.port == 22)
        return o.username + "@" + o.host;
    return jump.name(); // user@host:port, an IPv6 host in brackets
}

void print_table(const std::vector<std::unique_ptr<slot>>& slots, const settings& s) {
    // With --host, a host column after the uuid.
    int host_width = 0;
    if (!s.hosts.empty()) {
        host_width = 4;
        for (const auto& h : s.hosts)
            host_width = std::max(host_width, static_cast<int>(h.name.size()));
    }
    const auto host_cell = [host_width](std::string host) {
        if (!host_width)
            return std::string();
        if (host.empty())
            host = "-";
        host.resize(static_cast<std::size_t>(host_width) + 2, ' ');
        return host;
    };
    std::printf("\n%-36s  %s%-15s  %5s  %-10s  %-12s  %7s %8s %8s %7s %7s %7s\n", "uuid",
                host_cell(host_width ? "host" : "").c_str(), "ip", "port", "username", "password",
                "define", "boot->ip", "ip->ssh", "admin", "verify", "total");
    for (std::size_t i = 0; i < slots.size(); ++i) {
        const auto& slot = slots[i];
        if (!slot->result) {
            std::printf("%-36s  %sfailed: %s\n", slot->name(i).c_str(),
                        host_cell(slot->host).c_str(), slot->error.c_str());
            continue;
        }
        const auto& r = *slot->result;
        const auto& t = r.timings;
        // Not copied: a copy would be one more to wipe.
        const char* password = s.show_passwords ? r.password.c_str() : "************";
        std::printf(
            "%-36s  %s%-15s  %5u  %-10s  %-12s  %6.1fs %7.1fs %7.1fs %6.1fs %6.1fs %6.1fs\n",
            slot->name(i).c_str(), host_cell(r.host).c_str(), r.ip.c_str(), r.port,
            r.username.c_str(), password, seconds(t.define), seconds(t.boot_to_ip),
            seconds(t.ip_to_ssh), seconds(t.administration), seconds(t.verification),
            seconds(t.total));
    }
    // Behind a jump, the guest's address means nothing from the client's
    // side: say how to get there.
    bool header = false;
    for (const auto& slot : slots) {
        if (!slot->result || !slot->result->jump)
            continue;
        if (!header)
            std::printf("\nbehind their host's SSH jump, reach them with:\n");
        header = true;
        const auto& r = *slot->result;
        std::printf("  ssh -J %s -p %u %s@%s\n", jump_argument(*r.jump).c_str(), r.port,
                    r.username.c_str(), r.ip.c_str());
    }
}

// The one-line summary: containers handed out per host.
void print_host_summary(const std::vector<std::unique_ptr<slot>>& slots,
                        const anweddol::hypervisor_pool& hypervisors) {
    std::string line = "per host:";
    const auto hosts = hypervisors.get_hosts();
    for (std::size_t i = 0; i < hosts.size(); ++i) {
        const auto& h = hosts[i];
        std::size_t ready = 0;
        std::size_t failed = 0;
        for (const auto& slot : slots)
            if (slot->host == h.name)
                ++(slot->result ? ready : failed);
        line += std::string(i ? ";" : "") + " " + h.name + " " + std::to_string(ready) +
                (ready == 1 ? " container" : " containers") +
                (failed ? " (" + std::to_string(failed) + " failed)" : "") + ", " +
                std::to_string(h.placements) + (h.placements == 1 ? " boot" : " boots") +
                " placed, " + std::string(anweddol::to_string(h.state));
    }
    std::printf("%s\n", line.c_str());
}

// The JSON report's memory: with --show-passwords the report holds the
// passwords, so every block it frees is wiped first.
class wiping_json_resource final : public boost::json::memory_resource {
    void* do_allocate(std::size_t size, std::size_t alignment) override {
        return ::operator new(size, std::align_val_t(alignment));
    }
    void do_deallocate(void* block, std::size_t size, std::size_t alignment) override {
        anweddol::wipe(std::span(static_cast<std::byte*>(block), size));
        ::operator delete(block, size, std::align_val_t(alignment));
    }
    bool do_is_equal(const boost::json::memory_resource& other) const noexcept override {
        return this == &other;
    }
};

} // namespace

// What a failed container's guest wrote on its console: the last lines.
void print_console(const slot& failed, std::size_t index, std::ostream& out) {
    const std::string& console = failed.diagnostics.guest_console();
    if (console.empty())
        return;
    std::vector<std::string_view> lines;
    for (std::size_t at = 0; at < console.size();) {
        const auto end = std::min(console.find('\n', at), console.size());
        lines.emplace_back(console.data() + at, end - at);
        at = end + 1;
    }
    constexpr std::size_t shown = 25;
    const std::size_t first = lines.size() > shown ? lines.size() - shown : 0;
    out << "container " << index + 1 << " " << failed.name(index)
        << ": the last lines of its console:\n";
    for (std::size_t i = first; i < lines.size(); ++i)
        out << "  | " << lines[i] << "\n";
    out << std::flush;
}

// Each host's state when provisioning began or ends.
std::string host_line(const anweddol::hypervisor_host_status& h) {
    return "host " + h.name + " (" + h.uri + "): " + std::string(anweddol::to_string(h.state)) +
           (h.last_error.empty() ? "" : ": " + h.last_error);
}

void print_json(const std::vector<std::unique_ptr<slot>>& slots, const settings& s, double makespan,
                const anweddol::hypervisor_pool* hypervisors) {
    wiping_json_resource memory;
    const boost::json::storage_ptr storage(&memory);
    boost::json::array containers(storage);
    for (std::size_t i = 0; i < slots.size(); ++i) {
        const auto& slot = slots[i];
        boost::json::object entry(storage);
        entry["uuid"] = slot->name(i);
        if (hypervisors && !slot->host.empty())
            entry["host"] = slot->host;
        if (slot->result) {
            const auto& r = *slot->result;
            entry["ip"] = r.ip;
            entry["port"] = r.port;
            entry["username"] = r.username;
            entry["password"] = s.show_passwords ? std::string_view(r.password) : "************";
            entry["host_keys"] = host_key_check(r);
            if (r.jump)
                entry["jump"] = r.jump->name();
            if (s.pool)
                entry["from_pool"] = r.from_pool;
            entry["timings"] = {{"queued", seconds(r.timings.queued)},
                                {"define", seconds(r.timings.define)},
                                {"boot_to_ip", seconds(r.timings.boot_to_ip)},
                                {"ip_to_ssh", seconds(r.timings.ip_to_ssh)},
                                {"administration", seconds(r.timings.administration)},
                                {"verification", seconds(r.timings.verification)},
                                {"pool_wait", seconds(r.timings.pool_wait)},
                                {"total", seconds(r.timings.total)}};
        } else {
            entry["error"] = slot->error;
        }
        containers.push_back(std::move(entry));
    }
    boost::json::object report(
        {{"containers", std::move(containers)}, {"makespan", makespan}, {"kept", s.keep}}, storage);
    if (hypervisors) {
        boost::json::array hosts;
        for (const auto& h : hypervisors->get_hosts()) {
            std::size_t ready = 0;
            for (const auto& slot : slots)
                ready += slot->result && slot->host == h.name;
            boost::json::object host{{"name", h.name},
                                     {"uri", h.uri},
                                     {"state", anweddol::to_string(h.state)},
                                     {"containers", ready},
                                     {"placements", h.placements}};
            if (!h.last_error.empty())
                host["last_error"] = h.last_error;
            hosts.push_back(std::move(host));
        }
        report["hosts"] = std::move(hosts);
    }
    std::string text = boost::json::serialize(report);
    std::cout << text << "\n";
    anweddol::wipe(text);
}

// The report as text: the table, then a few lines on the whole run.
void print_text_report(const std::vector<std::unique_ptr<slot>>& slots, const settings& s,
                       const run_outcome& outcome) {
    print_table(slots, s);
    const auto administered = static_cast<std::size_t>(
        std::count_if(slots.begin(), slots.end(), [](const auto& x) { return x->result; }));
    std::printf("\n%zu of %zu administered in %.1f s (makespan%s)%s\n", administered, slots.size(),
                outcome.makespan, outcome.pool ? ", from the first take" : "",
                outcome.kept ? "; kept running" : "; destroying them");
    if (outcome.pool) {
        const auto stats = outcome.pool->get_stats();
        std::printf("the pool of %u warmed up in %.1f s; %llu handed out at once, %llu "
                    "after waiting for a boot\n",
                    *s.pool, outcome.warm_up, static_cast<unsigned long long>(stats.taken_warm),
                    static_cast<unsigned long long>(stats.taken_after_wait));
    }
    for (const auto& slot : slots)
        if (slot->result) {
            std::printf("host keys %s\n", host_key_check(*slot->result).c_str());
            break;
        }
    for (const auto& slot : slots)
        if (slot->container && !slot->container->get_domain_type().empty()) {
            std::printf("domain type %s (%s)\n", slot->container->get_domain_type().c_str(),
                        slot->container->get_domain_type_choice().c_str());
            break;
        }
    if (outcome.hypervisors)
        print_host_summary(slots, *outcome.hypervisors);
}

} // namespace provision_tool
