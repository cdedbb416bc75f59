//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_IMPL_CONTAINER_INSTANCE_IPP
#define ANWEDDOL_IMPL_CONTAINER_INSTANCE_IPP

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/address_wait.hpp>
#include <anweddol/detail/blocking_pool.hpp>
#include <anweddol/detail/domain_identity.hpp>
#include <anweddol/detail/domain_xml.hpp>
#include <anweddol/detail/file_sha256.hpp>
#include <anweddol/detail/libvirt_call.hpp>
#include <anweddol/endpoint_shell_instance.hpp>
#include <anweddol/error.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <exception>

#include <sys/stat.h>
#include <unistd.h>

namespace anweddol {

namespace container_impl {

[[noreturn]] inline void fail(errc e, const std::string& message) {
    throw boost::system::system_error(make_error_code(e), message);
}

// What Linux accepts as an interface name, without the characters that
// would be trouble in a path or a shell: 1 to 15 of [A-Za-z0-9_.-].
ANWEDDOL_DECL bool is_interface_name(std::string_view name) {
    return !name.empty() && name.size() <= 15 && name != "." && name != ".." &&
           std::ranges::all_of(name, [](unsigned char c) {
               return std::isalnum(c) || c == '_' || c == '.' || c == '-';
           });
}

ANWEDDOL_DECL std::string normalized_uuid(std::string uuid) {
    if (uuid.empty())
        return detail::random_uuid();
    if (!detail::is_canonical_uuid(uuid))
        fail(errc::invalid_argument,
             "container UUID '" + uuid + "' is not a UUID in 8-4-4-4-12 hexadecimal form");
    std::ranges::transform(uuid, uuid.begin(), [](unsigned char c) { return std::tolower(c); });
    return uuid;
}

ANWEDDOL_DECL void check_memory(unsigned memory) {
    if (memory < 512)
        fail(errc::invalid_memory,
             "memory of " + std::to_string(memory) + " MiB is below the 512 MiB a container needs");
}

ANWEDDOL_DECL void check_vcpus(unsigned vcpus) {
    if (vcpus == 0)
        fail(errc::invalid_vcpus, "a container needs at least 1 virtual CPU");
}

ANWEDDOL_DECL void check_interface_name(const std::string& name) {
    if (!is_interface_name(name))
        fail(errc::invalid_argument, "'" + name +
                                         "' cannot be a network interface name (1 to 15 of "
                                         "A-Z a-z 0-9 _ . -)");
}

// A URI of a hypervisor on this host, whose bridges this process can see.
ANWEDDOL_DECL bool is_local_uri(std::string_view uri) {
    return uri.find(":///") != std::string_view::npos && !uri.starts_with("test:");
}

ANWEDDOL_DECL std::string host_name() {
    char name[256] = {};
    if (gethostname(name, sizeof name - 1) != 0)
        return "unknown-host";
    return name;
}

// On a worker. The domain type to use where the caller chose none: kvm where
// the host has it, software emulation otherwise, or the driver's own type.
ANWEDDOL_DECL std::string automatic_domain_type(virConnectPtr connection) {
    char* capabilities = virConnectGetCapabilities(connection);
    if (!capabilities)
        detail::throw_last_libvirt_error("cannot read the hypervisor's capabilities");
    const std::string text = capabilities;
    std::free(capabilities);
    for (const char* type : {"kvm", "qemu"})
        if (text.find(std::string("<domain type='") + type + "'") != std::string::npos)
            return type;
    const std::string marker = "<domain type='";
    if (const auto at = text.find(marker); at != std::string::npos) {
        const auto start = at + marker.size();
        return text.substr(start, text.find('\'', start) - start);
    }
    return "qemu";
}

// On a worker: an active libvirt network's bridge, or (for a local
// hypervisor) any interface of this host with that name.
ANWEDDOL_DECL bool bridge_exists(virConnectPtr connection, const std::string& uri,
                          const std::string& bridge) {
    virNetworkPtr* networks = nullptr;
    const int count =
        virConnectListAllNetworks(connection, &networks, VIR_CONNECT_LIST_NETWORKS_ACTIVE);
    if (count < 0)
        virResetLastError();
    bool found = false;
    for (int i = 0; i < count; ++i) {
        if (char* name = virNetworkGetBridgeName(networks[i])) {
            found = found || bridge == name;
            std::free(name);
        } else {
            virResetLastError();
        }
        virNetworkFree(networks[i]);
    }
    std::free(networks);
    if (!found && is_local_uri(uri)) {
        std::error_code ignored;
        found = std::filesystem::exists("/sys/class/net/" + bridge, ignored);
    }
    return found;
}

// On a worker: everything start_domain checks before it creates anything.
// Returns the domain type.
ANWEDDOL_DECL std::string preflight(virConnectPtr connection, const std::string& uri,
                             const std::string& uuid, const std::string& iso_path,
                             const std::string& bridge, const std::string& wanted_type) {
    struct stat status {};
    if (::stat(iso_path.c_str(), &status) != 0)
        throw boost::system::system_error(errno, boost::system::system_category(),
                                          "cannot use the ISO file " + iso_path);
    if (S_ISDIR(status.st_mode))
        throw boost::system::system_error(EISDIR, boost::system::system_category(),
                                          "the ISO path " + iso_path + " is a directory");
    if (::access(iso_path.c_str(), R_OK) != 0)
        throw boost::system::system_error(errno, boost::system::system_category(),
                                          "cannot read the ISO file " + iso_path);

    if (detail::domain_handle existing(virDomainLookupByUUIDString(connection, uuid.c_str()));
        existing)
        fail(errc::domain_already_running,
             "libvirt at " + uri + " already has a domain with UUID " + uuid +
                 ": give this container another UUID, or stop that domain first");
    virResetLastError();

    if (!bridge_exists(connection, uri, bridge))
        fail(errc::invalid_argument,
             "there is no bridge named '" + bridge + "' at " + uri +
                 ": start the libvirt network that owns it (virsh net-start default) or set "
                 "the container's NAT interface name to an existing one");
    return wanted_type.empty() ? automatic_domain_type(connection) : wanted_type;
}

// On a worker: destroys the domain with `uuid`, looked up on `connection`
// (the current one: after libvirtd restarted, handles from the old one are
// dead), or through `fallback` where there is no connection (an adopted
// domain). A domain already gone is not an error.
ANWEDDOL_DECL void destroy_blocking(virConnectPtr connection, const std::string& uuid,
                             virDomainPtr fallback) {
    detail::domain_handle domain;
    if (connection) {
        domain.reset(virDomainLookupByUUIDString(connection, uuid.c_str()));
        if (!domain) {
            if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN) {
                virResetLastError();
                return; // already gone
            }
            detail::throw_last_libvirt_error("cannot look up domain " + uuid + " to destroy it");
        }
    } else {
        domain = detail::retain_domain(fallback);
    }
    if (domain && virDomainDestroy(domain.get()) < 0) {
        if (virGetLastErrorCode() == VIR_ERR_OPERATION_INVALID ||
            virGetLastErrorCode() == VIR_ERR_NO_DOMAIN) {
            virResetLastError(); // not running any more
            return;
        }
        detail::throw_last_libvirt_error("cannot destroy domain " + uuid);
    }
}

// Destroys the domain on the connection's lanes; uncancellable, since a
// half-done cleanup would leave the domain behind.
ANWEDDOL_DECL boost::asio::awaitable<void>
destroy_domain(std::shared_ptr<hypervisor_connection> connection, std::string uuid,
               detail::domain_handle fallback) {
    auto executor = co_await boost::asio::this_coro::executor;
    if (connection) {
        auto destroying = boost::asio::co_spawn(
            executor, connection->call([uuid = std::move(uuid)](virConnectPtr c) {
                destroy_blocking(c, uuid, nullptr);
            }),
            boost::asio::bind_cancellation_slot(boost::asio::cancellation_slot(),
                                                boost::asio::use_awaitable));
        co_await std::move(destroying);
    } else {
        auto destroying = detail::async_run_blocking(
            [uuid = std::move(uuid), fallback = std::move(fallback)] {
                destroy_blocking(nullptr, uuid, fallback.get());
            },
            boost::asio::bind_cancellation_slot(boost::asio::cancellation_slot(),
                                                boost::asio::use_awaitable));
        co_await std::move(destroying);
    }
}

} // namespace container_impl

ANWEDDOL_DECL container_instance::container_instance(boost::asio::any_io_executor ex, std::string iso_path,
                                              std::string container_uuid, unsigned memory,
                                              unsigned vcpus, std::string nat_interface_name)
    : executor_(std::move(ex))
    , iso_path_(std::move(iso_path))
    , uuid_(container_impl::normalized_uuid(std::move(container_uuid)))
    , memory_(memory)
    , vcpus_(vcpus)
    , nat_interface_name_(std::move(nat_interface_name)) {
    container_impl::check_memory(memory_);
    container_impl::check_vcpus(vcpus_);
    container_impl::check_interface_name(nat_interface_name_);
}

ANWEDDOL_DECL container_instance::~container_instance() {
    destroy_in_background();
}

ANWEDDOL_DECL bool container_instance::is_domain_running() const noexcept {
    return runtime_->running && runtime_->domain;
}

ANWEDDOL_DECL virDomainPtr container_instance::get_domain_descriptor() const noexcept {
    return runtime_->domain.get();
}

ANWEDDOL_DECL std::optional<std::string> container_instance::get_mac() const {
    if (!runtime_->domain)
        container_impl::fail(errc::domain_not_created,
                             "container " + uuid_ + " has no domain: start it first");
    return runtime_->mac;
}

ANWEDDOL_DECL std::optional<std::string> container_instance::get_ip() const {
    if (!runtime_->domain)
        container_impl::fail(errc::domain_not_created,
                             "container " + uuid_ + " has no domain: start it first");
    return runtime_->ip;
}

ANWEDDOL_DECL void container_instance::set_domain_descriptor(virDomainPtr domain) {
    forget_domain();
    runtime_->domain = detail::retain_domain(domain);
    runtime_->running = domain != nullptr;
}

ANWEDDOL_DECL void container_instance::set_memory(unsigned memory) {
    container_impl::check_memory(memory);
    memory_ = memory;
}

ANWEDDOL_DECL void container_instance::set_vcpus(unsigned vcpus) {
    container_impl::check_vcpus(vcpus);
    vcpus_ = vcpus;
}

ANWEDDOL_DECL void container_instance::set_nat_interface_name(std::string nat_interface_name) {
    container_impl::check_interface_name(nat_interface_name);
    nat_interface_name_ = std::move(nat_interface_name);
}

ANWEDDOL_DECL void container_instance::report(container_phase phase) const {
    if (options_.on_progress)
        options_.on_progress({uuid_, phase, std::chrono::steady_clock::now()});
}

ANWEDDOL_DECL void container_instance::forget_domain() {
    auto& rt = *runtime_;
    rt.watching.reset();
    rt.domain.reset();
    rt.running = false;
    rt.mac.reset();
    rt.ip.reset();
    rt.connection.reset();
}

ANWEDDOL_DECL void container_instance::destroy_in_background() noexcept {
    if (!runtime_->running || !runtime_->domain)
        return;
    const auto destroy =
        [connection = runtime_->connection, uuid = uuid_,
         domain = std::shared_ptr<virDomain>(
             detail::retain_domain(runtime_->domain.get()).release(), virDomainFree)] {
            try {
                const auto current = connection ? connection->current() : detail::connect_handle();
                container_impl::destroy_blocking(current.get(), uuid, domain.get());
            } catch (const std::exception&) {
                // Nobody is left to tell: libvirtd is gone, and its domains with it.
            }
        };
    try {
        boost::asio::post(detail::blocking_pool(), destroy);
    } catch (...) {
        destroy(); // out of memory while posting: block rather than leak the VM
    }
    forget_domain();
}

ANWEDDOL_DECL boost::asio::awaitable<std::string> container_instance::make_iso_file_checksum() {
    if (iso_path_.empty())
        container_impl::fail(errc::iso_path_not_set,
                             "container " + uuid_ + " has no ISO file path to hash");
    auto hashing = detail::async_run_blocking(
        [path = iso_path_] { return detail::file_sha256(path); }, boost::asio::use_awaitable);
    co_return co_await std::move(hashing);
}

ANWEDDOL_DECL boost::asio::awaitable<void>
container_instance::start_domain(bool wait_available, int wait_max_tryout, std::string driver_uri) {
    using namespace container_impl;
    if (is_domain_running())
        fail(errc::domain_already_running, "container " + uuid_ + " is already running");
    if (iso_path_.empty())
        fail(errc::iso_path_not_set, "container " + uuid_ + " has no ISO file path to boot from");
    if (wait_max_tryout < -1)
        fail(errc::invalid_argument, "wait_max_tryout must be -1 (no limit) or a number of "
                                     "seconds, not " +
                                         std::to_string(wait_max_tryout));

    auto connection = co_await hypervisor_connection::open(driver_uri);
    auto checking = connection->call([uri = driver_uri, uuid = uuid_, iso = iso_path_,
                                      bridge = nat_interface_name_,
                                      type = options_.domain_type](virConnectPtr c) {
        return preflight(c, uri, uuid, iso, bridge, type);
    });
    const std::string domain_type = co_await std::move(checking);

    boot_admission::ticket admitted;
    if (options_.admission) {
        report(container_phase::waiting_for_boot_slot);
        admitted = co_await options_.admission->admit(domain_type);
    }

    detail::domain_definition definition{
        .uuid = uuid_,
        .type = domain_type,
        .memory_mib = memory_,
        .vcpus = vcpus_,
        // libvirtd resolves a relative path against its own directory.
        .iso_path = std::filesystem::absolute(iso_path_).lexically_normal().string(),
        .bridge = nat_interface_name_,
        .mac = detail::random_mac(),
        .owner = options_.owner.empty() ? host_name() : options_.owner,
    };

    // Watch from before the domain exists: a guest that dies at once must not
    // leave the address wait waiting for nothing.
    auto executor = co_await boost::asio::this_coro::executor;
    auto stopped = std::make_shared<detail::stop_signal>(executor);
    auto watching_stop = connection->subscribe(
        executor, [stopped, uuid = uuid_](const domain_lifecycle_event& event) {
            if (event.uuid == uuid && event.event == VIR_DOMAIN_EVENT_STOPPED)
                stopped->raise(event.detail);
        });
    auto rt = runtime_;
    rt->watching =
        connection->subscribe(executor_, [weak = std::weak_ptr<runtime>(rt),
                                          uuid = uuid_](const domain_lifecycle_event& e) {
            if (e.uuid != uuid || e.event != VIR_DOMAIN_EVENT_STOPPED)
                return;
            if (auto alive = weak.lock()) {
                alive->running = false;
                alive->ip.reset();
            }
        });

    auto creating = connection->call([xml = detail::domain_xml(definition)](virConnectPtr c) {
        detail::domain_handle domain(virDomainCreateXML(c, xml.c_str(), 0));
        if (!domain)
            detail::throw_last_libvirt_error("cannot create the container's domain");
        return domain;
    });
    std::exception_ptr failure;
    report(container_phase::creating_domain);
    try {
        rt->domain = co_await std::move(creating);
    } catch (...) {
        rt->watching.reset();
        throw; // nothing was created
    }
    rt->running = true;
    rt->mac = definition.mac;
    rt->connection = connection;

    // From here on, any failure destroys the domain before it propagates.
    try {
        if (wait_available) {
            report(container_phase::waiting_for_address);
            detail::address_wait_settings settings{
                .uuid = uuid_,
                .mac = definition.mac,
                .status_file = is_local_uri(driver_uri) || driver_uri.starts_with("test:")
                                   ? options_.lease_directory / (nat_interface_name_ + ".status")
                                   : std::filesystem::path(),
                .poll_interval = options_.address_poll_interval,
                .budget_seconds = wait_max_tryout,
            };
            rt->ip = co_await detail::wait_for_address(connection, std::move(settings), stopped);
            report(container_phase::address_known);
        }
    } catch (...) {
        failure = std::current_exception();
    }
    if (failure) {
        // A cancelled coroutine would throw at the next co_await: clear it, and
        // let nothing cancel the cleanup itself.
        co_await boost::asio::this_coro::reset_cancellation_state();
        try {
            co_await destroy_domain(connection, uuid_, detail::retain_domain(rt->domain.get()));
            forget_domain();
        } catch (const std::exception&) {
            // Still there: keep it, so that stop_domain() or the destructor
            // tries again. The error that matters is the first one.
        }
        std::rethrow_exception(failure);
    }
}

ANWEDDOL_DECL boost::asio::awaitable<void> container_instance::stop_domain(bool destroy) {
    using namespace container_impl;
    if (!is_domain_running())
        fail(errc::domain_not_running, "container " + uuid_ + " has no running domain to stop");
    auto rt = runtime_;
    auto connection = rt->connection;
    if (destroy) {
        co_await destroy_domain(connection, uuid_, detail::retain_domain(rt->domain.get()));
        forget_domain();
        co_return;
    }

    auto executor = co_await boost::asio::this_coro::executor;
    auto stopped = std::make_shared<detail::stop_signal>(executor);
    hypervisor_connection::subscription watching_stop;
    if (connection)
        watching_stop = connection->subscribe(
            executor, [stopped, uuid = uuid_](const domain_lifecycle_event& event) {
                if (event.uuid == uuid && event.event == VIR_DOMAIN_EVENT_STOPPED)
                    stopped->raise(event.detail);
            });
    std::exception_ptr failure;
    try {
        auto asking = detail::async_run_blocking(
            [domain = detail::retain_domain(rt->domain.get())] {
                if (virDomainShutdown(domain.get()) < 0)
                    detail::throw_last_libvirt_error("cannot ask the guest to shut down");
            },
            boost::asio::use_awaitable);
        co_await std::move(asking);
        co_await detail::wait_until_stopped(detail::retain_domain(rt->domain.get()), stopped,
                                            connection != nullptr, options_.shutdown_timeout);
    } catch (...) {
        failure = std::current_exception();
    }
    // Stopped, or timed out, failed or cancelled: destroy what is left.
    co_await boost::asio::this_coro::reset_cancellation_state();
    co_await destroy_domain(connection, uuid_, detail::retain_domain(rt->domain.get()));
    forget_domain();
    if (failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const boost::system::system_error& e) {
            if (e.code() != boost::asio::error::timed_out)
                throw; // timing out is what the destroy above is for
        }
    }
}

ANWEDDOL_DECL boost::asio::awaitable<std::shared_ptr<endpoint_shell_instance>>
container_instance::create_endpoint_shell(std::string user, std::string password,
                                          std::uint16_t port, bool open_shell) {
    if (!is_domain_running() || !runtime_->ip)
        container_impl::fail(errc::domain_not_running,
                             "container " + uuid_ +
                                 " has no address yet: start it with wait_available first");
    auto shell = std::make_shared<endpoint_shell_instance>(
        executor_, *runtime_->ip, std::move(user), std::move(password), port);
    if (open_shell)
        co_await shell->open_shell();
    co_return shell;
}

} // namespace anweddol

#endif
