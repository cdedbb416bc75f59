// The reference's REST API (anwdlserver's web/server.py) on Boost.Beast:
// `POST /<verb>` with the parameters as a JSON body, `GET /` the welcome,
// every answer HTTP 200 with the JSON of a `response`. Plain HTTP or TLS.
// Each request becomes a `request` handed to the server's one
// `request_handler`; the bounds that protect the server from a hostile client
// (connections, header and body sizes, deadlines) are `rest_api_options`.
#ifndef ANWEDDOL_SERVER_REST_API_HPP
#define ANWEDDOL_SERVER_REST_API_HPP

#include "protocol.hpp"
#include "rest_route.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

namespace anweddol::server {

struct rest_api_options {
    /// Where to listen (the reference: port 8080, 4443 with SSL, all addresses).
    boost::asio::ip::tcp::endpoint endpoint{boost::asio::ip::address_v4::any(), 8080};
    /// Connections open at once. A newcomer beyond it takes the place of the
    /// oldest connection still waiting for (or reading) its request; when
    /// every connection has a request in hand, the newcomer is closed at once.
    std::size_t max_connections = 256;
    std::size_t max_header_bytes = 8 * 1024;
    /// The JSON parameters; a larger body is answered "Bad request" from its
    /// Content-Length, without being read.
    std::size_t max_body_bytes = 64 * 1024;
    /// From a connection's accept or last answer to its request's headers
    /// (TLS handshake included): also the keep-alive idle time.
    std::chrono::steady_clock::duration header_timeout = std::chrono::seconds(10);
    /// From the same moment to the request's last body byte.
    std::chrono::steady_clock::duration request_timeout = std::chrono::seconds(30);
    /// To write an answer to a client that reads slowly.
    std::chrono::steady_clock::duration write_timeout = std::chrono::seconds(30);
    /// The IP filter: a request from an address it refuses is answered
    /// "Refused request" (as the reference's web server does) and its
    /// connection closed. Empty: every address is allowed.
    std::function<bool(const boost::asio::ip::address&)> allow;
    /// When set, `GET /metrics` answers its text (Prometheus exposition
    /// format 0.0.4) instead of treating "metrics" as a verb.
    std::function<std::string()> metrics;
    /// Called with a successful answer that could not be written (the client
    /// hung up or stalled): a CREATE's container nobody will ever see, for
    /// the caller to destroy. Runs on the API's executor.
    std::function<void(const response&)> undelivered;
};

/// A TLS server context from the configured PEM files (the reference's
/// `ssl_pem_private_key_file_path` and `ssl_pem_certificate_file_path`).
/// Throws std::runtime_error naming the file that is missing, unreadable or
/// not PEM, or saying that the key does not belong to the certificate.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const std::string& private_key_file,
                                                            const std::string& certificate_file);

/// The listener and its connections. Everything runs on the executor given
/// to the constructor: with an io_context run by several threads, give it a
/// strand. Not thread-safe: call its functions on that executor's thread.
class rest_api {
public:
    /// `tls`: serve HTTPS with it (see make_tls_context); null: plain HTTP.
    /// Starts nothing.
    rest_api(boost::asio::any_io_executor executor, rest_api_options options,
             request_handler handler, std::shared_ptr<boost::asio::ssl::context> tls = {});
    rest_api(const rest_api&) = delete;
    rest_api& operator=(const rest_api&) = delete;
    /// Stops it.
    ~rest_api();

    /// Binds and listens on `options.endpoint`, then accepts in the
    /// background. Throws boost::system::system_error naming the endpoint
    /// when it cannot listen (in use, not an address of this host, a
    /// privileged port).
    void start();

    /// Closes the listener and every connection, at once: a request being
    /// handled finishes in the handler, and its answer goes nowhere. No
    /// descriptor stays open. Idempotent.
    void stop();

    /// Where it listens (the port the system chose when asked for port 0).
    boost::asio::ip::tcp::endpoint local_endpoint() const;

    /// Connections open now.
    std::size_t connection_count() const;

    // Defined in rest_api.cpp: the listener and connection table, shared
    // with the coroutines so that they outlive a stop() that leaves them
    // pending.
    struct state;

private:
    std::shared_ptr<state> state_;
};

} // namespace anweddol::server

#endif
