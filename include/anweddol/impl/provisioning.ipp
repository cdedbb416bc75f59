//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_PROVISIONING_IPP
#define ANWEDDOL_IMPL_PROVISIONING_IPP

#include <anweddol/detail/console_announcement.hpp>
#include <anweddol/detail/credentials.hpp>
#include <anweddol/detail/ssh/setup_command.hpp>
#include <anweddol/error.hpp>
#include <anweddol/hypervisor_pool.hpp>
#include <anweddol/provisioning.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <array>
#include <exception>
#include <optional>

namespace anweddol {

ANWEDDOL_DECL std::string_view to_string(provisioning_phase phase) noexcept {
    switch (phase) {
    case provisioning_phase::waiting_for_boot_slot:
        return "queued";
    case provisioning_phase::creating_domain:
        return "define";
    case provisioning_phase::waiting_for_address:
        return "boot";
    case provisioning_phase::waiting_for_ssh:
        return "ssh";
    case provisioning_phase::administering:
        return "administer";
    case provisioning_phase::verifying:
        return "verify";
    case provisioning_phase::ready:
        return "ready";
    }
    return "unknown";
}

namespace provisioning_impl {

// When each phase began, to report it and to time it.
struct phase_clock {
    using clock = std::chrono::steady_clock;
    clock::time_point began = clock::now();
    std::array<std::optional<clock::time_point>, 7> starts;
    std::string uuid;
    const std::function<void(const provisioning_event&)>* on_progress = nullptr;

    void enter(provisioning_phase phase, clock::time_point at = clock::now()) {
        starts[static_cast<std::size_t>(phase)] = at;
        if (on_progress && *on_progress)
            (*on_progress)({uuid, phase, at - began});
    }
    // From the start of `from` to the start of `to` (zero when either is missing).
    clock::duration between(provisioning_phase from, provisioning_phase to) const {
        const auto& a = starts[static_cast<std::size_t>(from)];
        const auto& b = starts[static_cast<std::size_t>(to)];
        return a && b ? *b - *a : clock::duration::zero();
    }
};

// The container's "address known" is where the wait for SSH begins.
ANWEDDOL_DECL provisioning_phase phase_of(container_phase phase) {
    switch (phase) {
    case container_phase::waiting_for_boot_slot:
        return provisioning_phase::waiting_for_boot_slot;
    case container_phase::creating_domain:
        return provisioning_phase::creating_domain;
    case container_phase::waiting_for_address:
        return provisioning_phase::waiting_for_address;
    case container_phase::address_known:
        break;
    }
    return provisioning_phase::waiting_for_ssh;
}

// The host key fingerprints the guest announced on its console: the first
// complete block of this boot, however late, from the console's bytes as
// they arrived (detail::await_console_announcement). `required`: waits up
// to `limit` for it, and fails with errc::console_host_keys_missing without
// one (the caller destroys the domain). Otherwise waits only while a block
// is arriving (at most 5 s), and returns none when there is none.
inline boost::asio::awaitable<std::vector<std::string>>
console_host_keys(std::shared_ptr<container_instance> container, bool required,
                  std::chrono::steady_clock::duration limit) {
    const auto began = std::chrono::steady_clock::now();
    auto waiting = detail::await_console_announcement(
        *container, required ? limit : std::chrono::seconds(5), required);
    const auto announced = co_await std::move(waiting);
    if (!required || !announced.host_keys.empty())
        co_return detail::fingerprints_of(announced.host_keys);

    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - began);
    const std::string who = "container " + container->get_uuid();
    std::string why;
    if (container->get_options().console_log_bytes == 0)
        why = who + "'s console is not read (its options' console_log_bytes is 0)";
    else if (announced.host_keys_complete)
        why = who + " printed a host key block on its console without a SHA-256 fingerprint";
    else if (announced.console_ended)
        why = who + "'s console ended or could not be read before it printed its host keys";
    else
        why = who + " printed no complete SSH host key block on its console within " +
              std::to_string(waited.count() / 1000) + "." +
              std::to_string(waited.count() % 1000 / 100) + " s of getting its address";
    detail::throw_error(errc::console_host_keys_missing,
                        why + ": its SSH host key cannot be checked, so no password was sent. "
                              "Make the guest print its keys' fingerprints (cloud-init's "
                              "-----BEGIN SSH HOST KEY FINGERPRINTS----- block), or unset "
                              "provisioning_options::require_console_host_keys to trust the "
                              "first key seen");
}

// Destroys the domain of a provisioning that failed or was cancelled, and
// returns the failure with what the guest said on its console up to then
// (an SSH server that never came up, a setup script that failed). The
// caller resets its cancellation state first: a cancelled coroutine cannot
// even begin to await this one.
inline boost::asio::awaitable<std::exception_ptr>
destroy_after_failure(std::shared_ptr<container_instance> container, std::exception_ptr failure) {
    if (container->is_domain_running()) {
        try {
            co_await container->stop_domain(true);
        } catch (...) {
            // Already gone (it crashed), or out of memory: the error that
            // matters is the first one, and the container's destructor
            // tries again.
        }
    }
    co_return detail::with_guest_console(failure, container->get_console_log());
}

inline bool announced(const std::vector<std::string>& features, std::string_view feature) {
    return std::find(features.begin(), features.end(), feature) != features.end();
}

// The password of the endpoint's first login: the per-boot one the guest
// announced on its console (its host-key block, awaited before this, comes
// after it), or the options'. Notes which in `booted`, with the guest's
// features.
inline std::string first_endpoint_password(const container_instance& container,
                                           detail::booted_container& booted,
                                           const provisioning_options& options) {
    if (options.use_console_endpoint_password) {
        const auto ring = detail::console_access::ring(container);
        if (auto seen = ring ? ring->announcement() : detail::console_announcement();
            seen.endpoint) {
            booted.partial.endpoint_password = endpoint_password_source::console;
            booted.guest_features = seen.endpoint->features;
            return seen.endpoint->password; // wiped with `seen`; the copy by the caller
        }
    }
    booted.partial.endpoint_password = endpoint_password_source::options;
    return std::string(options.endpoint_password.reveal());
}

// Changes the endpoint's password, right after its first login, to a fresh
// one that only this process knows: whoever else learned the first one (it
// is public by default) can no longer log in while the container waits in
// a pool. With the guest's setup script where it announced it, otherwise
// with `passwd`, which asks for the old password, then twice the new one.
inline boost::asio::awaitable<void> rotate_endpoint_password(detail::booted_container& booted,
                                                             const provisioning_options& options) {
    auto& endpoint = *booted.endpoint;
    auto [user, old_password, port] = endpoint.get_endpoint_credentials();
    std::string fresh = detail::generate_password(48);
    command_options changing;
    changing.timeout = options.hand_over_step_timeout;
    std::string command;
    const bool by_script = announced(booted.guest_features, "rotate-endpoint-password");
    if (by_script) {
        command = detail::rotate_endpoint_password_command();
        changing.std_in = detail::standard_input_password(fresh);
    } else {
        command = "passwd";
        std::string old_line = detail::standard_input_password(old_password);
        std::string new_line = detail::standard_input_password(fresh);
        std::string input;
        input.reserve(old_line.size() + 2 * new_line.size()); // no reallocated copy
        input += old_line;
        input += new_line;
        input += new_line;
        changing.std_in = std::move(input);
        detail::cleanse(old_line);
        detail::cleanse(new_line);
    }
    detail::cleanse(old_password);
    auto running = endpoint.execute(std::move(command), std::move(changing));
    const command_result changed = co_await std::move(running);
    if (changed.exit_status != 0 ||
        (by_script && (!changed.std_out.empty() || !changed.std_err.empty()))) {
        detail::cleanse(fresh);
        detail::throw_error(
            errc::administration_failed,
            std::string("cannot change the endpoint's password after its first login (") +
                (by_script ? "the setup script's --rotate-endpoint-password" : "passwd") +
                " exited with status " + std::to_string(changed.exit_status) +
                (changed.std_err.empty() ? "" : "; stderr: " + changed.std_err) +
                "): set provisioning_options::rotate_endpoint_password to false for an image "
                "that can do neither, and keep its endpoint unreachable for other tenants");
    }
    endpoint.set_endpoint_credentials(std::move(user), std::move(fresh), port);
    booted.partial.endpoint_password_rotated = true;
}

// The rest of the boot: the host keys the console printed, and the
// endpoint's login, after which its password is changed.
inline boost::asio::awaitable<void>
log_in_as_endpoint(std::shared_ptr<container_instance> container, detail::booted_container& booted,
                   const provisioning_options& options) {
    auto& result = booted.partial;
    result.ip = *container->get_ip();
    if (booted.shell.host_keys == host_key_policy::accept_new) {
        auto reading = console_host_keys(container, options.require_console_host_keys,
                                         options.shell.ready_timeout);
        auto pinned = co_await std::move(reading);
        if (!pinned.empty()) {
            booted.shell.host_keys = host_key_policy::pinned_fingerprints;
            booted.shell.host_key_fingerprints = std::move(pinned);
        }
    }
    result.host_keys = booted.shell.host_keys;
    result.host_key_fingerprints = booted.shell.host_key_fingerprints;
    result.isolation = container->get_network_isolation();
    std::string password = first_endpoint_password(*container, booted, options);
    booted.endpoint = std::make_shared<endpoint_shell_instance>(
        container->get_executor(), result.ip, options.endpoint_username, std::move(password));
    detail::cleanse(password);
    booted.endpoint->set_options(booted.shell);
    co_await booted.endpoint->open_shell();
    if (options.rotate_endpoint_password) {
        auto rotating = rotate_endpoint_password(booted, options);
        co_await std::move(rotating);
    }
}

// The hand-over's steps: fresh client credentials (in `result`), the setup
// script, and the client's own login.
// With `keep_client_session`, the client's login is made whatever
// verify_client_login says, and its session stays open in booted.endpoint
// (the endpoint's own is closed): the container is then handed over ahead
// of its take, and that session is what a pool's check probes.
inline boost::asio::awaitable<void> hand_over_steps(detail::booted_container& booted,
                                                    provisioned_container& result,
                                                    phase_clock& phases,
                                                    const provisioning_options& options,
                                                    bool keep_client_session = false) {
    using P = provisioning_phase;
    auto container = result.container;
    auto& endpoint = booted.endpoint;
    // A pooled container's session may have been lost while it waited
    // (a network hiccup, an sshd restarted): log in again.
    if (endpoint->is_closed())
        co_await endpoint->open_shell();
    phases.enter(P::administering);
    // The password lives in result (wiped by the caller on failure) and in
    // the endpoint (wiped when it goes), nowhere else: a short one would stay
    // in its moved-from buffer, so that is wiped too.
    // The password goes on the setup script's standard input where the
    // guest takes it there: in no command line that another process of
    // the endpoint user could read while the script runs.
    auto shell_options = endpoint->get_options();
    shell_options.setup_password_delivery = announced(booted.guest_features, "setup-password-stdin")
                                                ? password_delivery::standard_input
                                                : password_delivery::argument;
    shell_options.administration_timeout = options.hand_over_step_timeout;
    result.client_password_delivery = shell_options.setup_password_delivery;
    endpoint->set_options(std::move(shell_options));
    auto generated = endpoint->generate_client_ssh_credentials(options.password_length, false);
    result.username = std::move(generated.first);
    result.password = std::move(generated.second);
    detail::cleanse(generated.second);
    result.port = options.client_port;
    endpoint->store_client_ssh_credentials(result.username, result.password, result.port);
    co_await endpoint->administrate_container();
    co_await endpoint->close_shell();

    if (options.verify_client_login || keep_client_session) {
        phases.enter(P::verifying);
        auto client = std::make_shared<endpoint_shell_instance>(
            container->get_executor(), result.ip, result.username, result.password, result.port);
        client->set_options(booted.shell);
        co_await client->open_shell();
        command_options checking;
        checking.timeout = options.hand_over_step_timeout;
        const command_result whoami = co_await client->execute("id -un", std::move(checking));
        if (whoami.exit_status != 0 || whoami.std_out != result.username + "\n")
            detail::throw_error(errc::administration_failed,
                                "the client logged in but is not " + result.username +
                                    ": 'id -un' said '" + whoami.std_out + "'");
        if (keep_client_session)
            endpoint = std::move(client);
        else
            co_await client->close_shell();
    }
    if (!keep_client_session)
        phases.enter(P::ready);
}

// The phases' durations, into `t`.
inline void record_hand_over_timings(provisioning_timings& t, const phase_clock& phases,
                                     bool verified, provisioning_phase last) {
    using P = provisioning_phase;
    t.administration = phases.between(P::administering, verified ? P::verifying : last);
    t.verification =
        verified ? phases.between(P::verifying, last) : provisioning_timings::duration::zero();
}

} // namespace provisioning_impl

ANWEDDOL_DECL boost::asio::awaitable<detail::booted_container>
detail::boot_and_log_in(std::shared_ptr<container_instance> container,
                        const provisioning_options& options) {
    using provisioning_impl::phase_clock;
    using P = provisioning_phase;
    phase_clock phases;
    phases.uuid = container->get_uuid();
    phases.on_progress = &options.on_progress;

    // The container reports its own phases to this call's hook, which
    // forwards them to the container's own and times them.
    start_options start;
    start.driver_uri = options.driver_uri;
    start.address_timeout = options.address_timeout;
    start.domain_type = options.domain_type;
    start.on_progress =
        [&phases, forward = container->get_options().on_progress](const container_progress& p) {
            if (forward)
                forward(p);
            phases.enter(provisioning_impl::phase_of(p.phase), p.at);
        };
    booted_container booted;
    booted.began = phases.began;
    booted.partial.container = container;
    booted.shell = options.shell;
    // Every awaitable with captures is built outside its co_await
    // expression: GCC 12 destroys such temporaries twice.
    if (options.hypervisors) {
        if (container->is_domain_running()) // placed nowhere: it runs where it is
            detail::throw_error(errc::domain_already_running,
                                "container " + container->get_uuid() + " is already running");
        auto placing = options.hypervisors->place(container->get_uuid(), container->get_memory());
        booted.placement = co_await std::move(placing);
        booted.partial.host = booted.placement.host_name();
        booted.partial.jump = booted.placement.jump();
        if (booted.partial.jump)
            booted.shell.jump = booted.partial.jump;
        auto starting = detail::start_on_host(container, std::move(start), booted.placement);
        co_await std::move(starting);
    } else {
        auto starting = container->start_domain(std::move(start));
        co_await std::move(starting);
    }

    std::exception_ptr failure;
    try {
        auto logging_in = provisioning_impl::log_in_as_endpoint(container, booted, options);
        auto guarded = detail::unless_host_down(booted.placement, std::move(logging_in),
                                                "while its endpoint logged in");
        co_await std::move(guarded);
        auto& result = booted.partial;

        auto& t = result.timings;
        const auto logged_in = phase_clock::clock::now();
        t.queued = phases.between(P::waiting_for_boot_slot, P::creating_domain);
        // The checks before the boot slot count as defining too.
        t.define = *phases.starts[static_cast<std::size_t>(P::waiting_for_address)] - phases.began -
                   t.queued;
        t.boot_to_ip = phases.between(P::waiting_for_address, P::waiting_for_ssh);
        t.ip_to_ssh = logged_in - *phases.starts[static_cast<std::size_t>(P::waiting_for_ssh)];
        t.total = logged_in - phases.began;
    } catch (...) {
        failure = std::current_exception();
    }
    if (failure) {
        booted.endpoint.reset();
        co_await boost::asio::this_coro::reset_cancellation_state();
        auto destroying = provisioning_impl::destroy_after_failure(container, failure);
        auto with_console = co_await std::move(destroying);
        std::rethrow_exception(with_console);
    }
    co_return booted;
}

ANWEDDOL_DECL boost::asio::awaitable<provisioned_container>
detail::hand_over(booted_container booted, const provisioning_options& options) {
    using provisioning_impl::phase_clock;
    using P = provisioning_phase;
    auto container = booted.partial.container;
    phase_clock phases;
    phases.began = booted.began;
    phases.uuid = container->get_uuid();
    phases.on_progress = &options.on_progress;
    provisioned_container result = std::move(booted.partial);

    std::exception_ptr failure;
    try {
        if (booted.handed_over_ahead) {
            // Only the client's session, opened by the check, is left to close.
            auto closing =
                booted.endpoint->close_shell(boost::asio::as_tuple(boost::asio::use_awaitable));
            co_await std::move(closing); // a session that broke is closed all the same
            booted.endpoint.reset();
            // Cancelled meanwhile: as with any hand-over under way, the
            // container goes, with its credentials.
            const auto cancel_state = co_await boost::asio::this_coro::cancellation_state;
            if (cancel_state.cancelled() != boost::asio::cancellation_type::none)
                throw boost::system::system_error(boost::asio::error::operation_aborted);
            phases.enter(P::ready);
        } else {
            auto steps = provisioning_impl::hand_over_steps(booted, result, phases, options);
            auto guarded = detail::unless_host_down(booted.placement, std::move(steps),
                                                    "while it was handed over");
            co_await std::move(guarded);
        }
    } catch (...) {
        failure = std::current_exception();
    }
    if (failure) {
        detail::cleanse(result.password);
        booted.endpoint.reset();
        co_await boost::asio::this_coro::reset_cancellation_state();
        auto destroying = provisioning_impl::destroy_after_failure(container, failure);
        auto with_console = co_await std::move(destroying);
        std::rethrow_exception(with_console);
    }

    auto& t = result.timings;
    if (!booted.handed_over_ahead) // otherwise measured before the take, and kept
        provisioning_impl::record_hand_over_timings(t, phases, options.verify_client_login,
                                                    P::ready);
    t.total = *phases.starts[static_cast<std::size_t>(P::ready)] - phases.began;
    co_return result;
}

ANWEDDOL_DECL boost::asio::awaitable<void>
detail::hand_over_ahead(booted_container& booted, const provisioning_options& options) {
    using provisioning_impl::phase_clock;
    using P = provisioning_phase;
    auto container = booted.partial.container;
    phase_clock phases;
    phases.began = booted.began;
    phases.uuid = container->get_uuid();
    phases.on_progress = &options.on_progress;

    std::exception_ptr failure;
    try {
        auto steps =
            provisioning_impl::hand_over_steps(booted, booted.partial, phases, options, true);
        auto guarded = detail::unless_host_down(booted.placement, std::move(steps),
                                                "while it was handed over ahead of its take");
        co_await std::move(guarded);
    } catch (...) {
        failure = std::current_exception();
    }
    if (failure) {
        detail::cleanse(booted.partial.password);
        booted.endpoint.reset();
        co_await boost::asio::this_coro::reset_cancellation_state();
        auto destroying = provisioning_impl::destroy_after_failure(container, failure);
        auto with_console = co_await std::move(destroying);
        std::rethrow_exception(with_console);
    }
    // The client's login is the last step: everything up to now. `ready` is
    // timed but not reported: the take reports it, when the container is.
    phases.starts[static_cast<std::size_t>(P::ready)] = phase_clock::clock::now();
    provisioning_impl::record_hand_over_timings(booted.partial.timings, phases, true, P::ready);
    booted.handed_over_ahead = true;
}

ANWEDDOL_DECL boost::asio::awaitable<provisioned_container>
detail::provision_here(std::shared_ptr<container_instance> container,
                       provisioning_options options) {
    auto booting = detail::boot_and_log_in(std::move(container), options);
    auto booted = co_await std::move(booting);
    auto handing_over = detail::hand_over(std::move(booted), options);
    co_return co_await std::move(handing_over);
}

} // namespace anweddol

#endif
