#include <anweddol/virtualization.hpp>

#include <iostream>

int main() {
    const boost::system::error_code ec = anweddol::errc::iso_path_not_set;
    std::cout << "anweddol " << anweddol::version_string << ": " << ec.message() << "\n";
    return ec == anweddol::errc::iso_path_not_set ? 0 : 1;
}
