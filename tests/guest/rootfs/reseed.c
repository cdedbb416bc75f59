/* anweddol_reseed HEX: mixes HEX (the host's fresh entropy, as hexadecimal
 * digits) into the kernel's entropy pool, credited, then makes the kernel
 * reseed its CRNG from the pool at once.
 *
 * A container restored from a saved image resumes with the RNG state of the
 * moment it was saved, as every other container restored from that image
 * does. Debian 12's cloud kernel has no vmgenid driver (CONFIG_VMGENID is
 * not set), so nothing tells the kernel it was restored: without this, two
 * restored containers would read the same bytes from /dev/urandom until the
 * kernel's next periodic reseed. RNDRESEEDCRNG needs root: rcS runs it
 * before anything else reads the RNG. */
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MIN_BYTES 32
#define MAX_BYTES 256

static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int main(int argc, char **argv) {
  const size_t digits = argc == 2 ? strlen(argv[1]) : 0;
  if (digits % 2 != 0 || digits / 2 < MIN_BYTES || digits / 2 > MAX_BYTES) {
    fprintf(stderr, "anweddol_reseed: wants one argument of %d to %d bytes in hexadecimal\n",
            MIN_BYTES, MAX_BYTES);
    return 2;
  }
  struct {
    struct rand_pool_info info;
    unsigned char bytes[MAX_BYTES];
  } request;
  memset(&request, 0, sizeof request);
  for (size_t i = 0; i < digits / 2; ++i) {
    const int high = hex_value(argv[1][2 * i]), low = hex_value(argv[1][2 * i + 1]);
    if (high < 0 || low < 0) {
      /* Not the argument itself: it is entropy, and stderr is the console. */
      fprintf(stderr, "anweddol_reseed: its argument is not hexadecimal\n");
      return 2;
    }
    request.bytes[i] = (unsigned char)(high * 16 + low);
  }
  request.info.buf_size = (int)(digits / 2);
  request.info.entropy_count = (int)(digits / 2 * 8);
  const int fd = open("/dev/urandom", O_WRONLY);
  if (fd < 0 || ioctl(fd, RNDADDENTROPY, &request.info) < 0 || ioctl(fd, RNDRESEEDCRNG) < 0) {
    perror("anweddol_reseed");
    return 1;
  }
  close(fd);
  return 0;
}
