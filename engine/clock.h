/* Clocks and sleeping, in one place for every module. */
#ifndef OE_CLOCK_H
#define OE_CLOCK_H

#include <time.h>

/* Seconds on the monotonic clock (for durations and deadlines). */
double oe_monotonic(void);

/* Milliseconds on the monotonic clock. */
long long oe_monotonic_ms(void);

/* The monotonic time ms milliseconds from now, as a deadline for
 * pthread_cond_timedwait on a condition variable set to CLOCK_MONOTONIC
 * (pthread_condattr_setclock). */
struct timespec oe_monotonic_after_ms(long ms);

/* Seconds since the epoch (for timestamps and artifact ages). */
double oe_wall_clock(void);

/* Sleeps ms milliseconds, resuming after signals. */
void oe_sleep_ms(long ms);

#endif
