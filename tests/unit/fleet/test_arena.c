/*
 * test_arena.c - the lifetime allocator: alignment, packed strings, and
 * marks (save/restore), which the YAML parser uses to reuse the memory of
 * each streamed list item.  Run under ASan, a chunk freed too early or
 * never freed shows up here.
 */
#include <stdalign.h>
#include <stdint.h>
#include "fleet_test.h"

static void test_alignment_and_zeroing(void **state)
{
	(void)state;
	ws_arena *a = ws_arena_new();
	for (size_t size = 1; size < 200; size += 7) {
		unsigned char *p = ws_arena_alloc(a, size);
		assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
		for (size_t i = 0; i < size; i++)
			assert_int_equal(p[i], 0);
		memset(p, 0xAB, size);
		void **q = ws_arena_try_alloc_aligned(a, 3 * sizeof(void *), alignof(void *));
		assert_int_equal((uintptr_t)q % alignof(void *), 0);
		assert_null(q[0]);
		char *s = ws_arena_try_alloc_aligned(a, 3, 1);
		assert_int_equal(s[0] | s[1] | s[2], 0);
	}
	/* A nonsense alignment is treated as max_align_t. */
	void *p = ws_arena_try_alloc_aligned(a, 8, 3);
	assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
	ws_arena_free(a);
	ws_arena_free(NULL);
}

static void test_strings(void **state)
{
	(void)state;
	ws_arena *a = ws_arena_new();
	char *x = ws_arena_try_strndup(a, "abcdef", 3);
	assert_string_equal(x, "abc");
	char *y = ws_arena_try_strndup(a, "", 0);
	assert_string_equal(y, "");
	/* Packed: consecutive strings need no padding between them. */
	char *z = ws_arena_try_strndup(a, "q", 1);
	assert_ptr_equal(z, y + 1);
	assert_string_equal(ws_arena_strdup(a, "hello"), "hello");
	assert_null(ws_arena_strdup(a, NULL));
	/* Larger than a chunk: gets a chunk of its own. */
	size_t big = (size_t)100 << 10;
	char *text = malloc(big);
	assert_non_null(text);
	memset(text, 'x', big);
	char *copy = ws_arena_try_strndup(a, text, big);
	assert_int_equal(strlen(copy), big);
	free(text);
	ws_arena_free(a);
}

/* Fills `n` bytes with `c` and returns them. */
static unsigned char *filled(ws_arena *a, size_t n, int c)
{
	unsigned char *p = ws_arena_alloc(a, n);
	memset(p, c, n);
	return p;
}

static void test_save_restore(void **state)
{
	(void)state;
	ws_arena *a = ws_arena_new();
	/* Restoring an empty arena's mark empties it. */
	ws_arena_mark empty = ws_arena_save(a);
	filled(a, 100, 1);
	ws_arena_restore(a, empty);
	unsigned char *kept = filled(a, 64, 7);
	ws_arena_mark m = ws_arena_save(a);
	unsigned char *first = ws_arena_alloc(a, 32);
	ws_arena_restore(a, m);
	/* The same memory comes back, zeroed again. */
	unsigned char *again = ws_arena_alloc(a, 32);
	assert_ptr_equal(first, again);
	for (int i = 0; i < 32; i++)
		assert_int_equal(again[i], 0);
	/* Many rounds that cross chunk boundaries and add large chunks
	 * (placed behind the current one) do not grow the arena: ASan would
	 * report what a restore failed to release. */
	for (int round = 0; round < 200; round++) {
		ws_arena_mark r = ws_arena_save(a);
		for (int i = 0; i < 50; i++)
			filled(a, 1000, i);
		filled(a, (size_t)40 << 10, 9);       /* a chunk of its own */
		filled(a, 500, 3);
		ws_arena_restore(a, r);
	}
	for (int i = 0; i < 64; i++)
		assert_int_equal(kept[i], 7);
	/* Nested marks. */
	ws_arena_mark outer = ws_arena_save(a);
	unsigned char *o = filled(a, 16, 5);
	ws_arena_mark inner = ws_arena_save(a);
	filled(a, (size_t)64 << 10, 6);
	ws_arena_restore(a, inner);
	assert_int_equal(o[15], 5);
	ws_arena_restore(a, outer);
	assert_ptr_equal(ws_arena_alloc(a, 16), o);
	ws_arena_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alignment_and_zeroing),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_save_restore),
	};
	return cmocka_run_group_tests_name("fleet/arena", tests, NULL, NULL);
}
