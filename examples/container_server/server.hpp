// The container server's state: the containers it handed out (whose, and
// until when), its capacity and pool, its connections; and what each
// request does to them.
#ifndef CONTAINER_SERVER_SERVER_HPP
#define CONTAINER_SERVER_SERVER_HPP

#include "access.hpp"
#include "connections.hpp"
#include "messages.hpp"
#include "metrics.hpp"
#include "settings.hpp"

#include <anweddol/container_pool.hpp>
#include <anweddol/virtualization.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>

namespace example {

namespace asio = boost::asio;

// A container's end of life: the timer of its --max-lifetime, cancelled
// when the container goes first (DELETE, shutdown).
class expiry_timer {
public:
    explicit expiry_timer(std::shared_ptr<asio::steady_timer> timer)
        : timer_(std::move(timer)) {}
    expiry_timer(expiry_timer&&) noexcept = default;
    expiry_timer& operator=(expiry_timer&&) = delete;
    ~expiry_timer() {
        if (timer_)
            timer_->cancel();
    }

private:
    std::shared_ptr<asio::steady_timer> timer_;
};

// RFC 3339, in UTC.
inline std::string utc_time(std::chrono::system_clock::time_point t) {
    const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char text[32];
    return std::string(text, std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc));
}

class container_server {
public:
    container_server(asio::any_io_executor executor, server_settings settings, access_policy access)
        : interface_(executor)
        , capacity_(executor, settings.capacity)
        , settings_(std::move(settings))
        , access_(std::move(access))
        , metrics_(settings_.pool > 0)
        , connections_(settings_.max_connections) {
        if (settings_.pool)
            pool_ = std::make_unique<anweddol::container_pool>(executor, pool_options());
    }

    const server_settings& settings() const { return settings_; }
    server_metrics& metrics() { return metrics_; }
    connection_table& connections() { return connections_; }

    // Host, Origin, then the bearer token: a refusal, or who sent it.
    std::variant<std::string, response_type> admit(const request_type& request) {
        if (const auto refused = access_.check_host_and_origin(request))
            return refuse(request,
                          refused->status == http::status::forbidden ? "origin_not_allowed"
                                                                     : "host_not_allowed",
                          refused->status, refused->message);
        const auto who = access_.authenticate(request);
        if (who.authenticated)
            return who.principal;
        auto response = refuse(request, "unauthorized", http::status::unauthorized,
                               "this server needs \"Authorization: Bearer TOKEN\" with a token "
                               "its --token-file knows");
        response.set(http::field::www_authenticate,
                     who.token_given ? R"(Bearer realm="container_server", error="invalid_token")"
                                     : R"(Bearer realm="container_server")");
        return response;
    }

    // Every request but POST /containers, from an admitted `principal`.
    asio::awaitable<response_type> handle(const request_type& request, std::string principal) {
        const std::string_view target = request.target();
        if (target == "/metrics" && request.method() == http::verb::get)
            co_return scrape(request);
        if (target == "/metrics")
            co_return refuse(request, "method_not_allowed", http::status::method_not_allowed,
                             "use GET on /metrics");
        if (target == "/containers" && request.method() == http::verb::get)
            co_return list(request, principal);
        if (target.starts_with("/containers/") && request.method() == http::verb::delete_)
            co_return co_await destroy(request, principal,
                                       target.substr(std::string_view("/containers/").size()));
        if (target == "/containers" || target.starts_with("/containers/"))
            co_return refuse(request, "method_not_allowed", http::status::method_not_allowed,
                             "use POST or GET on /containers, DELETE on /containers/{uuid}");
        co_return refuse(request, "not_found", http::status::not_found,
                         "no such resource: " + std::string(target));
    }

    // POST /containers: checks the request, takes a place in the capacity,
    // provisions. Cancelling it (the client hung up) cancels the
    // provisioning, which destroys the domain: nothing is stored.
    asio::awaitable<outcome> create(const request_type& request, std::string principal) {
        const auto began = std::chrono::steady_clock::now();
        if (stopping_)
            co_return outcome{unavailable(request, "server_stopping", "the server is stopping")};
        const auto parsed = parse_container_request(request, settings_);
        if (const auto* refused = std::get_if<refusal>(&parsed))
            co_return outcome{refuse(request,
                                     refused->status == http::status::unsupported_media_type
                                         ? "unsupported_media_type"
                                         : "bad_request",
                                     refused->status, refused->message)};
        const auto& wanted = std::get<container_request>(parsed);

        anweddol::diagnostics diag;
        auto reserving =
            capacity_.reserve(wanted.memory_mib, diag, asio::as_tuple(asio::use_awaitable));
        auto [refused, place] = co_await std::move(reserving);
        if (refused == anweddol::errc::over_capacity)
            co_return outcome{
                unavailable(request, "over_capacity",
                            "no capacity for another container now: " + diag.client_message())};
        if (refused)
            co_return outcome{refuse(request, "capacity_check_failed",
                                     http::status::internal_server_error,
                                     "cannot check the capacity: " + refused.message() + ": " +
                                         diag.client_message() + " " + diag.server_message())};

        auto obtaining = obtain(wanted, diag);
        auto [failed, provisioned] = co_await std::move(obtaining);
        if (failed) {
            // provision() (or the pool) has destroyed the domain already;
            // the place goes back with `place`. A cancelled one is counted
            // by the caller, which knows why (the client hung up).
            if (failed != boost::system::errc::operation_canceled)
                metrics_.failed(failure_reason(failed));
            co_return outcome{error(request, http::status::internal_server_error,
                                    "the container could not be provisioned: " + failed.message() +
                                        ": " + diag.client_message())};
        }
        place.mark_booted();
        metrics_.handed_out(provisioned, takes_from_pool(wanted),
                            std::chrono::steady_clock::now() - began);
        co_return hand_out(request, std::move(principal), provisioned, std::move(place));
    }

    // Destroys a container whose credentials never reached the client.
    asio::awaitable<void> discard(std::string uuid) {
        auto removing = take_down(uuid);
        co_await std::move(removing);
    }

    // Closes every connection (which cancels their provisionings), destroys
    // the pool's containers and stops every container handed out.
    asio::awaitable<void> shutdown() {
        stopping_ = true;
        connections_.for_each_socket([](tcp::socket& socket) {
            boost::system::error_code ignored;
            socket.shutdown(tcp::socket::shutdown_both, ignored);
            socket.close(ignored);
        });
        if (pool_) {
            auto stopping = pool_->shutdown(asio::as_tuple(asio::use_awaitable));
            auto [failed] = co_await std::move(stopping);
            std::cout << "pool: " << (failed ? "not shut down: " + failed.message() : "shut down")
                      << std::endl;
        }
        std::size_t destroyed = 0;
        for (const auto& uuid : interface_.list_stored_containers()) {
            auto removing = take_down(uuid);
            const auto [found, failed] = co_await std::move(removing);
            if (failed)
                std::cout << "container " << uuid << " could not be destroyed: " << failed.message()
                          << std::endl;
            else if (found)
                ++destroyed;
        }
        std::cout << "destroyed " << destroyed << " container(s)" << std::endl;
    }

private:
    struct handed_out {
        std::string ip;
        std::uint16_t port;
        std::string username;
        std::string owner; // the client that created it ("" with --no-auth)
        digest owner_token_hash;
        expiry_timer expiry;
        anweddol::container_capacity::reservation place;
    };

    // Stores a provisioned container, starts its lifetime, and answers 201
    // with its credentials and owner token; the password is wiped here, the
    // answer when it is freed.
    outcome hand_out(const request_type& request, std::string principal,
                     anweddol::provisioned_container& provisioned,
                     anweddol::container_capacity::reservation place) {
        const auto& container = provisioned.container;
        const std::string uuid = container->get_uuid();
        auto owner = new_owner_token();
        auto timer =
            std::make_shared<asio::steady_timer>(interface_.get_executor(), settings_.max_lifetime);
        const auto expires_at = std::chrono::system_clock::now() + settings_.max_lifetime;
        interface_.add_stored_container(container);
        handed_out_.emplace(uuid, handed_out{provisioned.ip, provisioned.port, provisioned.username,
                                             std::move(principal), owner.hash, expiry_timer(timer),
                                             std::move(place)});
        asio::co_spawn(interface_.get_executor(), expire(uuid, std::move(timer)), asio::detached);
        const json::value body(json::object({{"uuid", uuid},
                                             {"ip", provisioned.ip},
                                             {"port", provisioned.port},
                                             {"username", provisioned.username},
                                             {"password", provisioned.password},
                                             {"owner_token", owner.token},
                                             {"lifetime", settings_.max_lifetime.count()},
                                             {"expires_at", utc_time(expires_at)}},
                                            &json_memory_));
        wipe(provisioned.password);
        wipe(owner.token);
        return outcome(
            secret_reply(request.version(), request.keep_alive(), http::status::created, body),
            uuid);
    }

    // Ends a container at its --max-lifetime, unless it went first.
    asio::awaitable<void> expire(std::string uuid, std::shared_ptr<asio::steady_timer> timer) {
        auto waiting = timer->async_wait(asio::as_tuple(asio::use_awaitable));
        auto [cancelled] = co_await std::move(waiting);
        if (cancelled || !handed_out_.contains(uuid))
            co_return;
        std::cout << "container " << uuid << " reached its maximum lifetime ("
                  << settings_.max_lifetime.count() << " s): destroying it" << std::endl;
        metrics_.expired();
        auto removing = take_down(uuid);
        const auto [found, failed] = co_await std::move(removing);
        if (failed)
            std::cout << "container " << uuid << " could not be destroyed: " << failed.message()
                      << "; it is no longer listed, and goes when the server stops" << std::endl;
    }

    // Forgets a container (its place goes back once the domain is gone, its
    // lifetime's timer is cancelled) and destroys its domain: whether it was
    // there, and the error of a domain that would not stop.
    asio::awaitable<std::tuple<bool, boost::system::error_code>> take_down(std::string uuid) {
        auto container = interface_.get_stored_container(uuid);
        if (!container)
            co_return std::tuple{false, boost::system::error_code{}};
        const auto entry = handed_out_.extract(uuid);
        interface_.delete_stored_container(uuid);
        if (!container->is_domain_running())
            co_return std::tuple{true, boost::system::error_code{}};
        auto stopping =
            container->stop_domain(anweddol::stop_options{}, asio::as_tuple(asio::use_awaitable));
        auto [failed] = co_await std::move(stopping);
        if (failed && !container->is_domain_running())
            failed = {};
        co_return std::tuple{true, failed};
    }

    // A container for `wanted`: from the pool when it keeps such ones,
    // booted for the request otherwise. On failure or cancellation nothing
    // is left running.
    asio::awaitable<std::tuple<boost::system::error_code, anweddol::provisioned_container>>
    obtain(const container_request& wanted, anweddol::diagnostics& diag) {
        if (takes_from_pool(wanted))
            co_return co_await pool_->take(diag, asio::as_tuple(asio::use_awaitable));
        auto container = interface_.create_container(settings_.iso, false);
        container->set_memory(wanted.memory_mib); // within bounds: checked by the caller
        container->set_vcpus(wanted.vcpus);
        co_return co_await anweddol::provision(container, provisioning_options(), diag,
                                               asio::as_tuple(asio::use_awaitable));
    }

    // An error answer, counted among the failures under `reason`.
    response_type refuse(const request_type& request, std::string_view reason, http::status status,
                         const std::string& message) {
        metrics_.failed(reason);
        return error(request, status, message);
    }
    response_type unavailable(const request_type& request, std::string_view reason,
                              const std::string& message) {
        metrics_.failed(reason);
        return example::unavailable(request, settings_.retry_after, message);
    }

    // GET /metrics: the counters, and the gauges as they are now.
    response_type scrape(const request_type& request) {
        auto& admission = anweddol::runtime::of(interface_.get_executor()).admission();
        server_metrics::state now;
        now.running = handed_out_.size();
        now.connections = connections_.size();
        now.capacity = capacity_.get_usage();
        now.capacity_limit = capacity_.get_options().max_containers;
        now.admission_waiting = admission.waiting();
        now.admission_booting = admission.booting();
        if (pool_)
            now.pool = pool_->get_stats();
        auto response = empty_reply(request.version(), request.keep_alive(), http::status::ok);
        response.set(http::field::content_type, "text/plain; version=0.0.4");
        const std::string text = metrics_.scrape(now);
        response.body().assign(text.data(), text.size());
        response.prepare_payload();
        return response;
    }

    // Whether a request for `wanted` takes its container from the pool: one
    // such as the pool keeps.
    bool takes_from_pool(const container_request& wanted) const {
        return pool_ && wanted.memory_mib == pool_memory_mib && wanted.vcpus == pool_vcpus;
    }

    anweddol::provisioning_options provisioning_options() const {
        anweddol::provisioning_options provisioning;
        provisioning.driver_uri = settings_.uri;
        provisioning.domain_type = settings_.domain_type;
        // Strangers get these containers: no login without the host keys
        // the guest printed on its console.
        provisioning.require_console_host_keys = true;
        return provisioning;
    }

    anweddol::container_pool_options pool_options() const {
        anweddol::container_pool_options options;
        options.size = settings_.pool;
        options.iso_path = settings_.iso;
        options.memory = pool_memory_mib;
        options.vcpus = pool_vcpus;
        options.provisioning = provisioning_options();
        options.on_event = [](const anweddol::container_pool_event& event) {
            using type = anweddol::container_pool_event_type;
            if (event.type == type::boot_failed)
                std::cout << "pool: a boot failed (" << event.error.message() << "), next in "
                          << std::chrono::duration<double>(event.retry_in).count()
                          << " s: " << event.message << std::endl;
            else if (event.type == type::ready || event.type == type::recycled ||
                     event.type == type::lost)
                std::cout << "pool: " << event.uuid << " " << anweddol::to_string(event.type)
                          << std::endl;
        };
        return options;
    }

    // GET /containers: the client's own containers (without passwords).
    response_type list(const request_type& request, const std::string& principal) {
        json::array containers;
        for (const auto& [uuid, h] : handed_out_) {
            if (h.owner != principal)
                continue;
            const auto container = interface_.get_stored_container(uuid);
            containers.push_back(json::object{{"uuid", uuid},
                                              {"ip", h.ip},
                                              {"port", h.port},
                                              {"username", h.username},
                                              {"running", container->is_domain_running()}});
        }
        return reply(request.version(), request.keep_alive(), http::status::ok, containers);
    }

    // Whether `request` may delete `entry`: the client that created it
    // (with bearer tokens), or whoever shows its Owner-Token.
    bool may_delete(const request_type& request, const std::string& principal,
                    const handed_out& entry) const {
        if (!settings_.no_auth && entry.owner == principal)
            return true;
        return request.count("Owner-Token") == 1 &&
               token_matches(request["Owner-Token"], entry.owner_token_hash);
    }

    asio::awaitable<response_type> destroy(const request_type& request,
                                           const std::string& principal, std::string_view uuid) {
        if (!looks_like_uuid(uuid))
            co_return refuse(request, "bad_request", http::status::bad_request,
                             "not a UUID: " + std::string(uuid.substr(0, 64)));
        const std::string key(uuid);
        const auto entry = handed_out_.find(key);
        // Another client's container is answered as one that does not
        // exist: its UUID tells it nothing.
        if (entry == handed_out_.end() || !may_delete(request, principal, entry->second))
            co_return refuse(request, "not_found", http::status::not_found,
                             "no container " + key +
                                 " of yours (delete one with the client "
                                 "token that created it, or its Owner-Token)");
        auto removing = take_down(key);
        const auto [found, failed] = co_await std::move(removing);
        if (failed)
            co_return refuse(request, "destroy_failed", http::status::internal_server_error,
                             "container " + key + " could not be destroyed: " + failed.message() +
                                 "; it is no longer listed, and goes when the server stops");
        co_return empty_reply(request.version(), request.keep_alive(), http::status::no_content);
    }

    anweddol::virtualization_interface interface_;
    anweddol::container_capacity capacity_;
    server_settings settings_;
    access_policy access_;
    server_metrics metrics_;
    connection_table connections_;
    wiping_resource json_memory_; // before the JSON values that use it
    std::map<std::string, handed_out> handed_out_;
    bool stopping_ = false;
    // Last: destroyed first, with the containers it holds.
    std::unique_ptr<anweddol::container_pool> pool_;
};

} // namespace example

#endif
