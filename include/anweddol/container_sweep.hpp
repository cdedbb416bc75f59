//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_CONTAINER_SWEEP_HPP
#define ANWEDDOL_CONTAINER_SWEEP_HPP

// Finding the containers an earlier process left running, for a server that
// turned autodestroy off so that its containers outlive a restart.

#include <anweddol/container_instance.hpp>
#include <anweddol/detail/config.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace anweddol {

/// What sweep_containers() does with each domain it finds.
enum class sweep_action {
    adopt,   ///< take it over as a container_instance (container_instance::adopt_domain)
    destroy, ///< destroy it
};

struct sweep_options {
    std::string driver_uri = "qemu:///system";
    /// Whose domains: the owner recorded in their <metadata>, that is the
    /// options::owner their containers had. Required: domains of any other
    /// owner, and domains that are not anweddol's, are left alone.
    std::string owner;
    sweep_action action = sweep_action::destroy;
    /// The options of the containers adopted (their owner becomes `owner`).
    container_instance::options container_options;
};

struct sweep_result {
    /// With sweep_action::adopt: one container per domain found, running,
    /// with its address where it has a lease.
    std::vector<std::shared_ptr<container_instance>> adopted;
    /// The UUIDs of the domains destroyed: all those found, with
    /// sweep_action::destroy; with adopt, any that could not be adopted
    /// (shaped unlike a container).
    std::vector<std::string> destroyed;
    /// Running domains left alone: another owner's, or not anweddol's.
    std::size_t left_alone = 0;
    /// The addresses whose reservation was removed
    /// (container_instance::options::reserve_address): those of the domains
    /// destroyed, and those that no domain has the MAC of any more, left by
    /// a process that died before it could remove them, whatever their
    /// owner, unless made in the last 10 minutes (their domains may be
    /// being created).
    std::vector<std::string> released_addresses;
};

namespace detail {
boost::asio::awaitable<sweep_result> sweep_here(boost::asio::any_io_executor executor,
                                                sweep_options options);
} // namespace detail

/// async: finds the running domains of libvirt at `options.driver_uri` that
/// carry `options.owner` in their anweddol <metadata>, and adopts or
/// destroys every one of them. Completes with `(error_code, sweep_result)`
/// (default token: `co_await` returns it). Errors: errc::invalid_argument
/// for an empty owner (nothing is touched); libvirt's errors. Adopted
/// containers use `executor`.
template <class CompletionToken = default_completion_token>
auto sweep_containers(boost::asio::any_io_executor executor, sweep_options options,
                      CompletionToken&& token = {}) {
    if (options.owner.empty())
        detail::throw_error(errc::invalid_argument,
                            "sweep_options::owner is empty: name the owner whose containers to "
                            "sweep (container_instance::options::owner), so that no one else's "
                            "are touched");
    auto ex = executor;
    return detail::initiate_coroutine(std::move(ex),
                                      detail::sweep_here(std::move(executor), std::move(options)),
                                      nullptr, std::forward<CompletionToken>(token));
}

} // namespace anweddol

#ifdef ANWEDDOL_HEADER_ONLY
#include <anweddol/impl/container_sweep.ipp>
#endif

#endif
