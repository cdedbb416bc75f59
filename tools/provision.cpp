// anweddol-provision: boots N containers at once, hands each over to fresh
// client credentials, checks that they work, and prints a table with the
// time each phase took. Destroys them when it exits, unless --keep; Ctrl-C
// destroys every one of them before it exits, and libvirt destroys them if
// it is killed (autodestroy), except with --keep. With --host, places them
// across many libvirt hosts through a hypervisor_pool.
//
// Exit status: 0 when every container was administered; 1 when one was not,
// no --host was up, or an error stopped it; 2 for a usage error (an option
// it does not know or a value it refuses, an ISO or a key file it cannot
// read), before anything connects; 130 after Ctrl-C (or SIGTERM).
//
// Here, the run; provision_settings.cpp reads and checks the command line
// (the set-up), provision_report.cpp prints the report at the end.
#include "provision_report.hpp"
#include "provision_settings.hpp"

#include <anweddol/container_pool.hpp>
#include <anweddol/hypervisor_pool.hpp>
#include <anweddol/provisioning.hpp>
#include <anweddol/runtime.hpp>
#include <anweddol/secret.hpp>
#include <anweddol/ssh_jump.hpp>
#include <anweddol/virtualization_interface.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

namespace asio = boost::asio;
using namespace std::chrono_literals;
using namespace provision_tool;

namespace {

std::string pool_line(const anweddol::container_pool_stats& p) {
    return "pool: " + std::to_string(p.ready) + " of " + std::to_string(p.target) + " ready, " +
           std::to_string(p.booting) + " booting, " + std::to_string(p.waiting) +
           " takes waiting (" + std::to_string(p.boots_started) + " boots, " +
           std::to_string(p.boots_failed) + " failed)";
}

// Live progress: redrawn in place on a terminal, one line per event elsewhere.
class progress_display {
public:
    progress_display(bool terminal, std::ostream& out)
        : terminal_(terminal)
        , out_(out) {}

    void event(const slot& s, std::size_t index) {
        if (!terminal_)
            out_ << "[" << fixed(seconds(s.elapsed), 1) << " s] container " << index + 1 << " "
                 << s.name(index) << ": " << anweddol::to_string(s.phase) << "\n"
                 << std::flush;
    }

    void pool_event(const anweddol::container_pool_event& e,
                    std::chrono::steady_clock::duration elapsed) {
        if (!terminal_)
            out_ << "[" << fixed(seconds(elapsed), 1) << " s] pool: " << e.uuid << " "
                 << anweddol::to_string(e.type) << (e.message.empty() ? "" : ": " + e.message)
                 << "\n"
                 << std::flush;
    }

    void host_event(const anweddol::hypervisor_pool_event& e,
                    std::chrono::steady_clock::duration elapsed) {
        if (!terminal_)
            out_ << "[" << fixed(seconds(elapsed), 1) << " s] host " << e.host << ": "
                 << anweddol::to_string(e.type)
                 << (e.message.empty() ? e.uuid.empty() ? "" : " " + e.uuid : ": " + e.message)
                 << "\n"
                 << std::flush;
    }

    void redraw(const std::vector<std::unique_ptr<slot>>& slots,
                std::chrono::steady_clock::time_point began,
                const anweddol::container_pool* pool = nullptr) {
        if (!terminal_)
            return;
        if (drawn_ > 0)
            out_ << "\x1b[" << drawn_ << "F"; // back to the first line drawn
        const double now = seconds(std::chrono::steady_clock::now() - began);
        if (pool)
            out_ << "\x1b[2K  " << pool_line(pool->get_stats()) << "\n";
        for (std::size_t i = 0; i < slots.size(); ++i) {
            const auto& s = slots[i];
            const std::string state{s->done      ? (s->error.empty() ? "ready" : "FAILED")
                                    : s->waiting ? "not yet"
                                    : pool       ? "taking"
                                                 : anweddol::to_string(s->phase)};
            out_ << "\x1b[2K  " << pad(s->name(i), 36) << "  " << pad(state, 10) << " "
                 << fixed(s->done ? seconds(s->elapsed) : now, 1) << " s\n";
        }
        out_ << std::flush;
        drawn_ = slots.size() + (pool ? 1 : 0);
    }

private:
    static std::string fixed(double value, int decimals) {
        char text[32];
        std::snprintf(text, sizeof text, "%.*f", decimals, value);
        return text;
    }
    static std::string pad(std::string text, std::size_t width) {
        text.resize(std::max(width, text.size()), ' ');
        return text;
    }

    bool terminal_;
    std::ostream& out_;
    std::size_t drawn_ = 0;
};

// One run: the containers provisioned at once (or taken from the pool),
// shown live, until each is ready or failed; then the report, and the
// destroys. The members are declared in the order of their lifetimes: the
// hosts outlive the containers and the pool.
class provisioning_run {
public:
    explicit provisioning_run(const settings& s);

    // With --host: waits up to 30 s for every host to connect, prints each
    // one's state, and says whether one is up.
    bool connect_hosts();
    // Starts every provisioning (or the pool, and its takes once it is full).
    void start();
    // Returns once every container is destroyed (or kept): the exit status.
    int wait();

private:
    void limit_boots();
    anweddol::hypervisor_pool_options hypervisor_options();
    anweddol::provisioning_options
    provisioning(std::function<void(const anweddol::provisioning_event&)> on_progress);
    void make_slots();
    void start_pool();
    void provision_each();
    std::function<void(boost::system::error_code, anweddol::provisioned_container)>
    completion(std::size_t i);
    void on_done(std::size_t i, boost::system::error_code error,
                 anweddol::provisioned_container& result);
    void take_all();
    void interrupt();
    void tick();
    void finish();
    void release_containers();
    void shutdown_hosts();

    const settings& s_;
    asio::io_context context_{1};
    anweddol::virtualization_interface interface_{context_.get_executor()};
    const bool terminal_;
    std::ostream& out_; // the live display's: stderr with --json
    progress_display display_;
    std::chrono::steady_clock::time_point began_ = std::chrono::steady_clock::now();
    // With --host: the hosts, and where each container was placed (for
    // those that fail, which have no provisioned_container to say it).
    std::optional<anweddol::hypervisor_pool> hypervisors_;
    std::map<std::string, std::string> placed_on_; // uuid -> host
    anweddol::container_instance::options container_options_;
    std::vector<std::unique_ptr<slot>> slots_;
    std::optional<anweddol::container_pool> pool_;
    std::optional<double> warm_up_; // seconds the pool took to fill
    std::size_t finished_ = 0;
    bool interrupted_ = false;
    asio::steady_timer ticker_{context_};
    std::optional<asio::signal_set> signals_; // once provisioning starts
};

provisioning_run::provisioning_run(const settings& s)
    : s_(s)
    , terminal_(!s.json && ::isatty(STDOUT_FILENO))
    , out_(s.json ? std::cerr : std::cout)
    , display_(terminal_, out_) {
    limit_boots();
    // Kept containers must outlive this process: not tied to its
    // connection. All others die with it, even on SIGKILL.
    container_options_.autodestroy = !s.keep;
    container_options_.reserve_address = !s.dynamic_address;
    if (!s.owner.empty())
        container_options_.owner = s.owner;
}

void provisioning_run::limit_boots() {
    auto& admission = anweddol::runtime::of(context_.get_executor()).admission();
    if (s_.max_boots == "unbounded")
        admission.set_unbounded();
    else if (s_.max_boots != "auto")
        admission.set_limit(std::stoul(s_.max_boots));
}

anweddol::hypervisor_pool_options provisioning_run::hypervisor_options() {
    anweddol::hypervisor_pool_options options;
    for (const auto& h : s_.hosts) {
        anweddol::hypervisor_host_options host;
        host.name = h.name;
        host.uri = h.uri;
        if (s_.max_boots != "auto")
            host.max_cpu_heavy_boots = std::stoul(s_.max_boots);
        if (h.jump_address) {
            anweddol::ssh_jump_options jump;
            jump.host = *h.jump_address;
            jump.port = h.jump_port;
            jump.username = s_.jump_user;
            jump.private_key_file = s_.jump_key;
            jump.host_keys = anweddol::host_key_policy::known_hosts;
            jump.known_hosts_file = s_.known_hosts;
            host.jump = std::move(jump);
        }
        options.hosts.push_back(std::move(host));
    }
    options.on_event = [this](const anweddol::hypervisor_pool_event& e) {
        if (e.type == anweddol::hypervisor_pool_event_type::placed)
            placed_on_[e.uuid] = e.host;
        display_.host_event(e, std::chrono::steady_clock::now() - began_);
    };
    return options;
}

bool provisioning_run::connect_hosts() {
    if (s_.hosts.empty())
        return true;
    try {
        hypervisors_.emplace(context_.get_executor(), hypervisor_options());
    } catch (const anweddol::error_with_diagnostics& e) {
        // A key file that is no OpenSSH private key, and the like.
        if (e.code() != anweddol::errc::invalid_argument)
            throw;
        bad_usage(e.get_diagnostics().full_message());
    }
    // Every host up or down (not still connecting), for up to 30 s.
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    const auto connecting = [&] {
        const auto hosts = hypervisors_->get_hosts();
        return std::any_of(hosts.begin(), hosts.end(), [](const auto& h) {
            return h.state == anweddol::hypervisor_host_state::connecting;
        });
    };
    while (connecting() && std::chrono::steady_clock::now() < deadline) {
        context_.run_for(100ms);
        if (context_.stopped())
            context_.restart();
    }
    const auto hosts = hypervisors_->get_hosts();
    if (!s_.json)
        for (const auto& h : hosts)
            std::cerr << host_line(h) << "\n";
    if (std::any_of(hosts.begin(), hosts.end(),
                    [](const auto& h) { return h.state == anweddol::hypervisor_host_state::up; }))
        return true;
    std::cerr << "anweddol-provision: no host is up (" << hosts.size()
              << " given), nothing was provisioned";
    if (s_.json) // the lines above were not printed
        for (const auto& h : hosts)
            std::cerr << "\n  " << host_line(h);
    std::cerr << "\n";
    return false;
}

// Every container's provisioning options.
anweddol::provisioning_options provisioning_run::provisioning(
    std::function<void(const anweddol::provisioning_event&)> on_progress) {
    anweddol::provisioning_options options;
    options.driver_uri = s_.uri;
    options.hypervisors = hypervisors_ ? &*hypervisors_ : nullptr;
    options.domain_type = s_.domain_type; // empty: kvm where the host has it
    options.client_port = s_.client_port;
    options.on_progress = std::move(on_progress);
    return options;
}

void provisioning_run::start() {
    make_slots();
    began_ = std::chrono::steady_clock::now();
    if (s_.pool)
        start_pool();
    signals_.emplace(context_, SIGINT, SIGTERM);
    if (!pool_)
        provision_each();
    // Ctrl-C: cancel every provisioning; each destroys its domain as it ends.
    signals_->async_wait([this](boost::system::error_code ec, int) {
        if (!ec)
            interrupt();
    });
    tick();
}

void provisioning_run::make_slots() {
    for (unsigned i = 0; i < s_.count; ++i) {
        slots_.push_back(std::make_unique<slot>());
        if (s_.pool)
            continue; // the pool makes the containers
        auto container = interface_.create_container(s_.iso, false);
        container->set_memory(s_.memory);
        container->set_vcpus(s_.vcpus);
        container->set_options(container_options_);
        slots_.back()->container = container;
    }
}

void provisioning_run::start_pool() {
    anweddol::container_pool_options options;
    options.size = *s_.pool;
    options.iso_path = s_.iso;
    options.memory = s_.memory;
    options.vcpus = s_.vcpus;
    options.container = container_options_;
    options.provisioning = provisioning(nullptr);
    options.on_event = [this](const anweddol::container_pool_event& e) {
        display_.pool_event(e, std::chrono::steady_clock::now() - began_);
    };
    pool_.emplace(context_.get_executor(), std::move(options));
    for (auto& slot : slots_)
        slot->waiting = true;
}

void provisioning_run::provision_each() {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        slot& current = *slots_[i];
        auto options = provisioning([this, &current, i](const anweddol::provisioning_event& e) {
            current.phase = e.phase;
            current.elapsed = e.elapsed;
            display_.event(current, i);
        });
        // A plain callback, with the slot that Ctrl-C cancels through.
        anweddol::provision(current.container, std::move(options), current.diagnostics,
                            asio::bind_cancellation_slot(current.cancel.slot(), completion(i)));
    }
}

// What ends one provisioning or take.
std::function<void(boost::system::error_code, anweddol::provisioned_container)>
provisioning_run::completion(std::size_t i) {
    return [this, i](boost::system::error_code error, anweddol::provisioned_container result) {
        on_done(i, error, result);
    };
}

void provisioning_run::on_done(std::size_t i, boost::system::error_code error,
                               anweddol::provisioned_container& result) {
    slot& done = *slots_[i];
    done.done = true;
    done.elapsed = std::chrono::steady_clock::now() - began_;
    if (error) {
        done.error = done.diagnostics.full_message();
        done.error += (done.error.empty() ? "" : ": ") + error.message();
        if (!terminal_)
            out_ << "container " << i + 1 << " failed: " << done.error << "\n";
    } else {
        done.container = result.container;
        done.host = result.host;
        done.result = std::move(result);
        // A short password stays behind in the moved-from string.
        anweddol::wipe(result.password);
    }
    if (done.host.empty() && done.container) {
        const auto placed = placed_on_.find(done.container->get_uuid());
        if (placed != placed_on_.end())
            done.host = placed->second;
    }
    if (++finished_ == slots_.size())
        finish();
}

// With a pool: every take at once, once it is full (or once a boot failed:
// the takes then get the failures the pool meets). The makespan counts
// from there.
void provisioning_run::take_all() {
    warm_up_ = seconds(std::chrono::steady_clock::now() - began_);
    began_ = std::chrono::steady_clock::now();
    if (!terminal_)
        out_ << "the pool is warm after " << *warm_up_ << " s: taking " << slots_.size() << "\n";
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        slots_[i]->waiting = false;
        pool_->take(slots_[i]->diagnostics,
                    asio::bind_cancellation_slot(slots_[i]->cancel.slot(), completion(i)));
    }
}

void provisioning_run::interrupt() {
    interrupted_ = true;
    out_ << "\ninterrupted: destroying every container\n";
    if (pool_ && !warm_up_) {
        // Nothing taken yet: the pool's own containers are all there is.
        ticker_.cancel();
        pool_->shutdown([this](boost::system::error_code) { shutdown_hosts(); });
        return;
    }
    for (auto& slot : slots_)
        slot->cancel.emit(asio::cancellation_type::terminal);
}

// The live display's redraw, and the pool's takes once it is full.
void provisioning_run::tick() {
    if (pool_ && !warm_up_ && !interrupted_) {
        const auto stats = pool_->get_stats();
        if (stats.ready >= stats.target || stats.boots_failed > 0)
            take_all();
    }
    display_.redraw(slots_, began_, pool_ ? &*pool_ : nullptr);
    ticker_.expires_after(200ms);
    ticker_.async_wait([this](boost::system::error_code ec) {
        if (!ec)
            tick();
    });
}

// Once every provisioning ended: the report, then the destroys. The
// io_context then runs out of work by itself: the last container gone
// closes libvirt's connection.
void provisioning_run::finish() {
    ticker_.cancel();   // the table below must not be redrawn over
    signals_->cancel(); // from here on, Ctrl-C waits for the destroys
    display_.redraw(slots_, began_, pool_ ? &*pool_ : nullptr);
    run_outcome outcome;
    outcome.makespan = seconds(std::chrono::steady_clock::now() - began_);
    outcome.kept = s_.keep && !interrupted_;
    outcome.pool = pool_ ? &*pool_ : nullptr;
    outcome.warm_up = warm_up_.value_or(0.0);
    outcome.hypervisors = hypervisors_ ? &*hypervisors_ : nullptr;
    if (s_.json)
        print_json(slots_, s_, outcome.makespan, outcome.hypervisors);
    else
        print_text_report(slots_, s_, outcome);
    for (std::size_t i = 0; i < slots_.size(); ++i)
        if (!slots_[i]->result)
            print_console(*slots_[i], i, out_);
    release_containers();
}

// Destroys what runs unless asked to keep it (never after Ctrl-C), and the
// pool's spare ones. The hosts' connections go last: the destroys need them.
void provisioning_run::release_containers() {
    auto pending = std::make_shared<std::size_t>(1);
    const auto release = [this, pending] {
        if (--*pending == 0)
            shutdown_hosts();
    };
    for (auto& slot : slots_) {
        if (!slot->container)
            continue;
        if (s_.keep && !interrupted_)
            slot->container->set_domain_descriptor(nullptr); // left running, forgotten
        else if (slot->container->is_domain_running()) {
            ++*pending;
            asio::co_spawn(context_, slot->container->stop_domain(true),
                           [release](std::exception_ptr) { release(); });
        }
    }
    if (pool_) {
        ++*pending;
        pool_->shutdown([release](boost::system::error_code) { release(); });
    }
    release();
}

// With --host, once nothing needs them: closes the hosts' connections and
// jumps, whose reconnection timers would keep the io_context busy.
void provisioning_run::shutdown_hosts() {
    if (hypervisors_)
        hypervisors_->shutdown(asio::detached);
}

int provisioning_run::wait() {
    context_.run(); // returns once every container is destroyed (or kept)
    for (auto& slot : slots_)
        if (slot->result)
            anweddol::wipe(slot->result->password);
    const bool all_ready = std::all_of(slots_.begin(), slots_.end(),
                                       [](const auto& x) { return x->result.has_value(); });
    return interrupted_ ? 130 : all_ready ? 0 : 1;
}

} // namespace

// The set-up (parse), the run, and the report (finish, at the run's end).
int main(int argc, char** argv) try {
    const settings s = parse(argc, argv);
    provisioning_run run(s);
    if (!run.connect_hosts())
        return 1;
    run.start();
    return run.wait();
} catch (const std::exception& e) {
    std::cerr << "anweddol-provision: " << e.what() << "\n";
    return 1;
}
