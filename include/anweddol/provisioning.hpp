//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_PROVISIONING_HPP
#define ANWEDDOL_PROVISIONING_HPP

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/config.hpp>
#include <anweddol/detail/host_placement.hpp>
#include <anweddol/endpoint_shell_instance.hpp>
#include <anweddol/network_isolation.hpp>
#include <anweddol/secret.hpp>

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace anweddol {

class hypervisor_pool;
class ssh_jump;

/// The steps of provision(), in order.
enum class provisioning_phase {
    waiting_for_boot_slot, ///< queued in the boot admission
    creating_domain,       ///< libvirt defines and starts the domain
    waiting_for_address,   ///< the guest boots and gets its DHCP lease
    waiting_for_ssh,       ///< the endpoint's SSH server comes up; logging in
    administering,         ///< the setup script hands the container over
    verifying,             ///< logging in as the client, to check its credentials
    ready,                 ///< done: the credentials work
};

/// A short name of the phase, such as "boot" or "ssh".
std::string_view to_string(provisioning_phase phase) noexcept;

/// A phase of one container's provisioning begins.
struct provisioning_event {
    std::string uuid;
    provisioning_phase phase;
    /// Since provision() began.
    std::chrono::steady_clock::duration elapsed;
};

/// How long each phase took; `total` is from the call to ready.
struct provisioning_timings {
    using duration = std::chrono::steady_clock::duration;
    duration queued{};         ///< waiting for a boot slot
    duration define{};         ///< checks and virDomainCreateXML
    duration boot_to_ip{};     ///< domain created -> address known
    duration ip_to_ssh{};      ///< address known -> endpoint logged in
    duration administration{}; ///< the setup script
    duration verification{};   ///< the client's own login
    /// container_pool::take() only: waiting for a booted container, when
    /// none was ready.
    duration pool_wait{};
    /// From the call to ready. For a container taken from a pool, the
    /// take's own time: its boot phases above happened before, while it
    /// waited in the pool.
    duration total{};
};

struct provisioning_options {
    /// The libvirt host; ignored when `hypervisors` is set.
    std::string driver_uri = "qemu:///system";
    /// Where to boot: a host of this pool, chosen at each boot (and the
    /// container's bridge becomes that host's; its logins go through the
    /// host's SSH jump, if it has one). nullptr: driver_uri. The pool must
    /// outlive the provisioning.
    hypervisor_pool* hypervisors = nullptr;
    /// How long the guest may take to get its address; std::nullopt: no limit.
    std::optional<std::chrono::steady_clock::duration> address_timeout = std::chrono::seconds(240);
    /// The domain type; empty: the container's options::domain_type.
    std::string domain_type;
    std::uint16_t client_port = 2222; ///< where the client's SSH server listens
    std::size_t password_length = 120;
    bool verify_client_login = true; ///< log in as the client before handing over
    /// For the endpoint's and the client's logins. With the default
    /// host_key_policy::accept_new, provision() pins the host keys the
    /// guest printed on its serial console instead, where it printed any
    /// (as cloud-init does): an impostor at the guest's address is then
    /// refused before any password is sent.
    endpoint_shell_options shell;
    /// Called on the provisioning coroutine as each phase begins; must not throw.
    std::function<void(const provisioning_event&)> on_progress;

    // Host keys from the console (issue 19, section 3).
    /// With `shell`'s default host_key_policy::accept_new: whether the guest
    /// must announce its SSH host keys on its serial console. true:
    /// provision() waits for the first complete host-key block of the boot
    /// up to shell.ready_timeout after the address is known (the block may
    /// come after the lease, as cloud-init's does), and fails with
    /// errc::console_host_keys_missing (destroying the domain, sending no
    /// password) when none arrives or it holds no SHA-256 fingerprint.
    /// false: it waits only while a block is arriving (at most 5 s) and
    /// otherwise trusts the first key it sees (accept_new), as the reference
    /// does. container_pool_options::provisioning sets it. Needs the console
    /// read (container_instance::options::console_log_bytes above 0).
    bool require_console_host_keys = false;

    // The endpoint account, through which the container is handed over. It
    // must not stay usable by whoever else reaches the guest: a container
    // waiting in a pool is exposed for as long as it waits.
    std::string endpoint_username = "endpoint";
    /// The endpoint's password, unless the guest announces one of its own
    /// (see use_console_endpoint_password). Wiped when the options go.
    secret endpoint_password = "endpoint";
    /// Log in with the per-boot password the guest printed on its serial
    /// console (an `ANWEDDOL ENDPOINT` block before its host keys, as the
    /// test ISO does), where it printed one, instead of endpoint_password.
    bool use_console_endpoint_password = true;
    /// Right after the endpoint's first login, change its password to a
    /// fresh random one that only this process knows, so that the password
    /// used to log in (public, or read from the console) opens nothing
    /// afterwards. With the guest's setup script where it announces
    /// `rotate-endpoint-password`, with `passwd` otherwise; a failure fails
    /// the provisioning (errc::administration_failed): turn this off for an
    /// image where neither works.
    bool rotate_endpoint_password = true;
    /// The most each step of the hand-over may take: the password change,
    /// the setup script, the client's login check (its own login is bound
    /// by shell.ready_timeout). A guest that hangs there fails the
    /// provisioning with asio::error::timed_out instead of holding it.
    std::chrono::steady_clock::duration hand_over_step_timeout = std::chrono::seconds(60);
};

/// Where the password of the endpoint's first login came from.
enum class endpoint_password_source {
    options, ///< provisioning_options::endpoint_password
    console, ///< the per-boot password the guest announced on its console
};

/// A container that a client can log in to.
struct provisioned_container {
    std::shared_ptr<container_instance> container;
    std::string ip;
    std::uint16_t port = 0;
    std::string username;
    std::string password; ///< the caller's to hand over, and to wipe afterwards
    /// How the guest's SSH host key was checked: pinned_fingerprints when
    /// its console printed them (and options.shell left the default), the
    /// reference's accept_new when it did not, or options.shell's policy.
    host_key_policy host_keys = host_key_policy::accept_new;
    /// With pinned_fingerprints: the fingerprints read from the console.
    std::vector<std::string> host_key_fingerprints;
    provisioning_timings timings;
    /// The name of the hypervisor_pool host it runs on; empty without a pool.
    std::string host;
    /// How the client reaches `ip`: through this SSH jump (its host's, in a
    /// hypervisor_pool; set it as endpoint_shell_options::jump), or
    /// directly when nullptr.
    std::shared_ptr<ssh_jump> jump;
    /// Handed out by container_pool::take() from the containers it kept
    /// booted, without waiting for a boot.
    bool from_pool = false;

    // How the hand-over was protected, for the caller's records and alerts.
    /// What the container's network was given (container_instance's
    /// get_network_isolation()).
    network_isolation isolation;
    /// How the client's password reached the setup script: on its standard
    /// input where the guest announced `setup-password-stdin`, as an
    /// argument (the reference's form) otherwise.
    password_delivery client_password_delivery = password_delivery::argument;
    endpoint_password_source endpoint_password = endpoint_password_source::options;
    /// Whether the endpoint's password was changed after its first login.
    bool endpoint_password_rotated = false;
};

namespace detail {

/// The first half of provision(): a container booted, with its address,
/// and its endpoint logged in, ready to be handed over.
struct booted_container {
    std::shared_ptr<endpoint_shell_instance> endpoint; ///< open, as the endpoint account
    endpoint_shell_options shell;  ///< what the logins use (host keys pinned from the console)
    provisioned_container partial; ///< container, ip, host keys, boot timings
    /// What the guest announced it can do (its console's `features`).
    std::vector<std::string> guest_features;
    /// Where the hand-over's progress events and `total` count from: the
    /// boot's start in provision(), the take's in container_pool.
    std::chrono::steady_clock::time_point began;
    /// Its host, with a hypervisor_pool: the hand-over fails with
    /// errc::host_down if that host goes down.
    host_placement placement;
    /// hand_over_ahead() has run: `partial` holds the client's credentials
    /// and `endpoint` is the client's own session (the endpoint's is closed).
    bool handed_over_ahead = false;
};

/// Boots `container`, reads its host keys from the console and logs in as
/// the endpoint. Any failure or cancellation destroys the domain.
boost::asio::awaitable<booted_container>
boot_and_log_in(std::shared_ptr<container_instance> container, const provisioning_options& options);

/// The second half: fresh client credentials, the setup script, the
/// client's login check. Any failure or cancellation destroys the domain
/// and wipes the password.
boost::asio::awaitable<provisioned_container> hand_over(booted_container booted,
                                                        const provisioning_options& options);

/// The hand-over's steps before anyone asks for the container: fresh
/// client credentials (into booted.partial), the setup script, and the
/// client's login, whose session stays open in booted.endpoint for checks.
/// hand_over() then only closes that session. Any failure or cancellation
/// destroys the domain and wipes the password.
boost::asio::awaitable<void> hand_over_ahead(booted_container& booted,
                                             const provisioning_options& options);

boost::asio::awaitable<provisioned_container>
provision_here(std::shared_ptr<container_instance> container, provisioning_options options);

} // namespace detail

/// async: what a container server does for each client: boots `container`,
/// waits for its address, logs in as `endpoint`, generates client
/// credentials, runs the setup script with them and (by default) checks that
/// the client can log in. Completes with `(error_code, provisioned_container)`
/// (default token: `co_await` returns it, errors throw error_with_diagnostics).
/// Errors: those of start_domain(), open_shell(), administrate_container();
/// errc::administration_failed when the client cannot log in afterwards;
/// errc::invalid_argument for a null container. Any failure or cancellation
/// destroys the domain and wipes the generated password before the operation
/// completes. Runs on the container's executor for tokens other than the
/// default.
template <class CompletionToken = default_completion_token>
auto provision(std::shared_ptr<container_instance> container, provisioning_options options = {},
               CompletionToken&& token = {}) {
    if (!container)
        detail::throw_error(errc::invalid_argument, "provision() needs a container, not nullptr");
    auto executor = container->get_executor();
    return detail::initiate_coroutine(
        std::move(executor), detail::provision_here(std::move(container), std::move(options)),
        nullptr, std::forward<CompletionToken>(token));
}
template <class CompletionToken = default_completion_token>
auto provision(std::shared_ptr<container_instance> container, provisioning_options options,
               diagnostics& diag, CompletionToken&& token = {}) {
    if (!container)
        detail::throw_error(errc::invalid_argument, "provision() needs a container, not nullptr");
    auto executor = container->get_executor();
    return detail::initiate_coroutine(
        std::move(executor), detail::provision_here(std::move(container), std::move(options)),
        &diag, std::forward<CompletionToken>(token));
}

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/provisioning.ipp>
#endif

#endif
