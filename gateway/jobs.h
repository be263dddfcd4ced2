/*
 * jobs: the DELETE /jobs/{JobId} pipeline. HTTP hygiene, then
 * auth (JWT → identity) → policy (identity × action × job → decision) →
 * audit (decision, durable) → sign → upstream → map → audit (outcome) →
 * reply. A request's state lives in one struct that moves through the steps.
 */
#ifndef GW_JOBS_H
#define GW_JOBS_H

#include "gw.h"
#include "route.h"

struct srv_req;

/* Handle a request whose path starts with /jobs (kind from route_parse).
 * req is the server's until the reply (see server.h). */
void jobs_handle(struct worker *w, struct srv_req *req, enum route_kind kind, const char *job_id,
                 const char *request_id);
/* GET /audit: a page of this instance's trail, for the policy's auditors. */
void jobs_audit_read(struct worker *w, struct srv_req *req, const char *request_id);
/* Write the summaries of ended refusal windows (timer, shutdown). */
void jobs_sweep_refusals(struct gw *gw, int all);
/* Free the rate-limit buckets held in gw (at exit). */
void jobs_free_state(struct gw *gw);

#endif
