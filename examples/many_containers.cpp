// Example 2: many containers at once from one coroutine. Provisions N of them
// as a parallel group with one deadline for the whole batch: if the batch is
// late, every container still booting is cancelled, and cancellation
// destroys its domain. Prints what each got, then destroys them all.
//
//   many_containers ISO [COUNT] [DEADLINE_SECONDS] [DRIVER_URI] [DOMAIN_TYPE]
#include <anweddol/virtualization.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <iostream>
#include <vector>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

asio::awaitable<void> run(std::string iso, unsigned count, std::chrono::seconds deadline,
                          std::string uri, std::string domain_type) {
    auto executor = co_await asio::this_coro::executor;
    anweddol::virtualization_interface interface(executor); // destroys what it stores
    // provision() takes a completion token: `deferred` makes each an
    // operation that the parallel group starts.
    using operation =
        decltype(anweddol::provision(interface.create_container(iso, false), {}, asio::deferred));
    std::vector<operation> operations;
    for (unsigned i = 0; i < count; ++i) {
        auto container = interface.create_container(iso);
        container->set_memory(512);
        container->set_vcpus(1);
        anweddol::provisioning_options provisioning;
        provisioning.driver_uri = uri;
        provisioning.domain_type = domain_type; // empty: kvm where the host has it
        provisioning.on_progress = [i](const anweddol::provisioning_event& e) {
            std::cout << "  container " << i + 1 << ": " << anweddol::to_string(e.phase) << "\n";
        };
        operations.push_back(
            anweddol::provision(container, std::move(provisioning), asio::deferred));
    }

    // All of them, or none after the deadline.
    asio::steady_timer timer(executor, deadline);
    auto batch = asio::experimental::make_parallel_group(std::move(operations))
                     .async_wait(asio::experimental::wait_for_all(), asio::use_awaitable);
    auto outcome = co_await (std::move(batch) || timer.async_wait(asio::use_awaitable));
    if (outcome.index() == 1) {
        std::cout << "the batch missed its " << deadline.count()
                  << " s deadline: cancelled, nothing left running\n";
        co_return;
    }
    auto [order, errors, provisioned] = std::get<0>(std::move(outcome));
    for (std::size_t i = 0; i < provisioned.size(); ++i) {
        if (errors[i]) {
            std::cout << "container " << i + 1 << " failed: " << errors[i].message() << "\n";
            continue;
        }
        const auto& p = provisioned[i];
        std::cout << "container " << i + 1 << " " << p.container->get_uuid() << ": ssh -p "
                  << p.port << " " << p.username << "@" << p.ip << " (ready in "
                  << std::chrono::duration<double>(p.timings.total).count() << " s)\n";
    }
    for (auto& p : provisioned)
        if (p.container && p.container->is_domain_running())
            co_await p.container->stop_domain();
}

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: many_containers ISO [COUNT] [DEADLINE_SECONDS] [DRIVER_URI] "
                     "[DOMAIN_TYPE]\n";
        return 2;
    }
    asio::io_context context;
    bool failed = false;
    asio::co_spawn(context,
                   run(argv[1], argc > 2 ? std::stoul(argv[2]) : 3,
                       std::chrono::seconds(argc > 3 ? std::stoul(argv[3]) : 300),
                       argc > 4 ? argv[4] : "qemu:///system", argc > 5 ? argv[5] : ""),
                   [&](std::exception_ptr error) {
                       if (error) {
                           try {
                               std::rethrow_exception(error);
                           } catch (const std::exception& e) {
                               std::cerr << "many_containers: " << e.what() << "\n";
                           }
                           failed = true;
                       }
                   });
    context.run(); // returns once the containers are gone and libvirt's connection closed
    return failed ? 1 : 0;
}
