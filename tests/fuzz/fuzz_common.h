/*
 * fuzz_common.h -- checks shared by the libFuzzer targets in tests/fuzz/.
 *
 * A check that fails calls abort(), which libFuzzer reports as a crash with the input saved, so
 * a broken invariant is found like any sanitizer report.
 */
#ifndef SN_FUZZ_COMMON_H
#define SN_FUZZ_COMMON_H

#include "event.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The entry point libFuzzer calls; declared here for -Wmissing-prototypes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts unless buf[0..size) holds a NUL (a string field that stayed inside its array). */
static inline void sn_fuzz_check_str(const char *buf, size_t size)
{
    if (memchr(buf, '\0', size) == NULL)
        abort();
}

/* Aborts unless err is a non-empty, NUL-terminated one-line message within errsize bytes. */
static inline void sn_fuzz_check_err(const char *err, size_t errsize)
{
    const char *nul = memchr(err, '\0', errsize);
    if (nul == NULL || nul == err || memchr(err, '\n', (size_t)(nul - err)) != NULL)
        abort();
}

/* Aborts when an event breaks an invariant of event.h every consumer relies on: strings
 * terminated inside their arrays, and no metric it reports is NaN (unknown is "not reported"). */
static inline void sn_fuzz_check_event(const sn_event *ev)
{
    sn_fuzz_check_str(ev->service, sizeof ev->service);
    sn_fuzz_check_str(ev->model, sizeof ev->model);
    sn_fuzz_check_str(ev->service_version, sizeof ev->service_version);
    sn_fuzz_check_str(ev->provider, sizeof ev->provider);
    sn_fuzz_check_str(ev->operation, sizeof ev->operation);
    sn_fuzz_check_str(ev->region, sizeof ev->region);
    sn_fuzz_check_str(ev->pod, sizeof ev->pod);
    sn_fuzz_check_str(ev->user, sizeof ev->user);
    sn_fuzz_check_str(ev->error_type, sizeof ev->error_type);
    sn_fuzz_check_str(ev->finish_reason, sizeof ev->finish_reason);
    /* Every metric the event reports must be a usable sample. */
    for (int m = 0; m < SN_METRIC_COUNT; m++) {
        double v;
        if (sn_event_metric(ev, (sn_metric)m, &v) && isnan(v))
            abort();
    }
}

#endif
