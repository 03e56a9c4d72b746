/*
 * test_store_memory.c: the memory store's bookkeeping: seq assignment, the
 * client cursor (acknowledge, retain, re-read), batch caps, the closed
 * state and the end of a session, tombstones and their expiry, outbound
 * queueing with de-duplication of numbered sends, queue limits, wakeups.
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "store_memory.h"
#include "tap.h"

#define ID "AAAAAAAAAAAAAAAAAAAAAA"
#define ID2 "BBBBBBBBBBBBBBBBBBBBBB"

/* What the last callback delivered. */
static struct {
	int calls, err;
	uint64_t seq;
	size_t depth, bytes, n, accepted;
	uint64_t send_seq, expected, last_seq, seqs[64];
	char data[64][32];
	struct pb_close_info close;
	char reason[64];
	int ended;
	int inbound_wakes, outbound_wakes;
} got;

/* Record a done answer. */
static void on_done(void *arg, int err)
{
	got.calls++;
	got.err = err;
}

/* Record a push answer. */
static void on_push(void *arg, int err, uint64_t seq, size_t depth, size_t bytes)
{
	got.calls++;
	got.err = err;
	got.seq = seq;
	got.depth = depth;
	got.bytes = bytes;
}

/* Record a batch answer, copying what it borrowed. */
static void on_batch(void *arg, int err, const struct pb_store_batch *b)
{
	got.calls++;
	got.err = err;
	got.n = 0;
	if (err)
		return;
	got.n = b->n;
	got.depth = b->depth;
	got.last_seq = b->last_seq;
	got.ended = b->ended;
	got.close = b->close;
	snprintf(got.reason, sizeof(got.reason), "%.*s", (int)b->close.reason_len,
		 b->close.reason ? b->close.reason : "");
	for (size_t i = 0; i < b->n && i < 64; i++) {
		got.seqs[i] = b->msgs[i]->seq;
		snprintf(got.data[i], sizeof(got.data[i]), "%.*s", (int)b->msgs[i]->len,
			 (const char *)b->msgs[i]->data);
	}
}

/* Record a send answer. */
static void on_send(void *arg, int err, const struct pb_store_send_result *r)
{
	got.calls++;
	got.err = err;
	got.accepted = r ? r->accepted : 0;
	got.send_seq = r ? r->send_seq : 0;
	got.expected = r ? r->expected : 0;
}

/* Wakeup counters. */
static void wake_in(void *arg, const char *id)
{
	got.inbound_wakes++;
}

static void wake_out(void *arg, const char *id)
{
	got.outbound_wakes++;
}

/* Push one text message upstream->client; returns its seq. */
static uint64_t push_text(struct pb_store *s, const char *id, const char *text)
{
	struct pb_msg *m = pb_msg_new(PB_MSG_TEXT, text, strlen(text));

	got.calls = 0;
	s->ops->push_in(s, id, &m, 1, on_push, NULL);
	pb_msg_unref(m);
	return got.err ? 0 : got.seq;
}

/* Read with the given cursor and caps. */
static void read_in(struct pb_store *s, const char *id, uint64_t after, size_t max, size_t bytes)
{
	memset(&got.close, 0, sizeof(got.close));
	got.calls = 0;
	s->ops->read_in(s, id, after, after, max, bytes, 0, 1, on_batch, NULL);
}

/* Send n text messages client->upstream with a request seq. */
static void push_out(struct pb_store *s, const char *id, size_t n, uint64_t seq)
{
	struct pb_msg *m[8];

	for (size_t i = 0; i < n; i++)
		m[i] = pb_msg_new(PB_MSG_TEXT, "out", 3);
	got.calls = 0;
	s->ops->push_out(s, id, m, n, seq, on_send, NULL);
	for (size_t i = 0; i < n; i++)
		pb_msg_unref(m[i]);
}

/* Seqs, the cursor and retention. */
static void test_cursor(struct pb_store *s)
{
	tap_is_int(push_text(s, ID, "one"), 1, "first message gets seq 1");
	tap_is_int(push_text(s, ID, "two"), 2, "second gets seq 2");
	tap_is_int(push_text(s, ID, "three"), 3, "third gets seq 3");
	tap_is_int(got.depth, 3, "depth counts unacknowledged messages");
	tap_is_int(push_text(s, ID2, "other"), 1, "seqs are per session");

	read_in(s, ID, 0, 10, 1 << 20);
	tap_is_int(got.calls, 1, "read answers exactly once");
	tap_is_int(got.n, 3, "after=0 returns everything");
	tap_is_int(got.seqs[0], 1, "in order (1)");
	tap_is_int(got.seqs[2], 3, "in order (3)");
	tap_is_str(got.data[1], "two", "data kept");
	tap_ok(!got.close.closed, "open session batch is open");

	read_in(s, ID, 0, 10, 1 << 20);
	tap_is_int(got.n, 3, "the same cursor again returns the same messages (lost response)");

	read_in(s, ID, 2, 10, 1 << 20);
	tap_is_int(got.n, 1, "after=2 acknowledges 1 and 2");
	tap_is_int(got.seqs[0], 3, "and returns 3");
	tap_is_int(got.depth, 1, "acknowledged messages are freed");

	read_in(s, ID, 1, 10, 1 << 20);
	tap_is_int(got.err, 0, "a cursor below freed messages is not an error");
	tap_is_int(got.n, 1, "it returns what is retained above it");
	tap_is_int(got.seqs[0], 3, "which is seq 3");

	read_in(s, ID, 4, 10, 1 << 20);
	tap_is_int(got.err, PB_EBADREQ, "after beyond the last seq is bad_request");

	read_in(s, ID, 3, 10, 1 << 20);
	tap_is_int(got.n, 0, "everything acknowledged: empty batch");
	tap_is_int(got.last_seq, 3, "last_seq reported");
	tap_is_int(push_text(s, ID, "four"), 4, "numbering continues after a full acknowledgement");
}

/* max and the byte cap. */
static void test_caps(struct pb_store *s)
{
	push_text(s, ID, "5555555555");
	push_text(s, ID, "6666666666");
	push_text(s, ID, "7777777777");

	read_in(s, ID, 3, 2, 1 << 20);
	tap_is_int(got.n, 2, "max caps the batch");
	tap_is_int(got.seqs[0], 4, "from the cursor");

	read_in(s, ID, 4, 10, 15);
	tap_is_int(got.n, 1, "byte cap stops before overflowing");
	tap_is_int(got.seqs[0], 5, "first message after the cursor");

	read_in(s, ID, 4, 10, 1);
	tap_is_int(got.n, 1, "a batch carries one message even when it alone exceeds the cap");

	read_in(s, ID, 4, 10, 20);
	tap_is_int(got.n, 2, "exactly fitting messages all go");
	read_in(s, ID, 7, 10, 1 << 20);
	tap_is_int(got.n, 0, "drained");
}

/* Upstream close, the last acknowledgement ending the session, tombstones. */
static void test_close_and_end(struct pb_store *s, uv_loop_t *loop)
{
	int wakes;

	push_text(s, ID, "last-1");
	push_text(s, ID, "last-2");
	wakes = got.inbound_wakes;
	got.calls = 0;
	s->ops->close(s, ID, 4000, "bye", 3, on_done, NULL);
	tap_is_int(got.err, 0, "close accepted");
	tap_ok(got.inbound_wakes > wakes, "close wakes waiting polls");

	tap_is_int(push_text(s, ID, "late"), 0, "no inbound message after the close");
	tap_is_int(got.err, PB_ECLOSED, "push after close is session_closed");

	push_out(s, ID, 1, 0);
	tap_is_int(got.err, PB_ECLOSED, "sends after the upstream closed are refused");

	read_in(s, ID, 7, 1, 1 << 20);
	tap_is_int(got.n, 1, "messages stay readable after the close");
	tap_ok(!got.close.closed, "a batch that does not reach the last message says open");

	read_in(s, ID, 7, 10, 1 << 20);
	tap_is_int(got.n, 2, "the batch with the last messages");
	tap_ok(got.close.closed, "carries the closed state");
	tap_is_int(got.close.code, 4000, "with the close code");
	tap_is_str(got.reason, "bye", "and reason");
	tap_ok(!got.ended, "not ended while unacknowledged");

	read_in(s, ID, 9, 10, 1 << 20);
	tap_is_int(got.n, 0, "acknowledging the last message: empty batch");
	tap_ok(got.close.closed, "still closed");
	tap_ok(got.ended, "and the session has ended");

	read_in(s, ID, 9, 10, 1 << 20);
	tap_is_int(got.err, PB_ECLOSED, "ended session answers session_closed");
	got.calls = 0;
	s->ops->end(s, ID, on_done, NULL);
	tap_is_int(got.err, PB_ECLOSED, "ending an ended session is session_closed");

	read_in(s, "CCCCCCCCCCCCCCCCCCCCCC", 0, 10, 1 << 20);
	tap_is_int(got.err, PB_ENOSESSION, "unknown id is unknown_session");

	/* The tombstone lasts tombstone_secs (1 s here), then 404. */
	uv_run(loop, UV_RUN_DEFAULT);
	read_in(s, ID, 0, 10, 1 << 20);
	tap_is_int(got.err, PB_ENOSESSION, "after the tombstone expires: unknown_session");
}

/* Outbound queue, numbered sends, the queue limit. */
static void test_outbound(struct pb_store *s)
{
	int wakes = got.outbound_wakes;

	push_out(s, ID2, 2, 0);
	tap_is_int(got.err, 0, "unnumbered send accepted");
	tap_is_int(got.accepted, 2, "both messages queued");
	tap_is_int(got.send_seq, 0, "no request seq yet");
	tap_ok(got.outbound_wakes > wakes, "outbound wakeup raised");

	push_out(s, ID2, 1, 1);
	tap_is_int(got.accepted, 1, "numbered send 1 accepted");
	tap_is_int(got.send_seq, 1, "send_seq is 1");
	push_out(s, ID2, 1, 1);
	tap_is_int(got.err, 0, "a repeated seq is acknowledged again");
	tap_is_int(got.accepted, 0, "but nothing is queued twice");
	tap_is_int(got.send_seq, 1, "send_seq unchanged");
	push_out(s, ID2, 1, 3);
	tap_is_int(got.err, PB_ESEQGAP, "a seq that skips ahead is a gap");
	tap_is_int(got.expected, 2, "expected is the next seq");
	push_out(s, ID2, 1, 0);
	tap_is_int(got.send_seq, 1, "unnumbered sends do not move the numbering");
	push_out(s, ID2, 1, 2);
	tap_is_int(got.accepted, 1, "seq 2 accepted after unnumbered ones");

	got.calls = 0;
	s->ops->read_out(s, ID2, 0, 64, on_batch, NULL);
	tap_is_int(got.n, 5, "five outbound messages queued in all");
	tap_is_int(got.seqs[0], 1, "out-seqs start at 1");
	tap_is_int(got.seqs[4], 5, "and are consecutive");
	s->ops->read_out(s, ID2, 3, 64, on_batch, NULL);
	tap_is_int(got.n, 2, "read_out after the write position");
	s->ops->ack_out(s, ID2, 3, on_done, NULL);
	s->ops->read_out(s, ID2, 0, 64, on_batch, NULL);
	tap_is_int(got.n, 2, "ack_out frees written messages");
	tap_is_int(got.seqs[0], 4, "the rest stay");

	/* queue_max is 8 here: 2 queued, 6 more fit, the 7th does not. */
	push_out(s, ID2, 6, 0);
	tap_is_int(got.err, 0, "filling the queue up to queue_max");
	push_out(s, ID2, 1, 0);
	tap_is_int(got.err, PB_EQFULL, "one more is queue_full");
	push_out(s, ID2, 1, 3);
	tap_is_int(got.err, PB_EQFULL, "a numbered send that does not fit is refused");
	push_out(s, ID2, 1, 0);
	s->ops->read_out(s, ID2, 0, 64, on_batch, NULL);
	tap_is_int(got.n, 8, "a refused send queued nothing (all or nothing)");
	s->ops->ack_out(s, ID2, 11, on_done, NULL);
	push_out(s, ID2, 1, 3);
	tap_is_int(got.err, 0, "after the queue drains, the refused seq is accepted");
	tap_is_int(got.send_seq, 3, "send_seq 3");

	got.calls = 0;
	s->ops->end(s, ID2, on_done, NULL);
	tap_is_int(got.err, 0, "end (DELETE) succeeds");
	push_out(s, ID2, 1, 0);
	tap_is_int(got.err, PB_ECLOSED, "sends to an ended session: session_closed");
	got.calls = 0;
	s->ops->push_out(s, "DDDDDDDDDDDDDDDDDDDDDD", NULL, 0, 0, on_send, NULL);
	tap_is_int(got.err, PB_ENOSESSION, "sends to an unknown session: unknown_session");
}

/* Byte bounds: queue_max_bytes per direction, all or nothing, and the
 * inbound queue's bytes reported to the core (which pauses the upstream).
 * Every message's bytes are counted while it lives (pb_msg_live_bytes). */
static void test_bytes(void)
{
	uv_loop_t loop;
	struct pb_store_events ev = { 0 };
	struct pb_store_limits lim = { .queue_max = 100, .queue_max_bytes = 1000,
				       .tombstone_secs = 1 };
	size_t live0 = pb_msg_live_bytes();
	struct pb_msg *m[3];
	struct pb_store *s;

	uv_loop_init(&loop);
	s = pb_store_memory_new(&loop, &ev, &lim);
	s->ops->create(s, ID, "echo", NULL, NULL, 0, on_done, NULL);
	for (int i = 0; i < 3; i++)
		m[i] = pb_msg_new(PB_MSG_TEXT, NULL, 400);
	tap_is_int(pb_msg_live_bytes() - live0, 1200, "live bytes count every message");
	got.calls = 0;
	s->ops->push_out(s, ID, m, 3, 0, on_send, NULL);
	tap_is_int(got.err, PB_EQFULL, "bytes: 1200 bytes past queue_max_bytes 1000: queue_full");
	s->ops->push_out(s, ID, m, 2, 0, on_send, NULL);
	tap_is_int(got.err, 0, "bytes: 800 bytes fit");
	s->ops->push_out(s, ID, m + 2, 1, 0, on_send, NULL);
	tap_is_int(got.err, PB_EQFULL, "bytes: 400 more do not (all or nothing, by bytes)");
	s->ops->ack_out(s, ID, 1, on_done, NULL);
	s->ops->push_out(s, ID, m + 2, 1, 0, on_send, NULL);
	tap_is_int(got.err, 0, "bytes: once written messages are acknowledged, they fit");
	s->ops->push_in(s, ID, m, 3, on_push, NULL);
	tap_is_int(got.bytes, 1200, "bytes: push_in reports the inbound bytes (never refused)");
	read_in(s, ID, 2, 10, 1 << 20);
	s->ops->push_in(s, ID, m, 1, on_push, NULL);
	tap_is_int(got.bytes, 800, "bytes: acknowledged messages no longer count");
	for (int i = 0; i < 3; i++)
		pb_msg_unref(m[i]);
	pb_store_destroy(s);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	tap_is_int(pb_msg_live_bytes(), live0, "every message's bytes are released when freed");
}

int main(void)
{
	uv_loop_t loop;
	struct pb_store_events ev = { .inbound = wake_in, .outbound = wake_out };
	struct pb_store_limits lim = { .queue_max = 8, .queue_max_bytes = 1 << 20,
				       .tombstone_secs = 1 };
	struct pb_store *s;

	uv_loop_init(&loop);
	s = pb_store_memory_new(&loop, &ev, &lim);
	tap_ok(s != NULL, "memory store created");
	s->ops->create(s, ID, "echo", NULL, NULL, 0, on_done, NULL);
	tap_is_int(got.err, 0, "session created");
	s->ops->create(s, ID2, "echo", "chat", NULL, 0, on_done, NULL);
	s->ops->create(s, ID2, "echo", "chat", NULL, 0, on_done, NULL);
	tap_is_int(got.err, PB_EEXIST, "an id cannot be created twice (session_exists)");
	s->ops->create(s, "DDDDDDDDDDDDDDDDDDDDD.", "echo", NULL, NULL, 0, on_done, NULL);
	s->ops->end(s, "DDDDDDDDDDDDDDDDDDDDD.", on_done, NULL);
	s->ops->create(s, "DDDDDDDDDDDDDDDDDDDDD.", "echo", NULL, NULL, 0, on_done, NULL);
	tap_is_int(got.err, PB_EEXIST, "nor while its tombstone lasts");
	s->ops->create(s, "HHHHHHHHHHHHHHHHHHHHHH", "echo", NULL, NULL, 0, on_done, NULL);
	for (int i = 1; i <= 5; i++)
		push_text(s, "HHHHHHHHHHHHHHHHHHHHHH", "h");
	read_in(s, "HHHHHHHHHHHHHHHHHHHHHH", 0, 3, 1 << 20);
	tap_ok(got.n == 3 && got.seqs[2] == 3, "handed: a read hands out 1..3");
	got.calls = 0;
	s->ops->read_in(s, "HHHHHHHHHHHHHHHHHHHHHH", PB_STORE_AFTER_HANDED, PB_STORE_AFTER_HANDED,
			100, 1 << 20, 0, 1, on_batch, NULL);
	tap_ok(got.n == 2 && got.seqs[0] == 4 && got.depth == 2,
	       "handed: PB_STORE_AFTER_HANDED acknowledges 3 and answers 4..5");
	s->ops->read_in(s, "HHHHHHHHHHHHHHHHHHHHHH", 0, 4, 100, 1 << 20, 0, 1, on_batch, NULL);
	tap_ok(got.n == 1 && got.seqs[0] == 5, "handed: a stream read past 4 answers 5");
	s->ops->read_in(s, "HHHHHHHHHHHHHHHHHHHHHH", PB_STORE_AFTER_HANDED, 5, 100, 1 << 20, 0, 1,
			on_batch, NULL);
	tap_ok(got.n == 0 && got.depth == 0, "handed: the stream's read counts: 5 acknowledged");
	for (int i = 6; i <= 8; i++)
		push_text(s, "HHHHHHHHHHHHHHHHHHHHHH", "h");
	s->ops->read_in(s, "HHHHHHHHHHHHHHHHHHHHHH", PB_STORE_AFTER_HANDED, PB_STORE_AFTER_HANDED,
			100, 1 << 20, 0, 1, on_batch, NULL);
	tap_ok(got.n == 3 && got.seqs[0] == 6, "handed: a read hands out 6..8 (nobody gets them)");
	s->ops->unhand(s, "HHHHHHHHHHHHHHHHHHHHHH", 7, 5, on_done, NULL);
	s->ops->read_in(s, "HHHHHHHHHHHHHHHHHHHHHH", PB_STORE_AFTER_HANDED, PB_STORE_AFTER_HANDED,
			100, 1 << 20, 0, 1, on_batch, NULL);
	tap_ok(got.n == 0, "unhand: a mark moved since (8, not 7) stays");
	for (int i = 9; i <= 10; i++)
		push_text(s, "HHHHHHHHHHHHHHHHHHHHHH", "h");
	s->ops->read_in(s, "HHHHHHHHHHHHHHHHHHHHHH", PB_STORE_AFTER_HANDED, PB_STORE_AFTER_HANDED,
			100, 1 << 20, 0, 1, on_batch, NULL);
	s->ops->unhand(s, "HHHHHHHHHHHHHHHHHHHHHH", 10, 8, on_done, NULL);
	tap_is_int(got.err, 0, "unhand answers");
	s->ops->read_in(s, "HHHHHHHHHHHHHHHHHHHHHH", PB_STORE_AFTER_HANDED, PB_STORE_AFTER_HANDED,
			100, 1 << 20, 0, 1, on_batch, NULL);
	tap_ok(got.n == 2 && got.seqs[0] == 9,
	       "unhand: the next read hands out 9..10 again instead of acknowledging them");
	s->ops->end(s, "HHHHHHHHHHHHHHHHHHHHHH", on_done, NULL);
	tap_ok(s->ops->healthy(s), "memory store is healthy");

	test_cursor(s);
	test_caps(s);
	test_close_and_end(s, &loop);
	test_outbound(s);
	test_bytes();

	pb_store_destroy(s);
	uv_run(&loop, UV_RUN_DEFAULT);
	tap_is_int(uv_loop_close(&loop), 0, "no handle left open");
	return tap_done();
}
