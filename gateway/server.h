/*
 * server: the HTTP listener (libevent evhttp). It gives every request an ID,
 * routes it, and hands /jobs/... to jobs.c; it also owns the reply helpers,
 * so every answer carries X-Request-Id and every error is a problem body.
 */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include "buf.h"
#include "gw.h"

#include <event2/http.h>

struct gw_config;

/* Bind the listener of cfg; NULL with a message in err on failure. */
struct srv *srv_new(struct gw *gw, const struct gw_config *cfg, struct buf *err);
void srv_free(struct srv *s);
/* Close the listening socket; open connections are served (503 while draining). */
void srv_stop_accepting(struct srv *s);

/* Reply with a JSON body (borrowed). */
void srv_reply_json(struct evhttp_request *req, const char *request_id, int status, const char *json);
/*
 * Reply with an RFC 9457 problem body: type is a slug (becomes
 * "urn:smc-gateway:problem:<slug>"), detail may be NULL, extra is more JSON
 * members starting with ',' (or NULL). Adds request_id.
 */
void srv_problem(struct evhttp_request *req, const char *request_id, int status, const char *type,
                 const char *title, const char *detail, const char *extra);

#endif
