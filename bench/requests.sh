#!/usr/bin/env bash
# The benchmark requests: N JSON lines (`add`, nonce bench-I for I from
# START, default 0), on stdout. Shared by bench/kafka.sh, bench/growth.sh
# and bench/real_kafka.sh so that all measure the same messages.
set -eu
awk -v n="${1:?usage: bench/requests.sh N [START]}" -v s="${2:-0}" 'BEGIN {
    for (i = s; i < s + n; i++)
        printf "{\"action\":\"add\",\"payload\":{\"a\":%d,\"b\":2},\"nonce\":\"bench-%d\"}\n", i, i }'
