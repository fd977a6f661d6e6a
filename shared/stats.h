/*
 * stats.h -- running statistics: Welford mean/variance, EWMA, and the summary of a baseline
 * that detectors score against.
 */
#ifndef SN_STATS_H
#define SN_STATS_H

#include <stdint.h>

/* What a detector needs to know about a baseline. Filled by the window (exact) or the sketch
 * (approximate); detectors never look at the raw samples. Fields that the source cannot give
 * are NAN. */
typedef struct sn_summary {
    uint64_t n; /* samples in the baseline */
    double mean;
    double stddev; /* sample standard deviation (n-1); 0 for n < 2 */
    double min;
    double max;
    double median;
    double q1;  /* 25th percentile */
    double q3;  /* 75th percentile */
    double p95;
    double p99;
    double mad; /* median absolute deviation from the median, unscaled */
} sn_summary;

#endif
