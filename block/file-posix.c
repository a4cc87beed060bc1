/*
 * The "file" protocol driver: a regular file or a host block device as a
 * node.  It is the bottom of nearly every graph (raw -> file), so it is
 * where bytes meet the kernel:
 *   - reads and writes go through linux-aio (aio=native, with O_DIRECT)
 *     or through preadv/pwritev in the thread pool (aio=threads); small
 *     ones on tmpfs run inline (FILE_TMPFS_INLINE_MAX says why);
 *   - cache.direct=on opens with O_DIRECT and probes the alignments the
 *     kernel wants, so that the core pads unaligned requests; buffers the
 *     core hands down unaligned are bounced here;
 *   - write-zeroes and discard use fallocate(), block status uses
 *     SEEK_DATA/SEEK_HOLE, copy offload between two file nodes uses
 *     copy_file_range();
 *   - image locking uses QEMU's OFD lock byte layout so that blockd and
 *     QEMU processes refuse each other's conflicting opens (see
 *     docs/locking.md).
 *
 * Threads: the node's fd is used from its AioContext's thread (open,
 * close, lseek, fcntl locks, linux-aio submission) and from thread pool
 * workers (preadv/pwritev/fdatasync/fallocate/ftruncate/
 * copy_file_range; small preadv/pwritev on tmpfs run in the context's
 * thread instead), which touch
 * only the fd and the request they were handed.  The driver state is
 * written only in the main thread (open/close) and in the node's context.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "block/block_int.h"
#include "util/linux-aio.h"
#include "util/thread-pool.h"

/* Longest read/write handed to the kernel at once for regular files: big
 * enough for streaming, small enough to keep one request from hogging a
 * pool worker or the linux-aio ring. */
#define FILE_MAX_TRANSFER (16 * 1024 * 1024)

/*
 * Largest read/write done inline, in the node's own thread, on tmpfs.
 * There a read or write is a memory copy inside the syscall with no
 * device to wait for, so handing a small one to a pool worker costs far
 * more (futex wake-ups, two context switches, a BH back) than the copy:
 * on a 4k random workload the pool's hand-off was most of the daemon's
 * CPU.  Large copies still go to the pool: they take long enough to
 * stall the context's other work, and they overlap well across workers.
 * The cost: a tmpfs page that was swapped out makes the context wait for
 * the swap device once.
 */
#define FILE_TMPFS_INLINE_MAX (64 * 1024)

/* Largest alignment probed for O_DIRECT, and the fallback when probing
 * cannot be trusted. */
#define FILE_MAX_ALIGN 4096

/*
 * QEMU's image locking layout (verified against qemu-io 7.2, see
 * docs/locking.md): a shared OFD lock on byte LOCK_PERM_BASE + bit says
 * "I use permission bit", one on LOCK_SHARED_BASE + bit says "I do not
 * let others use it".
 */
#define LOCK_PERM_BASE   100
#define LOCK_SHARED_BASE 200

enum {
    PERM_CONSISTENT_READ = 1 << 0,
    PERM_WRITE           = 1 << 1,
    PERM_WRITE_UNCHANGED = 1 << 2,
    PERM_RESIZE          = 1 << 3,
    PERM_ALL             = (1 << 4) - 1,
};

/* QEMU's names of the permission bits, as its lock errors print them. */
static const char *const perm_names[] = {
    "consistent read", "write", "write unchanged", "resize",
};

/*
 * Driver state.  Set in open (main thread); use_linux_aio and
 * has_zero_range/has_punch_hole may later be cleared by the node's
 * context when the kernel says it cannot do something.
 */
typedef struct BDRVFileState {
    int fd;                   /* owned; closing it drops the OFD locks */
    bool is_blockdev;
    bool use_linux_aio;
    bool on_tmpfs;            /* reads/writes up to FILE_TMPFS_INLINE_MAX
                               * run inline, see there */
    bool use_locking;
    unsigned perm;            /* permissions we hold (lock bytes 100+i) */
    unsigned shared;          /* permissions others may hold (200+i
                               * locked for the others) */
    bool has_zero_range;      /* FALLOC_FL_ZERO_RANGE not refused yet */
    bool has_punch_hole;      /* FALLOC_FL_PUNCH_HOLE not refused yet */
    bool has_seek_hole;       /* SEEK_DATA/SEEK_HOLE not refused yet */
    /*
     * The last data extent SEEK_DATA/SEEK_HOLE found, [data_start,
     * data_end) (empty when equal).  Block status inside it needs no
     * syscall: SEEK_HOLE scans up to the next hole (on tmpfs page by
     * page), so a copy asking chunk by chunk through a dense file would
     * otherwise cost time quadratic in its size.  Writes only add data, so
     * the extent stays true until fallocate or truncate may punch holes;
     * those forget it before and after they run.  Node's context only.
     */
    int64_t data_start;
    int64_t data_end;
} BDRVFileState;

/* ---- Image locking ---- */

/* Sets (lock) or releases (!lock) a shared OFD lock on one byte. */
static int lock_byte(int fd, int64_t byte, bool lock)
{
    struct flock fl = {
        .l_type = lock ? F_RDLCK : F_UNLCK,
        .l_whence = SEEK_SET,
        .l_start = byte,
        .l_len = 1,
    };

    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* 1 if an open file description other than fd's holds a lock on byte,
 * 0 if not, -errno. */
static int byte_locked_by_others(int fd, int64_t byte)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = byte,
        .l_len = 1,
    };

    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        return -errno;
    }
    return fl.l_type != F_UNLCK;
}

/* True if the kernel has OFD locks (probed on fd itself). */
static bool ofd_locks_supported(int fd)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = 0,
        .l_len = 0,
    };

    return fcntl(fd, F_OFD_GETLK, &fl) == 0;
}

/*
 * Makes fd's lock bytes say "I hold perm and share shared", then checks
 * that nobody else conflicts: someone not sharing a permission we hold
 * ('Failed to get "write" lock'), or holding one we do not share
 * ('Failed to get shared "write" lock'), in QEMU's words.  Locks first,
 * checks second: of two racing openers at least one sees the other.  On
 * failure the bytes may be left half-set; the caller reapplies its old
 * state or closes fd.
 */
static bool apply_perm_locks(int fd, unsigned perm, unsigned shared,
                             Error **errp)
{
    int ret;

    for (unsigned i = 0; i < G_N_ELEMENTS(perm_names); i++) {
        unsigned bit = 1u << i;

        ret = lock_byte(fd, LOCK_PERM_BASE + i, perm & bit);
        if (ret == 0) {
            ret = lock_byte(fd, LOCK_SHARED_BASE + i, !(shared & bit));
        }
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to lock byte %u",
                             LOCK_PERM_BASE + i);
            return false;
        }
    }
    for (unsigned i = 0; i < G_N_ELEMENTS(perm_names); i++) {
        if ((perm & (1u << i)) &&
            byte_locked_by_others(fd, LOCK_SHARED_BASE + i) != 0) {
            error_setg(errp, "Failed to get \"%s\" lock", perm_names[i]);
            return false;
        }
    }
    for (unsigned i = 0; i < G_N_ELEMENTS(perm_names); i++) {
        if (!(shared & (1u << i)) &&
            byte_locked_by_others(fd, LOCK_PERM_BASE + i) != 0) {
            error_setg(errp, "Failed to get shared \"%s\" lock",
                       perm_names[i]);
            return false;
        }
    }
    return true;
}

/* The permissions a node holds and shares, as a QEMU device would: a
 * writer excludes other writers and resizers; a reader excludes writers
 * unless force-share asks to tolerate them. */
static void node_perms(BlockDriverState *bs, unsigned *perm, unsigned *shared)
{
    if (!bs->read_only) {
        *perm = PERM_CONSISTENT_READ | PERM_WRITE;
        *shared = PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED;
    } else if (bs->force_share) {
        *perm = PERM_CONSISTENT_READ;
        *shared = PERM_ALL;
    } else {
        *perm = PERM_CONSISTENT_READ;
        *shared = PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED;
    }
}

/* Resolves locking=auto|on|off and takes the node's locks. */
static bool file_setup_locking(BlockDriverState *bs, BDRVFileState *s,
                               const BlockdevOptionsFile *fo, Error **errp)
{
    OnOffAuto mode = fo->has_locking ? fo->locking : ON_OFF_AUTO_AUTO;
    bool have_ofd = ofd_locks_supported(s->fd);

    if (mode == ON_OFF_AUTO_OFF || (mode == ON_OFF_AUTO_AUTO && !have_ofd)) {
        return true;
    }
    if (!have_ofd) {
        error_setg(errp, "locking=on was specified, but the host does "
                   "not support OFD locks");
        return false;
    }
    s->use_locking = true;
    node_perms(bs, &s->perm, &s->shared);
    return apply_perm_locks(s->fd, s->perm, s->shared, errp);
}

/* ---- O_DIRECT alignment probing ---- */

/* True if an O_DIRECT read of len bytes at offset 0 into buf works. */
static bool direct_read_ok(int fd, void *buf, size_t len)
{
    ssize_t ret;

    do {
        ret = pread(fd, buf, len, 0);
    } while (ret < 0 && errno == EINTR);
    return ret >= 0;
}

/*
 * True if probing reads at offset 0 prove anything: the kernel skips its
 * alignment checks for reads at EOF or in a hole, so a regular file needs
 * data in its first FILE_MAX_ALIGN bytes.
 */
static bool alignment_probe_trustworthy(BDRVFileState *s)
{
    struct stat st;
    off_t hole;

    if (s->is_blockdev) {
        return true;
    }
    if (fstat(s->fd, &st) < 0 || st.st_size < FILE_MAX_ALIGN) {
        return false;
    }
    hole = lseek(s->fd, 0, SEEK_HOLE);
    return hole >= FILE_MAX_ALIGN;
}

/*
 * Finds the smallest request and memory alignment that O_DIRECT accepts
 * (1, 512 or 4096), falling back to 4096 when the file cannot tell.
 */
static void file_probe_alignment(BlockDriverState *bs, BDRVFileState *s)
{
    static const size_t candidates[] = { 1, 512, FILE_MAX_ALIGN };
    uint8_t *buf;

    bs->bl.request_alignment = FILE_MAX_ALIGN;
    bs->bl.min_mem_alignment = FILE_MAX_ALIGN;
    if (!alignment_probe_trustworthy(s)) {
        return;
    }
    buf = g_aligned_alloc(2, FILE_MAX_ALIGN, FILE_MAX_ALIGN);
    for (size_t i = 0; i < G_N_ELEMENTS(candidates); i++) {
        if (direct_read_ok(s->fd, buf, candidates[i])) {
            bs->bl.request_alignment = candidates[i];
            break;
        }
    }
    for (size_t i = 0; i < G_N_ELEMENTS(candidates); i++) {
        size_t a = candidates[i];
        if (direct_read_ok(s->fd, buf + (a % FILE_MAX_ALIGN),
                           FILE_MAX_ALIGN)) {
            bs->bl.min_mem_alignment = a;
            break;
        }
    }
    g_aligned_free(buf);
}

/* The device's largest request (sysfs max_sectors_kb), 0 if unknown. */
static int64_t blockdev_max_transfer(int fd)
{
    struct stat st;
    g_autofree char *path = NULL;
    g_autofree char *text = NULL;
    guint64 kb;

    if (fstat(fd, &st) < 0) {
        return 0;
    }
    path = g_strdup_printf("/sys/dev/block/%u:%u/queue/max_sectors_kb",
                           major(st.st_rdev), minor(st.st_rdev));
    if (!g_file_get_contents(path, &text, NULL, NULL) ||
        !g_ascii_string_to_unsigned(g_strstrip(text), 10, 1,
                                    INT64_MAX / 1024, &kb, NULL)) {
        return 0;
    }
    return (int64_t)kb * 1024;
}

static void file_set_limits(BlockDriverState *bs, BDRVFileState *s)
{
    int64_t mt = FILE_MAX_TRANSFER;

    if (bs->cache_direct) {
        file_probe_alignment(bs, s);
    }
    if (s->is_blockdev) {
        int64_t dev = blockdev_max_transfer(s->fd);
        if (dev > 0) {
            mt = dev;
        }
    }
    /* The core wants a multiple of the alignment. */
    mt = MAX(mt - mt % bs->bl.request_alignment, bs->bl.request_alignment);
    bs->bl.max_transfer = mt;
    bs->supported_zero_flags = BDRV_REQ_MAY_UNMAP;
}

/* ---- Open / close ---- */

/* True if fd's file lives on tmpfs (false when that cannot be told). */
static bool fd_on_tmpfs(int fd)
{
    struct statfs sf;

    return fstatfs(fd, &sf) == 0 && sf.f_type == TMPFS_MAGIC;
}

/* Opens the fd and checks what it is: a regular file or block device. */
static bool file_open_fd(BlockDriverState *bs, BDRVFileState *s,
                         const char *filename, Error **errp)
{
    int flags = O_CLOEXEC | (bs->read_only ? O_RDONLY : O_RDWR);
    struct stat st;

    if (bs->cache_direct) {
        flags |= O_DIRECT;
    }
    do {
        s->fd = open(filename, flags);
    } while (s->fd < 0 && errno == EINTR);
    if (s->fd < 0) {
        error_setg_errno(errp, errno, "Could not open '%s'", filename);
        return false;
    }
    if (fstat(s->fd, &st) < 0) {
        error_setg_errno(errp, errno, "Could not stat '%s'", filename);
        return false;
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        error_setg(errp, "'%s' is not a regular file or block device",
                   filename);
        return false;
    }
    s->is_blockdev = S_ISBLK(st.st_mode);
    /* Only regular files: a device node on devtmpfs reports tmpfs too,
     * but its I/O goes to the device. */
    s->on_tmpfs = S_ISREG(st.st_mode) && fd_on_tmpfs(s->fd);
    return true;
}

/* Picks linux-aio or the thread pool; aio=native needs O_DIRECT to be
 * asynchronous at all, so it is refused without it (as QEMU does). */
static bool file_setup_aio(BlockDriverState *bs, BDRVFileState *s,
                           const BlockdevOptionsFile *fo, Error **errp)
{
    bool native = fo->has_aio && fo->aio == BLOCKDEV_AIO_OPTIONS_NATIVE;

    if (fo->has_aio_max_batch && fo->aio_max_batch < 0) {
        error_setg(errp, "aio-max-batch must be a non-negative integer");
        return false;
    }
    if (native && !bs->cache_direct) {
        error_setg(errp, "aio=native was specified, but it requires "
                   "cache.direct=on, which was not specified.");
        return false;
    }
    /* aio-max-batch is accepted for QEMU compatibility; the linux-aio
     * engine already submits everything queued in one loop iteration. */
    if (native) {
        /* No engine (io_setup refused): fall back to the thread pool. */
        s->use_linux_aio = aio_get_linux_aio(bdrv_get_aio_context(bs),
                                             NULL) != NULL;
    }
    return true;
}

static int file_open(BlockDriverState *bs, const BlockdevOptions *opts,
                     Error **errp)
{
    BDRVFileState *s = bs->opaque;
    const BlockdevOptionsFile *fo = &opts->u.file;

    s->fd = -1;
    s->has_zero_range = true;
    s->has_punch_hole = true;
    s->has_seek_hole = true;
    if (!file_setup_aio(bs, s, fo, errp) ||
        !file_open_fd(bs, s, fo->filename, errp) ||
        !file_setup_locking(bs, s, fo, errp)) {
        if (s->fd >= 0) {
            close(s->fd);
        }
        return -EINVAL;
    }
    file_set_limits(bs, s);
    g_free(bs->filename);
    bs->filename = g_strdup(fo->filename);
    return 0;
}

static void file_close(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;

    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

/* ---- Size ---- */

static int64_t file_getlength(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    struct stat st;

    if (s->is_blockdev) {
        uint64_t size;
        if (ioctl(s->fd, BLKGETSIZE64, &size) < 0) {
            return -errno;
        }
        return (int64_t)size;
    }
    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return st.st_size;
}

static int64_t file_get_allocated_file_size(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    struct stat st;

    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

/* ---- Work done in thread pool workers ---- */

/* One blocking operation on the fd, handed to a pool worker.  Lives on
 * the submitting coroutine's stack; the worker touches nothing else. */
typedef struct FileWork {
    int fd;
    int64_t offset;
    int64_t bytes;
    QIOVector *qiov;     /* read/write data */
    bool write;
    int mode;            /* fallocate() mode */
} FileWork;

/* Steps past n transferred bytes in iov[*first..niov). */
static void iov_advance(struct iovec *iov, int niov, int *first, size_t n)
{
    while (n > 0 && *first < niov) {
        struct iovec *v = &iov[*first];
        if (n < v->iov_len) {
            v->iov_base = (uint8_t *)v->iov_base + n;
            v->iov_len -= n;
            return;
        }
        n -= v->iov_len;
        (*first)++;
    }
}

/*
 * preadv/pwritev until done: retries short transfers and EINTR, takes at
 * most IOV_MAX elements per call, zero-fills a read that hits EOF.
 */
static int file_worker_rw(void *opaque)
{
    FileWork *w = opaque;
    int niov = w->qiov->niov;
    g_autofree struct iovec *iov = g_memdup2(w->qiov->iov,
                                             sizeof(*iov) * niov);
    int first = 0;
    int64_t done = 0;

    while (done < w->bytes) {
        int cnt = MIN(niov - first, IOV_MAX);
        ssize_t n = w->write
                    ? pwritev(w->fd, iov + first, cnt, w->offset + done)
                    : preadv(w->fd, iov + first, cnt, w->offset + done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            if (w->write) {
                return -EIO;
            }
            qiov_memset(w->qiov, done, 0, w->bytes - done);
            return 0;
        }
        done += n;
        iov_advance(iov, niov, &first, n);
    }
    return 0;
}

static int file_worker_flush(void *opaque)
{
    FileWork *w = opaque;

    return fdatasync(w->fd) < 0 ? -errno : 0;
}

static int file_worker_fallocate(void *opaque)
{
    FileWork *w = opaque;
    int ret;

    do {
        ret = fallocate(w->fd, w->mode, w->offset, w->bytes);
    } while (ret < 0 && errno == EINTR);
    return ret < 0 ? -errno : 0;
}

static int file_worker_truncate(void *opaque)
{
    FileWork *w = opaque;

    return ftruncate(w->fd, w->offset) < 0 ? -errno : 0;
}

/* ---- Reads and writes ---- */

/* True if O_DIRECT can take qiov as it is: every element's address on
 * the memory alignment and its length on the request alignment. */
static bool qiov_direct_ok(BlockDriverState *bs, const QIOVector *qiov)
{
    size_t mem = bs->bl.min_mem_alignment;
    size_t req = bs->bl.request_alignment;

    for (int i = 0; i < qiov->niov; i++) {
        if ((uintptr_t)qiov->iov[i].iov_base % mem ||
            qiov->iov[i].iov_len % req) {
            return false;
        }
    }
    return true;
}

/* Submits an I/O the kernel can take as it is. */
static int coroutine_fn file_submit(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes, QIOVector *qiov,
                                    bool write)
{
    BDRVFileState *s = bs->opaque;
    FileWork w = {
        .fd = s->fd, .offset = offset, .bytes = bytes, .qiov = qiov,
        .write = write,
    };

    if (s->use_linux_aio && qiov->niov <= IOV_MAX) {
        LinuxAioState *aio = aio_get_linux_aio(bdrv_get_aio_context(bs),
                                               NULL);
        if (aio) {
            int64_t ret = laio_co_submit(aio, s->fd, offset, qiov,
                                         write ? LAIO_WRITE : LAIO_READ);
            return ret < 0 ? (int)ret : 0;
        }
    }
    if (s->on_tmpfs && bytes <= FILE_TMPFS_INLINE_MAX) {
        /* A memory copy: cheaper here than the hand-off to a worker. */
        return file_worker_rw(&w);
    }
    return thread_pool_submit_co(file_worker_rw, &w);
}

/*
 * O_DIRECT with a buffer it cannot take (unaligned memory, or the last
 * piece of a file whose size is not a multiple of the alignment): goes
 * through an aligned bounce buffer rounded up to the alignment.  A write
 * that had to be rounded up past the end cuts the file back afterwards.
 */
static int coroutine_fn file_bounce_rw(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QIOVector *qiov,
                                       bool write)
{
    BDRVFileState *s = bs->opaque;
    uint32_t align = bs->bl.request_alignment;
    int64_t len = (bytes + align - 1) / align * align;
    uint8_t *buf = bdrv_blockalign(bs, len);
    QIOVector bq;
    int ret;

    qiov_init_buf(&bq, buf, len);
    if (write) {
        qiov_to_buf(qiov, 0, buf, bytes);
        memset(buf + bytes, 0, len - bytes);
    }
    /* Only the last piece of the node may have an unaligned length. */
    g_assert(len == bytes || offset + bytes == bs->total_bytes);
    ret = file_submit(bs, offset, len, &bq, write);
    if (ret == 0 && write && len != bytes) {
        FileWork w = { .fd = s->fd, .offset = offset + bytes };
        ret = thread_pool_submit_co(file_worker_truncate, &w);
    }
    if (ret == 0 && !write) {
        qiov_from_buf(qiov, 0, buf, bytes);
    }
    qiov_destroy(&bq);
    bdrv_vfree(buf);
    return ret;
}

static int coroutine_fn file_co_rw(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, QIOVector *qiov, bool write)
{
    g_assert(qiov->size == (size_t)bytes);
    if (bs->cache_direct &&
        (bytes % bs->bl.request_alignment || !qiov_direct_ok(bs, qiov))) {
        return file_bounce_rw(bs, offset, bytes, qiov, write);
    }
    return file_submit(bs, offset, bytes, qiov, write);
}

static int coroutine_fn file_co_preadv(BlockDriverState *bs, int64_t offset,
                                       int64_t bytes, QIOVector *qiov,
                                       BdrvRequestFlags flags)
{
    return file_co_rw(bs, offset, bytes, qiov, false);
}

static int coroutine_fn file_co_pwritev(BlockDriverState *bs, int64_t offset,
                                        int64_t bytes, QIOVector *qiov,
                                        BdrvRequestFlags flags)
{
    return file_co_rw(bs, offset, bytes, qiov, true);
}

static int coroutine_fn file_co_flush(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    FileWork w = { .fd = s->fd };

    return thread_pool_submit_co(file_worker_flush, &w);
}

/* ---- Zeroes, discard ---- */

static void file_forget_data_extent(BDRVFileState *s)
{
    s->data_start = s->data_end = 0;
}

/* fallocate(mode) in a worker; -ENOTSUP when the file system refuses the
 * mode (EOPNOTSUPP is ENOTSUP on Linux) and *supported is then cleared so
 * the next request does not ask again. */
static int coroutine_fn file_fallocate(BDRVFileState *s, int mode,
                                       int64_t offset, int64_t bytes,
                                       bool *supported)
{
    FileWork w = {
        .fd = s->fd, .offset = offset, .bytes = bytes, .mode = mode,
    };
    int ret;

    if (!*supported) {
        return -ENOTSUP;
    }
    /* Forgotten again afterwards: a status query may run meanwhile. */
    file_forget_data_extent(s);
    ret = thread_pool_submit_co(file_worker_fallocate, &w);
    file_forget_data_extent(s);
    if (ret == -ENOTSUP) {
        *supported = false;
    } else if (ret == -EINVAL) {
        /* A block device wants the range on its sector size, which the
         * core does not promise: let it write zero buffers this time. */
        ret = -ENOTSUP;
    }
    return ret;
}

/*
 * Write-zeroes: punching a hole reads back as zeroes exactly (on files,
 * and on block devices where the kernel guarantees zeroing), so with
 * MAY_UNMAP we deallocate; otherwise ZERO_RANGE keeps the blocks
 * allocated.  -ENOTSUP lets the core write a zero buffer instead.
 */
static int coroutine_fn file_co_pwrite_zeroes(BlockDriverState *bs,
                                              int64_t offset, int64_t bytes,
                                              BdrvRequestFlags flags)
{
    BDRVFileState *s = bs->opaque;
    int ret;

    if (flags & BDRV_REQ_MAY_UNMAP) {
        ret = file_fallocate(s, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                             offset, bytes, &s->has_punch_hole);
        if (ret != -ENOTSUP) {
            return ret;
        }
    }
    return file_fallocate(s, FALLOC_FL_ZERO_RANGE, offset, bytes,
                          &s->has_zero_range);
}

static int coroutine_fn file_co_pdiscard(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes)
{
    BDRVFileState *s = bs->opaque;

    return file_fallocate(s, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          offset, bytes, &s->has_punch_hole);
}

/* ---- Copy offload ---- */

extern const BlockDriver bdrv_file;

/* One copy_file_range() job, on the submitting coroutine's stack. */
typedef struct FileCopyWork {
    int src_fd;
    int dst_fd;
    int64_t src_offset;
    int64_t dst_offset;
    int64_t bytes;
} FileCopyWork;

/*
 * copy_file_range() until done: retries short copies and EINTR.  Errors
 * that mean "this pair cannot do it" (no syscall, different file systems,
 * a file system or file type without support, or a refusal of the flags
 * the files were opened with) become -ENOTSUP, so the caller reads and
 * writes instead; that is safe even after part of the range was copied,
 * as the fallback copies the same data again.
 */
static int file_worker_copy_range(void *opaque)
{
    FileCopyWork *w = opaque;
    int64_t done = 0;

    while (done < w->bytes) {
        loff_t in = w->src_offset + done, out = w->dst_offset + done;
        ssize_t n = copy_file_range(w->src_fd, &in, w->dst_fd, &out,
                                    w->bytes - done, 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int err = errno;

            return err == ENOSYS || err == EXDEV || err == EOPNOTSUPP ||
                   err == EINVAL || err == ETXTBSY ? -ENOTSUP : -err;
        }
        if (n == 0) {
            /* The source ends early: it shrank under us. */
            return -EIO;
        }
        done += n;
    }
    return 0;
}

/* The source leg ends here: hand the copy to the destination's path. */
static int coroutine_fn file_co_copy_range_from(BlockDriverState *bs,
                                                int64_t offset,
                                                BlockDriverState *dst,
                                                int64_t dst_offset,
                                                int64_t bytes,
                                                BdrvRequestFlags read_flags,
                                                BdrvRequestFlags write_flags)
{
    return bdrv_co_copy_range_to(bs, offset, dst, dst_offset, bytes,
                                 read_flags, write_flags);
}

/* The destination leg: copy_file_range() from another file node.  Any
 * other source (NBD, null...) cannot offload to a file. */
static int coroutine_fn file_co_copy_range_to(BlockDriverState *bs,
                                              BlockDriverState *src,
                                              int64_t src_offset,
                                              int64_t offset, int64_t bytes,
                                              BdrvRequestFlags read_flags,
                                              BdrvRequestFlags write_flags)
{
    BDRVFileState *s = bs->opaque;
    FileCopyWork w;
    int ret;

    if (src->drv != &bdrv_file) {
        return -ENOTSUP;
    }
    w = (FileCopyWork) {
        .src_fd = ((BDRVFileState *)src->opaque)->fd, .dst_fd = s->fd,
        .src_offset = src_offset, .dst_offset = offset, .bytes = bytes,
    };
    /* A file system that shares extents (reflink) copies the source's
     * holes too, so the cached data extent may be wrong afterwards. */
    file_forget_data_extent(s);
    ret = thread_pool_submit_co(file_worker_copy_range, &w);
    file_forget_data_extent(s);
    if (ret == 0 && (write_flags & BDRV_REQ_FUA)) {
        ret = file_co_flush(bs);
    }
    return ret;
}

/* ---- Block status ---- */

/*
 * Where the data around offset is: sets *pnum to the length of the run
 * of data (returns true) or hole (returns false) starting at offset,
 * capped at bytes.  lseek() is fast on local file systems, so it runs
 * here rather than in a worker.  -errno when the file system cannot say.
 */
static int find_allocation(BDRVFileState *s, int64_t offset, int64_t bytes,
                           int64_t *pnum)
{
    off_t data;
    off_t hole;

    if (offset >= s->data_start && offset < s->data_end) {
        *pnum = MIN(bytes, s->data_end - offset);
        return 1;
    }
    data = lseek(s->fd, offset, SEEK_DATA);
    if (data < 0) {
        if (errno == ENXIO) {
            /* No data after offset: a hole up to EOF (offset < size). */
            *pnum = bytes;
            return 0;
        }
        return -errno;
    }
    if (data > offset) {
        *pnum = MIN(bytes, data - offset);
        return 0;
    }
    hole = lseek(s->fd, offset, SEEK_HOLE);
    if (hole < 0) {
        /* ENXIO: the file shrank meanwhile; report data, which is safe. */
        *pnum = bytes;
        return errno == ENXIO ? 1 : -errno;
    }
    if (hole > offset) {
        s->data_start = offset;
        s->data_end = hole;
    }
    *pnum = hole > offset ? MIN(bytes, hole - offset) : bytes;
    return 1;
}

static int coroutine_fn file_co_block_status(BlockDriverState *bs,
                                             bool want_zero, int64_t offset,
                                             int64_t bytes, int64_t *pnum,
                                             int64_t *map,
                                             BlockDriverState **file)
{
    BDRVFileState *s = bs->opaque;
    int ret = 1;

    *map = offset;
    *file = bs;
    *pnum = bytes;
    if (!want_zero || s->is_blockdev || !s->has_seek_hole) {
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    ret = find_allocation(s, offset, bytes, pnum);
    if (ret < 0) {
        /* EINVAL etc.: no SEEK_DATA here; everything is data. */
        s->has_seek_hole = false;
        *pnum = bytes;
        ret = 1;
    }
    return (ret ? BDRV_BLOCK_DATA : BDRV_BLOCK_ZERO) | BDRV_BLOCK_OFFSET_VALID;
}

/* ---- Truncate and create ---- */

/* Takes QEMU's "resize" permission around a truncate, so a QEMU process
 * that does not share resize makes it fail, then goes back to the node's
 * own permissions. */
static bool file_lock_resize(BDRVFileState *s, bool take, Error **errp)
{
    unsigned perm = take ? s->perm | PERM_RESIZE : s->perm;

    if (!s->use_locking) {
        return true;
    }
    if (!apply_perm_locks(s->fd, perm, s->shared, errp)) {
        apply_perm_locks(s->fd, s->perm, s->shared, NULL);
        return false;
    }
    return true;
}

static int coroutine_fn file_co_truncate(BlockDriverState *bs, int64_t offset,
                                         bool exact, PreallocMode prealloc,
                                         Error **errp)
{
    BDRVFileState *s = bs->opaque;
    FileWork w = { .fd = s->fd, .offset = offset };
    int64_t cur;
    int ret;

    if (prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Unsupported preallocation mode '%s'",
                   PreallocMode_str(prealloc));
        return -ENOTSUP;
    }
    if (s->is_blockdev) {
        cur = file_getlength(bs);
        if (cur < 0 || offset > cur || (exact && offset != cur)) {
            error_setg(errp, "Cannot resize device files");
            return -ENOTSUP;
        }
        return 0;
    }
    if (!file_lock_resize(s, true, errp)) {
        return -EPERM;
    }
    file_forget_data_extent(s);
    ret = thread_pool_submit_co(file_worker_truncate, &w);
    file_forget_data_extent(s);
    file_lock_resize(s, false, NULL);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to resize file");
    }
    return ret;
}

/* Writes zeroes over [0, size) of fd (preallocation=full). */
static int write_zeroes_full(int fd, int64_t size)
{
    const size_t chunk = 1024 * 1024;
    g_autofree uint8_t *buf = g_malloc0(chunk);
    int64_t done = 0;

    while (done < size) {
        ssize_t n = pwrite(fd, buf, MIN((int64_t)chunk, size - done), done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        done += n;
    }
    return 0;
}

/* Sizes a freshly emptied file and allocates it as asked. */
static int create_size_file(int fd, int64_t size, PreallocMode prealloc,
                            Error **errp)
{
    int ret = 0;

    if (ftruncate(fd, 0) < 0 || ftruncate(fd, size) < 0) {
        error_setg_errno(errp, errno, "Could not resize file");
        return -errno;
    }
    if (prealloc == PREALLOC_MODE_FALLOC && size > 0 &&
        fallocate(fd, 0, 0, size) < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not preallocate data for the "
                         "new file");
    } else if (prealloc == PREALLOC_MODE_FULL) {
        ret = write_zeroes_full(fd, size);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not write zeroes for "
                             "preallocation");
        }
    }
    return ret;
}

/*
 * Creates (or empties) filename and makes it size bytes.  The file is
 * locked for writing and resizing before it is emptied, so creating over
 * an image that a QEMU or blockd process uses fails instead of destroying
 * it.  Main thread.
 */
static int file_create(const char *filename, int64_t size,
                       PreallocMode prealloc, Error **errp)
{
    int fd, ret;

    if (size < 0) {
        error_setg(errp, "Image size must be a non-negative number");
        return -EINVAL;
    }
    do {
        fd = open(filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        error_setg_errno(errp, errno, "Could not create '%s'", filename);
        return -errno;
    }
    if (ofd_locks_supported(fd) &&
        !apply_perm_locks(fd, PERM_WRITE | PERM_RESIZE,
                          PERM_ALL & ~PERM_RESIZE, errp)) {
        close(fd);
        return -EBUSY;
    }
    ret = create_size_file(fd, size, prealloc, errp);
    if (close(fd) < 0 && ret == 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not close '%s'", filename);
    }
    return ret;
}

const BlockDriver bdrv_file = {
    .format_name = "file",
    .driver = BLOCKDEV_DRIVER_FILE,
    .instance_size = sizeof(BDRVFileState),
    .is_protocol = true,
    .open = file_open,
    .close = file_close,
    .getlength = file_getlength,
    .get_allocated_file_size = file_get_allocated_file_size,
    .co_preadv = file_co_preadv,
    .co_pwritev = file_co_pwritev,
    .co_pwrite_zeroes = file_co_pwrite_zeroes,
    .co_pdiscard = file_co_pdiscard,
    .co_flush = file_co_flush,
    .co_block_status = file_co_block_status,
    .co_copy_range_from = file_co_copy_range_from,
    .co_copy_range_to = file_co_copy_range_to,
    .co_truncate = file_co_truncate,
    .create = file_create,
};
