/*
 * test_dirimage.c — directory-mode checkpoints: a tree captured, restored elsewhere and
 * captured again gives the same bytes; restore makes a directory match the image
 * (extras removed, changes replaced, modes set) and never writes outside it; malicious
 * or malformed images are refused with nothing written.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.pb-c.h"
#include "dirimage.h"
#include "sni.h"
#include "testutil.h"

/* --------------------------------------------------------------- helpers */

static char *tmp;
static struct tu_rng rng;

static void setup(void)
{
	tu_rng_init(&rng, "test_dirimage");
	tmp = tu_tmpdir();
}

static uint8_t *big;
#define BIG_LEN (1024u * 1024u)

static int writable(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_D)
		chmod(path, (st->st_mode & 07777) | 0700);
	return 0;
}

static void teardown(void)
{
	free(big);
	big = NULL;
	/* read-only directories (as the tests make) would stop a non-root rmtree */
	nftw(tmp, writable, 16, FTW_PHYS);
	tu_rmtree(tmp);
	tmp = NULL;
}

/* tmp/rel, malloc'd. */
static char *at(const char *rel)
{
	return tu_path(tmp, rel);
}

static void mk_dir(const char *rel, mode_t mode)
{
	char *p = at(rel);
	ck_assert_msg(mkdir(p, mode) == 0, "mkdir %s: %s", p, strerror(errno));
	ck_assert_int_eq(chmod(p, mode), 0);
	free(p);
}

static void mk_file(const char *rel, const void *data, size_t len, unsigned mode)
{
	char *p = at(rel);
	tu_write_file(p, data, len, mode);
	free(p);
}

static void mk_link(const char *rel, const char *target)
{
	char *p = at(rel);
	ck_assert_msg(symlink(target, p) == 0, "symlink %s: %s", p, strerror(errno));
	free(p);
}

static void set_mode(const char *rel, mode_t mode)
{
	char *p = at(rel);
	ck_assert_int_eq(chmod(p, mode), 0);
	free(p);
}

static unsigned mode_of(const char *rel)
{
	struct stat st;
	char *p = at(rel);
	ck_assert_msg(lstat(p, &st) == 0, "lstat %s: %s", p, strerror(errno));
	free(p);
	return (unsigned)st.st_mode & 07777u;
}

static bool exists(const char *rel)
{
	struct stat st;
	char *p = at(rel);
	bool yes = lstat(p, &st) == 0;
	free(p);
	return yes;
}

/* Captures tmp/rel, which must succeed. */
static uint8_t *capture(const char *rel, size_t *len)
{
	uint8_t *img = NULL;
	char err[256] = "";
	char *p = at(rel);
	int rc = sni_dir_capture(p, &img, len, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_OK, "capture %s: %s (%s)", p, snipe_errname(rc), err);
	free(p);
	return img;
}

static void restore_ok(const char *rel, const uint8_t *img, size_t len)
{
	char err[256] = "";
	char *p = at(rel);
	int rc = sni_dir_restore(p, img, len, err, sizeof(err));
	ck_assert_msg(rc == SNIPE_OK, "restore %s: %s (%s)", p, snipe_errname(rc), err);
	free(p);
}

static void expect_same(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	ck_assert_uint_eq(alen, blen);
	if (alen > 0)
		ck_assert_mem_eq(a, b, alen);
}

static void expect_content(const char *rel, const void *data, size_t len)
{
	char *p = at(rel);
	FILE *f = fopen(p, "rb");
	ck_assert_msg(f != NULL, "open %s", p);
	uint8_t *buf = malloc(len + 1);
	size_t n = fread(buf, 1, len + 1, f);
	fclose(f);
	ck_assert_uint_eq(n, len);
	if (len > 0)
		ck_assert_mem_eq(buf, data, len);
	free(buf);
	free(p);
}

static void expect_link(const char *rel, const char *target)
{
	char buf[512];
	char *p = at(rel);
	ssize_t n = readlink(p, buf, sizeof(buf) - 1);
	ck_assert_msg(n >= 0, "readlink %s", p);
	buf[n] = '\0';
	ck_assert_str_eq(buf, target);
	free(p);
}

/* The sample tree under tmp/rel: files (small, empty, 1 MiB), nested directories with
 * modes 0700/0755, a symlink and a dangling one, a fifo (not captured). */
static void sample_tree(const char *rel)
{
	char p[256];
	if (big == NULL) {
		big = malloc(BIG_LEN);
		tu_rng_bytes(&rng, big, BIG_LEN);
	}
	mk_dir(rel, 0755);
#define P(s) (snprintf(p, sizeof(p), "%s/%s", rel, s), p)
	mk_file(P("hello.txt"), "hello\n", 6, 0644);
	mk_file(P("empty"), "", 0, 0600);
	mk_file(P("big.bin"), big, BIG_LEN, 0755);
	mk_dir(P("sub"), 0700);
	mk_dir(P("sub/deep"), 0755);
	mk_file(P("sub/deep/secret"), "s3cret", 6, 0600);
	mk_file(P("sub/run.sh"), "#!/bin/sh\n", 10, 0755);
	mk_dir(P("ro"), 0755);
	mk_file(P("ro/x"), "x", 1, 0444);
	set_mode(P("ro"), 0555);
	mk_link(P("link"), "hello.txt");
	mk_link(P("sub/dangling"), "../no/such/target");
	char *f = at(P("fifo"));
	ck_assert_int_eq(mkfifo(f, 0600), 0);
	free(f);
#undef P
}

/* An image built by hand: n entries of (path, type, mode, data). */
struct spec {
	const char *path;
	int type;
	unsigned mode;
	const char *data;
};

static uint8_t *build(const struct spec *s, size_t n, size_t *len)
{
	Snipe__DirEntry *e = calloc(n ? n : 1, sizeof(*e));
	Snipe__DirEntry **ep = calloc(n ? n : 1, sizeof(*ep));
	Snipe__DirImage im = SNIPE__DIR_IMAGE__INIT;
	for (size_t i = 0; i < n; i++) {
		snipe__dir_entry__init(&e[i]);
		e[i].path = (char *)s[i].path;
		e[i].type = (Snipe__DirEntry__Type)s[i].type;
		e[i].mode = s[i].mode;
		if (s[i].data != NULL)
			e[i].data = (ProtobufCBinaryData){strlen(s[i].data), (uint8_t *)s[i].data};
		ep[i] = &e[i];
	}
	im.entries = ep;
	im.n_entries = n;
	*len = snipe__dir_image__get_packed_size(&im);
	uint8_t *out = malloc(*len ? *len : 1);
	ck_assert_uint_eq(snipe__dir_image__pack(&im, out), *len);
	free(e);
	free(ep);
	return out;
}

#define TF SNIPE__DIR_ENTRY__TYPE__FILE
#define TD SNIPE__DIR_ENTRY__TYPE__DIR
#define TL SNIPE__DIR_ENTRY__TYPE__SYMLINK

/* ----------------------------------------------------------- round trips */

START_TEST(test_capture_restore_capture_gives_identical_bytes)
{
	size_t len1, len2;
	sample_tree("src");
	uint8_t *img1 = capture("src", &len1);
	restore_ok("dst", img1, len1); /* dst does not exist yet */
	uint8_t *img2 = capture("dst", &len2);
	expect_same(img1, len1, img2, len2);

	expect_content("dst/hello.txt", "hello\n", 6);
	expect_content("dst/empty", "", 0);
	expect_content("dst/big.bin", big, BIG_LEN);
	expect_content("dst/sub/deep/secret", "s3cret", 6);
	expect_content("dst/ro/x", "x", 1);
	expect_link("dst/link", "hello.txt");
	expect_link("dst/sub/dangling", "../no/such/target");
	ck_assert_uint_eq(mode_of("dst/empty"), 0600);
	ck_assert_uint_eq(mode_of("dst/big.bin"), 0755);
	ck_assert_uint_eq(mode_of("dst/hello.txt"), 0644);
	ck_assert_uint_eq(mode_of("dst/sub"), 0700);
	ck_assert_uint_eq(mode_of("dst/sub/deep"), 0755);
	ck_assert_uint_eq(mode_of("dst/sub/deep/secret"), 0600);
	ck_assert_uint_eq(mode_of("dst/ro"), 0555);
	ck_assert_uint_eq(mode_of("dst/ro/x"), 0444);
	ck_assert(!exists("dst/fifo"));
	free(img1);
	free(img2);
}
END_TEST

START_TEST(test_capture_lists_entries_sorted_parents_first_without_fifos)
{
	size_t len;
	sample_tree("src");
	uint8_t *img = capture("src", &len);
	Snipe__DirImage *im = snipe__dir_image__unpack(NULL, len, img);
	ck_assert_ptr_nonnull(im);
	static const char *want[] = {"big.bin", "empty",    "hello.txt",    "link",
	                             "ro",      "ro/x",     "sub",          "sub/dangling",
	                             "sub/deep", "sub/deep/secret", "sub/run.sh"};
	ck_assert_uint_eq(im->n_entries, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < im->n_entries; i++)
		ck_assert_str_eq(im->entries[i]->path, want[i]);
	ck_assert_int_eq(im->entries[3]->type, TL);
	ck_assert_uint_eq(im->entries[3]->data.len, strlen("hello.txt"));
	ck_assert_int_eq(im->entries[4]->type, TD);
	ck_assert_uint_eq(im->entries[4]->mode, 0555);
	ck_assert_int_eq(im->entries[5]->type, TF);
	ck_assert_uint_eq(im->entries[5]->mode, 0444);
	snipe__dir_image__free_unpacked(im, NULL);
	free(img);
}
END_TEST

START_TEST(test_the_same_tree_made_in_another_order_gives_the_same_bytes)
{
	size_t len1, len2, len3;
	mk_dir("a", 0755);
	mk_dir("b", 0755);
	static const char *names[] = {"z", "m", "a", "q", "b-c", "b.c", "bb"};
	const size_t n = sizeof(names) / sizeof(names[0]);
	char p[64];
	for (size_t i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "a/%s", names[i]);
		mk_file(p, names[i], strlen(names[i]), 0640);
	}
	mk_dir("a/b", 0750);
	mk_file("a/b/c", "c", 1, 0600);
	mk_file("b/b.c", "b.c", 3, 0640);
	mk_dir("b/b", 0750);
	mk_file("b/b/c", "c", 1, 0600);
	for (size_t i = n; i-- > 0;) {
		if (strcmp(names[i], "b.c") == 0)
			continue;
		snprintf(p, sizeof(p), "b/%s", names[i]);
		mk_file(p, names[i], strlen(names[i]), 0640);
	}
	uint8_t *img1 = capture("a", &len1);
	uint8_t *img2 = capture("b", &len2);
	uint8_t *img3 = capture("a", &len3);
	expect_same(img1, len1, img2, len2);
	expect_same(img1, len1, img3, len3);
	free(img1);
	free(img2);
	free(img3);
}
END_TEST

START_TEST(test_capture_of_a_missing_dir_is_enoent)
{
	uint8_t *img = (uint8_t *)&img;
	size_t len = 9;
	char err[256] = "";
	char *p = at("missing");
	tu_assert_code(sni_dir_capture(p, &img, &len, err, sizeof(err)), SNIPE_ENOENT);
	ck_assert_ptr_null(img);
	ck_assert_uint_eq(len, 0);
	ck_assert_ptr_nonnull(strstr(err, p));
	free(p);
}
END_TEST

START_TEST(test_an_empty_tree_round_trips)
{
	size_t len1, len2;
	mk_dir("src", 0755);
	uint8_t *img1 = capture("src", &len1);
	ck_assert_uint_eq(len1, 0);
	mk_dir("dst", 0755);
	mk_file("dst/old", "old", 3, 0644);
	restore_ok("dst", img1, len1);
	ck_assert(!exists("dst/old"));
	uint8_t *img2 = capture("dst", &len2);
	expect_same(img1, len1, img2, len2);
	free(img1);
	free(img2);
}
END_TEST

/* --------------------------------------------------------------- restore */

START_TEST(test_restore_removes_extras_and_replaces_changes)
{
	size_t len1, len2, len3;
	sample_tree("src");
	uint8_t *img1 = capture("src", &len1);
	mk_dir("outside", 0755);

	mk_dir("dst", 0755);
	mk_file("dst/hello.txt", "changed!", 8, 0600);  /* other content and mode */
	mk_file("dst/extra", "extra", 5, 0644);         /* not in the image */
	mk_dir("dst/olddir", 0755);                     /* a whole tree not in the image */
	mk_dir("dst/olddir/x", 0500);
	mk_link("dst/olddir/escape", "../../outside");
	mk_file("dst/ro", "was a file", 10, 0644);      /* a file where a directory goes */
	mk_dir("dst/link", 0755);                       /* a directory where a symlink goes */
	mk_file("dst/link/inner", "i", 1, 0644);
	mk_link("dst/sub", "../outside");               /* a symlink where a directory goes */
	mk_link("dst/empty", "../outside/empty");       /* a symlink where a file goes */
	restore_ok("dst", img1, len1);

	uint8_t *img2 = capture("dst", &len2);
	expect_same(img1, len1, img2, len2);
	ck_assert(!exists("dst/extra"));
	ck_assert(!exists("dst/olddir"));
	expect_content("dst/hello.txt", "hello\n", 6);
	ck_assert_uint_eq(mode_of("dst/hello.txt"), 0644);
	/* nothing was written through the symlinks that were there */
	uint8_t *out = capture("outside", &len3);
	ck_assert_uint_eq(len3, 0);
	free(out);

	/* and a second restore over the restored tree changes nothing */
	restore_ok("dst", img1, len1);
	free(img2);
	img2 = capture("dst", &len2);
	expect_same(img1, len1, img2, len2);
	free(img1);
	free(img2);
}
END_TEST

START_TEST(test_restore_builds_a_hand_made_image_in_any_order)
{
	/* children listed before their parents: restore sorts */
	static const struct spec s[] = {
		{"d/e/f", TF, 0640, "deep"},
		{"d/e", TD, 0711, NULL},
		{"d", TD, 0755, NULL},
		{"d/l", TL, 0777, "e/f"},
	};
	size_t len;
	uint8_t *img = build(s, 4, &len);
	restore_ok("dst", img, len);
	expect_content("dst/d/e/f", "deep", 4);
	expect_content("dst/d/l", "deep", 4);
	ck_assert_uint_eq(mode_of("dst/d/e"), 0711);
	ck_assert_uint_eq(mode_of("dst/d/e/f"), 0640);
	free(img);
}
END_TEST

/* A restore of img into tmp/dst that must give code and change nothing under tmp. */
static void expect_refused(const uint8_t *img, size_t len, int code, const char *what)
{
	size_t before_len, after_len, top_len, top2_len;
	uint8_t *top = capture("", &top_len);
	uint8_t *before = capture("dst", &before_len);
	char err[256] = "";
	char *p = at("dst");
	int rc = sni_dir_restore(p, img, len, err, sizeof(err));
	ck_assert_msg(rc == code, "%s: got %s, want %s (%s)", what, snipe_errname(rc),
	              snipe_errname(code), err);
	ck_assert_msg(err[0] != '\0', "%s: err left empty", what);
	uint8_t *after = capture("dst", &after_len);
	uint8_t *top2 = capture("", &top2_len);
	ck_assert_msg(before_len == after_len && memcmp(before, after, before_len) == 0,
	              "%s: the target changed", what);
	ck_assert_msg(top_len == top2_len && memcmp(top, top2, top_len) == 0,
	              "%s: something changed beside the target", what);
	free(p);
	free(before);
	free(after);
	free(top);
	free(top2);
}

START_TEST(test_restore_refuses_malicious_paths_and_writes_nothing)
{
	char abs[512];
	char *outside = at("outside");
	snprintf(abs, sizeof(abs), "%s/x", outside);
	mk_dir("outside", 0755);
	mk_dir("dst", 0755);
	mk_file("dst/keep", "keep", 4, 0644);
	const struct {
		const char *what;
		struct spec s[4];
		size_t n;
	} cases[] = {
		{"dot-dot", {{"ok", TF, 0644, "ok"}, {"../x", TF, 0644, "evil"}}, 2},
		{"absolute", {{"ok", TF, 0644, "ok"}, {abs, TF, 0644, "evil"}}, 2},
		{"dot-dot inside", {{"a", TD, 0755, NULL}, {"a/../b", TF, 0644, "evil"}}, 2},
		{"deep dot-dot", {{"a", TD, 0755, NULL}, {"a/..", TD, 0755, NULL}}, 2},
		{"empty segment", {{"a", TD, 0755, NULL}, {"a//b", TF, 0644, "evil"}}, 2},
		{"trailing slash", {{"a", TD, 0755, NULL}, {"a/", TD, 0755, NULL}}, 2},
		{"dot", {{"ok", TF, 0644, "ok"}, {"./x", TF, 0644, "evil"}}, 2},
		{"empty path", {{"ok", TF, 0644, "ok"}, {"", TF, 0644, "evil"}}, 2},
		{"under a symlink",
		 {{"link", TL, 0777, outside}, {"link/x", TF, 0644, "evil"}},
		 2},
		{"under a file", {{"f", TF, 0644, "f"}, {"f/x", TF, 0644, "evil"}}, 2},
		{"parent missing", {{"ok", TF, 0644, "ok"}, {"nodir/x", TF, 0644, "evil"}}, 2},
		{"twice", {{"ok", TF, 0644, "ok"}, {"ok", TF, 0600, "ok"}}, 2},
		{"unknown type", {{"ok", TF, 0644, "ok"}, {"t", 7, 0644, "evil"}}, 2},
		{"mode beyond 07777", {{"ok", TF, 0644, "ok"}, {"t", TF, 010644, "x"}}, 2},
		{"empty symlink target", {{"ok", TF, 0644, "ok"}, {"t", TL, 0777, ""}}, 2},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		uint8_t *img = build(cases[i].s, cases[i].n, &len);
		expect_refused(img, len, SNIPE_EINVAL, cases[i].what);
		free(img);
	}
	ck_assert(!exists("x"));
	ck_assert(!exists("outside/x"));
	ck_assert(!exists("dst/ok"));
	free(outside);
}
END_TEST

START_TEST(test_restore_refuses_garbage_with_edecode)
{
	mk_dir("dst", 0755);
	mk_file("dst/keep", "keep", 4, 0644);
	static const struct {
		const char *bytes;
		size_t len;
	} cases[] = {
		{"\xff\xff\xff\xff\xff\xff", 6},   /* a tag that never ends */
		{"\x0a\x10" "abc", 5},              /* an entry longer than what follows */
		{"\x0a\x02\x0a\x05", 4},            /* a path longer than its entry */
		{"\x0b\x01", 2},                    /* a group start: not in this message */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t *img = tu_copy(cases[i].bytes, cases[i].len);
		expect_refused(img, cases[i].len, SNIPE_EDECODE, "garbage");
		free(img);
	}
	/* and random bytes never pass for an image that writes anything outside */
	for (int i = 0; i < 200; i++) {
		uint8_t buf[64];
		size_t len = 1 + tu_rng_below(&rng, sizeof(buf));
		tu_rng_bytes(&rng, buf, len);
		uint8_t *img = tu_copy(buf, len);
		char err[256] = "";
		char *p = at("dst");
		int rc = sni_dir_restore(p, img, len, err, sizeof(err));
		ck_assert_msg(rc == SNIPE_EDECODE || rc == SNIPE_EINVAL || rc == SNIPE_OK,
		              "random image: %s (%s)", snipe_errname(rc), err);
		free(p);
		free(img);
	}
	ck_assert(!exists("x"));
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *dirimage_suite(void)
{
	Suite *s = suite_create("dirimage");
	TCase *tc = tcase_create("dirimage");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_capture_restore_capture_gives_identical_bytes);
	tcase_add_test(tc, test_capture_lists_entries_sorted_parents_first_without_fifos);
	tcase_add_test(tc, test_the_same_tree_made_in_another_order_gives_the_same_bytes);
	tcase_add_test(tc, test_capture_of_a_missing_dir_is_enoent);
	tcase_add_test(tc, test_an_empty_tree_round_trips);
	tcase_add_test(tc, test_restore_removes_extras_and_replaces_changes);
	tcase_add_test(tc, test_restore_builds_a_hand_made_image_in_any_order);
	tcase_add_test(tc, test_restore_refuses_malicious_paths_and_writes_nothing);
	tcase_add_test(tc, test_restore_refuses_garbage_with_edecode);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(dirimage_suite());
}
