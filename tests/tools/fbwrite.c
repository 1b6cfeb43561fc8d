/*
 * fbwrite: a guest-side test tool that copies stdin into /dev/fb0 at a byte
 * offset through mmap(), the way graphical programs draw. (The stock 6.1
 * kernel's DRM fbdev emulation does not always pass write(2) damage on to
 * the device; mapped pages are tracked by deferred I/O.)
 *
 *   fbwrite OFFSET < DATA      prints the number of bytes written
 */
#include <fcntl.h>
#include <linux/fb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct fb_fix_screeninfo fix;
	unsigned long off;
	unsigned char *fb;
	size_t done = 0;
	ssize_t n;
	int fd;

	if (argc != 2) {
		fprintf(stderr, "usage: fbwrite OFFSET < DATA\n");
		return 2;
	}
	off = strtoul(argv[1], NULL, 0);
	fd = open("/dev/fb0", O_RDWR);
	if (fd < 0 || ioctl(fd, FBIOGET_FSCREENINFO, &fix) < 0) {
		perror("/dev/fb0");
		return 1;
	}
	fb = mmap(NULL, fix.smem_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fb == MAP_FAILED) {
		perror("mmap /dev/fb0");
		return 1;
	}
	while (off + done < fix.smem_len && (n = read(0, fb + off + done, fix.smem_len - off - done)) > 0)
		done += (size_t)n;
	if (msync(fb, fix.smem_len, MS_SYNC) < 0)
		perror("msync");
	munmap(fb, fix.smem_len);
	close(fd);
	printf("%zu\n", done);
	return 0;
}
