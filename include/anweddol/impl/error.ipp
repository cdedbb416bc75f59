//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_ERROR_IPP
#define ANWEDDOL_IMPL_ERROR_IPP

#include <anweddol/detail/errc.hpp>

#include <libssh/libssh.h>
#include <libvirt/virterror.h>

#include <string>

namespace anweddol {
namespace detail {

class anweddol_error_category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "anweddol"; }

    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
        case errc::domain_not_created:
            return "the container has no domain: start it with start_domain() first";
        case errc::domain_not_running:
            return "the container's domain is not running";
        case errc::domain_already_running:
            return "the container's domain is already running: stop it first";
        case errc::iso_path_not_set:
            return "no ISO file path is set: call set_iso_file_path() first";
        case errc::invalid_memory:
            return "invalid memory size: a container needs at least 512 MiB";
        case errc::invalid_vcpus:
            return "invalid vCPU count: a container needs at least one vCPU";
        case errc::invalid_argument:
            return "invalid argument";
        case errc::container_already_stored:
            return "a container with this UUID is already stored";
        case errc::ip_wait_timeout:
            return "the container got no IP address within the wait budget";
        case errc::shell_not_open:
            return "the endpoint shell is not open: call open_shell() first";
        case errc::shell_already_open:
            return "the endpoint shell is already open";
        case errc::endpoint_credentials_not_set:
            return "no endpoint credentials are set: call set_endpoint_credentials() first";
        case errc::client_credentials_not_set:
            return "no client credentials are stored: call generate_client_ssh_credentials() "
                   "or store_client_ssh_credentials() first";
        case errc::administration_failed:
            return "the container's setup script failed";
        case errc::lease_file_malformed:
            return "dnsmasq's lease status file is malformed";
        case errc::authentication_failed:
            return "the SSH server refused the credentials: check the username and password";
        case errc::host_key_mismatch:
            return "the SSH server's host key is not the expected one: check known_hosts or "
                   "the pinned fingerprints (the server may be an impostor)";
        case errc::output_limit_exceeded:
            return "the remote command printed more than its output cap: raise "
                   "command_options::max_output_bytes or stream it with on_output";
        case errc::domain_paused:
            return "the domain paused on its own while starting";
        case errc::domain_crashed:
            return "the domain crashed while starting";
        case errc::foreign_event_loop:
            return "the program registered a libvirt event loop implementation of its own: "
                   "anweddol needs libvirt's events on Asio";
        case errc::over_capacity:
            return "no capacity for another container now: try again later (the diagnostics "
                   "say which limit was reached)";
        case errc::pool_closed:
            return "the container pool is shut down: it hands out no more containers";
        case errc::host_down:
            return "the container's hypervisor host went down (its libvirt connection "
                   "dropped): the diagnostics name the host";
        case errc::no_host_available:
            return "no hypervisor host can take the container now: the diagnostics say what "
                   "each host lacks (down, draining, or short of memory)";
        case errc::network_isolation_unavailable:
            return "the hypervisor host cannot isolate the container's network as required: "
                   "the diagnostics say what it lacks";
        case errc::console_host_keys_missing:
            return "the guest printed no SSH host key fingerprints on its console, and "
                   "provisioning_options::require_console_host_keys requires them: make its "
                   "image print them (as cloud-init does), or unset the option";
        case errc::reserved_address_not_leased:
            return "the guest was leased another address than the one reserved for it on its "
                   "network, and its traffic filter lets only that one through: the network's "
                   "DHCP server had already leased the reserved one to another client; start "
                   "the container again, or turn container_instance::options::reserve_address "
                   "off";
        case errc::snapshot_slot_busy:
            return "the container's snapshot slot is restoring or running another container: "
                   "stop that one first, or give this container a slot of its own";
        case errc::snapshot_barrier_missing:
            return "the snapshot slot's guest never stopped at the barrier: its ISO does not "
                   "implement it (see snapshot_slot.hpp), so boot its containers cold instead";
        case errc::unexpected_error:
            return "an unexpected error: its diagnostics say what was thrown";
        }
        return "unknown anweddol error " + std::to_string(value);
    }

    // So that a timeout of anweddol's compares equal to std::errc::timed_out
    // (and boost::system::errc::timed_out), as the shell's timeouts do.
    boost::system::error_condition default_error_condition(int value) const noexcept override {
        if (static_cast<errc>(value) == errc::ip_wait_timeout)
            return boost::system::errc::make_error_condition(boost::system::errc::timed_out);
        if (static_cast<errc>(value) == errc::over_capacity ||
            static_cast<errc>(value) == errc::no_host_available)
            return boost::system::errc::make_error_condition(
                boost::system::errc::resource_unavailable_try_again);
        return {value, *this};
    }
};

class libvirt_error_category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "libvirt"; }

    std::string message(int value) const override {
        // libvirt formats messages only for an error that happened; these
        // are the codes a caller most often has to act on.
        switch (value) {
        case VIR_ERR_OK:
            return "success";
        case VIR_ERR_NO_CONNECT:
            return "no hypervisor connection: is libvirtd running and the URI right?";
        case VIR_ERR_INVALID_CONN:
            return "invalid hypervisor connection";
        case VIR_ERR_NO_DOMAIN:
            return "domain not found";
        case VIR_ERR_OPERATION_INVALID:
            return "operation not valid in the domain's current state";
        case VIR_ERR_OPERATION_FAILED:
            return "operation failed";
        case VIR_ERR_OPERATION_TIMEOUT:
            return "operation timed out";
        case VIR_ERR_SYSTEM_ERROR:
            return "system error in libvirt";
        case VIR_ERR_RPC:
            return "RPC error talking to libvirtd";
        case VIR_ERR_XML_ERROR:
            return "malformed XML";
        case VIR_ERR_INTERNAL_ERROR:
            return "libvirt internal error";
        case VIR_ERR_AUTH_FAILED:
            return "authentication to libvirtd failed";
        case VIR_ERR_DOM_EXIST:
            return "a domain with this name or UUID already exists";
        default:
            return "libvirt error " + std::to_string(value);
        }
    }
};

class libssh_error_category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "libssh"; }

    std::string message(int value) const override {
        switch (value) {
        case SSH_NO_ERROR:
            return "success";
        case SSH_REQUEST_DENIED:
            return "the SSH server denied the request";
        case SSH_FATAL:
            return "fatal SSH error: the session is unusable";
        case SSH_EINTR:
            return "interrupted SSH call";
        default:
            return "libssh error " + std::to_string(value);
        }
    }
};

} // namespace detail

ANWEDDOL_DECL const boost::system::error_category& error_category() noexcept {
    static const detail::anweddol_error_category category;
    return category;
}

ANWEDDOL_DECL const boost::system::error_category& libvirt_category() noexcept {
    static const detail::libvirt_error_category category;
    return category;
}

ANWEDDOL_DECL const boost::system::error_category& libssh_category() noexcept {
    static const detail::libssh_error_category category;
    return category;
}

} // namespace anweddol

#endif
