// Example 1: one container, step by step. Boots it from a live ISO, waits
// for its address, opens the endpoint shell, hands the container over to
// fresh client credentials, prints them, and stops it.
//
//   one_container ISO [DRIVER_URI] [DOMAIN_TYPE]
//
// Needs a libvirtd (scripts/sandbox.sh up; run it with scripts/sandbox.sh exec).
#include <anweddol/virtualization.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <iostream>

namespace asio = boost::asio;

asio::awaitable<void> run(std::string iso, std::string uri, std::string domain_type) {
    auto executor = co_await asio::this_coro::executor;
    anweddol::container_instance container(executor, iso, "", 512, 1);

    std::cout << "booting container " << container.get_uuid() << "...\n";
    anweddol::start_options start;
    start.address_timeout = std::chrono::minutes(4);
    start.driver_uri = uri;
    start.domain_type = domain_type; // empty: kvm where the host has it
    co_await container.start_domain(std::move(start));
    std::cout << "address " << *container.get_ip() << ", MAC " << *container.get_mac() << "\n";

    auto shell = co_await container.create_endpoint_shell(); // endpoint/endpoint on port 22
    const auto [username, password] = shell->generate_client_ssh_credentials();
    shell->store_client_ssh_credentials(username, password, 2222);
    co_await shell->administrate_container();
    co_await shell->close_shell();
    std::cout << "ssh -p 2222 " << username << "@" << *container.get_ip()
              << "\npassword: " << password << "\n";

    co_await container.stop_domain(
        anweddol::stop_options{anweddol::stop_mode::graceful, std::chrono::seconds(60)});
    std::cout << "stopped\n";
}

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: one_container ISO [DRIVER_URI] [DOMAIN_TYPE]\n";
        return 2;
    }
    asio::io_context context;
    bool failed = false;
    asio::co_spawn(context,
                   run(argv[1], argc > 2 ? argv[2] : "qemu:///system", argc > 3 ? argv[3] : ""),
                   [&](std::exception_ptr error) {
                       if (error) {
                           try {
                               std::rethrow_exception(error);
                           } catch (const std::exception& e) {
                               std::cerr << "one_container: " << e.what() << "\n";
                           }
                           failed = true;
                       }
                   });
    context.run(); // returns once the work is done and libvirt's connection closed
    return failed ? 1 : 0;
}
