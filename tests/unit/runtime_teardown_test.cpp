// Destroying an io_context after its runtime ran: Asio deletes the services
// of a context newest first, and the runtime holds objects of other
// services (the event loop's strand). A use after free here shows only
// under AddressSanitizer: scripts/sanitize.sh asan, which CI runs.
#include <anweddol/hypervisor_connection.hpp>
#include <anweddol/runtime.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>

#include <catch2/catch.hpp>

#include <exception>
#include <memory>
#include <utility>

TEST_CASE("runtime: an io_context whose runtime watched libvirt's events is destroyed without "
          "touching a deleted service") {
    for (const bool strand_first : {false, true}) {
        INFO((strand_first ? "the program made a strand first" : "anweddol made the first strand"));
        std::size_t open_after = 1;
        bool opened = false;
        {
            boost::asio::io_context context;
            if (strand_first)
                (void)boost::asio::make_strand(context);
            boost::asio::co_spawn(
                context,
                [&]() -> boost::asio::awaitable<void> {
                    // Built outside the co_await expression (GCC 12).
                    auto opening = anweddol::hypervisor_connection::open("test:///default");
                    auto connection = co_await std::move(opening);
                    opened = connection->is_open();
                },
                [](std::exception_ptr e) {
                    if (e)
                        std::rethrow_exception(e);
                });
            context.run();
            open_after = anweddol::runtime::of(context.get_executor()).connection_count();
        } // the io_context, its runtime and its strand service are deleted here
        CHECK(opened);
        CHECK(open_after == 0);
    }
}
