// Integration tests run inside the sandbox (scripts/sandbox.sh exec), which
// sets ANWEDDOL_SANDBOX=1; elsewhere they are skipped, or fail with CI=true
// (see run_catch_session_in_bed).
#include "../catch_session.hpp"

#include <cstdlib>
#include <string_view>

int main(int argc, char** argv) {
    const char* sandbox = std::getenv("ANWEDDOL_SANDBOX");
    return anweddol::test::run_catch_session_in_bed(
        argc, argv, sandbox && std::string_view(sandbox) == "1",
        "integration tests skipped: they need the test sandbox, which needs root. "
        "Run scripts/test.sh as root.",
        "integration tests: CI=true but not inside the sandbox; run them "
        "with scripts/test.sh (or scripts/sandbox.sh exec ctest)");
}
