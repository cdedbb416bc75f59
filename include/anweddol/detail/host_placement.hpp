//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_HOST_PLACEMENT_HPP
#define ANWEDDOL_DETAIL_HOST_PLACEMENT_HPP

#include <anweddol/detail/config.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <type_traits>

namespace anweddol {

class boot_admission;
class ssh_jump;

namespace detail {

struct hypervisor_pool_state;
struct hypervisor_pool_access; // defined by the unit tests alone
struct hypervisor_host;

/// A container's place on a host of a hypervisor_pool: counts it among the
/// host's boots in flight until its start ends, and tells what the start
/// and the logins need of the host, and whether it went down since.
class host_placement {
public:
    host_placement() = default;
    host_placement(std::shared_ptr<hypervisor_pool_state> pool,
                   std::shared_ptr<hypervisor_host> host, std::string uuid, unsigned memory_mib);
    host_placement(host_placement&& other) noexcept;
    host_placement& operator=(host_placement&& other) noexcept;
    ~host_placement() { release(); }

    /// Whether the container was placed (through a hypervisor_pool).
    explicit operator bool() const noexcept { return host_ != nullptr; }
    const std::string& host_name() const;
    const std::string& uri() const;
    const std::string& nat_interface_name() const;
    boot_admission& admission() const;
    /// The host's jump, or nullptr when its guests are routable.
    std::shared_ptr<ssh_jump> jump() const;

    /// Whether the host went down since the placement.
    bool host_went_down() const noexcept;
    /// The errc::host_down error for this container, naming the host and
    /// why its connection dropped; `when` says what it interrupted
    /// ("during its start").
    std::exception_ptr host_down_error(const std::string& when) const;
    /// async: completes (without error) once the host went down after the
    /// placement; operation_aborted when cancelled. For racing work against.
    boost::asio::awaitable<void> wait_until_down() const;
    /// The start is over, whatever its outcome: the container no longer
    /// counts among the host's boots in flight.
    void end_boot() noexcept;
    /// The start left a domain: the container stays the host's until its
    /// domain stops (or the host goes down).
    void keep_container();
    /// Ends the boot, and unless keep_container() was called, takes the
    /// container off the host: it has no domain there.
    void release() noexcept;

private:
    std::shared_ptr<hypervisor_pool_state> pool_;
    std::shared_ptr<hypervisor_host> host_;
    std::string uuid_;
    unsigned memory_mib_ = 0;
    std::uint64_t down_count_ = 0; // the host's, at placement
    bool booting_ = false;
    bool kept_ = false;
};

/// The host for a container `uuid` of `memory_mib` in a hypervisor_pool,
/// counted as booting there.
boost::asio::awaitable<host_placement> place_on_host(std::shared_ptr<hypervisor_pool_state> state,
                                                     std::string uuid, unsigned memory_mib);

/// async: `work`'s result, unless `placement`'s host goes down first: then
/// `work` is cancelled, and this fails with errc::host_down. A failure of
/// `work` after its host went down is reported as host_down too (it is the
/// cause). Without a placement, just `work`.
template <class T>
boost::asio::awaitable<T> unless_host_down(const host_placement& placement,
                                           boost::asio::awaitable<T> work, std::string what) {
    if (!placement)
        co_return co_await std::move(work);
    namespace experimental = boost::asio::experimental;
    auto executor = co_await boost::asio::this_coro::executor;
    auto group = experimental::make_parallel_group(
        boost::asio::co_spawn(executor, std::move(work), boost::asio::deferred),
        boost::asio::co_spawn(executor, placement.wait_until_down(), boost::asio::deferred));
    auto waiting = group.async_wait(experimental::wait_for_one(), boost::asio::use_awaitable);
    if constexpr (std::is_void_v<T>) {
        auto [order, work_failure, down_failure] = co_await std::move(waiting);
        // A success in the same turn as the host going down is lost as well.
        if ((order[0] == 1 && !down_failure) || placement.host_went_down())
            std::rethrow_exception(placement.host_down_error(what));
        if (work_failure)
            std::rethrow_exception(work_failure);
    } else {
        auto [order, work_failure, value, down_failure] = co_await std::move(waiting);
        if ((order[0] == 1 && !down_failure) || placement.host_went_down())
            std::rethrow_exception(placement.host_down_error(what));
        if (work_failure)
            std::rethrow_exception(work_failure);
        co_return std::move(value);
    }
}

} // namespace detail
} // namespace anweddol

#endif
