// The tests of many hypervisor hosts run in the sandbox's two-host mode
// (scripts/sandbox.sh up --hosts 2, then exec), which sets
// ANWEDDOL_SANDBOX_HOSTS; elsewhere they are skipped, or fail with CI=true
// (see run_catch_session_in_bed).
#include "../catch_session.hpp"

#include <cstdlib>

int main(int argc, char** argv) {
    const char* hosts = std::getenv("ANWEDDOL_SANDBOX_HOSTS");
    return anweddol::test::run_catch_session_in_bed(
        argc, argv, hosts && *hosts,
        "two-host tests skipped: they need the sandbox's two-host mode, which "
        "needs root. Run scripts/test.sh as root.",
        "two-host tests: CI=true but not inside the two-host sandbox; run them "
        "with scripts/test.sh (or scripts/sandbox.sh up --hosts 2, then "
        "scripts/sandbox.sh exec ctest -L hosts)");
}
