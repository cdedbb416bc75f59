// Integration tests run inside the sandbox (scripts/sandbox.sh exec), which
// sets ANWEDDOL_SANDBOX=1. Elsewhere they report themselves skipped (exit 77,
// CTest's SKIP_RETURN_CODE), except with CI=true, where a missing sandbox is
// a failure: CI must never skip them silently.
#include "../catch_session.hpp"

#include <cstdlib>
#include <iostream>
#include <string_view>

int main(int argc, char** argv) {
    bool listing = false; // catch_discover_tests lists the tests at build time
    for (int i = 1; i < argc; ++i)
        listing = listing || std::string_view(argv[i]).starts_with("--list");

    const char* sandbox = std::getenv("ANWEDDOL_SANDBOX");
    const char* ci = std::getenv("CI");
    if (!listing && (!sandbox || std::string_view(sandbox) != "1")) {
        if (ci && std::string_view(ci) == "true") {
            std::cerr << "integration tests: CI=true but not inside the sandbox; run them "
                         "with scripts/test.sh (or scripts/sandbox.sh exec ctest)\n";
            return 1;
        }
        std::cout << "integration tests skipped: they need the test sandbox, which needs root. "
                     "Run scripts/test.sh as root.\n";
        return 77;
    }
    return anweddol::test::run_catch_session(argc, argv);
}
