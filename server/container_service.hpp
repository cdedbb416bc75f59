// The server's lifecycle: what CREATE, STAT and DESTROY do to containers,
// their forwarded ports, their records and their lifetimes; and the
// reconciliation that lets a restarted server take back what a killed one
// handed out.
#ifndef ANWEDDOL_SERVER_CONTAINER_SERVICE_HPP
#define ANWEDDOL_SERVER_CONTAINER_SERVICE_HPP

#include "configuration.hpp"
#include "port_forwarder.hpp"
#include "protocol.hpp"
#include "server_metrics.hpp"
#include "state_database.hpp"

#include <anweddol/container_capacity.hpp>
#include <anweddol/container_pool.hpp>
#include <anweddol/hypervisor_pool.hpp>
#include <anweddol/virtualization.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace anweddol::server {

class container_service {
public:
    // `iso_sha256` is the ISO's digest, computed once at start.
    container_service(boost::asio::any_io_executor executor, const server_configuration& config,
                      std::string iso_sha256, state_database& database,
                      access_token_store* access_tokens, server_metrics& metrics);
    container_service(const container_service&) = delete;
    container_service& operator=(const container_service&) = delete;
    ~container_service();

    // Takes back what the state database records: adopts the recorded
    // domains that still run and reopens their forwards on their ports,
    // destroys the server's domains it has no record of, and drops the
    // records whose domain is gone. Then starts the warm pool. Throws when
    // libvirt cannot be reached: the server must not serve half-started.
    boost::asio::awaitable<void> start();

    // Every request of either transport; never throws.
    boost::asio::awaitable<response> handle(request r);

    // Refuses new CREATEs, closes every forward, destroys the pool's
    // containers and every container handed out (the reference's
    // behaviour at stop), dropping their records. Safe to call twice: the
    // second waits for the first. (A server killed instead adopts its
    // containers at its next start.)
    boost::asio::awaitable<void> stop();

    // Destroys the container of a CREATE answer that never reached its
    // client (the REST client hung up): no one else has its credentials.
    void discard(const response& undelivered);

    // The metrics' gauges, now.
    server_metrics::state gauges() const;

private:
    struct handed_out;

    // How many coroutines of a kind run, and a timer that wakes whoever
    // waits for none to run.
    struct idle_signal {
        boost::asio::steady_timer timer;
        std::size_t busy = 0;
    };
    // Counts a start, a CREATE or a destruction under way (on `idle_`), or
    // the stop (on `stopped_`), while it lives.
    // Shares the signal: a coroutine frame that the io_context destroys
    // unfinished, after the service, still finds it.
    class activity {
    public:
        explicit activity(const container_service& service)
            : activity(service.idle_) {}
        explicit activity(std::shared_ptr<idle_signal> signal)
            : signal_(std::move(signal)) {
            ++signal_->busy;
        }
        activity(const activity&) = delete;
        activity& operator=(const activity&) = delete;
        ~activity() {
            if (--signal_->busy == 0)
                signal_->timer.cancel();
        }

    private:
        std::shared_ptr<idle_signal> signal_;
    };
    static boost::asio::awaitable<void> wait_until_idle(std::shared_ptr<idle_signal> signal);
    boost::asio::awaitable<void> destroy_domain(std::unique_ptr<handed_out> entry,
                                                std::string uuid);

    boost::asio::awaitable<response> create(const request& r);
    boost::asio::awaitable<response> destroy(const request& r);
    response stat() const;
    std::optional<response> check_access_token(const request& r);

    boost::asio::awaitable<provisioned_container> obtain(diagnostics& diag);
    // Opens the forward of a container to its guest's SSH port, on
    // `port` (0: one the allocator picks); nullptr and `why` when the port
    // cannot be bound.
    std::unique_ptr<port_forward> open_forward(const std::string& uuid, const std::string& guest_ip,
                                               std::uint16_t guest_port,
                                               std::shared_ptr<ssh_jump> jump, std::uint16_t port,
                                               std::string& why);
    void keep(std::string uuid, std::shared_ptr<container_instance> container,
              std::unique_ptr<port_forward> forward, container_capacity::reservation place,
              std::optional<std::chrono::system_clock::time_point> expires_at);
    boost::asio::awaitable<void>
    watch(std::string uuid, std::shared_ptr<boost::asio::steady_timer>,
          std::optional<std::chrono::system_clock::time_point> expires);
    // Forgets a container (record, forward, place) and destroys its domain.
    boost::asio::awaitable<bool> take_down(std::string uuid, std::string why);

    boost::asio::awaitable<void> reconcile_host(std::string driver_uri, std::string host_name,
                                                std::shared_ptr<ssh_jump> jump);
    provisioning_options provisioning() const;
    std::string host_name(const provisioned_container& provisioned) const;
    container_instance::options container_options() const;

    boost::asio::any_io_executor executor_;
    const server_configuration& config_;
    std::string iso_sha256_;
    state_database& database_;
    access_token_store* access_tokens_;
    server_metrics& metrics_;
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    container_capacity capacity_;
    port_allocator ports_;
    std::unique_ptr<hypervisor_pool> hosts_;
    std::map<std::string, std::unique_ptr<handed_out>> containers_;
    bool stopping_ = false;
    std::shared_ptr<idle_signal> idle_;
    std::shared_ptr<idle_signal> stopped_;
    // Last: destroyed first, with the containers it holds.
    std::unique_ptr<container_pool> pool_;
};

} // namespace anweddol::server

#endif
