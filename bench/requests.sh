#!/usr/bin/env bash
# The benchmark requests: N JSON lines (`add`, nonce bench-I), on stdout.
# Shared by bench/kafka.sh and bench/real_kafka.sh so that both measure
# the same messages.
set -eu
awk -v n="${1:?usage: bench/requests.sh N}" 'BEGIN { for (i = 0; i < n; i++)
    printf "{\"action\":\"add\",\"payload\":{\"a\":%d,\"b\":2},\"nonce\":\"bench-%d\"}\n", i, i }'
