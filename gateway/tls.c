/*
 * tls: server SSL_CTX and client-certificate identities (see tls.h).
 */
#include "tls.h"

#include "codec.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

/* TLS 1.2: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only. */
#define TLS12_CIPHERS                                                                                                  \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"                         \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static void ssl_error(struct buf *err, const char *file, const char *what)
{
    unsigned long e = ERR_get_error();
    char msg[256];

    ERR_error_string_n(e, msg, sizeof(msg));
    buf_printf(err, "%s: %s (%s)\n", file, what, e ? msg : "no detail");
    ERR_clear_error();
}

SSL_CTX *tls_server_ctx_new(const struct cfg_tls *t, const char *key_pem, size_t key_len, struct buf *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method()), *ret = NULL;
    static const unsigned char sid_ctx[] = "smc-gateway";
    BIO *bio = NULL;
    EVP_PKEY *key = NULL;

    if (ctx == NULL)
        goto out;
    SSL_CTX_set_min_proto_version(ctx, t->min_tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        ssl_error(err, t->cert_file, "cipher list refused");
        goto out;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1) {
        ssl_error(err, t->cert_file, "cannot load the certificate chain");
        goto out;
    }
    bio = BIO_new_mem_buf(key_pem, (int)key_len);
    if (bio == NULL || (key = PEM_read_bio_PrivateKey(bio, NULL, codec_no_passphrase, NULL)) == NULL ||
        SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        ssl_error(err, t->key_file, "cannot load the private key");
        goto out;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error(err, t->key_file, "the private key does not match the certificate");
        goto out;
    }
    if (t->client_ca_file != NULL) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca_file);
        if (names == NULL || SSL_CTX_load_verify_locations(ctx, t->client_ca_file, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            ssl_error(err, t->client_ca_file, "cannot load the client CA");
            goto out;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(
            ctx, SSL_VERIFY_PEER | (t->client_auth == TLS_CLIENT_OPTIONAL ? 0 : SSL_VERIFY_FAIL_IF_NO_PEER_CERT), NULL);
        SSL_CTX_set_verify_depth(ctx, 4);
        /* Resumed sessions must stay bound to client verification. */
        SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    }
    ret = ctx;
    ctx = NULL;
out:
    EVP_PKEY_free(key);
    BIO_free(bio);
    SSL_CTX_free(ctx);
    return ret;
}

static size_t add_id(char ids[][TLS_ID_MAX], size_t n, size_t max, const char *prefix, const unsigned char *v, int len)
{
    if (n >= max || len <= 0 || (size_t)len + strlen(prefix) >= TLS_ID_MAX || memchr(v, '\0', (size_t)len))
        return n;
    snprintf(ids[n], TLS_ID_MAX, "%s%.*s", prefix, len, (const char *)v);
    return n + 1;
}

size_t tls_peer_ids(SSL *ssl, char ids[][TLS_ID_MAX], size_t max)
{
    X509 *cert;
    X509_NAME *subj;
    GENERAL_NAMES *sans;
    size_t n = 0;
    int idx;

    if (ssl == NULL || (cert = SSL_get0_peer_certificate(ssl)) == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return 0;
    subj = X509_get_subject_name(cert);
    idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx >= 0) {
        ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
        n = add_id(ids, n, max, "CN=", ASN1_STRING_get0_data(cn), ASN1_STRING_length(cn));
    }
    sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS)
            n = add_id(ids, n, max, "DNS:", ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName));
        else if (g->type == GEN_URI)
            n = add_id(ids, n, max, "URI:", ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
                       ASN1_STRING_length(g->d.uniformResourceIdentifier));
    }
    GENERAL_NAMES_free(sans);
    return n;
}
