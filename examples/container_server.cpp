// Example 3: a container server. An HTTP/JSON API on Boost.Beast that
// embeds anweddol on the same io_context, on one thread:
//
//   POST   /containers          boots and administers one; 201 with
//                               {uuid, ip, port, username, password}
//   GET    /containers          lists them (without passwords)
//   DELETE /containers/{uuid}   destroys one; 204
//
// Bad requests get 4xx with {"error": ...}; a failed boot gets 5xx and leaves
// nothing behind. Ctrl-C (or SIGTERM) stops the server and destroys every
// container it handed out. It listens on 127.0.0.1 only.
//
//   container_server ISO [PORT] [DRIVER_URI] [DOMAIN_TYPE]
//   curl -X POST 127.0.0.1:8080/containers
#include <anweddol/virtualization.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <csignal>
#include <iostream>
#include <map>
#include <string>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

struct handed_out {
    std::string ip;
    std::uint16_t port;
    std::string username;
};

class container_server {
public:
    container_server(asio::any_io_executor executor, std::string iso, std::string uri,
                     std::string domain_type)
        : interface_(executor)
        , iso_(std::move(iso))
        , uri_(std::move(uri))
        , domain_type_(std::move(domain_type)) {}

    asio::awaitable<http::response<http::string_body>>
    handle(const http::request<http::string_body>& request) {
        const std::string target(request.target());
        if (target == "/containers" && request.method() == http::verb::post)
            co_return co_await create(request);
        if (target == "/containers" && request.method() == http::verb::get)
            co_return list(request);
        if (target.starts_with("/containers/") && request.method() == http::verb::delete_)
            co_return co_await destroy(request, target.substr(std::string("/containers/").size()));
        if (target == "/containers" || target.starts_with("/containers/"))
            co_return error(request, http::status::method_not_allowed,
                            "use POST or GET on /containers, DELETE on /containers/{uuid}");
        co_return error(request, http::status::not_found, "no such resource: " + target);
    }

    // Stops every container it handed out.
    asio::awaitable<void> shutdown() {
        for (const auto& uuid : interface_.list_stored_containers())
            if (auto container = interface_.get_stored_container(uuid);
                container && container->is_domain_running())
                co_await container->stop_domain();
        std::cout << "destroyed " << interface_.get_stored_containers_amount() << " container(s)\n";
    }

private:
    static http::response<http::string_body> reply(const http::request<http::string_body>& request,
                                                   http::status status, const json::value& body) {
        http::response<http::string_body> response(status, request.version());
        response.set(http::field::content_type, "application/json");
        response.keep_alive(request.keep_alive());
        response.body() = json::serialize(body);
        response.prepare_payload();
        return response;
    }

    static http::response<http::string_body> error(const http::request<http::string_body>& request,
                                                   http::status status,
                                                   const std::string& message) {
        return reply(request, status, json::object{{"error", message}});
    }

    asio::awaitable<http::response<http::string_body>>
    create(const http::request<http::string_body>& request) {
        // An optional body: {"memory": MiB, "vcpus": N}.
        unsigned memory = 512;
        unsigned vcpus = 1;
        if (!request.body().empty()) {
            boost::system::error_code ec;
            const json::value body = json::parse(request.body(), ec);
            if (ec || !body.is_object())
                co_return error(request, http::status::bad_request,
                                "the body must be a JSON object such as {\"memory\": 512}");
            for (const auto& [key, value] : body.as_object()) {
                if ((key != "memory" && key != "vcpus") || !value.is_int64() ||
                    value.as_int64() < 1 || value.as_int64() > 65536)
                    co_return error(request, http::status::bad_request,
                                    "unknown field or bad value: " + std::string(key));
                (key == "memory" ? memory : vcpus) = static_cast<unsigned>(value.as_int64());
            }
        }
        std::shared_ptr<anweddol::container_instance> container;
        try {
            container = interface_.create_container(iso_, false);
            container->set_memory(memory);
            container->set_vcpus(vcpus);
        } catch (const boost::system::system_error& e) {
            co_return error(request, http::status::bad_request, e.what());
        }
        anweddol::provisioning_options provisioning;
        provisioning.driver_uri = uri_;
        provisioning.domain_type = domain_type_; // empty: kvm where the host has it
        try {
            auto provisioned = co_await anweddol::provision(container, std::move(provisioning));
            interface_.add_stored_container(container);
            handed_out_[container->get_uuid()] = {provisioned.ip, provisioned.port,
                                                  provisioned.username};
            auto response = reply(request, http::status::created,
                                  json::object{{"uuid", container->get_uuid()},
                                               {"ip", provisioned.ip},
                                               {"port", provisioned.port},
                                               {"username", provisioned.username},
                                               {"password", provisioned.password}});
            anweddol::detail::cleanse(provisioned.password);
            co_return response;
        } catch (const std::exception& e) {
            // provision() has destroyed the domain already.
            co_return error(request, http::status::internal_server_error,
                            std::string("the container could not be provisioned: ") + e.what());
        }
    }

    http::response<http::string_body> list(const http::request<http::string_body>& request) {
        json::array containers;
        for (const auto& uuid : interface_.list_stored_containers()) {
            const auto& h = handed_out_.at(uuid);
            const bool running = interface_.get_stored_container(uuid)->is_domain_running();
            containers.push_back(json::object{{"uuid", uuid},
                                              {"ip", h.ip},
                                              {"port", h.port},
                                              {"username", h.username},
                                              {"running", running}});
        }
        return reply(request, http::status::ok, containers);
    }

    asio::awaitable<http::response<http::string_body>>
    destroy(const http::request<http::string_body>& request, const std::string& uuid) {
        auto container = interface_.get_stored_container(uuid);
        if (!container)
            co_return error(request, http::status::not_found, "no container " + uuid);
        if (container->is_domain_running())
            co_await container->stop_domain();
        interface_.delete_stored_container(uuid);
        handed_out_.erase(uuid);
        http::response<http::string_body> response(http::status::no_content, request.version());
        response.keep_alive(request.keep_alive());
        co_return response;
    }

    anweddol::virtualization_interface interface_;
    std::map<std::string, handed_out> handed_out_;
    std::string iso_;
    std::string uri_;
    std::string domain_type_;
};

asio::awaitable<void> serve(tcp::socket socket, container_server& server) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(64 * 1024);
        stream.expires_after(std::chrono::minutes(5));
        auto [ec, bytes] =
            co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
        if (ec)
            co_return; // closed, timed out or not HTTP
        const auto request = parser.release();
        stream.expires_never(); // provisioning takes its own time
        auto response = co_await server.handle(request);
        stream.expires_after(std::chrono::seconds(30));
        co_await http::async_write(stream, response, asio::use_awaitable);
        if (!response.keep_alive())
            co_return;
    }
}

asio::awaitable<void> listen(tcp::acceptor& acceptor, container_server& server) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
        if (ec)
            co_return; // the acceptor closed: shutting down
        asio::co_spawn(acceptor.get_executor(), serve(std::move(socket), server), asio::detached);
    }
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: container_server ISO [PORT] [DRIVER_URI] [DOMAIN_TYPE]\n";
        return 2;
    }
    asio::io_context context;
    container_server server(context.get_executor(), argv[1], argc > 3 ? argv[3] : "qemu:///system",
                            argc > 4 ? argv[4] : "");
    const auto port = static_cast<std::uint16_t>(argc > 2 ? std::stoul(argv[2]) : 8080);
    tcp::acceptor acceptor(context, {asio::ip::make_address("127.0.0.1"), port});
    std::cout << "serving on http://127.0.0.1:" << port << "/containers\n";
    asio::co_spawn(context, listen(acceptor, server), asio::detached);

    asio::signal_set signals(context, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code, int) {
        acceptor.close();
        asio::co_spawn(context, server.shutdown(), asio::detached);
    });
    context.run(); // returns once the server shut down and its containers are gone
    return 0;
}
