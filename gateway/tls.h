/*
 * tls: the listener's TLS context (TLS 1.2+ only, forward-secret AEAD
 * suites, no compression, no renegotiation, optional client certificates)
 * and what a verified client certificate says about its holder.
 */
#ifndef GW_TLS_H
#define GW_TLS_H

#include "buf.h"

#include <openssl/ssl.h>
#include <stddef.h>

#define TLS_ID_MAX 256
#define TLS_IDS_MAX 16

enum tls_client_auth { TLS_CLIENT_NONE = 0, TLS_CLIENT_OPTIONAL, TLS_CLIENT_REQUIRED };

struct cfg_tls {
    char *cert_file;      /* PEM, may hold a chain */
    char *key_file;       /* PEM private key; file mode as for credentials */
    char *client_ca_file; /* or NULL: no client certificates asked for */
    int client_auth;      /* enum tls_client_auth */
    int min_tls13;        /* 1: TLS 1.3 only */
};

/* Build a server context with the private key from key_pem (key_len bytes
 * of t->key_file, read by the caller, who checked its mode and wipes it);
 * NULL with "FILE: why" lines in err. Caller frees. */
SSL_CTX *tls_server_ctx_new(const struct cfg_tls *t, const char *key_pem, size_t key_len, struct buf *err);

/*
 * The verified peer certificate's identities as "CN=...", "DNS:...",
 * "URI:..." strings (at most max, each < TLS_ID_MAX); 0 when the peer sent
 * no certificate or it did not verify.
 */
size_t tls_peer_ids(SSL *ssl, char ids[][TLS_ID_MAX], size_t max);

#endif
