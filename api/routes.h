/*
 * routes: the registration functions of the route modules of minicrm-api. Each adds its routes
 * to the table (see router.h) and returns 0, or -1 if the table is full.
 *
 *   routes_ops.c        GET /healthz, /readyz, /metrics, /api/queues
 *   routes_customers.c  POST/GET /customers, GET /customers/:id
 *   routes_orders.c     POST/GET /orders
 *   routes_campaigns.c  /api/campaigns (+ preview, suggest-tags, :id, :id/logs)
 *   routes_campaign_moves.c  POST /api/campaigns/:id/pause|resume|cancel
 *   routes_comm.c       GET /communication
 *   routes_delivery.c   POST /api/vendor/send, POST /api/receipts/delivery
 *   routes_messages.c   POST /api/messages (one-off messages through the priority lane)
 *   routes_webhooks.c   /api/webhooks (+ :id, :id/test): outbound webhook endpoints (admin)
 *   routes_suppress.c   /api/suppressions, one-click unsubscribe GET/POST /u/:token
 *   routes_dlq.c        /api/queues/:name/dead (+ :index/requeue, :index/purge)
 *
 * routes_ensure_indexes() creates the indexes of notes/design.md (idempotent; indexes.c).
 */
#ifndef MINICRM_API_ROUTES_H
#define MINICRM_API_ROUTES_H

#include "router.h"

#include <mongoc/mongoc.h>
#include <stdbool.h>

int routes_ops_register(router *r);
int routes_customers_register(router *r);
int routes_orders_register(router *r);
int routes_campaigns_register(router *r);
int routes_campaign_moves_register(router *r);
int routes_comm_register(router *r);
int routes_delivery_register(router *r);
int routes_messages_register(router *r);
int routes_webhooks_register(router *r);
int routes_suppress_register(router *r);
/* The thread that pushes the webhook events of suppressions a crash left unannounced
 * (routes_suppress.c): start it once the pools exist (0, or -1 if no thread could start);
 * join it after signals_request_stop(). */
int routes_suppress_start(api_ctx *app);
void routes_suppress_join(void);
int routes_dlq_register(router *r);

/* The start-up index builder's state across its passes (indexes.c draws the moves):
 * zero-initialise it, then call routes_ensure_indexes() until it returns 0. */
#define ROUTES_MAX_INDEXES 32
enum { ROUTES_IDX_PENDING = 0, ROUTES_IDX_READY, ROUTES_IDX_FAILED };
typedef struct routes_index_state {
    unsigned char state[ROUTES_MAX_INDEXES]; /* ROUTES_IDX_* per index of indexes.c */
    int code[ROUTES_MAX_INDEXES];            /* last error code + 1 logged for it (0: none) */
    bool dropped[ROUTES_MAX_INDEXES];        /* superseded index i dropped (or absent) */
    size_t n_failed;                         /* indexes FAILED for good */
} routes_index_state;

/* One pass on client cl (used by this thread only): creates every index still pending, each
 * with its own command, logs each failure once, marks those a retry cannot fix (11000, 85,
 * 86, 67, 197) FAILED for good, and drops superseded indexes whose replacement is READY.
 * Returns how many are still pending (0: done, every index READY or FAILED). */
int routes_ensure_indexes(api_ctx *app, mongoc_client_t *cl, routes_index_state *s);

/* One batch of the back-fill of the customers' normalised e-mail domain (indexes.c): the next
 * customers without one get theirs. Returns how many were given one (0: none left), or -1
 * (logged; call again later). Client cl as above. */
long routes_backfill_domains(api_ctx *app, mongoc_client_t *cl);

#endif
