/* The container's sudo: exactly the one rule anweddol needs, without PAM.
 *
 *   endpoint ALL=(root) NOPASSWD: /bin/anweddol_container_setup.sh
 *
 * A full sudo drags PAM, its modules and a dozen libraries into the image;
 * this setuid helper runs the setup script as root for `endpoint` (uid 1000)
 * and refuses everything else, with a clean environment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SETUP_SCRIPT "/bin/anweddol_container_setup.sh"
#define ENDPOINT_UID 1000

int main(int argc, char **argv) {
  int first = 1;
  if (first < argc && strcmp(argv[first], "-n") == 0) /* never prompts anyway */
    ++first;
  if (first >= argc || strcmp(argv[first], SETUP_SCRIPT) != 0) {
    fprintf(stderr, "sudo: this container only allows `sudo %s ...`\n",
            SETUP_SCRIPT);
    return 1;
  }
  uid_t caller = getuid();
  if (caller != 0 && caller != ENDPOINT_UID) {
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
  execve(SETUP_SCRIPT, argv + first, environment);
  perror("sudo: " SETUP_SCRIPT);
  return 127;
}
