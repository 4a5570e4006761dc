/* The embedded broker (broker.h): librdkafka's mock cluster in this
 * process. Threads: the mock's own thread serves clients, and the relay's
 * when a fixed port is asked for. oe_broker_new and oe_broker_listen only
 * allocate (and bind the fixed port); oe_broker_start makes the cluster
 * and starts the threads; oe_broker_free releases everything. */
#include "devbroker/broker.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "devbroker/relay.h"
#include "engine/log.h"
#include "engine/status.h"
#include "kafka/kafka.h"

struct oe_broker {
    int partitions;
    char **topics; /* created by oe_broker_start */
    size_t ntopics;
    rd_kafka_t *owner; /* the mock cluster lives in this handle */
    rd_kafka_mock_cluster_t *mock;
    oe_relay *relay; /* the fixed port; NULL: none */
    char fixed[32];  /* "127.0.0.1:PORT" of the relay */
};

/* The mock cluster writes its responses without TCP_NODELAY. When a client
 * has several requests in flight (one per partition), each response after
 * the first can wait for the client's delayed ACK, which caps a worker's
 * batch rate (clients set TCP_NODELAY themselves, socket.nagle.disable;
 * that does not help the server side). On Linux an accepted socket inherits
 * TCP_NODELAY from its listening socket, so setting it once on the mock
 * broker's listener (found among this process's descriptors by its local
 * port, before any client connects) covers every connection it accepts and
 * touches nothing else. Real brokers set TCP_NODELAY on their own.
 *
 * Measured with clients that set socket.nagle.disable (bench/kafka.sh,
 * N=50000, same machine): 23,900-25,600 executions/s without TCP_NODELAY on
 * the broker's side (three runs), 27,400-29,800 with it set by a thread
 * sweeping every socket (three runs), 25,500-36,200 with it set once on the
 * listener (four runs); single /execute latency through the bridge is the
 * same either way (median 11.8 vs 11.9 ms over 300 calls). Returns OE_OK,
 * or OE_EIO when /proc/self/fd cannot be read or no listener on port took
 * TCP_NODELAY. */
static int set_nodelay_on_listener(int port)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return OE_EIO;
    int found = OE_EIO;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (fd <= 2)
            continue;
        int listening = 0;
        socklen_t len = sizeof listening;
        struct sockaddr_storage addr;
        socklen_t alen = sizeof addr;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening ||
            getsockname(fd, (struct sockaddr *)&addr, &alen) != 0)
            continue;
        int local;
        if (addr.ss_family == AF_INET)
            local = ntohs(((struct sockaddr_in *)&addr)->sin_port);
        else if (addr.ss_family == AF_INET6)
            local = ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
        else
            continue;
        int one = 1;
        if (local == port && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0)
            found = OE_OK;
    }
    closedir(d);
    return found;
}

/* The mock's own port, from its "127.0.0.1:PORT". */
static int mock_port(const oe_broker *b)
{
    const char *colon = strrchr(rd_kafka_mock_cluster_bootstraps(b->mock), ':');
    return colon ? atoi(colon + 1) : 0;
}

int oe_broker_new(int partitions, const char *const *topics, size_t ntopics, oe_broker **out,
                  char *err, size_t errlen)
{
    oe_broker *b = calloc(1, sizeof *b);
    if (!b || !(b->topics = calloc(ntopics ? ntopics : 1, sizeof *b->topics))) {
        free(b);
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    b->partitions = partitions;
    for (; b->ntopics < ntopics; b->ntopics++)
        if (!(b->topics[b->ntopics] = strdup(topics[b->ntopics]))) {
            oe_broker_free(b);
            snprintf(err, errlen, "out of memory");
            return OE_ENOMEM;
        }
    *out = b;
    return OE_OK;
}

int oe_broker_listen(oe_broker *b, int port, char *err, size_t errlen)
{
    char why[256];
    if (b->relay || b->owner || port < 1 || port > 65535) {
        snprintf(err, errlen, "embedded broker: port %d: %s", port,
                 b->relay   ? "a fixed port is set already"
                 : b->owner ? "the broker was started before"
                            : "out of range 1-65535");
        return OE_EINVAL;
    }
    int rc = oe_relay_new(port, &b->relay, why, sizeof why);
    if (rc != OE_OK) {
        snprintf(err, errlen, "embedded broker: %s", why);
        return rc;
    }
    snprintf(b->fixed, sizeof b->fixed, "127.0.0.1:%d", oe_relay_port(b->relay));
    return OE_OK;
}

int oe_broker_start(oe_broker *b, char *err, size_t errlen)
{
    if (b->owner) {
        snprintf(err, errlen, "embedded broker: started before");
        return OE_EINVAL;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    oe_kafka_conf_logging(conf);
    char errstr[512];
    b->owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!b->owner) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "embedded broker: %s", errstr);
        return OE_EIO;
    }
    b->mock = rd_kafka_mock_cluster_new(b->owner, 1);
    if (!b->mock) {
        snprintf(err, errlen, "embedded broker: cannot create the mock cluster");
        return OE_EIO;
    }
    for (size_t i = 0; i < b->ntopics; i++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(b->mock, b->topics[i], b->partitions, 1);
        if (e) {
            snprintf(err, errlen, "embedded broker: topic %s: %s", b->topics[i],
                     rd_kafka_err2str(e));
            return OE_EINVAL; /* the mock refuses only the topic's settings (e.g. a name twice) */
        }
    }
    if (set_nodelay_on_listener(mock_port(b)) != OE_OK)
        oe_log(OE_LOG_WARN, "broker", NULL, "listener not found; TCP_NODELAY not set");
    char why[256];
    int rc = b->relay ? oe_relay_start(b->relay, mock_port(b), why, sizeof why) : OE_OK;
    if (rc != OE_OK)
        snprintf(err, errlen, "embedded broker: %s", why);
    return rc;
}

const char *oe_broker_bootstraps(const oe_broker *b)
{
    return b->relay ? b->fixed : rd_kafka_mock_cluster_bootstraps(b->mock);
}

void *oe_broker_mock(oe_broker *b)
{
    return b->mock;
}

void oe_broker_free(oe_broker *b)
{
    if (!b)
        return;
    oe_relay_free(b->relay); /* its connections to the broker first */
    if (b->mock)
        rd_kafka_mock_cluster_destroy(b->mock);
    if (b->owner)
        rd_kafka_destroy(b->owner);
    for (size_t i = 0; i < b->ntopics; i++)
        free(b->topics[i]);
    free(b->topics);
    free(b);
}
