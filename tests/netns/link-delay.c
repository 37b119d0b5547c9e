/*
 * link-delay: adds latency and jitter to the packets a network namespace sends, for tests/netns/lab.sh on kernels
 * built without sch_netem. Packets reach it through an NFQUEUE rule (iptables ... -j NFQUEUE --queue-num QUEUE) and it
 * releases each one (verdict ACCEPT) after DELAY_US plus a uniform random offset in [-JITTER_US, +JITTER_US] (netem's
 * default jitter distribution), never before the packet queued ahead of it: the link keeps packet order, as a queue
 * does (netem reorders under jitter unless a rate is set). Only packet metadata is copied to user space
 * (NFQNL_COPY_META), and GSO packets stay whole (NFQA_CFG_F_GSO).
 *
 * Usage: link-delay QUEUE DELAY_US JITTER_US
 * Run it with a real-time priority (chrt -f 50) so that a busy machine does not add its scheduling delay. On SIGTERM
 * it prints how many packets it released and how late (mean, 99th percentile bucket and largest, microseconds)
 * against their planned release, so a run can show the delay it asked for is the delay the packets got.
 *
 * Build: gcc -O2 -o link-delay link-delay.c -lnetfilter_queue -lnfnetlink (Debian: libnetfilter-queue-dev).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define CAPACITY (1u << 18) /* packets held at once; more are released at once and counted */
#define LATE_BUCKETS 64     /* lateness histogram: bucket b holds [2^b - 1, 2^(b+1) - 1) microseconds */

static uint32_t held_id[CAPACITY];
static int64_t held_due[CAPACITY];
static unsigned head, tail;
static int64_t delay_ns, jitter_ns, last_due;
static uint64_t random_state = 0x9E3779B97F4A7C15ull;
static uint64_t released, overflowed, late_sum_ns, late_max_ns, late_buckets[LATE_BUCKETS];
static volatile sig_atomic_t stopping;

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Uniform in [0, 1): xorshift64*, enough for jitter. */
static double uniform(void)
{
    random_state ^= random_state >> 12;
    random_state ^= random_state << 25;
    random_state ^= random_state >> 27;
    return ((random_state * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

static int on_packet(struct nfq_q_handle *queue, struct nfgenmsg *message, struct nfq_data *packet, void *context)
{
    (void)message;
    (void)context;
    uint32_t id = ntohl(nfq_get_msg_packet_hdr(packet)->packet_id);
    if (tail - head >= CAPACITY) {
        overflowed++;
        return nfq_set_verdict(queue, id, NF_ACCEPT, 0, NULL);
    }
    int64_t due = now_ns() + delay_ns + (int64_t)((2 * uniform() - 1) * (double)jitter_ns);
    if (due < last_due) due = last_due; /* keep packet order */
    last_due = due;
    held_id[tail % CAPACITY] = id;
    held_due[tail % CAPACITY] = due;
    tail++;
    return 0;
}

static void release_due(struct nfq_q_handle *queue)
{
    int64_t now = now_ns();
    while (head != tail && held_due[head % CAPACITY] <= now) {
        uint64_t late = (uint64_t)(now - held_due[head % CAPACITY]);
        late_sum_ns += late;
        if (late > late_max_ns) late_max_ns = late;
        unsigned bucket = 0;
        for (uint64_t us = late / 1000 + 1; us > 1 && bucket < LATE_BUCKETS - 1; us >>= 1) bucket++;
        late_buckets[bucket]++;
        released++;
        nfq_set_verdict(queue, held_id[head % CAPACITY], NF_ACCEPT, 0, NULL);
        head++;
    }
}

static void on_signal(int signal_number)
{
    (void)signal_number;
    stopping = 1;
}

static void print_summary(int queue_number)
{
    uint64_t p99_bucket = 0, seen = 0;
    for (unsigned b = 0; b < LATE_BUCKETS; b++) {
        seen += late_buckets[b];
        if (seen * 100 >= released * 99) { p99_bucket = b; break; }
    }
    fprintf(stderr,
        "link-delay queue %d: delay %.3f ms, jitter %.3f ms: %llu packets released, late by mean %.1f us, "
        "99%% under %llu us, largest %.1f us; %llu released undelayed (queue full)\n",
        queue_number, delay_ns / 1e6, jitter_ns / 1e6, (unsigned long long)released,
        released ? late_sum_ns / 1e3 / released : 0.0, (unsigned long long)((2ull << p99_bucket) - 1), late_max_ns / 1e3,
        (unsigned long long)overflowed);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s QUEUE DELAY_US JITTER_US\n", argv[0]);
        return 2;
    }
    int queue_number = atoi(argv[1]);
    delay_ns = atoll(argv[2]) * 1000;
    jitter_ns = atoll(argv[3]) * 1000;
    if (delay_ns < 0 || jitter_ns < 0 || jitter_ns > delay_ns) {
        fprintf(stderr, "link-delay: delay and jitter must be >= 0 and jitter <= delay (got %s us, %s us)\n", argv[2], argv[3]);
        return 2;
    }
    random_state ^= (uint64_t)now_ns();
    struct sigaction action = { .sa_handler = on_signal };
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);

    struct nfq_handle *handle = nfq_open();
    if (!handle) { perror("link-delay: nfq_open"); return 1; }
    struct nfq_q_handle *queue = nfq_create_queue(handle, (uint16_t)queue_number, on_packet, NULL);
    if (!queue) { perror("link-delay: nfq_create_queue"); return 1; }
    if (nfq_set_mode(queue, NFQNL_COPY_META, 0) < 0 || nfq_set_queue_maxlen(queue, CAPACITY) < 0) {
        perror("link-delay: configuring the queue");
        return 1;
    }
    nfq_set_queue_flags(queue, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO);
    nfnl_rcvbufsiz(nfq_nfnlh(handle), 16 << 20);
    int fd = nfq_fd(handle);
    char buffer[8192] __attribute__((aligned));
    fprintf(stderr, "link-delay queue %d: ready\n", queue_number);

    while (!stopping) {
        release_due(queue);
        struct timespec wait, *timeout = NULL;
        if (head != tail) {
            int64_t left = held_due[head % CAPACITY] - now_ns();
            if (left < 0) left = 0;
            wait.tv_sec = left / 1000000000;
            wait.tv_nsec = left % 1000000000;
            timeout = &wait;
        }
        struct pollfd readable = { .fd = fd, .events = POLLIN };
        if (ppoll(&readable, 1, timeout, NULL) <= 0) continue;
        for (;;) {
            ssize_t length = recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
            if (length < 0) {
                if (errno == ENOBUFS) continue; /* the kernel dropped queue messages; those packets are lost, as on a full link */
                break;
            }
            nfq_handle_packet(handle, buffer, (int)length);
        }
    }
    /* Packets still held go out now rather than being dropped with the queue. */
    while (head != tail) nfq_set_verdict(queue, held_id[head++ % CAPACITY], NF_ACCEPT, 0, NULL);
    print_summary(queue_number);
    nfq_destroy_queue(queue);
    nfq_close(handle);
    return 0;
}
