/* CoAP load generator for bench/server.py: plain UDP, no library.
 *
 * Why C: a Python load generator on the same two cores measures itself as
 * much as the server.  This one keeps --inflight CON requests outstanding,
 * one UDP socket per lane (so a lane's MIDs never repeat within the
 * server's EXCHANGE_LIFETIME), and retransmits after --rto seconds.
 *
 *   loadgen storm HOST PORT SECONDS [ENDPOINTS [INFLIGHT [PREFIX [sticky]]]]
 *       Register for SECONDS (cycling over ENDPOINTS names, so after the
 *       first round every Register replaces a live registration: a
 *       re-registration storm), then Update every held location for
 *       SECONDS, then De-register every held location (bounded by SECONDS).
 *       A free lane takes the next name; with "sticky", name n always goes
 *       out of lane n % INFLIGHT, as a device keeps its source port (so a
 *       load balancer hashing on the address keeps it on one node).
 *   loadgen get HOST PORT SECONDS [ENDPOINTS [INFLIGHT]]
 *       plain CON GET /bench.
 *   loadgen open HOST PORT SECONDS [ENDPOINTS [SOCKETS [PREFIX [RATE]]]]
 *       Register at RATE a second for SECONDS whatever the answers (an open
 *       loop, as a fleet coming back does), round-robin over SOCKETS; no
 *       retransmission, an unanswered request is counted lost. A closed loop
 *       hides the server's pauses (they delay only what is in flight); this
 *       shows them in its tail: one line phase=open ... max_us=.
 *   loadgen respond PORT
 *       a trivial CoAP responder (answers from the header bytes): the
 *       generator's own ceiling is measured against it.
 *
 * One line per phase on stdout:
 *   phase=register ok=N errors=E retransmits=R seconds=S rate=X p50_us=A p99_us=B
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAXLANES = 1024, MAXLOC = 32 };

enum phase { P_REGISTER, P_UPDATE, P_DEREGISTER, P_GET };
static const char *phase_names[] = {"register", "update", "deregister", "get"};

struct lane {
    int fd;
    uint16_t mid;
    int busy;
    int endpoint;
    double sent_at;   /* first transmission, for latency */
    double resend_at; /* next retransmission */
    int len;
    unsigned char buf[512];
};

static struct lane lanes[MAXLANES];
static struct pollfd pfds[MAXLANES];
static int nlanes = 128;
static int nendpoints = 20000;
static const char *prefix = "storm";
static struct sockaddr_in server;
static double rto = 2.0;
static int sticky = 0;

/* per endpoint: the location (registration id) from the last 2.01 */
static char (*locations)[MAXLOC];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned char *put_option(unsigned char *p, int *last, int number, const void *value,
                                 int len) {
    int delta = number - *last;
    *last = number;
    unsigned char *head = p++;
    int dn, ln;
    if (delta < 13) {
        dn = delta;
    } else {
        dn = 13;
        *p++ = (unsigned char)(delta - 13);
    }
    if (len < 13) {
        ln = len;
    } else if (len < 269) {
        ln = 13;
        *p++ = (unsigned char)(len - 13);
    } else {
        ln = 14;
        *p++ = (unsigned char)((len - 269) >> 8);
        *p++ = (unsigned char)((len - 269) & 0xff);
    }
    *head = (unsigned char)(dn << 4 | ln);
    memcpy(p, value, (size_t)len);
    return p + len;
}

static const char PAYLOAD[] = "</>;rt=\"oma.lwm2m\",</1/0>,</3/0>,</4/0>,</5/0>";

/* Build the request of `phase` for endpoint `ep` into lane `l`; 0 when there is nothing to send. */
static int build(struct lane *l, enum phase phase, int ep) {
    static const unsigned char codes[] = {0x02, 0x02, 0x04, 0x01}; /* POST POST DELETE GET */
    unsigned char *p = l->buf;
    l->mid++;
    *p++ = 0x44; /* ver 1, CON, TKL 4 */
    *p++ = codes[phase];
    *p++ = (unsigned char)(l->mid >> 8);
    *p++ = (unsigned char)(l->mid & 0xff);
    memcpy(p, &l->mid, 2);
    p[2] = (unsigned char)(l - lanes);
    p[3] = 0x5a;
    p += 4;
    int last = 0;
    char text[96];
    if (phase == P_GET) {
        p = put_option(p, &last, 11, "bench", 5);
    } else if (phase == P_REGISTER) {
        p = put_option(p, &last, 11, "rd", 2);
        unsigned char cf = 40;
        p = put_option(p, &last, 12, &cf, 1);
        int n = snprintf(text, sizeof text, "ep=%s-%d", prefix, ep);
        p = put_option(p, &last, 15, text, n);
        p = put_option(p, &last, 15, "lt=86400", 8);
        *p++ = 0xff;
        memcpy(p, PAYLOAD, sizeof PAYLOAD - 1);
        p += sizeof PAYLOAD - 1;
    } else {
        if (locations[ep][0] == 0)
            return 0;
        p = put_option(p, &last, 11, "rd", 2);
        p = put_option(p, &last, 11, locations[ep], (int)strlen(locations[ep]));
    }
    l->len = (int)(p - l->buf);
    l->endpoint = ep;
    return 1;
}

/* The Location-Path after "rd" of a 2.01, into locations[ep]. */
static void take_location(const unsigned char *m, int n, int ep) {
    int tkl = m[0] & 0x0f;
    int i = 4 + tkl, number = 0, seen = 0;
    while (i < n && m[i] != 0xff) {
        int delta = m[i] >> 4, len = m[i] & 0x0f;
        i++;
        if (delta == 13) delta = 13 + m[i++];
        else if (delta == 14) { delta = 269 + (m[i] << 8 | m[i + 1]); i += 2; }
        if (len == 13) len = 13 + m[i++];
        else if (len == 14) { len = 269 + (m[i] << 8 | m[i + 1]); i += 2; }
        number += delta;
        if (number == 8) {
            if (seen == 1 && len < MAXLOC) {
                memcpy(locations[ep], m + i, (size_t)len);
                locations[ep][len] = 0;
            }
            seen++;
        }
        i += len;
    }
}

/* The next endpoint with something to send (once: each endpoint at most once). */
static int next_request(struct lane *l, enum phase phase, int *next, int once) {
    for (int tries = 0; tries < nendpoints; tries++) {
        if (once && *next >= nendpoints) return 0;
        int ep = (*next)++ % nendpoints;
        if (build(l, phase, ep)) return 1;
    }
    return 0;
}

/* Sticky: the next name of lane `li` (li, li + nlanes, ...) with something to send. */
static int next_sticky(int li, enum phase phase, int *lnext, int once) {
    int per = nendpoints / nlanes + (li < nendpoints % nlanes);
    for (int tries = 0; tries < per; tries++) {
        if (once && lnext[li] >= per) return 0;
        int ep = li + nlanes * (lnext[li]++ % per);
        if (build(&lanes[li], phase, ep)) return 1;
    }
    return 0;
}

static int next_for(int li, enum phase phase, int *next, int *lnext, int once) {
    return sticky ? next_sticky(li, phase, lnext, once)
                  : next_request(&lanes[li], phase, next, once);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run(enum phase phase, double seconds) {
    static const unsigned char expect[] = {0x41, 0x44, 0x42, 0x45}; /* 2.01 2.04 2.02 2.05 */
    size_t cap = 1 << 20, nlat = 0;
    double *lat = malloc(cap * sizeof *lat);
    long ok = 0, errors = 0, retransmits = 0;
    int next = 0;
    static int lnext[MAXLANES];
    memset(lnext, 0, sizeof lnext);
    int once = phase == P_DEREGISTER; /* every location is removed once */
    double start = now(), stop_at = start + seconds;
    int active = 0;
    for (int i = 0; i < nlanes; i++) {
        struct lane *l = &lanes[i];
        l->busy = 0;
        if (next_for(i, phase, &next, lnext, once)) {
            l->busy = 1;
            l->sent_at = now();
            l->resend_at = l->sent_at + rto;
            send(l->fd, l->buf, (size_t)l->len, 0);
            active++;
        }
    }
    unsigned char in[1500];
    while (active > 0) {
        int r = poll(pfds, (nfds_t)nlanes, 50);
        double t = now();
        if (r > 0) {
            for (int i = 0; i < nlanes; i++) {
                if (!(pfds[i].revents & POLLIN)) continue;
                struct lane *l = &lanes[i];
                ssize_t n;
                while ((n = recv(l->fd, in, sizeof in, MSG_DONTWAIT)) > 0) {
                    if (n < 4 || !l->busy) continue;
                    if ((in[0] >> 4 & 3) != 2) continue; /* only ACKs */
                    if ((in[2] << 8 | in[3]) != l->mid) continue;
                    if (in[1] == expect[phase]) {
                        ok++;
                        if (phase == P_REGISTER) take_location(in, (int)n, l->endpoint);
                        if (phase == P_DEREGISTER) locations[l->endpoint][0] = 0;
                    } else {
                        errors++;
                        if (errors <= 5)
                            fprintf(stderr, "%s: answer %d.%02d\n", phase_names[phase], in[1] >> 5,
                                    in[1] & 31);
                    }
                    if (nlat == cap) lat = realloc(lat, (cap *= 2) * sizeof *lat);
                    lat[nlat++] = t - l->sent_at;
                    l->busy = 0;
                    active--;
                    if (t < stop_at && next_for(i, phase, &next, lnext, once)) {
                        l->busy = 1;
                        l->sent_at = now();
                        l->resend_at = l->sent_at + rto;
                        send(l->fd, l->buf, (size_t)l->len, 0);
                        active++;
                    }
                }
            }
        }
        for (int i = 0; i < nlanes; i++) {
            struct lane *l = &lanes[i];
            if (l->busy && t >= l->resend_at) {
                if (t > stop_at + 10.0) { /* give up on this one */
                    l->busy = 0;
                    active--;
                    errors++;
                    continue;
                }
                retransmits++;
                l->resend_at = t + rto;
                send(l->fd, l->buf, (size_t)l->len, 0);
            }
        }
    }
    double elapsed = now() - start;
    qsort(lat, nlat, sizeof *lat, cmp_double);
    double p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[(size_t)((double)nlat * 0.99)] : 0;
    printf("phase=%s ok=%ld errors=%ld retransmits=%ld seconds=%.3f rate=%.0f p50_us=%.0f "
           "p99_us=%.0f\n",
           phase_names[phase], ok, errors, retransmits, elapsed, (double)ok / elapsed, p50 * 1e6,
           p99 * 1e6);
    fflush(stdout);
    free(lat);
}

enum { RING = 8192 }; /* per socket, by MID: send times of an open loop's requests */

static void run_open(double seconds, double rate) {
    double *sent_at = calloc((size_t)nlanes * RING, sizeof *sent_at);
    size_t cap = 1 << 20, nlat = 0;
    double *lat = malloc(cap * sizeof *lat);
    long sent = 0, ok = 0, errors = 0;
    int ep = 0;
    double start = now(), stop_at = start + seconds, next_at = start;
    unsigned char in[1500];
    for (;;) {
        double t = now();
        if (t >= stop_at + 2.0) break; /* the last answers' time */
        while (t < stop_at && next_at <= t) {
            int li = (int)(sent % nlanes);
            struct lane *l = &lanes[li];
            build(l, P_REGISTER, ep);
            ep = (ep + 1) % nendpoints;
            sent_at[(size_t)li * RING + l->mid % RING] = now();
            send(l->fd, l->buf, (size_t)l->len, 0);
            sent++;
            next_at = start + (double)sent / rate;
        }
        double wait = t < stop_at ? next_at - now() : 0.05;
        if (wait < 0) wait = 0;
        if (wait > 0.005) wait = 0.005;
        struct timespec ts = {0, (long)(wait * 1e9)};
        if (ppoll(pfds, (nfds_t)nlanes, &ts, NULL) <= 0) continue;
        double r_t = now();
        for (int li = 0; li < nlanes; li++) {
            if (!(pfds[li].revents & POLLIN)) continue;
            ssize_t n;
            while ((n = recv(lanes[li].fd, in, sizeof in, MSG_DONTWAIT)) > 0) {
                if (n < 4 || (in[0] >> 4 & 3) != 2 || in[1] == 0) continue; /* ACKs with a code */
                double *slot = &sent_at[(size_t)li * RING + (in[2] << 8 | in[3]) % RING];
                if (*slot == 0) continue;
                if (in[1] == 0x41) {
                    ok++;
                } else if (++errors <= 5) {
                    fprintf(stderr, "open: answer %d.%02d\n", in[1] >> 5, in[1] & 31);
                }
                if (nlat == cap) lat = realloc(lat, (cap *= 2) * sizeof *lat);
                lat[nlat++] = r_t - *slot;
                *slot = 0;
            }
        }
    }
    qsort(lat, nlat, sizeof *lat, cmp_double);
    double p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[(size_t)((double)nlat * 0.99)] : 0;
    double worst = nlat ? lat[nlat - 1] : 0;
    printf("phase=open ok=%ld errors=%ld lost=%ld sent=%ld seconds=%.3f rate=%.0f p50_us=%.0f "
           "p99_us=%.0f max_us=%.0f\n",
           ok, errors, sent - ok - errors, sent, seconds, (double)sent / seconds, p50 * 1e6,
           p99 * 1e6, worst * 1e6);
    fflush(stdout);
    free(lat);
    free(sent_at);
}

static int respond(int port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("bind");
        return 1;
    }
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    printf("port=%d\n", ntohs(a.sin_port));
    fflush(stdout);
    unsigned char in[1500], out[64];
    for (;;) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&from, &fl);
        if (n < 4 || (in[0] >> 4 & 3) != 0) continue;
        int tkl = in[0] & 0x0f;
        if (n < 4 + tkl) continue;
        static const unsigned char answer[] = {0, 0x45, 0x41, 0x44, 0x42};
        int code = in[1] <= 4 ? answer[in[1]] : 0x45;
        /* a POST without payload is this generator's Update */
        if (in[1] == 2 && memchr(in + 4 + tkl, 0xff, (size_t)(n - 4 - tkl)) == NULL) code = 0x44;
        int len = 0;
        out[len++] = (unsigned char)(0x60 | tkl);
        out[len++] = (unsigned char)code;
        memcpy(out + len, in + 2, (size_t)(2 + tkl));
        len += 2 + tkl;
        if (code == 0x41) { /* Location-Path rd/x */
            out[len++] = 0x82;
            out[len++] = 'r';
            out[len++] = 'd';
            out[len++] = 0x01;
            out[len++] = 'x';
        }
        sendto(fd, out, (size_t)len, 0, (struct sockaddr *)&from, fl);
    }
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "respond") == 0) return respond(atoi(argv[2]));
    if (argc < 5) {
        fprintf(stderr, "usage: loadgen storm|get HOST PORT SECONDS [ENDPOINTS [INFLIGHT [PREFIX "
                        "[sticky]]]]\n"
                        "       loadgen open HOST PORT SECONDS [ENDPOINTS [SOCKETS [PREFIX [RATE]]]]\n"
                        "       loadgen respond PORT\n");
        return 2;
    }
    const char *mode = argv[1];
    double seconds = atof(argv[4]);
    if (argc > 5) nendpoints = atoi(argv[5]);
    if (argc > 6) nlanes = atoi(argv[6]);
    if (argc > 7) prefix = argv[7];
    double rate = 0;
    if (argc > 8) {
        sticky = strcmp(argv[8], "sticky") == 0;
        rate = atof(argv[8]);
    }
    if (nlanes < 1 || nlanes > MAXLANES || nendpoints < 1) return 2;
    locations = calloc((size_t)nendpoints, sizeof *locations);
    server.sin_family = AF_INET;
    server.sin_port = htons((uint16_t)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &server.sin_addr) != 1) return 2;
    srand((unsigned)(time(NULL) ^ getpid()));
    for (int i = 0; i < nlanes; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&server, sizeof server) < 0) {
            perror("socket");
            return 1;
        }
        lanes[i].fd = fd;
        lanes[i].mid = (uint16_t)rand();
        pfds[i].fd = fd;
        pfds[i].events = POLLIN;
    }
    if (strcmp(mode, "get") == 0) {
        run(P_GET, seconds);
    } else if (strcmp(mode, "storm") == 0) {
        run(P_REGISTER, seconds);
        run(P_UPDATE, seconds);
        run(P_DEREGISTER, seconds);
    } else if (strcmp(mode, "open") == 0) {
        if (!(rate > 0)) {
            fprintf(stderr, "open: RATE must be a positive number of requests a second\n");
            return 2;
        }
        run_open(seconds, rate);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
