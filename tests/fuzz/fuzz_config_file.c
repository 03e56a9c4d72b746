/*
 * fuzz_config_file.c: the --config FILE parser (pb_config_parse_args with
 * --config): the input is written to one private temporary file and parsed
 * as a configuration file. Properties: it never crashes or leaks, and an
 * error is one line that names the file (with a line number for anything
 * wrong inside it).
 */
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"

static char path[64];
static int fd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pb_config cfg;
	enum pb_config_action action;
	char err[512];
	char *argv[] = { "pollbridge", "--config", path, NULL };
	int r;

	if (fd < 0) {
		snprintf(path, sizeof(path), "/tmp/pb-fuzz-conf.XXXXXX");
		fd = mkstemp(path);
		FUZZ_CHECK(fd >= 0);
	}
	FUZZ_CHECK(ftruncate(fd, 0) == 0);
	FUZZ_CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);
	if (pb_config_init(&cfg))
		return 0;
	err[0] = '\0';
	r = pb_config_parse_args(&cfg, 3, argv, &action, err, sizeof(err));
	if (r) {
		FUZZ_CHECK(err[0] != '\0');
		FUZZ_CHECK(strchr(err, '\n') == NULL);
		FUZZ_CHECK(strstr(err, path) != NULL || strstr(err, "out of memory") != NULL);
	}
	pb_config_free(&cfg);
	return 0;
}
