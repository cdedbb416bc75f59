// Example 3: a container server. An HTTP/JSON API on Boost.Beast that
// embeds anweddol on the same io_context, on one thread:
//
//   POST   /containers          boots and administers one; 201 with
//                               {uuid, ip, port, username, password,
//                               owner_token, lifetime, expires_at}
//   GET    /containers          lists the client's own (without passwords)
//   DELETE /containers/{uuid}   destroys one of the client's own, or one
//                               whose Owner-Token it shows; 204
//   GET    /metrics             what operators watch, in Prometheus's text
//                               format (prometheus-cpp's registry and
//                               serializer, served by this listener):
//                               containers handed out and running, failures
//                               by reason, the capacity and the boot
//                               admission, the pool, connections, per-phase
//                               latency histograms
//
// Who may use it (access.hpp): every request needs a bearer token that
// --token-file knows (by its SHA-256), unless --no-auth; a Host header the
// server answers to (DNS rebinding) and no foreign Origin (a browser's
// cross-site request). Each container has an owner: the client that
// created it, and whoever shows its owner token (returned once, kept as a
// SHA-256); nobody else sees or deletes it. Each lives --max-lifetime
// seconds at most.
//
// With --pool K, an anweddol::container_pool keeps K containers booted
// (address known, endpoint logged in) and refills itself in the background:
// a POST for the pool's kind (512 MiB, 1 vCPU) takes one and pays only the
// hand-over (client credentials, setup script, the client's login check);
// other POSTs boot their own. The pool's K count against --max-containers:
// clients get the other places, and K x 512 MiB more memory is kept free for
// the refills, which the capacity does not see boot.
//
// It holds under load and against hostile clients:
// - A capacity (anweddol::container_capacity): at most --max-containers at
//   once, and a boot only while the host's free memory, less the memory of
//   the containers still booting, has room for it. Beyond that a POST gets
//   503 with Retry-After, at once, and boots nothing.
// - Bounds on every request: a body of at most --max-body bytes (413), JSON
//   with its Content-Type (415 otherwise) with `memory` in
//   [512, --max-memory] MiB and `vcpus` in [1, --max-vcpus] and nothing else
//   (400); headers of at most 8 KiB (431), a whole request within
//   --header-timeout seconds of the accept or of the last answer (the
//   connection is closed).
// - Bounds on connections (connections.hpp): at most --max-connections,
//   counted at accept; a new one beyond them takes the place of the oldest
//   one still waiting for its request, so idle connections never keep a
//   request out. Out of file descriptors, accept backs off (100 ms doubling
//   to 1 s) instead of spinning, closing the oldest idle connection.
// - A client that hangs up while its container is provisioned cancels the
//   provisioning: the domain is destroyed and nothing is stored. A 201 that
//   cannot be delivered destroys its container too; its body (the password,
//   the owner token) is wiped when freed, as is what a request carried (its
//   bearer token).
//
// Bad requests get 4xx with {"error": ...}; a failed boot gets 5xx and leaves
// nothing behind. Ctrl-C (or SIGTERM) stops the server: open connections are
// closed, provisionings cancelled, the pool's containers and every container
// it handed out destroyed. It listens on 127.0.0.1 only.
//
//   container_server ISO [PORT] [DRIVER_URI] [DOMAIN_TYPE] [OPTIONS]  (--help)
//   token=$(openssl rand -base64 32); echo "me $(printf %s "$token" | sha256sum)" > tokens
//   container_server ISO --token-file tokens &
//   curl -X POST 127.0.0.1:8080/containers -H "Authorization: Bearer $token"
//        -H 'Content-Type: application/json' -d '{"memory": 512}' (one line)
#include "session.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <sys/resource.h>

#include <csignal>
#include <iostream>

namespace {

using namespace example;

// Accepts until the acceptor is closed. A failed accept (out of file
// descriptors, most often) is retried after a back-off, and closes the
// oldest idle connection to give a descriptor back.
asio::awaitable<void> listen(tcp::acceptor& acceptor, container_server& server) {
    accept_backoff backoff;
    asio::steady_timer pause(acceptor.get_executor());
    for (;;) {
        auto accepting = acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
        auto [ec, socket] = co_await std::move(accepting);
        if (ec == asio::error::operation_aborted || !acceptor.is_open())
            co_return; // shutting down
        if (!ec) {
            backoff.succeeded();
            asio::co_spawn(acceptor.get_executor(), serve(std::move(socket), server),
                           asio::detached);
            continue;
        }
        server.metrics().accept_failed();
        if (tcp::socket* evicted = server.connections().evict_oldest_idle()) {
            close_socket(*evicted);
            server.metrics().connection_evicted();
        }
        pause.expires_after(backoff.failed());
        auto waiting = pause.async_wait(asio::as_tuple(asio::use_awaitable));
        co_await std::move(waiting);
        if (!acceptor.is_open())
            co_return;
    }
}

// Connections need a descriptor each, and provisionings some more: a limit
// below --max-connections is met first, where accept backs off.
void warn_about_descriptors(const server_settings& settings) {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
        limit.rlim_cur < settings.max_connections + 64)
        std::cout << "warning: " << limit.rlim_cur << " file descriptors (ulimit -n) for "
                  << settings.max_connections
                  << " connections (--max-connections) and the provisionings: raise ulimit -n, "
                     "or lower --max-connections"
                  << std::endl;
}

void print_banner(const server_settings& settings, std::uint16_t port) {
    const auto& capacity = settings.capacity;
    std::cout << "serving on http://127.0.0.1:" << port << "/containers; capacity: "
              << (capacity.max_containers ? std::to_string(capacity.max_containers) : "unlimited")
              << " container(s)"
              << (settings.pool
                      ? " for clients + " + std::to_string(settings.pool) + " in the warm pool"
                      : "")
              << ", "
              << (capacity.check_memory
                      ? "free memory less what boots, keeping " +
                            std::to_string(capacity.memory_headroom_mib) + " MiB for the host"
                      : "memory not checked")
              << (settings.no_auth ? "; no authentication (--no-auth)" : "") << std::endl;
}

} // namespace

int main(int argc, char** argv) {
    const server_settings settings = parse_command_line(argc, argv);
    asio::io_context context;
    tcp::acceptor acceptor(context, {asio::ip::make_address("127.0.0.1"), settings.port});
    const std::uint16_t port = acceptor.local_endpoint().port();
    container_server server(context.get_executor(), settings, access_policy(settings, port));
    print_banner(settings, port);
    warn_about_descriptors(settings);
    asio::co_spawn(context, listen(acceptor, server), asio::detached);

    asio::signal_set signals(context, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code, int) {
        acceptor.close();
        asio::co_spawn(context, server.shutdown(), asio::detached);
    });
    context.run(); // returns once the server shut down and its containers are gone
    return 0;
}
