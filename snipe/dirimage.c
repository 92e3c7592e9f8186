/*
 * dirimage.c — directory-mode checkpoints (dirimage.h): a tree to a DirImage and back.
 * Capture lists the tree without following symlinks and sorts the entries by path, so
 * the same tree always gives the same bytes (checkpoints deduplicate blocks by their
 * content) and every parent comes before its children. Restore checks every entry of
 * the image before it touches the disk, then works only through *at() calls on
 * descriptors opened with O_NOFOLLOW beneath dir, so no symlink in the tree, old or
 * new, can send a write outside it. Not here: chunking and storing the image (the
 * agent's ckpt.c), owners, times, hard links, extended attributes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.pb-c.h"
#include "dirimage.h"
#include "sni.h"

#define T_FILE SNIPE__DIR_ENTRY__TYPE__FILE
#define T_DIR SNIPE__DIR_ENTRY__TYPE__DIR
#define T_SYMLINK SNIPE__DIR_ENTRY__TYPE__SYMLINK
#define MODE_BITS 07777u
#define TMP_PREFIX ".snipe-restore-"

/* --------------------------------------------------------------- shared */

static int cmp_entry(const void *a, const void *b)
{
	const Snipe__DirEntry *const *x = a, *const *y = b;
	return strcmp((*x)->path, (*y)->path);
}

/* =============================================================== capture */

struct capture {
	const char *root; /* for messages */
	Snipe__DirEntry **v;
	size_t n, cap;
	char *err;
	size_t errlen;
};

static int io_error(struct capture *c, const char *path, int e)
{
	return sni_err(c->err, c->errlen, SNIPE_EIO, "%s/%s: %s", c->root, path, strerror(e));
}

/* A new entry at the end of c->v taking path (malloc'd); NULL when out of memory. */
static Snipe__DirEntry *add_entry(struct capture *c, char *path, uint32_t mode,
                                  Snipe__DirEntry__Type type)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		Snipe__DirEntry **v = realloc(c->v, cap * sizeof(*v));
		if (v == NULL)
			return NULL;
		c->v = v;
		c->cap = cap;
	}
	Snipe__DirEntry *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	snipe__dir_entry__init(e);
	e->path = path;
	e->mode = mode;
	e->type = type;
	c->v[c->n++] = e;
	return e;
}

/* A regular file's contents (*out malloc'd): 0, or an errno value (ENOENT if it went
 * away, or was replaced by something else, meanwhile). */
static int read_file(int dfd, const char *name, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t n = 0, cap;
	int e = ENOENT;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if (fstat(fd, &st) != 0) {
		e = errno;
		goto err;
	}
	if (!S_ISREG(st.st_mode))
		goto err;
	cap = (size_t)st.st_size + 1; /* + 1: the end is seen without growing */
	buf = malloc(cap);
	for (;;) {
		if (buf == NULL) {
			e = ENOMEM;
			goto err;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			e = errno;
			goto err;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n == cap) { /* it grew since fstat */
			uint8_t *grown = realloc(buf, 2 * cap);
			if (grown == NULL)
				free(buf);
			buf = grown;
			cap *= 2;
		}
	}
	close(fd);
	*out = buf;
	*len = n;
	return 0;
err:
	free(buf);
	close(fd);
	return e;
}

/* A symlink's target (*out malloc'd, not NUL-terminated). */
static int read_link(int dfd, const char *name, size_t hint, uint8_t **out, size_t *len)
{
	size_t cap = hint + 1;
	for (;;) {
		char *buf = malloc(cap);
		if (buf == NULL)
			return ENOMEM;
		ssize_t r = readlinkat(dfd, name, buf, cap);
		if (r < 0) {
			int e = errno;
			free(buf);
			return e;
		}
		if ((size_t)r < cap) {
			*out = (uint8_t *)buf;
			*len = (size_t)r;
			return 0;
		}
		free(buf);
		cap *= 2;
	}
}

static int capture_dir(struct capture *c, int dfd, const char *prefix);

/* One directory entry: added to c (with its contents, or its subtree), or skipped. */
static int capture_one(struct capture *c, int dfd, const char *prefix, const char *name)
{
	struct stat st;
	char *path = NULL;
	int e = 0, rc = SNIPE_OK;
	if (asprintf(&path, "%s%s%s", prefix, *prefix ? "/" : "", name) < 0)
		return SNIPE_ENOMEM;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		e = errno;
		goto skip_or_fail;
	}
	uint32_t mode = (uint32_t)st.st_mode & MODE_BITS;
	Snipe__DirEntry *ent = NULL;
	if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
		uint8_t *data = NULL;
		size_t len = 0;
		e = S_ISREG(st.st_mode) ? read_file(dfd, name, &data, &len)
		                        : read_link(dfd, name, (size_t)st.st_size, &data, &len);
		if (e != 0)
			goto skip_or_fail;
		ent = add_entry(c, path, mode, S_ISREG(st.st_mode) ? T_FILE : T_SYMLINK);
		if (ent == NULL) {
			free(data);
			goto nomem;
		}
		ent->data = (ProtobufCBinaryData){len, data};
		return SNIPE_OK;
	}
	if (!S_ISDIR(st.st_mode)) { /* sockets, fifos, devices */
		free(path);
		return SNIPE_OK;
	}
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		e = errno;
		goto skip_or_fail;
	}
	ent = add_entry(c, path, mode, T_DIR);
	if (ent == NULL) {
		close(fd);
		goto nomem;
	}
	return capture_dir(c, fd, path);
skip_or_fail:
	/* gone between listing and reading: the tree is changing, take it as it is now */
	rc = e == ENOENT ? SNIPE_OK : e == ENOMEM ? SNIPE_ENOMEM : io_error(c, path, e);
	free(path);
	return rc;
nomem:
	free(path);
	return SNIPE_ENOMEM;
}

/* Adds every entry under the directory open at dfd (taken: closed here). */
static int capture_dir(struct capture *c, int dfd, const char *prefix)
{
	int rc = SNIPE_OK;
	DIR *d = fdopendir(dfd);
	if (d == NULL) {
		rc = io_error(c, prefix, errno);
		close(dfd);
		return rc;
	}
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (de == NULL) {
			if (errno != 0)
				rc = io_error(c, prefix, errno);
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		rc = capture_one(c, dirfd(d), prefix, de->d_name);
		if (rc != SNIPE_OK)
			break;
	}
	closedir(d);
	return rc;
}

static void capture_free(struct capture *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i]->path);
		free(c->v[i]->data.data);
		free(c->v[i]);
	}
	free(c->v);
}

int sni_dir_capture(const char *dir, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	struct capture c = {.root = dir, .err = err, .errlen = errlen};
	Snipe__DirImage im = SNIPE__DIR_IMAGE__INIT;
	int rc;
	*out = NULL;
	*len = 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return sni_err(err, errlen, SNIPE_ENOENT, "%s: no such directory", dir);
	if (fd < 0)
		return sni_err(err, errlen, SNIPE_EIO, "%s: %s", dir, strerror(errno));
	rc = capture_dir(&c, fd, "");
	if (rc != SNIPE_OK)
		goto err;
	if (c.n > 0)
		qsort(c.v, c.n, sizeof(*c.v), cmp_entry);
	im.entries = c.v;
	im.n_entries = c.n;
	size_t n = snipe__dir_image__get_packed_size(&im);
	*out = malloc(n ? n : 1);
	if (*out == NULL) {
		rc = SNIPE_ENOMEM;
		goto err;
	}
	*len = snipe__dir_image__pack(&im, *out);
err:
	capture_free(&c);
	return rc;
}

/* =============================================================== restore */

struct restore {
	const char *root; /* for messages */
	int fd;           /* the root, open */
	Snipe__DirEntry **v; /* the image's entries, sorted by path */
	size_t n;
	unsigned long tmp_seq;
	char *err;
	size_t errlen;
};

static int fail(struct restore *r, const char *path, int e)
{
	return sni_err(r->err, r->errlen, SNIPE_EIO, "%s/%s: %s", r->root, path, strerror(e));
}

/* The entry at path, by binary search; NULL if the image has none. */
static const Snipe__DirEntry *find(const struct restore *r, const char *path)
{
	size_t lo = 0, hi = r->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(path, r->v[mid]->path);
		if (c == 0)
			return r->v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* ------------------------------------------------------------- checking */

/* Relative, '/'-separated, no empty, "." or ".." segment, within the system's limits. */
static int check_path(struct restore *r, size_t i, const char *p)
{
	size_t len = strlen(p);
	if (len == 0 || len >= PATH_MAX)
		return sni_err(r->err, r->errlen, SNIPE_EINVAL, "entry %zu: path length %zu", i,
		               len);
	if (p[0] == '/')
		return sni_err(r->err, r->errlen, SNIPE_EINVAL, "entry %zu: absolute path \"%s\"",
		               i, p);
	for (const char *s = p;;) {
		const char *slash = strchr(s, '/');
		size_t seg = slash ? (size_t)(slash - s) : strlen(s);
		if (seg == 0 || seg > NAME_MAX || (seg == 1 && s[0] == '.') ||
		    (seg == 2 && s[0] == '.' && s[1] == '.'))
			return sni_err(r->err, r->errlen, SNIPE_EINVAL,
			               "entry %zu: bad segment in path \"%s\"", i, p);
		if (slash == NULL)
			return SNIPE_OK;
		s = slash + 1;
	}
}

/* Every entry well-formed, no path twice, and the parent of each a directory listed in
 * the image (so nothing lies under a file or a symlink). */
static int check_image(struct restore *r)
{
	char parent[PATH_MAX];
	for (size_t i = 0; i < r->n; i++) {
		const Snipe__DirEntry *e = r->v[i];
		int rc = check_path(r, i, e->path);
		if (rc != SNIPE_OK)
			return rc;
		if (e->type != T_FILE && e->type != T_DIR && e->type != T_SYMLINK)
			return sni_err(r->err, r->errlen, SNIPE_EINVAL, "\"%s\": unknown type %d",
			               e->path, (int)e->type);
		if ((e->mode & ~MODE_BITS) != 0)
			return sni_err(r->err, r->errlen, SNIPE_EINVAL, "\"%s\": bad mode %#o",
			               e->path, e->mode);
		if (e->type == T_SYMLINK &&
		    (e->data.len == 0 || e->data.len >= PATH_MAX ||
		     memchr(e->data.data, '\0', e->data.len) != NULL))
			return sni_err(r->err, r->errlen, SNIPE_EINVAL, "\"%s\": bad symlink target",
			               e->path);
		if (i > 0 && strcmp(r->v[i - 1]->path, e->path) == 0)
			return sni_err(r->err, r->errlen, SNIPE_EINVAL, "\"%s\": listed twice",
			               e->path);
		const char *slash = strrchr(e->path, '/');
		if (slash == NULL)
			continue;
		memcpy(parent, e->path, (size_t)(slash - e->path));
		parent[slash - e->path] = '\0';
		const Snipe__DirEntry *p = find(r, parent);
		if (p == NULL || p->type != T_DIR)
			return sni_err(r->err, r->errlen, SNIPE_EINVAL, "\"%s\": %s", e->path,
			               p == NULL ? "its directory is not in the image"
			                         : "lies under a file or a symlink");
	}
	return SNIPE_OK;
}

/* ----------------------------------------------------------- file system */

/* Sets a directory's permission bits without following a symlink. */
static int dir_chmod(int dfd, const char *name, mode_t mode)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == EACCES) /* no read permission: chmod by name, no following */
		return fchmodat(dfd, name, mode, AT_SYMLINK_NOFOLLOW);
	if (fd < 0)
		return -1;
	int rc = fchmod(fd, mode);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* Removes name and, if a directory, everything in it; never follows a symlink. 0 or -1
 * with errno. */
static int remove_tree(int dfd, const char *name)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) == 0 || errno == ENOENT ? 0 : -1;
	if ((st.st_mode & 0700) != 0700 && dir_chmod(dfd, name, 0700) != 0)
		return -1;
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		errno = e;
		return -1;
	}
	int rc = 0, e = 0;
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (de == NULL) {
			if (errno != 0) {
				rc = -1;
				e = errno;
			}
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (remove_tree(fd, de->d_name) != 0) {
			rc = -1;
			e = errno;
			break;
		}
	}
	closedir(d);
	if (rc == 0 && unlinkat(dfd, name, AT_REMOVEDIR) != 0)
		return -1;
	errno = e;
	return rc;
}

/* Whether what is on disk (st) is of the image entry's type. */
static bool same_type(const struct stat *st, const Snipe__DirEntry *e)
{
	return (S_ISDIR(st->st_mode) && e->type == T_DIR) ||
	       (S_ISREG(st->st_mode) && e->type == T_FILE) ||
	       (S_ISLNK(st->st_mode) && e->type == T_SYMLINK);
}

/* In the directory at path prefix (open at dfd), removes every entry the image does
 * not hold, or holds as another type. */
static int prune(struct restore *r, int dfd, const char *prefix)
{
	char path[PATH_MAX + NAME_MAX + 2];
	int rc = SNIPE_OK;
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		rc = fail(r, prefix, errno);
		if (fd >= 0)
			close(fd);
		return rc;
	}
	for (;;) {
		struct stat st;
		errno = 0;
		struct dirent *de = readdir(d);
		if (de == NULL) {
			if (errno != 0)
				rc = fail(r, prefix, errno);
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "/" : "", de->d_name);
		if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno == ENOENT)
				continue;
			rc = fail(r, path, errno);
			break;
		}
		const Snipe__DirEntry *e = find(r, path);
		if (e != NULL && same_type(&st, e))
			continue;
		if (remove_tree(fd, de->d_name) != 0) {
			rc = fail(r, path, errno);
			break;
		}
	}
	closedir(d);
	return rc;
}

/* The directory holding path, opened one segment at a time with O_NOFOLLOW (a caller
 * closes it), and *base, path's last segment. -1 with errno. */
static int open_parent(struct restore *r, const char *path, const char **base)
{
	char seg[NAME_MAX + 1];
	const char *s = path, *slash;
	int fd = dup(r->fd);
	while (fd >= 0 && (slash = strchr(s, '/')) != NULL) {
		memcpy(seg, s, (size_t)(slash - s));
		seg[slash - s] = '\0';
		int next = openat(fd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int e = errno;
		close(fd);
		errno = e;
		fd = next;
		s = slash + 1;
	}
	*base = s;
	return fd;
}

/* A temporary name in the directory for the entry path: one the image does not hold. */
static void tmp_name(struct restore *r, const char *path, char *out, size_t len)
{
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path) + 1 : 0;
	do
		snprintf(out, len, "%.*s" TMP_PREFIX "%lu", dirlen, path, r->tmp_seq++);
	while (find(r, out) != NULL);
}

/* Creates (or keeps) a directory, makes it ours to write into for now, and prunes it. */
static int put_dir(struct restore *r, int pfd, const char *base, const char *path)
{
	if (mkdirat(pfd, base, 0700) != 0 && errno != EEXIST)
		return fail(r, path, errno);
	if (dir_chmod(pfd, base, 0700) != 0)
		return fail(r, path, errno);
	int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return fail(r, path, errno);
	int rc = prune(r, fd, path);
	close(fd);
	return rc;
}

/* Writes a file or makes a symlink under a temporary name, then renames it over base. */
static int put_leaf(struct restore *r, int pfd, const char *base, const Snipe__DirEntry *e)
{
	char tmp[PATH_MAX + 32];
	tmp_name(r, e->path, tmp, sizeof(tmp));
	const char *tbase = strrchr(tmp, '/') ? strrchr(tmp, '/') + 1 : tmp;
	int e_no = 0;
	if (e->type == T_SYMLINK) {
		char target[PATH_MAX];
		memcpy(target, e->data.data, e->data.len);
		target[e->data.len] = '\0';
		if (symlinkat(target, pfd, tbase) != 0)
			return fail(r, e->path, errno);
	} else {
		int fd = openat(pfd, tbase, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		                0600);
		if (fd < 0)
			return fail(r, e->path, errno);
		if (sni_write_all(fd, e->data.data, e->data.len) != 0 ||
		    fchmod(fd, (mode_t)e->mode) != 0)
			e_no = errno;
		if (close(fd) != 0 && e_no == 0)
			e_no = errno;
		if (e_no != 0)
			goto err;
	}
	if (renameat(pfd, tbase, pfd, base) == 0)
		return SNIPE_OK;
	e_no = errno;
err:
	unlinkat(pfd, tbase, 0);
	return fail(r, e->path, e_no);
}

/* Makes r->root hold the (checked) image. */
static int apply(struct restore *r)
{
	int rc = prune(r, r->fd, "");
	for (size_t i = 0; rc == SNIPE_OK && i < r->n; i++) {
		const Snipe__DirEntry *e = r->v[i];
		const char *base;
		int pfd = open_parent(r, e->path, &base);
		if (pfd < 0)
			return fail(r, e->path, errno);
		rc = e->type == T_DIR ? put_dir(r, pfd, base, e->path) : put_leaf(r, pfd, base, e);
		close(pfd);
	}
	/* directory modes last, children before parents: a read-only directory still
	 * received its contents */
	for (size_t i = r->n; rc == SNIPE_OK && i-- > 0;) {
		const Snipe__DirEntry *e = r->v[i];
		const char *base;
		if (e->type != T_DIR)
			continue;
		int pfd = open_parent(r, e->path, &base);
		if (pfd < 0 || dir_chmod(pfd, base, (mode_t)e->mode) != 0)
			rc = fail(r, e->path, errno);
		if (pfd >= 0)
			close(pfd);
	}
	return rc;
}

int sni_dir_restore(const char *dir, const uint8_t *image, size_t len, char *err,
                    size_t errlen)
{
	struct restore r = {.root = dir, .fd = -1, .err = err, .errlen = errlen};
	int rc;
	Snipe__DirImage *im = snipe__dir_image__unpack(NULL, len, image);
	if (im == NULL)
		return sni_err(err, errlen, SNIPE_EDECODE, "%s: the directory image is malformed",
		               dir);
	r.n = im->n_entries;
	r.v = malloc((r.n ? r.n : 1) * sizeof(*r.v));
	if (r.v == NULL) {
		rc = SNIPE_ENOMEM;
		goto err;
	}
	if (r.n > 0)
		memcpy(r.v, im->entries, r.n * sizeof(*r.v));
	qsort(r.v, r.n, sizeof(*r.v), cmp_entry);
	rc = check_image(&r);
	if (rc != SNIPE_OK)
		goto err;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		rc = sni_err(err, errlen, SNIPE_EIO, "%s: %s", dir, strerror(errno));
		goto err;
	}
	r.fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r.fd < 0) {
		rc = sni_err(err, errlen, SNIPE_EIO, "%s: %s", dir, strerror(errno));
		goto err;
	}
	rc = apply(&r);
err:
	if (r.fd >= 0)
		close(r.fd);
	free(r.v);
	snipe__dir_image__free_unpacked(im, NULL);
	return rc;
}
