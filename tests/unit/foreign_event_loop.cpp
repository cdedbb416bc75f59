// A program that registered a libvirt event loop of its own before anweddol:
// opening a connection fails with errc::foreign_event_loop and a message
// saying what to do, and the program's own loop keeps working. A process of
// its own, since libvirt takes one event loop per process.
#include <anweddol/hypervisor_connection.hpp>

#include <boost/asio/io_context.hpp>

#include <libvirt/libvirt.h>

#include <cstdio>
#include <memory>

int main() {
    if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0) {
        std::puts("FAILED: cannot register libvirt's default event loop");
        return 1;
    }
    boost::asio::io_context context;
    boost::system::error_code result;
    anweddol::diagnostics diag;
    bool connected = false;
    anweddol::hypervisor_connection::async_open(
        context.get_executor(), "test:///default", {}, diag,
        [&](boost::system::error_code ec, std::shared_ptr<anweddol::hypervisor_connection> c) {
            result = ec;
            connected = c != nullptr;
        });
    context.run();
    if (result != anweddol::errc::foreign_event_loop || connected ||
        diag.client_message().find("virEventRegisterDefaultImpl") == std::string::npos) {
        std::printf("FAILED: expected errc::foreign_event_loop, got '%s' (%s)\n",
                    result.message().c_str(), diag.full_message().c_str());
        return 1;
    }
    // The program's loop was left in place: a timeout of its own still fires.
    bool fired = false;
    const int timer = virEventAddTimeout(
        0, [](int, void* opaque) { *static_cast<bool*>(opaque) = true; }, &fired, nullptr);
    if (timer < 0 || virEventRunDefaultImpl() < 0 || !fired) {
        std::puts("FAILED: the program's own libvirt event loop no longer runs its timeouts");
        return 1;
    }
    virEventRemoveTimeout(timer);
    std::printf("ok: %s\n", diag.full_message().c_str());
    return 0;
}
