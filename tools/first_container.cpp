//
// anweddol-first-container: boots one container from an ISO in the sandbox,
// waits for its lease, logs in as `endpoint`, hands the container over to a
// freshly generated client user and prints that user's credentials.
//
// It is the README's main job until the library's provisioning tool replaces
// it; it runs the whole path synchronously on libvirt's and libssh's C APIs.
//
#include "blocking_container.hpp"

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

namespace {

using namespace anweddol::tools;
using clock_type = std::chrono::steady_clock;

struct options {
    std::string iso;
    std::string uri = "qemu:///system";
    std::string status_file = "/var/lib/libvirt/dnsmasq/virbr0.status";
    std::string domain_type = "qemu";
    unsigned memory_mib = 256;
    unsigned vcpus = 1;
    std::uint16_t client_port = 2222;
    bool keep = false;
};

const char* usage =
    "usage: anweddol-first-container --iso PATH [--uri URI] [--memory MIB] [--vcpus N]\n"
    "                                [--type qemu|kvm] [--port PORT] [--status-file PATH]\n"
    "                                [--keep]\n"
    "Boots one container from PATH, administers it and prints its client credentials.\n"
    "The domain is destroyed at exit unless --keep is given.\n";

options parse(int argc, char** argv) {
    options parsed;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc)
                throw std::invalid_argument(flag + " needs a value");
            return argv[++i];
        };
        auto number = [&](unsigned long max) {
            const std::string text = value();
            std::size_t used = 0;
            const unsigned long n = std::stoul(text, &used);
            if (used != text.size() || n == 0 || n > max)
                throw std::invalid_argument(flag + ": expected 1.." + std::to_string(max));
            return n;
        };
        if (flag == "--iso")
            parsed.iso = value();
        else if (flag == "--uri")
            parsed.uri = value();
        else if (flag == "--status-file")
            parsed.status_file = value();
        else if (flag == "--type")
            parsed.domain_type = value();
        else if (flag == "--memory")
            parsed.memory_mib = static_cast<unsigned>(number(1 << 20));
        else if (flag == "--vcpus")
            parsed.vcpus = static_cast<unsigned>(number(64));
        else if (flag == "--port")
            parsed.client_port = static_cast<std::uint16_t>(number(65535));
        else if (flag == "--keep")
            parsed.keep = true;
        else if (flag == "--help" || flag == "-h") {
            std::cout << usage;
            std::exit(0);
        } else
            throw std::invalid_argument("unknown option " + flag);
    }
    if (parsed.iso.empty())
        throw std::invalid_argument("--iso is required");
    if (!std::filesystem::is_regular_file(parsed.iso))
        throw std::invalid_argument("--iso " + parsed.iso + ": no such file");
    return parsed;
}

double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

int run(const options& opts) {
    anweddol::detail::connect_handle connection(virConnectOpen(opts.uri.c_str()));
    if (!connection)
        throw_libvirt_error("cannot connect to " + opts.uri);

    domain_spec spec;
    spec.name =
        "anweddol-first-" + spec.mac.substr(9, 2) + spec.mac.substr(12, 2) + spec.mac.substr(15, 2);
    spec.iso_path = std::filesystem::absolute(opts.iso).string();
    spec.memory_mib = opts.memory_mib;
    spec.vcpus = opts.vcpus;
    spec.type = opts.domain_type;

    const auto start = clock_type::now();
    transient_domain domain(connection.get(), spec);
    std::cout << "booting " << spec.name << " (mac " << spec.mac << ")" << std::endl;

    const std::string ip = wait_for_lease(opts.status_file, spec.mac, std::chrono::minutes(3));
    std::cout << "lease " << ip << " after " << seconds_since(start) << " s" << std::endl;

    auto endpoint = ssh_login::connect(ip, 22, "endpoint", "endpoint", std::chrono::minutes(1));
    std::cout << "SSH ready after " << seconds_since(start) << " s" << std::endl;

    const std::string username = random_username();
    const std::string password = random_password(32);
    const auto setup =
        endpoint.run("sudo /bin/anweddol_container_setup.sh " + shell_quote(username) + " " +
                     shell_quote(password) + " " + std::to_string(opts.client_port));
    if (setup.exit_status != 0 || !setup.std_out.empty() || !setup.std_err.empty())
        throw std::runtime_error("the setup script failed (exit " +
                                 std::to_string(setup.exit_status) + "): " + setup.std_out +
                                 setup.std_err);
    auto client =
        ssh_login::connect(ip, opts.client_port, username, password, std::chrono::seconds(30));
    const auto whoami = client.run("id -un");
    if (whoami.std_out != username + "\n")
        throw std::runtime_error("logged in as the client user but `id -un` said: " +
                                 whoami.std_out);
    std::cout << "administered after " << seconds_since(start) << " s\n\n"
              << "  container  " << spec.name << "\n"
              << "  address    " << ip << "\n"
              << "  port       " << opts.client_port << "\n"
              << "  username   " << username << "\n"
              << "  password   " << password << "\n"
              << std::endl;
    if (opts.keep) {
        std::cout << "kept running (--keep): virsh destroy " << spec.name << " removes it"
                  << std::endl;
        domain.keep_running();
        return 0;
    }
    std::cout << "destroying " << spec.name << std::endl;
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    std::signal(SIGINT, [](int) { interrupted = true; });
    std::signal(SIGTERM, [](int) { interrupted = true; });
    try {
        return run(parse(argc, argv));
    } catch (const std::invalid_argument& e) {
        std::cerr << "anweddol-first-container: " << e.what() << "\n\n" << usage;
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "anweddol-first-container: " << e.what() << std::endl;
        return 1;
    }
}
