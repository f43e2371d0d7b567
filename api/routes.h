/*
 * routes: the registration functions of the route modules of minicrm-api. Each adds its routes
 * to the table (see router.h) and returns 0, or -1 if the table is full.
 *
 *   routes_ops.c        GET /healthz, /readyz, /metrics, /api/queues
 *   routes_customers.c  POST/GET /customers, GET /customers/:id
 *   routes_orders.c     POST/GET /orders
 *   routes_campaigns.c  /api/campaigns (+ preview, suggest-tags, :id, :id/logs)
 *   routes_comm.c       GET /communication
 *   routes_delivery.c   POST /api/vendor/send, POST /api/receipts/delivery
 *   routes_messages.c   POST /api/messages (one-off messages through the priority lane)
 *
 * routes_ensure_indexes() creates the indexes of notes/design.md (idempotent).
 */
#ifndef MINICRM_API_ROUTES_H
#define MINICRM_API_ROUTES_H

#include "router.h"

int routes_ops_register(router *r);
int routes_customers_register(router *r);
int routes_orders_register(router *r);
int routes_campaigns_register(router *r);
int routes_comm_register(router *r);
int routes_delivery_register(router *r);
int routes_messages_register(router *r);

/* 0 once every index exists; -1 with err (e.g. MongoDB unreachable: retried by main). */
int routes_ensure_indexes(api_ctx *app, char *err, size_t errlen);

#endif
