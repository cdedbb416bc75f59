#include "container_service.hpp"

#include "ip_filter.hpp"
#include "server_log.hpp"
#include "tokens.hpp"

#include <anweddol/container_sweep.hpp>
#include <anweddol/ssh_jump.hpp>
#include <anweddol/version.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/crypto.h>

#include <set>

namespace anweddol::server {

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// How often a container handed out is checked: its domain may stop by
// itself (the guest powered off, libvirt killed it), and its forward must
// close then, as the reference's one-second reaper does.
constexpr auto liveness_interval = 1s;

// One local host without a jump is served by a plain libvirt connection;
// several hosts, or a host behind a jump, by a hypervisor_pool.
bool uses_hypervisor_pool(const server_configuration& config) {
    const auto& hosts = config.anweddol.hypervisors;
    return hosts.size() > 1 || hosts.front().jump.has_value();
}

hypervisor_host_options host_options(const hypervisor_settings& host,
                                     const server_configuration& config) {
    hypervisor_host_options o;
    o.name = host.name;
    o.uri = host.uri;
    o.nat_interface_name = host.nat_interface_name.empty() ? config.container.nat_interface_name
                                                           : host.nat_interface_name;
    if (host.jump) {
        ssh_jump_options jump;
        jump.host = host.jump->host.to_string();
        jump.port = host.jump->port;
        jump.username = host.jump->username;
        jump.password = host.jump->password;
        jump.private_key_file = host.jump->private_key_file;
        jump.host_keys = host_key_policy::known_hosts;
        jump.known_hosts_file = host.jump->known_hosts_file;
        o.jump = std::move(jump);
    }
    return o;
}

} // namespace

struct container_service::handed_out {
    std::shared_ptr<container_instance> container;
    std::unique_ptr<port_forward> forward;
    container_capacity::reservation place;
    std::shared_ptr<asio::steady_timer> watch;
    std::string host;
};

container_service::container_service(asio::any_io_executor executor,
                                     const server_configuration& config, std::string iso_sha256,
                                     state_database& database, access_token_store* access_tokens,
                                     server_metrics& metrics)
    : executor_(executor)
    , config_(config)
    , iso_sha256_(std::move(iso_sha256))
    , database_(database)
    , access_tokens_(access_tokens)
    , metrics_(metrics)
    , capacity_(executor,
                [&] {
                    container_capacity::options o;
                    o.max_containers =
                        config.container.max_allowed_running_container_domains.value_or(0);
                    o.driver_uri = config.anweddol.hypervisors.front().uri;
                    // Memory is each host's business with several hosts:
                    // the hypervisor pool places by free memory there.
                    o.check_memory = !uses_hypervisor_pool(config);
                    return o;
                }())
    , ports_(config.anweddol.forward_bind_address, config.port_forwarding.low,
             config.port_forwarding.high)
    , idle_(std::make_shared<idle_signal>(asio::steady_timer(executor)))
    , stopped_(std::make_shared<idle_signal>(asio::steady_timer(executor))) {
    if (uses_hypervisor_pool(config)) {
        hypervisor_pool_options o;
        for (const auto& host : config.anweddol.hypervisors)
            o.hosts.push_back(host_options(host, config));
        hosts_ = std::make_unique<hypervisor_pool>(executor, std::move(o));
    }
}

container_service::~container_service() = default;

// The configured name of the host a container runs on ("local" for the
// single hypervisor_uri), as its record keeps it.
std::string container_service::host_name(const provisioned_container& provisioned) const {
    return provisioned.host.empty() ? config_.anweddol.hypervisors.front().name : provisioned.host;
}

container_instance::options container_service::container_options() const {
    container_instance::options o;
    o.domain_type = config_.container.domain_type;
    // Handed-out containers outlive a crash or a kill -9 of the server:
    // the next start adopts them (reconcile), by this owner tag.
    o.autodestroy = false;
    o.owner = config_.anweddol.owner;
    return o;
}

provisioning_options container_service::provisioning() const {
    provisioning_options o;
    o.driver_uri = config_.anweddol.hypervisors.front().uri;
    o.hypervisors = hosts_.get();
    o.domain_type = config_.container.domain_type;
    if (config_.container.wait_max_tryout >= 0)
        o.address_timeout = std::chrono::seconds(config_.container.wait_max_tryout);
    else
        o.address_timeout = std::nullopt;
    o.endpoint_username = config_.container.endpoint_username;
    o.endpoint_password = config_.container.endpoint_password;
    o.require_console_host_keys = config_.anweddol.require_console_host_keys;
    return o;
}

asio::awaitable<void> container_service::start() {
    // stop() waits for the start, which gives up after its current step.
    const activity counted(*this);
    if (hosts_) {
        for (const auto& host : config_.anweddol.hypervisors) {
            std::shared_ptr<ssh_jump> jump;
            if (host.jump)
                jump = ssh_jump::create(executor_, *host_options(host, config_).jump);
            co_await reconcile_host(host.uri, host.name, std::move(jump));
            if (stopping_)
                co_return;
        }
    } else {
        const auto& local = config_.anweddol.hypervisors.front();
        co_await reconcile_host(local.uri, local.name, nullptr);
    }
    if (stopping_)
        co_return;
    // Records whose host is gone from the configuration, or whose domain
    // was not found running: their containers are gone.
    for (const auto& record : database_.list()) {
        if (containers_.contains(record.uuid))
            continue;
        log::info("container ", record.uuid, " is gone since the last run: its record dropped");
        database_.erase(record.uuid);
    }

    container_pool_options pool;
    pool.size = config_.anweddol.warm_pool_size;
    pool.iso_path = config_.container.container_iso_file_path;
    pool.memory = config_.container.container_memory;
    pool.vcpus = config_.container.container_vcpus;
    pool.nat_interface_name = config_.container.nat_interface_name;
    pool.container = container_options();
    pool.provisioning = provisioning();
    // A CREATE then costs a check and a forward, not the setup script and
    // a login in front of the client.
    pool.hand_over_ahead = true;
    pool.on_event = [this](const container_pool_event& event) {
        using type = container_pool_event_type;
        if (event.type == type::boot_failed)
            log::warning("pool: a boot failed (", event.error.message(), "), next in ",
                         std::chrono::duration<double>(event.retry_in).count(),
                         " s: ", event.message);
        else if (event.type == type::ready)
            log::info("pool: ", event.uuid, " ready: waited for a boot slot ",
                      log::seconds_text(event.timings.queued), ", defined in ",
                      log::seconds_text(event.timings.define), ", address after ",
                      log::seconds_text(event.timings.boot_to_ip), ", endpoint logged in after ",
                      log::seconds_text(event.timings.ip_to_ssh), ", handed over ahead in ",
                      log::seconds_text(event.timings.administration + event.timings.verification));
        else if (event.type != type::boot_started && event.type != type::taken)
            log::info("pool: ", event.uuid, " ", to_string(event.type));
    };
    pool_ = std::make_unique<container_pool>(executor_, std::move(pool));
    log::info("serving containers from ", config_.container.container_iso_file_path, " (sha256 ",
              iso_sha256_, "), ", config_.anweddol.warm_pool_size, " kept booted");
}

// The domains of this server on one host: those recorded are adopted and
// get their forwards back on their ports; the others are destroyed (their
// credentials never reached anyone, or their record was dropped).
asio::awaitable<void> container_service::reconcile_host(std::string driver_uri,
                                                        std::string host_name,
                                                        std::shared_ptr<ssh_jump> jump) {
    sweep_options sweep;
    sweep.driver_uri = driver_uri;
    sweep.owner = config_.anweddol.owner;
    sweep.action = sweep_action::adopt;
    sweep.container_options = container_options();
    auto sweeping = sweep_containers(executor_, std::move(sweep));
    auto found = co_await std::move(sweeping);
    for (const auto& uuid : found.destroyed)
        log::warning("destroyed domain ", uuid, " on ", driver_uri,
                     ": it could not be adopted as a container");
    for (auto& container : found.adopted) {
        const std::string uuid = container->get_uuid();
        auto record = database_.find(uuid);
        if (!record || record->host != host_name) {
            log::info("destroying domain ", uuid, " on ", driver_uri,
                      ": this server handed it to no one it knows of");
            auto stopping = container->stop_domain(stop_options{}, tuple_awaitable);
            auto [failed] = co_await std::move(stopping);
            if (failed)
                log::error("domain ", uuid, " could not be destroyed: ", failed.message());
            continue;
        }
        std::optional<std::chrono::system_clock::time_point> expires;
        if (record->expires_at)
            expires = *record->expires_at;
        std::string why;
        auto forward = open_forward(uuid, record->guest_ip, record->guest_port, jump,
                                    record->forwarded_port, why);
        if (!forward) {
            log::error("container ", uuid, ": its port ", record->forwarded_port,
                       " cannot be forwarded again (", why, "): destroying it");
            database_.erase(uuid);
            auto stopping = container->stop_domain(stop_options{}, tuple_awaitable);
            co_await std::move(stopping);
            continue;
        }
        // An adopted container holds its place, as it did before.
        diagnostics diag;
        auto reserving =
            capacity_.reserve(config_.container.container_memory, diag, tuple_awaitable);
        auto [refused, place] = co_await std::move(reserving);
        if (refused)
            log::warning("container ", uuid, " adopted beyond the capacity: ", refused.message());
        place.mark_booted();
        log::info("container ", uuid, " adopted: port ", record->forwarded_port, " forwards to ",
                  record->guest_ip, ":", record->guest_port);
        keep(uuid, std::move(container), std::move(forward), std::move(place), expires);
        containers_.at(uuid)->host = host_name;
    }
}

std::unique_ptr<port_forward>
container_service::open_forward(const std::string& uuid, const std::string& guest_ip,
                                std::uint16_t guest_port, std::shared_ptr<ssh_jump> jump,
                                std::uint16_t port, std::string& why) {
    auto executor = executor_;
    connect_function connect = [executor, guest_ip, guest_port,
                                jump]() -> asio::awaitable<asio::generic::stream_protocol::socket> {
        if (jump) {
            auto opening = jump->async_open_tunnel(guest_ip, guest_port);
            co_return co_await std::move(opening);
        }
        const asio::ip::tcp::endpoint guest(asio::ip::make_address(guest_ip), guest_port);
        asio::generic::stream_protocol::socket socket(executor);
        auto connecting = socket.async_connect(guest, asio::use_awaitable);
        co_await std::move(connecting);
        co_return socket;
    };
    bound_port bound;
    try {
        bound = port ? ports_.acquire(executor_, port) : ports_.acquire(executor_);
    } catch (const std::exception& e) {
        why = e.what();
        return nullptr;
    }
    port_forward_options options;
    // The IP filter applies to the forwards too (the reference's socat
    // listened to everyone).
    if (config_.ip_filter.enabled)
        options.allow = [this](const asio::ip::address& peer) {
            return ip_allowed(config_.ip_filter, peer);
        };
    auto forward =
        std::make_unique<port_forward>(std::move(bound), std::move(connect), std::move(options));
    forward->start();
    log::info("container ", uuid, ": port ", forward->port(), " forwards to ", guest_ip, ":",
              guest_port, jump ? " through " + jump->name() : std::string());
    return forward;
}

void container_service::keep(std::string uuid, std::shared_ptr<container_instance> container,
                             std::unique_ptr<port_forward> forward,
                             container_capacity::reservation place,
                             std::optional<std::chrono::system_clock::time_point> expires_at) {
    auto entry = std::make_unique<handed_out>();
    entry->container = std::move(container);
    entry->forward = std::move(forward);
    entry->place = std::move(place);
    entry->watch = std::make_shared<asio::steady_timer>(executor_);
    auto watching = watch(uuid, entry->watch, expires_at);
    containers_.emplace(uuid, std::move(entry));
    asio::co_spawn(executor_, std::move(watching), asio::detached);
}

// Ends a container when its domain stops by itself or its lifetime ends.
asio::awaitable<void>
container_service::watch(std::string uuid, std::shared_ptr<asio::steady_timer> timer,
                         std::optional<std::chrono::system_clock::time_point> expires) {
    for (;;) {
        timer->expires_after(liveness_interval);
        auto waiting = timer->async_wait(tuple_awaitable);
        auto [cancelled] = co_await std::move(waiting);
        const auto entry = containers_.find(uuid);
        if (cancelled || entry == containers_.end() || entry->second->watch != timer)
            co_return;
        if (!entry->second->container->is_domain_running()) {
            metrics_.stopped_by_itself();
            auto removing = take_down(uuid, "its domain stopped by itself");
            co_await std::move(removing);
            co_return;
        }
        if (expires && std::chrono::system_clock::now() >= *expires) {
            metrics_.expired();
            auto removing = take_down(uuid, "it reached its maximum lifetime");
            co_await std::move(removing);
            co_return;
        }
    }
}

asio::awaitable<bool> container_service::take_down(std::string uuid, std::string why) {
    auto node = containers_.extract(uuid);
    if (!node)
        co_return false;
    auto entry = std::move(node.mapped());
    entry->watch->cancel();
    entry->forward->close();
    // The record goes before the domain: a server killed in between finds
    // a domain of its own with no record at its next start, and destroys it.
    database_.erase(uuid);
    log::info("container ", uuid, " ends: ", why);
    // The destruction runs to its end whoever cancels the caller (a
    // listener that stops cancels its requests' handlers): a domain given
    // up halfway would run on, unrecorded, holding no place.
    auto destroying =
        asio::co_spawn(executor_, destroy_domain(std::move(entry), std::move(uuid)),
                       asio::bind_cancellation_slot(asio::cancellation_slot(), tuple_awaitable));
    co_await std::move(destroying);
    co_return true;
}

// Destroys a container's domain; its place goes back with `entry`.
asio::awaitable<void> container_service::destroy_domain(std::unique_ptr<handed_out> entry,
                                                        std::string uuid) {
    const activity counted(*this);
    if (!entry->container->is_domain_running())
        co_return;
    auto stopping = entry->container->stop_domain(stop_options{}, tuple_awaitable);
    auto [failed] = co_await std::move(stopping);
    if (failed && entry->container->is_domain_running())
        log::error("container ", uuid, " could not be destroyed (", failed.message(),
                   "): it runs on unrecorded, and the next start destroys it");
}

void container_service::discard(const response& undelivered) {
    const auto* uuid = undelivered.data.if_contains("container_uuid");
    if (!undelivered.success || !uuid || !uuid->is_string())
        return;
    asio::co_spawn(
        executor_,
        take_down(std::string(uuid->get_string()), "its CREATE answer never reached the client"),
        asio::detached);
}

server_metrics::state container_service::gauges() const {
    server_metrics::state now;
    now.containers = containers_.size();
    now.capacity_limit = config_.container.max_allowed_running_container_domains.value_or(0);
    if (pool_)
        now.pool = pool_->get_stats();
    return now;
}

asio::awaitable<response> container_service::handle(request r) {
    // Known verbs only: a label per verb a client makes up would let
    // clients grow the metrics without bound.
    const bool known = r.verb == verb::create || r.verb == verb::stat || r.verb == verb::destroy;
    metrics_.request(known ? std::string_view(r.verb) : "other",
                     r.via == transport::rest ? "rest" : "classic");
    try {
        if (auto refused = check_access_token(r))
            co_return std::move(*refused);
        if (r.verb == verb::stat)
            co_return stat();
        if (r.verb == verb::create) {
            auto creating = create(r);
            co_return co_await std::move(creating);
        }
        if (r.verb == verb::destroy) {
            auto destroying = destroy(r);
            co_return co_await std::move(destroying);
        }
        co_return make_response(false, message::bad_request, {}, "Unhandled verb");
    } catch (const std::exception& e) {
        log::error("a ", r.verb, " request failed: ", e.what());
        co_return make_response(false, message::internal_error);
    }
}

// The reference's access tokens: when enabled, every request carries one.
std::optional<response> container_service::check_access_token(const request& r) {
    if (!access_tokens_)
        return std::nullopt;
    const auto* token = r.parameters.if_contains("access_token");
    if (!token || !token->is_string())
        return make_response(false, message::bad_request, {}, "Access token is required");
    if (!access_tokens_->verify(token->get_string()))
        return make_response(false, message::bad_authentication, {}, "Invalid access token");
    return std::nullopt;
}

response container_service::stat() const {
    boost::json::object data;
    data["version"] = anweddol::version_string;
    data["uptime"] = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::steady_clock::now() - started_)
                         .count();
    if (const auto limit = config_.container.max_allowed_running_container_domains) {
        const auto used = capacity_.get_usage().reserved;
        data["available"] = used >= *limit ? 0 : *limit - used;
    } else {
        data["available"] = "nolimit";
    }
    return make_response(true, message::ok, std::move(data));
}

asio::awaitable<response> container_service::create(const request& r) {
    const auto began = std::chrono::steady_clock::now();
    if (stopping_ || !pool_)
        co_return make_response(false, message::unavailable, {}, "The server is stopping");
    // stop() waits for this CREATE, which gives up at its next step.
    const activity counted(*this);
    diagnostics diag;
    auto reserving = capacity_.reserve(config_.container.container_memory, diag, tuple_awaitable);
    auto [refused, place] = co_await std::move(reserving);
    if (stopping_)
        co_return make_response(false, message::unavailable, {}, "The server is stopping");
    if (refused == errc::over_capacity) {
        metrics_.refused("over_capacity");
        log::warning("CREATE from ", r.peer.to_string(), " refused: ", diag.server_message());
        co_return make_response(
            false, message::unavailable, {},
            "The maximum allowed amount of running containers has been reached on the server");
    }
    if (refused) {
        log::error("CREATE: the capacity cannot be checked: ", refused.message(), ": ",
                   diag.server_message());
        co_return make_response(false, message::internal_error);
    }

    auto taking = pool_->take(diag, tuple_awaitable);
    auto [failed, provisioned] = co_await std::move(taking);
    if (failed) {
        metrics_.refused("provisioning_failed");
        log::error("CREATE from ", r.peer.to_string(), ": no container: ", failed.message(), ": ",
                   diag.server_message());
        co_return make_response(false, message::internal_error);
    }
    place.mark_booted();
    const std::string uuid = provisioned.container->get_uuid();
    if (stopping_) {
        log::info("CREATE: container ", uuid, " is ready as the server stops: destroying it");
        auto stopping = provisioned.container->stop_domain(stop_options{}, tuple_awaitable);
        co_await std::move(stopping);
        wipe(provisioned.password);
        co_return make_response(false, message::unavailable, {}, "The server is stopping");
    }

    // From here a failure destroys the container: its credentials never
    // leave this process.
    std::string why;
    auto forward = open_forward(uuid, provisioned.ip, provisioned.port, provisioned.jump, 0, why);
    if (!forward) {
        log::error("CREATE: container ", uuid, " gets no forwarded port: ", why);
        auto stopping = provisioned.container->stop_domain(stop_options{}, tuple_awaitable);
        co_await std::move(stopping);
        wipe(provisioned.password);
        co_return make_response(false, message::unavailable, {}, "No port left to forward");
    }

    secret client_token = generate_client_token();
    const auto now = std::chrono::system_clock::now();
    std::optional<std::chrono::system_clock::time_point> expires;
    if (config_.anweddol.max_container_lifetime.count() > 0)
        expires = now + config_.anweddol.max_container_lifetime;
    container_record record;
    record.uuid = uuid;
    record.token_sha256 = sha256_hex(client_token.reveal());
    record.forwarded_port = forward->port();
    record.host = host_name(provisioned);
    record.guest_ip = provisioned.ip;
    record.guest_port = provisioned.port;
    record.created_at = std::chrono::time_point_cast<std::chrono::seconds>(now);
    if (expires)
        record.expires_at = std::chrono::time_point_cast<std::chrono::seconds>(*expires);
    // Durable before the answer leaves: a server killed after answering
    // adopts this container at its next start.
    std::string unrecorded;
    try {
        if (database_.insert(record) != state_database::insert_result::inserted)
            unrecorded = "its UUID or port is recorded already: the state database does not "
                         "match this server's containers";
    } catch (const std::exception& e) {
        unrecorded = e.what();
    }
    if (!unrecorded.empty()) {
        log::error("CREATE: container ", uuid, " cannot be recorded (", unrecorded,
                   "): destroying it");
        forward->close();
        auto stopping = provisioned.container->stop_domain(stop_options{}, tuple_awaitable);
        co_await std::move(stopping);
        wipe(provisioned.password);
        co_return make_response(false, message::internal_error);
    }
    const std::uint16_t listen_port = forward->port();
    keep(uuid, provisioned.container, std::move(forward), std::move(place), expires);
    containers_.at(uuid)->host = record.host;

    boost::json::object data;
    data["container_uuid"] = uuid;
    data["client_token"] = client_token.reveal();
    data["container_iso_sha256"] = iso_sha256_;
    data["container_username"] = provisioned.username;
    data["container_password"] = provisioned.password;
    data["container_listen_port"] = listen_port;
    wipe(provisioned.password);
    metrics_.created(provisioned.from_pool, std::chrono::steady_clock::now() - began);
    const auto& phases = provisioned.timings;
    log::info("CREATE from ", r.peer.to_string(), ": container ", uuid, " on port ", listen_port,
              provisioned.from_pool ? " (warm)" : "", provisioned.host.empty() ? "" : " on ",
              provisioned.host, " in ", log::seconds_text(std::chrono::steady_clock::now() - began),
              " (waiting for a boot and its hand-over ", log::seconds_text(phases.pool_wait),
              "; the hand-over, ahead: setup script ", log::seconds_text(phases.administration),
              ", client login check ", log::seconds_text(phases.verification), ")");
    co_return make_response(true, message::ok, std::move(data));
}

asio::awaitable<response> container_service::destroy(const request& r) {
    const auto* uuid = r.parameters.if_contains("container_uuid");
    const auto* token = r.parameters.if_contains("client_token");
    if (!uuid || !token)
        co_return make_response(false, message::bad_request, {},
                                "DESTROY needs container_uuid and client_token");
    // The UUID and the token together, the token's hash compared in
    // constant time (the reference's check compares the UUID alone).
    if (!database_.authenticate(uuid->get_string(), token->get_string())) {
        metrics_.refused("bad_authentication");
        log::warning("DESTROY from ", r.peer.to_string(), " refused: wrong container or token");
        co_return make_response(false, message::bad_authentication);
    }
    const std::string key(uuid->get_string());
    auto removing = take_down(key, "DESTROY from " + r.peer.to_string());
    co_await std::move(removing);
    metrics_.destroyed();
    co_return make_response(true, message::ok);
}

asio::awaitable<void> container_service::stop() {
    if (stopping_) {
        auto waiting = wait_until_idle(stopped_);
        co_await std::move(waiting);
        co_return;
    }
    stopping_ = true;
    const activity counted(stopped_);
    // Waiting takes fail at once, boots under way are cancelled; a take in
    // its hand-over finishes, and its CREATE, seeing stopping_, destroys it.
    if (pool_) {
        auto stopping = pool_->shutdown(tuple_awaitable);
        auto [failed] = co_await std::move(stopping);
        if (failed)
            log::error("the warm pool did not shut down: ", failed.message());
    }
    // A start or CREATEs under way, and destructions begun before.
    auto settling = wait_until_idle(idle_);
    co_await std::move(settling);
    std::vector<std::string> uuids;
    for (const auto& [uuid, entry] : containers_)
        uuids.push_back(uuid);
    for (const auto& uuid : uuids) {
        auto removing = take_down(uuid, "the server stops");
        co_await std::move(removing);
    }
    if (hosts_) {
        auto stopping = hosts_->shutdown(tuple_awaitable);
        co_await std::move(stopping);
    }
}

// Waits until no activity counted on `signal` runs.
asio::awaitable<void> container_service::wait_until_idle(std::shared_ptr<idle_signal> signal) {
    while (signal->busy > 0) {
        signal->timer.expires_at(asio::steady_timer::time_point::max());
        auto waiting = signal->timer.async_wait(tuple_awaitable);
        co_await std::move(waiting);
    }
}

} // namespace anweddol::server
