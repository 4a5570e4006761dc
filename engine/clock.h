/* Clocks and sleeping, in one place for every module. */
#ifndef OE_CLOCK_H
#define OE_CLOCK_H

/* Seconds on the monotonic clock (for durations and deadlines). */
double oe_monotonic(void);

/* Seconds since the epoch (for timestamps and artifact ages). */
double oe_wall_clock(void);

/* Sleeps ms milliseconds, resuming after signals. */
void oe_sleep_ms(long ms);

#endif
