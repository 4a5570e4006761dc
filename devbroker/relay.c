/* The loopback TCP relay (relay.h). Threads: one, run_relay, owns every
 * socket and buffer after oe_relay_start returns; oe_relay_free wakes it
 * through a pipe, joins it, then releases everything. */
#include "devbroker/relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/log.h"
#include "engine/status.h"

/* Bytes read from one socket, waiting to be written to the other. */
typedef struct {
    unsigned char *buf; /* OE_RELAY_BUFFER bytes */
    size_t off, len;    /* pending: buf[off, len) */
    int eof;            /* the reading side ended */
} half;

/* fd[0] is the accepted client, fd[1] the connection to the target;
 * dir[s] carries what fd[s] sends to fd[1 - s]. */
typedef struct {
    int fd[2];
    half dir[2];
} conn;

struct oe_relay {
    int listener;
    int wake[2]; /* a byte on wake[1] stops the thread */
    int port, target_port;
    int thread_started;
    pthread_t thread;
    atomic_ulong accepted;
    time_t warned_at;      /* the last "too many connections" line */
    unsigned long refused; /* connections closed for the limit since then */
    conn *conns[OE_RELAY_MAX_CONNECTIONS];
    size_t nconns;
};

static void conn_free(conn *c)
{
    for (int s = 0; s < 2; s++) {
        if (c->fd[s] >= 0)
            close(c->fd[s]);
        free(c->dir[s].buf);
    }
    free(c);
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static struct sockaddr_in loopback(int port)
{
    return (struct sockaddr_in){.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* Accepts one connection and joins it to the target; a connection beyond
 * the limit, or one the target refuses, is closed at once. */
static void accept_one(oe_relay *r)
{
    int fd = accept4(r->listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return; /* EAGAIN, or a client that left before being accepted */
    if (r->nconns == OE_RELAY_MAX_CONNECTIONS) {
        /* One line per 10 s at most, however many are refused. */
        close(fd);
        r->refused++;
        time_t now = time(NULL);
        if (now - r->warned_at >= 10) {
            oe_log(OE_LOG_WARN, "broker",
                   OE_LOG_FIELDS("limit", OE_LOG_INT(OE_RELAY_MAX_CONNECTIONS), "closed",
                                 OE_LOG_INT(r->refused)),
                   "fixed port: too many connections; new ones closed");
            r->warned_at = now;
            r->refused = 0;
        }
        return;
    }
    /* A connect on loopback is answered at once: blocking, then made
     * non-blocking for the relay. */
    conn *c = calloc(1, sizeof *c);
    int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(r->target_port);
    const char *why = NULL;
    if (!c || !(c->dir[0].buf = malloc(OE_RELAY_BUFFER)) ||
        !(c->dir[1].buf = malloc(OE_RELAY_BUFFER)))
        why = "out of memory";
    else if (t < 0 || connect(t, (struct sockaddr *)&a, sizeof a) != 0 ||
             fcntl(t, F_SETFL, O_NONBLOCK) != 0)
        why = strerror(errno);
    if (why) {
        oe_log(OE_LOG_WARN, "broker", OE_LOG_FIELDS("error", why),
               "fixed port: cannot reach the broker; connection closed");
        if (c) {
            free(c->dir[0].buf);
            free(c->dir[1].buf);
            free(c);
        }
        if (t >= 0)
            close(t);
        close(fd);
        return;
    }
    set_nodelay(fd);
    set_nodelay(t);
    c->fd[0] = fd;
    c->fd[1] = t;
    r->conns[r->nconns++] = c;
    atomic_fetch_add(&r->accepted, 1);
}

/* What poll should wait for on fd[s]. */
static short wanted(const conn *c, int s)
{
    const half *in = &c->dir[s], *out = &c->dir[1 - s];
    short ev = 0;
    if (!in->eof && in->len - in->off < OE_RELAY_BUFFER)
        ev |= POLLIN;
    if (out->off < out->len)
        ev |= POLLOUT;
    return ev;
}

/* Moves bytes for one connection after poll. Returns 0 while it lives, 1
 * when it is over (an error, or one side ended and its bytes are passed
 * on). */
static int pump(conn *c, const short revents[2])
{
    for (int s = 0; s < 2; s++) {
        half *in = &c->dir[s];
        if ((revents[s] & POLLERR))
            return 1;
        if ((revents[s] & (POLLIN | POLLHUP)) && !in->eof && in->len - in->off < OE_RELAY_BUFFER) {
            if (in->off == in->len)
                in->off = in->len = 0;
            else if (in->off > 0) {
                memmove(in->buf, in->buf + in->off, in->len - in->off);
                in->len -= in->off;
                in->off = 0;
            }
            ssize_t n = read(c->fd[s], in->buf + in->len, OE_RELAY_BUFFER - in->len);
            if (n > 0)
                in->len += (size_t)n;
            else if (n == 0)
                in->eof = 1;
            else if (errno != EAGAIN && errno != EINTR)
                return 1;
        }
    }
    for (int s = 0; s < 2; s++) {
        half *out = &c->dir[1 - s]; /* what fd[s] is to be sent */
        if (out->off < out->len) {
            ssize_t n = send(c->fd[s], out->buf + out->off, out->len - out->off, MSG_NOSIGNAL);
            if (n > 0)
                out->off += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                return 1;
        }
    }
    /* Kafka's protocol has no half-close: once one side has ended and what
     * it sent is passed on, the connection is over for both. */
    for (int s = 0; s < 2; s++)
        if (c->dir[s].eof && c->dir[s].off == c->dir[s].len)
            return 1;
    return 0;
}

static void *run_relay(void *arg)
{
    oe_relay *r = arg;
    struct pollfd *p = malloc((2 + 2 * OE_RELAY_MAX_CONNECTIONS) * sizeof *p);
    if (!p) {
        oe_log(OE_LOG_ERROR, "broker", NULL, "fixed port: no memory; relay stopped");
        return NULL;
    }
    for (;;) {
        p[0] = (struct pollfd){.fd = r->wake[0], .events = POLLIN};
        p[1] = (struct pollfd){.fd = r->listener, .events = POLLIN};
        for (size_t i = 0; i < r->nconns; i++)
            for (int s = 0; s < 2; s++) {
                short ev = wanted(r->conns[i], s);
                /* A socket with nothing to do is left out: poll would
                 * report its hang-up over and over. */
                p[2 + 2 * i + s] =
                    (struct pollfd){.fd = ev ? r->conns[i]->fd[s] : -1, .events = ev};
            }
        if (poll(p, 2 + 2 * r->nconns, -1) < 0) {
            if (errno == EINTR)
                continue;
            oe_log(OE_LOG_ERROR, "broker", OE_LOG_FIELDS("error", strerror(errno)),
                   "fixed port: poll failed; relay stopped");
            break;
        }
        if (p[0].revents)
            break;
        /* Connections first (the array shrinks), then new ones. */
        for (size_t i = r->nconns; i-- > 0;) {
            short rev[2] = {p[2 + 2 * i].revents, p[2 + 2 * i + 1].revents};
            if ((rev[0] | rev[1]) && pump(r->conns[i], rev) != 0) {
                conn_free(r->conns[i]);
                r->conns[i] = r->conns[--r->nconns];
            }
        }
        if (p[1].revents & POLLIN)
            accept_one(r);
    }
    free(p);
    return NULL;
}

int oe_relay_new(int port, oe_relay **out, char *err, size_t errlen)
{
    oe_relay *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    r->wake[0] = r->wake[1] = -1;
    r->listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in a = loopback(port);
    socklen_t alen = sizeof a;
    if (r->listener < 0 ||
        setsockopt(r->listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(r->listener, (struct sockaddr *)&a, sizeof a) != 0 || listen(r->listener, 128) != 0 ||
        getsockname(r->listener, (struct sockaddr *)&a, &alen) != 0) {
        snprintf(err, errlen, "cannot listen on 127.0.0.1:%d: %s", port, strerror(errno));
        oe_relay_free(r);
        return OE_EIO;
    }
    set_nodelay(r->listener); /* inherited by accepted sockets */
    r->port = ntohs(a.sin_port);
    if (pipe2(r->wake, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        oe_relay_free(r);
        return OE_EIO;
    }
    *out = r;
    return OE_OK;
}

int oe_relay_start(oe_relay *r, int target_port, char *err, size_t errlen)
{
    if (r->thread_started) {
        snprintf(err, errlen, "the relay was started before");
        return OE_EINVAL;
    }
    r->target_port = target_port;
    int e = pthread_create(&r->thread, NULL, run_relay, r);
    if (e != 0) {
        snprintf(err, errlen, "thread: %s", strerror(e));
        return OE_EIO;
    }
    r->thread_started = 1;
    return OE_OK;
}

int oe_relay_port(const oe_relay *r)
{
    return r->port;
}

unsigned long oe_relay_accepted(const oe_relay *r)
{
    return atomic_load(&r->accepted);
}

void oe_relay_free(oe_relay *r)
{
    if (!r)
        return;
    if (r->thread_started) {
        char b = 0;
        while (write(r->wake[1], &b, 1) < 0 && errno == EINTR)
            ;
        pthread_join(r->thread, NULL);
    }
    if (r->wake[1] >= 0)
        close(r->wake[1]);
    if (r->wake[0] >= 0)
        close(r->wake[0]);
    for (size_t i = 0; i < r->nconns; i++)
        conn_free(r->conns[i]);
    if (r->listener >= 0)
        close(r->listener);
    free(r);
}
