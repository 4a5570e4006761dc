/* The loopback relay behind --broker-port (worker/relay.h), with real
 * sockets: bytes both ways unchanged (a megabyte, more than its buffers),
 * connections kept apart, one side's end closing both, a target that
 * refuses, a port that is taken, and the connection limit. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devbroker/relay.h"
#include "engine/status.h"
#include "tests/test.h"

static struct sockaddr_in loopback(int port)
{
    return (struct sockaddr_in){.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* A listening socket on a port the system picks; its port in *port. */
static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 512) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(port);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until EOF (or cap bytes); returns the count, -1 on error. A read
 * that waits over 10 s is an error: the relay must not hang. */
static long read_to_eof(int fd, unsigned char *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) != 1)
            return -1;
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0)
            return -1;
        if (n == 0 || (got += (size_t)n) == cap)
            return (long)got;
    }
}

/* The target: for each connection, reads `expect` bytes, then writes them
 * back reversed and closes. */
typedef struct {
    int listener;
    int connections; /* to serve, then return */
    size_t expect;
} echo_server;

typedef struct {
    int fd;
    size_t expect;
} echo_conn;

static void *serve_one(void *arg)
{
    echo_conn *ec = arg;
    int fd = ec->fd;
    unsigned char *buf = malloc(ec->expect);
    long n = buf ? read_to_eof(fd, buf, ec->expect) : -1;
    for (long i = 0; i < n / 2; i++) {
        unsigned char t = buf[i];
        buf[i] = buf[n - 1 - i];
        buf[n - 1 - i] = t;
    }
    if (n > 0)
        write_all(fd, buf, (size_t)n);
    close(fd);
    free(buf);
    return NULL;
}

static void *run_echo(void *arg)
{
    echo_server *e = arg;
    pthread_t th[64];
    echo_conn ec[64];
    int n = 0;
    for (; n < e->connections && n < 64; n++) {
        ec[n] = (echo_conn){.fd = accept(e->listener, NULL, NULL), .expect = e->expect};
        if (ec[n].fd < 0 || pthread_create(&th[n], NULL, serve_one, &ec[n]) != 0)
            break;
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    return NULL;
}

static void test_bytes_both_ways(void)
{
    int target;
    size_t n = 1 << 20; /* 16 times a direction's buffer */
    echo_server e = {.listener = listen_any(&target), .connections = 1, .expect = n};
    ASSERT_TRUE(e.listener >= 0);
    pthread_t th;
    pthread_create(&th, NULL, run_echo, &e);
    oe_relay *r;
    char err[256];
    ASSERT_EQ(oe_relay_new(0, &r, err, sizeof err), 0);
    ASSERT_EQ(oe_relay_start(r, target, err, sizeof err), 0);
    unsigned char *out = malloc(n), *in = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char)(i * 2654435761u >> 13);
    int fd = connect_to(oe_relay_port(r));
    ASSERT_TRUE(fd >= 0);
    ASSERT_EQ(write_all(fd, out, n), 0);
    /* All of it, then the end: the server's close ends the client's side
     * too, once its bytes are passed on. */
    ASSERT_EQ(read_to_eof(fd, in, n + 1), (long)n);
    int same = 1;
    for (size_t i = 0; i < n; i++)
        same &= in[i] == out[n - 1 - i];
    ASSERT_TRUE(same);
    ASSERT_EQ(oe_relay_accepted(r), 1);
    close(fd);
    pthread_join(th, NULL);
    oe_relay_free(r);
    close(e.listener);
    free(out);
    free(in);
}

static void test_connections_kept_apart(void)
{
    enum { N = 40, LEN = 16 };
    int target;
    echo_server e = {.listener = listen_any(&target), .connections = N, .expect = LEN};
    pthread_t th;
    pthread_create(&th, NULL, run_echo, &e);
    oe_relay *r;
    char err[256];
    ASSERT_EQ(oe_relay_new(0, &r, err, sizeof err), 0);
    ASSERT_EQ(oe_relay_start(r, target, err, sizeof err), 0);
    int fds[N];
    for (int i = 0; i < N; i++) /* all open at once */
        fds[i] = connect_to(oe_relay_port(r));
    for (int i = 0; i < N; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "message %7d", i % 10000000);
        ASSERT_EQ(write_all(fds[i], (unsigned char *)msg, LEN), 0);
    }
    for (int i = 0; i < N; i++) {
        unsigned char got[64];
        char want[32];
        snprintf(want, sizeof want, "message %7d", i % 10000000);
        long n = read_to_eof(fds[i], got, sizeof got);
        ASSERT_EQ(n, LEN);
        for (int j = 0; j < LEN && n == LEN; j++)
            ASSERT_EQ(got[j], (unsigned char)want[LEN - 1 - j]);
        close(fds[i]);
    }
    ASSERT_EQ(oe_relay_accepted(r), N);
    pthread_join(th, NULL);
    oe_relay_free(r);
    close(e.listener);
}

static void test_target_refuses(void)
{
    int target;
    int l = listen_any(&target);
    close(l); /* nothing listens there now */
    oe_relay *r;
    char err[256];
    ASSERT_EQ(oe_relay_new(0, &r, err, sizeof err), 0);
    ASSERT_EQ(oe_relay_start(r, target, err, sizeof err), 0);
    int fd = connect_to(oe_relay_port(r));
    ASSERT_TRUE(fd >= 0);
    unsigned char b[8];
    long n = read_to_eof(fd, b, sizeof b); /* closed at once: EOF or reset */
    ASSERT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET));
    ASSERT_EQ(oe_relay_accepted(r), 0);
    close(fd);
    oe_relay_free(r);
}

static void test_port_taken(void)
{
    int port;
    int l = listen_any(&port);
    oe_relay *r = NULL;
    char err[256] = "";
    ASSERT_EQ(oe_relay_new(port, &r, err, sizeof err), OE_EIO);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    ASSERT_CONTAINS(err, want);
    ASSERT_CONTAINS(err, "in use");
    ASSERT_TRUE(r == NULL);
    close(l);
}

/* Holds every connection it accepts open, until its listener is shut. */
static void *run_holder(void *arg)
{
    int l = *(int *)arg;
    static int held[OE_RELAY_MAX_CONNECTIONS + 8];
    int n = 0;
    for (;;) {
        int fd = accept(l, NULL, NULL);
        if (fd < 0)
            break;
        if (n < (int)(sizeof held / sizeof held[0]))
            held[n++] = fd;
        else
            close(fd);
    }
    for (int i = 0; i < n; i++)
        close(held[i]);
    return NULL;
}

static void test_connection_limit(void)
{
    /* Each relayed connection takes three descriptors here (client,
     * relay's two) plus the holder's one. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 4096 && rl.rlim_max >= 4096) {
        rl.rlim_cur = 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int target;
    int l = listen_any(&target);
    pthread_t th;
    pthread_create(&th, NULL, run_holder, &l);
    oe_relay *r;
    char err[256];
    ASSERT_EQ(oe_relay_new(0, &r, err, sizeof err), 0);
    ASSERT_EQ(oe_relay_start(r, target, err, sizeof err), 0);
    static int fds[OE_RELAY_MAX_CONNECTIONS + 1];
    for (int i = 0; i <= OE_RELAY_MAX_CONNECTIONS; i++)
        fds[i] = connect_to(oe_relay_port(r));
    /* The one beyond the limit is closed by the relay; the others live. */
    unsigned char b[8];
    ASSERT_EQ(read_to_eof(fds[OE_RELAY_MAX_CONNECTIONS], b, sizeof b), 0);
    ASSERT_EQ(oe_relay_accepted(r), OE_RELAY_MAX_CONNECTIONS);
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    ASSERT_EQ(poll(&p, 1, 100), 0);
    /* Room again once one leaves. */
    close(fds[0]);
    close(fds[OE_RELAY_MAX_CONNECTIONS]);
    /* Until the relay has seen the leaving ones, a new connection is
     * refused (closed: end of file here); each is waited on until it is
     * either taken or refused, so that no two are pending at once. */
    for (int i = 0; i < 100 && oe_relay_accepted(r) == OE_RELAY_MAX_CONNECTIONS; i++) {
        fds[0] = connect_to(oe_relay_port(r));
        struct pollfd q = {.fd = fds[0], .events = POLLIN};
        int refused = 0;
        for (int w = 0; w < 500 && !refused && oe_relay_accepted(r) == OE_RELAY_MAX_CONNECTIONS;
             w++)
            refused = poll(&q, 1, 10) == 1;
        if (refused)
            close(fds[0]);
    }
    ASSERT_EQ(oe_relay_accepted(r), OE_RELAY_MAX_CONNECTIONS + 1);
    for (int i = 0; i < OE_RELAY_MAX_CONNECTIONS; i++)
        close(fds[i]);
    oe_relay_free(r);
    shutdown(l, SHUT_RDWR);
    pthread_join(th, NULL);
    close(l);
}

int main(void)
{
    RUN_TEST(test_bytes_both_ways);
    RUN_TEST(test_connections_kept_apart);
    RUN_TEST(test_target_refuses);
    RUN_TEST(test_port_taken);
    RUN_TEST(test_connection_limit);
    return TEST_REPORT();
}
