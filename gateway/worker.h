/*
 * worker: the API's event-loop threads (see gw.h for what they own and
 * share). A worker is set up and its listener bound on the main thread, then
 * runs its loop on a thread of its own until the main thread stops it.
 */
#ifndef GW_WORKER_H
#define GW_WORKER_H

#include "buf.h"
#include "gw.h"

/* Set up worker w with its API listener (see srv_new: first_fd is the first
 * worker's listening socket, or -1 for the first); -1 with err. */
int worker_init(struct worker *w, struct gw *gw, const struct gw_config *cfg, int first_fd, struct buf *err);
/* Run its loop on a new thread. */
int worker_start(struct worker *w);
/* Stop the loop and join the thread (any requests left are abandoned). */
void worker_stop(struct worker *w);
/* Free what worker_init made, except the event base (freed by worker_free_base
 * after the audit, whose ports live on it). */
void worker_free(struct worker *w);
void worker_free_base(struct worker *w);

#endif
