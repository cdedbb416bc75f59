#include "rest_api.hpp"

#include <anweddol/secret.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/json/parse.hpp>
#include <boost/system/system_error.hpp>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include <array>
#include <fstream>
#include <list>
#include <optional>
#include <stdexcept>

namespace anweddol::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

// Requests carry client tokens, answers carry tokens and passwords: every
// block these hold is overwritten before it is freed, growth included.
template <class T>
struct wiping_allocator {
    using value_type = T;
    wiping_allocator() = default;
    template <class U>
    wiping_allocator(const wiping_allocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
    void deallocate(T* p, std::size_t n) noexcept {
        OPENSSL_cleanse(p, n * sizeof(T));
        std::allocator<T>().deallocate(p, n);
    }
    friend bool operator==(const wiping_allocator&, const wiping_allocator&) noexcept {
        return true;
    }
};

using buffer_type = beast::basic_flat_buffer<wiping_allocator<char>>;
using body_type = http::basic_string_body<char, std::char_traits<char>, wiping_allocator<char>>;
using http_request = http::request<body_type>;
using http_response = http::response<body_type>;

} // namespace

namespace {

// Why a PEM file is refused: OpenSSL's reason, or the file's own state.
std::string pem_problem(const std::string& path, std::string_view what,
                        const boost::system::error_code& ec) {
    ERR_clear_error();
    std::ifstream file(path);
    if (!file)
        return "the " + std::string(what) + " file " + path +
               " cannot be opened: check web_server's ssl_pem_* paths and the file's permissions";
    return "the " + std::string(what) + " file " + path + " is not a usable PEM " +
           std::string(what) + " (" + ec.message() + ")";
}

} // namespace

std::shared_ptr<asio::ssl::context> make_tls_context(const std::string& private_key_file,
                                                     const std::string& certificate_file) {
    auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
    context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                         asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
    boost::system::error_code ec;
    ERR_clear_error();
    // The key first: with the certificate loaded after it, a mismatch drops
    // the key and check_private_key names it, instead of an OpenSSL reason.
    context->use_private_key_file(private_key_file, asio::ssl::context::pem, ec);
    if (ec)
        throw std::runtime_error(pem_problem(private_key_file, "private key", ec));
    context->use_certificate_chain_file(certificate_file, ec);
    if (ec)
        throw std::runtime_error(pem_problem(certificate_file, "certificate", ec));
    if (SSL_CTX_check_private_key(context->native_handle()) != 1) {
        ERR_clear_error();
        throw std::runtime_error("the private key " + private_key_file +
                                 " does not belong to the certificate " + certificate_file +
                                 ": configure the key the certificate was issued for");
    }
    return context;
}

// A connection in the table: idle while it waits for or reads a request
// (a slowloris is idle), busy while its request is handled and answered.
struct connection_entry {
    tcp::socket* socket;
    bool busy = false;
};

struct rest_api::state {
    state(asio::any_io_executor executor, rest_api_options options, request_handler handler,
          std::shared_ptr<asio::ssl::context> tls)
        : executor(executor)
        , options(std::move(options))
        , handler(std::move(handler))
        , tls(std::move(tls))
        , acceptor(executor)
        , backoff(executor) {}

    asio::any_io_executor executor;
    rest_api_options options;
    request_handler handler;
    std::shared_ptr<asio::ssl::context> tls;
    tcp::acceptor acceptor;
    asio::steady_timer backoff;              // after a failed accept (out of descriptors)
    std::list<connection_entry> connections; // oldest first
    bool stopped = false;
};

namespace {

using state = rest_api::state;
using connection_handle = std::list<connection_entry>::iterator;

void close_socket(tcp::socket& socket) {
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
}

// A connection's place in the table for its life.
class connection_slot {
public:
    connection_slot(state& s, connection_handle handle)
        : state_(s)
        , handle_(handle) {}
    connection_slot(const connection_slot&) = delete;
    connection_slot& operator=(const connection_slot&) = delete;
    ~connection_slot() { state_.connections.erase(handle_); }
    void set_busy(bool busy) { handle_->busy = busy; }

private:
    state& state_;
    connection_handle handle_;
};

// Admits a new connection: beyond the limit, the oldest idle one is closed
// to make room (idle connections never keep a request out); nullopt when
// every connection is busy.
std::optional<connection_handle> admit(state& s, tcp::socket& socket) {
    if (s.connections.size() >= s.options.max_connections) {
        auto idle = std::find_if(s.connections.begin(), s.connections.end(),
                                 [](const connection_entry& e) { return !e.busy; });
        if (idle == s.connections.end())
            return std::nullopt;
        close_socket(*idle->socket); // its coroutine sees it and leaves the table
        idle->busy = true;           // not evicted twice
    }
    s.connections.push_back({&socket});
    return std::prev(s.connections.end());
}

http_response json_answer(const response& r, unsigned version, bool keep_alive) {
    http_response answer(http::status::ok, version);
    answer.set(http::field::content_type, "application/json");
    // An answer may hold a container's password and token.
    answer.set(http::field::cache_control, "no-store");
    answer.keep_alive(keep_alive);
    std::string text = serialize(r);
    answer.body().assign(text.data(), text.size());
    wipe(text);
    answer.prepare_payload();
    return answer;
}

http_response metrics_answer(const std::string& text, unsigned version, bool keep_alive) {
    http_response answer(http::status::ok, version);
    answer.set(http::field::content_type, "text/plain; version=0.0.4");
    answer.keep_alive(keep_alive);
    answer.body().assign(text.data(), text.size());
    answer.prepare_payload();
    return answer;
}

// The handler's answer; it should never throw, but one that does is an
// "Internal error", not a lost connection.
asio::awaitable<response> call_handler(state& s, request r) {
    std::optional<response> answered;
    try {
        auto handling = s.handler(std::move(r));
        answered = co_await std::move(handling);
    } catch (const std::exception&) {
    }
    if (!answered)
        co_return make_response(false, message::internal_error, {},
                                "the server failed to handle the request");
    co_return std::move(*answered);
}

struct answer_t {
    http_response reply;
    std::optional<response> sent; // the JSON answer, for `undelivered`
};

asio::awaitable<answer_t> answer(state& s, http_request& req, const asio::ip::address& peer) {
    const unsigned version = req.version();
    if (s.options.allow && !s.options.allow(peer))
        co_return answer_t{
            json_answer(make_response(false, message::refused_request), version, false),
            std::nullopt};
    auto route =
        route_rest_request(req.method(), req.target(), req.body(), bool(s.options.metrics));
    OPENSSL_cleanse(req.body().data(), req.body().size());
    const bool keep_alive = req.keep_alive();
    if (std::holds_alternative<rest_metrics>(route))
        co_return answer_t{metrics_answer(s.options.metrics(), version, keep_alive), std::nullopt};
    response r = std::holds_alternative<rest_home>(route)  ? home_page()
                 : std::holds_alternative<response>(route) ? std::move(std::get<response>(route))
                                                           : response{};
    if (auto* envelope = std::get_if<request>(&route)) {
        envelope->peer = peer;
        envelope->via = transport::rest;
        auto handling = call_handler(s, std::move(*envelope));
        r = co_await std::move(handling);
    }
    auto reply = json_answer(r, version, keep_alive);
    if (req.method() == http::verb::head) {
        // HEAD: GET's headers, no body (the length stays the GET's).
        OPENSSL_cleanse(reply.body().data(), reply.body().size());
        reply.body().clear();
    }
    co_return answer_t{std::move(reply), std::move(r)};
}

template <class Stream>
auto& tcp_layer(Stream& stream) {
    return beast::get_lowest_layer(stream);
}

// Answers a request that ends the connection (too large, malformed), then
// drains what the client is still sending for a moment before closing, or
// the kernel would reset the connection and the client might lose it.
template <class Stream>
asio::awaitable<void> refuse_and_close(Stream& stream, std::string_view reason, unsigned version) {
    auto refusal = json_answer(bad_request(reason), version, false);
    tcp_layer(stream).expires_after(std::chrono::seconds(5));
    auto writing = http::async_write(stream, refusal, asio::as_tuple(asio::use_awaitable));
    auto [written, size] = co_await std::move(writing);
    if (written)
        co_return;
    boost::system::error_code ignored;
    tcp_layer(stream).socket().shutdown(tcp::socket::shutdown_send, ignored);
    tcp_layer(stream).expires_after(std::chrono::seconds(2));
    std::array<char, 4096> sink;
    for (std::size_t drained = 0; drained < 64 * 1024;) {
        auto reading = tcp_layer(stream).async_read_some(asio::buffer(sink),
                                                         asio::as_tuple(asio::use_awaitable));
        auto [ec, bytes] = co_await std::move(reading);
        if (ec)
            break;
        drained += bytes;
    }
}

// The next request: headers within header_timeout, all of it within
// request_timeout, from when the connection went idle. nullopt: the
// connection is over (closed, timed out, evicted, stopped, or refused here).
template <class Stream>
asio::awaitable<std::optional<http_request>> read_request(state& s, Stream& stream,
                                                          buffer_type& buffer) {
    const auto began = std::chrono::steady_clock::now();
    http::request_parser<body_type> parser;
    parser.header_limit(static_cast<std::uint32_t>(s.options.max_header_bytes));
    parser.body_limit(s.options.max_body_bytes);
    tcp_layer(stream).expires_at(began + s.options.header_timeout);
    auto reading_header =
        http::async_read_header(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
    auto [ec, bytes] = co_await std::move(reading_header);
    if (!ec) {
        tcp_layer(stream).expires_at(began + s.options.request_timeout);
        auto reading =
            http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
        std::tie(ec, bytes) = co_await std::move(reading);
    }
    if (ec == http::error::body_limit) {
        co_await refuse_and_close(
            stream,
            "the body may have " + std::to_string(s.options.max_body_bytes) + " bytes at most", 11);
        co_return std::nullopt;
    }
    if (ec == http::error::header_limit) {
        co_await refuse_and_close(stream,
                                  "the headers may have " +
                                      std::to_string(s.options.max_header_bytes) + " bytes at most",
                                  11);
        co_return std::nullopt;
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
        co_await refuse_and_close(stream, "malformed HTTP request: " + ec.message(), 11);
        co_return std::nullopt;
    }
    if (ec || s.stopped)
        co_return std::nullopt;        // closed, timed out (the stream closed the socket), or reset
    tcp_layer(stream).expires_never(); // the handler takes its own time (a CREATE boots)
    co_return parser.release();
}

// A successful answer nobody received: a CREATE's container to destroy.
void report_undelivered(state& s, const answer_t& answered) {
    if (answered.sent && answered.sent->success && s.options.undelivered)
        s.options.undelivered(*answered.sent);
}

// Requests one after the other on a connection, until one ends it.
template <class Stream>
asio::awaitable<void> serve_requests(state& s, Stream& stream, connection_slot& slot,
                                     const asio::ip::address& peer) {
    buffer_type buffer;
    for (;;) {
        slot.set_busy(false);
        auto reading = read_request(s, stream, buffer);
        auto req = co_await std::move(reading);
        if (!req)
            co_return;
        slot.set_busy(true);
        auto answering = answer(s, *req, peer);
        auto answered = co_await std::move(answering);
        if (s.stopped) {
            report_undelivered(s, answered);
            co_return;
        }
        const bool keep_alive = answered.reply.keep_alive();
        tcp_layer(stream).expires_after(s.options.write_timeout);
        auto writing =
            http::async_write(stream, answered.reply, asio::as_tuple(asio::use_awaitable));
        auto [written, size] = co_await std::move(writing);
        if (written)
            report_undelivered(s, answered);
        if (written || !keep_alive)
            co_return;
    }
}

asio::awaitable<void> serve_plain(state& s, beast::tcp_stream& stream, connection_slot& slot,
                                  const asio::ip::address& peer) {
    auto serving = serve_requests(s, stream, slot, peer);
    co_await std::move(serving);
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> serve_tls(state& s, beast::ssl_stream<beast::tcp_stream>& stream,
                                connection_slot& slot, const asio::ip::address& peer) {
    tcp_layer(stream).expires_after(s.options.header_timeout);
    auto handshaking =
        stream.async_handshake(asio::ssl::stream_base::server, asio::as_tuple(asio::use_awaitable));
    auto [refused] = co_await std::move(handshaking);
    if (refused || s.stopped)
        co_return;
    auto serving = serve_requests(s, stream, slot, peer);
    co_await std::move(serving);
    if (s.stopped)
        co_return;
    // close_notify, but not a long wait for the client's.
    tcp_layer(stream).expires_after(std::chrono::seconds(1));
    auto closing = stream.async_shutdown(asio::as_tuple(asio::use_awaitable));
    co_await std::move(closing);
}

// A connection from its accept to its end: its place in the table (or an
// immediate close when every place is busy), then its requests.
asio::awaitable<void> serve_connection(std::shared_ptr<state> s, tcp::socket socket) {
    boost::system::error_code ec;
    const auto peer = socket.remote_endpoint(ec).address();
    if (ec)
        co_return;
    const auto handle = admit(*s, socket);
    if (!handle) {
        close_socket(socket);
        co_return;
    }
    connection_slot slot(*s, *handle);
    // The socket moves into its stream: the table follows it there.
    try {
        if (s->tls) {
            beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *s->tls);
            (*handle)->socket = &tcp_layer(stream).socket();
            auto serving = serve_tls(*s, stream, slot, peer);
            co_await std::move(serving);
        } else {
            beast::tcp_stream stream(std::move(socket));
            (*handle)->socket = &stream.socket();
            auto serving = serve_plain(*s, stream, slot, peer);
            co_await std::move(serving);
        }
    } catch (const std::exception&) {
        // A connection's failure is its own: the listener goes on.
    }
}

asio::awaitable<void> accept_loop(std::shared_ptr<state> s) {
    std::chrono::milliseconds delay{};
    while (!s->stopped) {
        auto accepting = s->acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
        auto [ec, socket] = co_await std::move(accepting);
        if (s->stopped || ec == asio::error::operation_aborted)
            co_return;
        if (ec) {
            // Out of descriptors (EMFILE) or memory: the pending connection
            // stays in the backlog, so retrying at once would spin.
            delay = std::min<std::chrono::milliseconds>(
                delay == std::chrono::milliseconds{} ? std::chrono::milliseconds(100) : 2 * delay,
                std::chrono::seconds(1));
            s->backoff.expires_after(delay);
            auto waiting = s->backoff.async_wait(asio::as_tuple(asio::use_awaitable));
            co_await std::move(waiting);
            continue;
        }
        delay = {};
        asio::co_spawn(s->executor, serve_connection(s, std::move(socket)), asio::detached);
    }
}

} // namespace

rest_api::rest_api(asio::any_io_executor executor, rest_api_options options,
                   request_handler handler, std::shared_ptr<asio::ssl::context> tls)
    : state_(std::make_shared<state>(executor, std::move(options), std::move(handler),
                                     std::move(tls))) {}

rest_api::~rest_api() {
    stop();
}

void rest_api::start() {
    auto& acceptor = state_->acceptor;
    const auto endpoint = state_->options.endpoint;
    boost::system::error_code ec;
    acceptor.open(endpoint.protocol(), ec);
    if (!ec)
        acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec)
        acceptor.bind(endpoint, ec);
    if (!ec)
        acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        boost::system::error_code ignored;
        acceptor.close(ignored);
        throw boost::system::system_error(
            ec, "the REST API cannot listen on " + endpoint.address().to_string() + " port " +
                    std::to_string(endpoint.port()) +
                    " (check web_server's listen port and the bind address)");
    }
    asio::co_spawn(state_->executor, accept_loop(state_), asio::detached);
}

void rest_api::stop() {
    auto& s = *state_;
    s.stopped = true;
    boost::system::error_code ignored;
    s.acceptor.close(ignored);
    s.backoff.cancel();
    for (auto& connection : s.connections)
        close_socket(*connection.socket);
}

tcp::endpoint rest_api::local_endpoint() const {
    boost::system::error_code ec;
    return state_->acceptor.local_endpoint(ec);
}

std::size_t rest_api::connection_count() const {
    return state_->connections.size();
}

} // namespace anweddol::server
