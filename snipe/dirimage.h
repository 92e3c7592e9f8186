/*
 * dirimage.h — directory-mode checkpoints: a directory tree (regular files, symlinks,
 * subdirectories, permission bits) to and from a serialised DirImage (ckpt.proto).
 * Internal to libsnipe and the agent.
 */
#ifndef SNI_DIRIMAGE_H
#define SNI_DIRIMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Serialises the tree under dir (not following symlinks; other file types — sockets,
 * fifos, devices — are skipped) into *out (malloc'd DirImage bytes). SNIPE_ENOENT if dir
 * does not exist, SNIPE_EIO with err naming the path that failed. */
int sni_dir_capture(const char *dir, uint8_t **out, size_t *len, char *err, size_t errlen);

/* Makes dir hold exactly the tree in the image: creates dir if missing, removes what the
 * image does not hold, writes files, symlinks and modes. Refuses (SNIPE_EINVAL, nothing
 * written) an image with an absolute path, a ".." or "." segment, an empty segment, or
 * an entry under a symlink. SNIPE_EDECODE for bytes that are not a DirImage. */
int sni_dir_restore(const char *dir, const uint8_t *image, size_t len, char *err,
                    size_t errlen);

#endif
