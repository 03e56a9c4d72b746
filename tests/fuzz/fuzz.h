/*
 * fuzz.h: what every libFuzzer target under tests/fuzz/ shares: the entry
 * point's prototype (the build has -Wmissing-prototypes -Werror) and
 * FUZZ_CHECK, which aborts with the failed condition so libFuzzer saves the
 * input that broke a property the parser documents.
 */
#ifndef PB_FUZZ_H
#define PB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                        \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "%s:%d: property violated: %s\n",       \
				__FILE__, __LINE__, #cond);                     \
			abort();                                                \
		}                                                               \
	} while (0)

#endif
