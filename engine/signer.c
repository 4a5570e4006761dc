/* The Ed25519 signing key of a receipt log (signer.h). */
#include "signer.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ed25519.h"

struct oe_signer {
    EVP_PKEY *key;         /* the private key; read-only once made */
    unsigned char pub[32]; /* its raw public key */
    char id[65];           /* lowercase hex SHA-256 of pub */
};

/* Wraps key (taken over: freed on failure) in a new signer. */
static oe_rc signer_new(EVP_PKEY *key, oe_signer **out, char *err, size_t errlen)
{
    oe_signer *s = calloc(1, sizeof *s);
    size_t n = sizeof s->pub;
    if (!s || EVP_PKEY_get_raw_public_key(key, s->pub, &n) != 1 || n != sizeof s->pub) {
        snprintf(err, errlen, "out of memory");
        EVP_PKEY_free(key);
        free(s);
        ERR_clear_error();
        return OE_ENOMEM;
    }
    s->key = key;
    oe_ed25519_key_id(s->pub, s->id);
    *out = s;
    return OE_OK;
}

/* The Ed25519 private key of a PEM text, or NULL with a reason. Only the
 * first block is looked at; it must be unencrypted PKCS#8. */
static oe_rc key_from_pem(const char *path, const char *pem, size_t len, EVP_PKEY **out, char *err,
                          size_t errlen)
{
    *out = NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        snprintf(err, errlen, "out of memory");
        return OE_ENOMEM;
    }
    char *label = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    oe_rc rc = OE_EINVAL;
    ERR_clear_error();
    if (PEM_read_bio(bio, &label, &header, &data, &dlen) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
            snprintf(err, errlen,
                     "%s holds no PEM block (expected an Ed25519 private key, "
                     "\"-----BEGIN PRIVATE KEY-----\")",
                     path);
        else
            snprintf(err, errlen, "%s: its PEM block cannot be read (broken PEM)", path);
        goto done;
    }
    if (strcmp(label, "PRIVATE KEY") != 0) {
        snprintf(err, errlen,
                 "%s is not an Ed25519 private key (its first PEM block is \"%.40s\"; expected "
                 "an unencrypted \"PRIVATE KEY\")",
                 path, label);
        goto done;
    }
    const unsigned char *p = data;
    PKCS8_PRIV_KEY_INFO *info = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, dlen);
    EVP_PKEY *key = info && p == data + dlen ? EVP_PKCS82PKEY(info) : NULL;
    PKCS8_PRIV_KEY_INFO_free(info);
    if (!key || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
        const char *type = key ? EVP_PKEY_get0_type_name(key) : NULL;
        if (type)
            snprintf(err, errlen, "%s is not an Ed25519 private key (it is %.40s)", path, type);
        else
            snprintf(err, errlen, "%s is not an Ed25519 private key (bad PKCS#8 data)", path);
        EVP_PKEY_free(key);
        goto done;
    }
    *out = key;
    rc = OE_OK;
done:
    OPENSSL_free(label);
    OPENSSL_free(header);
    if (data)
        OPENSSL_clear_free(data, (size_t)dlen);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

/* Reads the whole file open on fd (at most OE_SIGNER_FILE_MAX bytes) into
 * buf (OE_SIGNER_FILE_MAX + 1 bytes); the length into *len. */
static oe_rc read_all(int fd, const char *path, char *buf, size_t *len, char *err, size_t errlen)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, OE_SIGNER_FILE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            return OE_EIO;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > OE_SIGNER_FILE_MAX) {
            snprintf(err, errlen, "%s is larger than %zu KiB: not a key file", path,
                     OE_SIGNER_FILE_MAX >> 10);
            return OE_ELIMIT;
        }
    }
    *len = n;
    return OE_OK;
}

oe_rc oe_signer_load_file(const char *path, oe_signer **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return OE_EIO;
    }
    char *buf = NULL;
    size_t len = 0;
    oe_rc rc = OE_EINVAL;
    struct stat st;
    /* The checks look at the file that is open, not at the path again. */
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        rc = OE_EIO;
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        goto done;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen, "%s is %s by others (mode %04o); chmod 600 it", path,
                 st.st_mode & 044   ? "readable"
                 : st.st_mode & 022 ? "writable"
                                    : "executable",
                 (unsigned)(st.st_mode & 07777));
        goto done;
    }
    if ((size_t)st.st_size > OE_SIGNER_FILE_MAX) {
        snprintf(err, errlen, "%s is larger than %zu KiB: not a key file", path,
                 OE_SIGNER_FILE_MAX >> 10);
        rc = OE_ELIMIT;
        goto done;
    }
    if (!(buf = malloc(OE_SIGNER_FILE_MAX + 1))) {
        snprintf(err, errlen, "out of memory");
        rc = OE_ENOMEM;
        goto done;
    }
    if ((rc = read_all(fd, path, buf, &len, err, errlen)) != OE_OK)
        goto done;
    EVP_PKEY *key;
    if ((rc = key_from_pem(path, buf, len, &key, err, errlen)) == OE_OK)
        rc = signer_new(key, out, err, errlen);
done:
    if (buf) {
        OPENSSL_cleanse(buf, len);
        free(buf);
    }
    close(fd);
    return rc;
}

/* Writes n bytes to fd, through short writes and interruptions. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsyncs the directory that holds path, so that the new name lasts too. */
static int sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

oe_rc oe_signer_generate_file(const char *path, oe_signer **out, char *err, size_t errlen)
{
    *out = NULL;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    /* A secure-memory BIO wipes the PEM text of the key when it is freed. */
    BIO *bio = key ? BIO_new(BIO_s_secmem()) : NULL;
    char *pem = NULL;
    long len = 0;
    if (!bio || PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        (len = BIO_get_mem_data(bio, &pem)) <= 0) {
        snprintf(err, errlen, "cannot make an Ed25519 key (out of memory or no randomness)");
        BIO_free(bio);
        EVP_PKEY_free(key);
        ERR_clear_error();
        return OE_ENOMEM;
    }
    EVP_PKEY_free(key); /* read back from the file below, as any later run will */
    oe_rc rc = OE_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            snprintf(err, errlen, "%s already exists; an existing key file is never overwritten",
                     path);
        else
            snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        BIO_free(bio);
        return OE_EIO;
    }
    const char *step = NULL;
    if (write_all(fd, pem, (size_t)len) != 0)
        step = "write";
    else if (fsync(fd) != 0)
        step = "fsync";
    int saved = errno;
    if (close(fd) != 0 && !step) {
        step = "close";
        saved = errno;
    }
    BIO_free(bio);
    if (!step && sync_parent(path) != 0) {
        step = "fsync the directory of";
        saved = errno;
    }
    if (step) {
        snprintf(err, errlen, "cannot %s %s: %s", step, path, strerror(saved));
        unlink(path);
        return OE_EIO;
    }
    rc = oe_signer_load_file(path, out, err, errlen);
    if (rc != OE_OK)
        unlink(path);
    return rc;
}

oe_rc oe_signer_from_seed(const unsigned char seed[32], oe_signer **out, char *err, size_t errlen)
{
    *out = NULL;
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    if (!key) {
        snprintf(err, errlen, "out of memory");
        ERR_clear_error();
        return OE_ENOMEM;
    }
    return signer_new(key, out, err, errlen);
}

void oe_signer_public(const oe_signer *s, unsigned char pub[32])
{
    memcpy(pub, s->pub, sizeof s->pub);
}

void oe_signer_key_id(const oe_signer *s, char hex[65])
{
    memcpy(hex, s->id, sizeof s->id);
}

oe_rc oe_signer_public_pem(const oe_signer *s, oe_buf *out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *pem;
    long len;
    oe_rc rc;
    if (!bio || PEM_write_bio_PUBKEY(bio, s->key) != 1 ||
        (len = BIO_get_mem_data(bio, &pem)) <= 0) {
        /* Marked as a failed append would be, so that callers who check
         * the buffer once at the end see it (buf.h). */
        if (!out->failed)
            out->failed = OE_ENOMEM;
        rc = out->failed;
    } else {
        rc = oe_buf_append(out, pem, (size_t)len);
    }
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

oe_rc oe_signer_sign(const oe_signer *s, const void *msg, size_t len, unsigned char sig[64])
{
    static const unsigned char empty = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t siglen = 64;
    oe_rc rc = OE_OK;
    if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->key) != 1 ||
        EVP_DigestSign(ctx, sig, &siglen, len ? msg : &empty, len) != 1 || siglen != 64)
        rc = OE_ENOMEM;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

void oe_signer_free(oe_signer *s)
{
    if (!s)
        return;
    EVP_PKEY_free(s->key);
    free(s);
}
