/* The container's sudo: exactly the rules the image needs, without PAM.
 *
 *   endpoint ALL=(root) NOPASSWD: /bin/anweddol_container_setup.sh
 *   ALL      ALL=(root) NOPASSWD: /bin/anweddol_net_probe.sh
 *
 * A full sudo drags PAM, its modules and a dozen libraries into the image;
 * this setuid helper runs the setup script as root for `endpoint` (uid 1000),
 * the network probe of the isolation tests for any user, and refuses
 * everything else, with a clean environment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SETUP_SCRIPT "/bin/anweddol_container_setup.sh"
#define PROBE_SCRIPT "/bin/anweddol_net_probe.sh"
#define ENDPOINT_UID 1000

int main(int argc, char **argv) {
  int first = 1;
  if (first < argc && strcmp(argv[first], "-n") == 0) /* never prompts anyway */
    ++first;
  const int probe = first < argc && strcmp(argv[first], PROBE_SCRIPT) == 0;
  if (first >= argc || (!probe && strcmp(argv[first], SETUP_SCRIPT) != 0)) {
    fprintf(stderr, "sudo: this container only allows `sudo %s ...` and `sudo %s ...`\n",
            SETUP_SCRIPT, PROBE_SCRIPT);
    return 1;
  }
  uid_t caller = getuid();
  if (!probe && caller != 0 && caller != ENDPOINT_UID) {
    fprintf(stderr, "sudo: user %u may not run %s\n", (unsigned)caller,
            SETUP_SCRIPT);
    return 1;
  }
  if (setgid(0) != 0 || setuid(0) != 0) {
    perror("sudo: cannot become root (is /usr/bin/sudo setuid root?)");
    return 1;
  }
  char *const environment[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                               "HOME=/root", NULL};
  execve(argv[first], argv + first, environment);
  perror(argv[first]);
  return 127;
}
